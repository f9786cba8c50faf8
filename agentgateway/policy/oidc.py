"""``oidc``: browser login with an OpenID provider (authorization code flow with PKCE) and a
session cookie; agentgateway's policy and keys.

A request with a valid session cookie goes on, its ID token's claims as the CEL variable ``jwt``
(the caller's identity ``jwt:<iss> <sub>``). Without one:

* a fetch the browser marks as such (``Sec-Fetch-Mode: cors``, ``no-cors``, ``same-origin`` or
  ``websocket``) gets 401: a script cannot follow a login across origins;
* any other request is sent to the provider's authorization endpoint (302) with
  ``response_type=code``, ``client_id``, ``redirect_uri`` (always the configured ``redirectURI``),
  ``scope`` (``openid`` first), a random ``state`` and ``nonce``, and a PKCE ``S256`` challenge.
  The login transaction (state, nonce, PKCE verifier, the page to return to, five minutes of
  validity) is sealed into a cookie named for the transaction.

The callback is the request at ``redirectURI``'s path with ``state`` and ``code`` (or ``error``):
the transaction cookie the state names must open, be this policy's, unexpired, and its state must
equal the one returned (constant-time); the code is exchanged at the token endpoint with the PKCE
verifier and the client's credentials (``clientSecretBasic`` or ``clientSecretPost``); the ID
token must verify against the provider's keys, have this ``issuer``, the ``clientId`` as audience,
be unexpired and carry the transaction's ``nonce``. Then the session cookie is set, the
transaction cookie cleared, and the browser sent back to the page it asked for, which is only
ever a path of this origin (``/...``, never ``//host`` or ``/\\host``, 2 KiB at most; else ``/``).

Cookies (``agw_oidc_s_<id>`` for the session, ``agw_oidc_t_<id>.<transaction>``) are sealed with
AES-256-GCM under a key derived from ``config.session.key`` (``SESSION_KEY``), with the cookie's
purpose and the policy in the authenticated data, so no cookie opens for another policy or as the
other kind; they are ``HttpOnly``, ``SameSite=Lax``, ``Path=/`` and ``Secure`` when ``redirectURI``
is https. A session lasts until the ID token expires, one hour at most. The policy's own cookies
are removed from the request before it goes upstream.

``logout`` (an addition, agentgateway's later key): a POST to ``logout.path`` from the
``redirectURI``'s origin clears the session and answers 303 to ``logout.redirect`` (default
``/``); the provider's own session is left alone.

Provider metadata comes from discovery (``discovery``, default
``<issuer>/.well-known/openid-configuration``, fetched when first needed; its ``issuer`` must be
this one) or is given in full: ``authorizationEndpoint``, ``tokenEndpoint`` and ``jwks``
together (``tokenEndpointAuth`` then defaults to ``clientSecretBasic``). Any request without a
session needs the document, so its fetches are shared by the requests waiting for one and start
at most once per ``jwks.MIN_INTERVAL``: a provider that fails is not asked once per request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import orjson

from agentgateway import _native
from agentgateway.config import referenced
from agentgateway.config.errors import ConfigError
from agentgateway.config.paths import resolve_file
from agentgateway.config.schema import Oidc, OidcSource
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import DEFER, LocalReply
from agentgateway.observe.tracing import end_call, start_call, traceparent_for
from agentgateway.policy import outbound
from agentgateway.policy.jwks import MIN_INTERVAL, KeySet, compile_key_set, remote_key_set
from agentgateway.policy.jwt_auth import JwtValidator, Provider, Rejected, Verified
from agentgateway.upstream.client import HttpClientError
from agentgateway.upstream.target import HttpTarget

log = logging.getLogger("agentgateway.policy.oidc")

COOKIE_PREFIX = "agw_oidc_"
SESSION_TTL = 3600.0
TRANSACTION_TTL = 300.0
_MAX_COOKIE_VALUE = 3800  # under the ~4 KiB browsers keep per cookie
_MAX_RETURN_PATH = 2048
_DISCOVERY_TTL = 3600.0
_TOKEN_TIMEOUT = 10.0
_MAX_RESPONSE = 256 * 1024
_NON_NAVIGATION = frozenset((b"cors", b"no-cors", b"same-origin", b"websocket"))
_TRANSACTION_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_NO_STORE = (b"cache-control", b"no-store")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cookie_key(session_key: bytes) -> bytes:
    """The key of the OIDC cookies: derived from the session key, so they never open as MCP
    session tokens (which the session key seals) nor those as cookies."""
    return hmac.new(session_key, b"agentgateway oidc cookies v1", hashlib.sha256).digest()


def safe_return_path(target: str) -> str:
    """``target`` when it is a path of this origin (also once percent-decoded), else ``/``."""
    if len(target) > _MAX_RETURN_PATH or any(c in target for c in "\r\n\0"):
        return "/"
    for candidate in (target, unquote(target)):
        if not candidate.startswith("/") or candidate.startswith("//") or "\\" in candidate:
            return "/"
    return target


class _Endpoints:
    """What a provider's metadata says (discovered or configured)."""

    __slots__ = ("authorization", "token", "token_target", "auth_method", "key_set", "fetched")

    def __init__(
        self,
        authorization: str,
        token: tuple[HttpTarget, bytes],
        auth_method: str,
        key_set: KeySet,
    ) -> None:
        self.authorization = authorization
        self.token_target = token
        self.auth_method = auth_method
        self.key_set = key_set
        self.fetched = time.monotonic()


class OidcPolicy:
    kind = "oidc"

    __slots__ = (
        "issuer",
        "client_id",
        "client_secret",
        "redirect_uri",
        "callback_path",
        "origin",
        "secure",
        "scope",
        "policy_id",
        "session_cookie",
        "transaction_prefix",
        "cipher",
        "logout_path",
        "logout_redirect",
        "endpoints",
        "validator",
        "_discovery",
        "_discovery_where",
        "_discovering",
        "_discovery_attempt",
        "_discovery_error",
        "_explicit_auth",
    )

    def __init__(
        self,
        cfg: Oidc,
        session_key: bytes | None,
        policy_id: str,
        base_dir: Path | None,
        where: str,
    ) -> None:
        if session_key is None:
            raise ConfigError(
                where,
                "oidc seals its cookies with the session key: set config.session.key or SESSION_KEY "
                "(64 hex characters, e.g. from `openssl rand -hex 32`)",
            )
        self.cipher = _native.SessionCipher(cookie_key(session_key))
        if not cfg.client_id:
            raise ConfigError(f"{where}.clientId", "must not be empty")
        self.issuer = cfg.issuer
        self.client_id = cfg.client_id
        self.client_secret = cfg.client_secret
        parts = urlsplit(cfg.redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ConfigError(f"{where}.redirectURI", "must be an absolute http(s) URL without a fragment")
        if parts.query:
            raise ConfigError(f"{where}.redirectURI", "must not have a query (the provider adds code and state)")
        self.redirect_uri = cfg.redirect_uri
        self.callback_path = (parts.path or "/").encode()
        self.origin = f"{parts.scheme}://{parts.netloc}".lower().encode()
        self.secure = parts.scheme == "https"
        scopes = ["openid", *cfg.scopes]
        for i, scope in enumerate(cfg.scopes):
            if not scope or any(c in scope for c in ' "\\') or not scope.isascii() or not scope.isprintable():
                raise ConfigError(f"{where}.scopes[{i}]", f"{scope!r} is not a scope")
        self.scope = " ".join(dict.fromkeys(scopes))
        self.policy_id = policy_id
        digest = hashlib.sha256(policy_id.encode()).hexdigest()[:16]
        self.session_cookie = f"{COOKIE_PREFIX}s_{digest}".encode()
        self.transaction_prefix = f"{COOKIE_PREFIX}t_{digest}."
        self.logout_path: bytes | None = None
        self.logout_redirect = "/"
        if cfg.logout is not None:
            lw = f"{where}.logout"
            path = cfg.logout.path
            if safe_return_path(path) != path or "?" in path or "#" in path or path.encode() == self.callback_path:
                raise ConfigError(f"{lw}.path", "must be a local path without a query, other than the callback's")
            self.logout_path = path.encode()
            if cfg.logout.redirect is not None:
                redirect = cfg.logout.redirect
                if safe_return_path(redirect) != redirect or "#" in redirect:
                    raise ConfigError(f"{lw}.redirect", "must be a local path (/...)")
                self.logout_redirect = redirect
        explicit = [x is not None for x in (cfg.authorization_endpoint, cfg.token_endpoint, cfg.jwks)]
        self.endpoints: _Endpoints | None = None
        self._discovery: tuple[HttpTarget, bytes] | None = None
        self._discovery_where = f"{where}.discovery"
        self._discovering: asyncio.Task[None] | None = None
        self._discovery_attempt = -MIN_INTERVAL  # when the last fetch started (monotonic)
        self._discovery_error = "not fetched yet"
        self._explicit_auth = cfg.token_endpoint_auth
        if all(explicit):
            if cfg.discovery is not None:
                raise ConfigError(f"{where}.discovery", "must be omitted when the endpoints and jwks are given")
            assert cfg.authorization_endpoint is not None and cfg.token_endpoint is not None and cfg.jwks is not None
            _http_url(cfg.authorization_endpoint, f"{where}.authorizationEndpoint")
            self.endpoints = _Endpoints(
                cfg.authorization_endpoint,
                outbound.url_target(cfg.token_endpoint, f"{where}.tokenEndpoint"),
                cfg.token_endpoint_auth or "clientSecretBasic",
                compile_key_set(cfg.jwks, base_dir, f"{where}.jwks"),
            )
        elif any(explicit):
            raise ConfigError(where, "authorizationEndpoint, tokenEndpoint and jwks are given all together, or none")
        else:
            if cfg.token_endpoint_auth is not None:
                raise ConfigError(
                    f"{where}.tokenEndpointAuth", "only with explicit endpoints (discovery says which to use)"
                )
            source = cfg.discovery
            if source is None or isinstance(source, OidcSource) and source.url is not None:
                url = (
                    source.url
                    if isinstance(source, OidcSource) and source.url
                    else cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
                )
                self._discovery = outbound.url_target(url, self._discovery_where if source else f"{where}.issuer")
            else:
                document = _read_document(source, base_dir, self._discovery_where)
                self.endpoints = self._from_discovery(document, self._discovery_where)
        self.validator: JwtValidator | None = (
            self._validator(self.endpoints.key_set) if self.endpoints is not None else None
        )

    def _validator(self, key_set: KeySet) -> JwtValidator:
        return JwtValidator([Provider(self.issuer, [self.client_id], key_set, None, "oidc")])

    def _from_discovery(self, document: object, where: str) -> _Endpoints:
        """The endpoints a discovery document names (ConfigError when it is not usable)."""
        if not isinstance(document, dict):
            raise ConfigError(where, "the discovery document is not a JSON object")
        if document.get("issuer") != self.issuer:
            raise ConfigError(where, f"issuer mismatch: expected {self.issuer!r}, got {document.get('issuer')!r}")
        fields = {}
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(key)
            if not isinstance(value, str):
                raise ConfigError(where, f"the discovery document has no {key}")
            fields[key] = value
        _http_url(fields["authorization_endpoint"], f"{where}.authorization_endpoint")
        methods = document.get("token_endpoint_auth_methods_supported")
        if methods is None or (isinstance(methods, list) and "client_secret_basic" in methods):
            method = "clientSecretBasic"
        elif isinstance(methods, list) and "client_secret_post" in methods:
            method = "clientSecretPost"
        else:
            raise ConfigError(
                where, f"the provider supports neither client_secret_basic nor client_secret_post ({methods})"
            )
        return _Endpoints(
            fields["authorization_endpoint"],
            outbound.url_target(fields["token_endpoint"], f"{where}.token_endpoint"),
            method,
            remote_key_set(fields["jwks_uri"], f"{where}.jwks_uri"),
        )

    # ------------------------------------------------------------------ request path

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        path = ctx.path
        if self.logout_path is not None and path == self.logout_path:
            return self._logout(ctx)
        if path == self.callback_path and ctx.method == b"GET" and _callback_params(ctx) is not None:
            return DEFER
        if ctx.method == b"OPTIONS" and ctx.header(b"origin") and ctx.header(b"access-control-request-method"):
            return None  # a CORS preflight: the cors policy answers it
        if self.endpoints is None or self.validator is None:
            return DEFER  # discovery first
        return self._session_or_login(ctx)

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None:
        try:
            await self._discover()
        except ConfigError as exc:
            log.warning("oidc %s: %s", self.issuer, exc)
            return LocalReply.text(503, "OpenID provider metadata unavailable")
        params = _callback_params(ctx) if ctx.path == self.callback_path and ctx.method == b"GET" else None
        if params is not None:
            return await self._callback(ctx, params)
        verdict = self._session_or_login(ctx)
        if verdict is DEFER:  # the session's token names a key not fetched yet
            assert self.validator is not None
            await self.validator.fetch_keys()
            return self._session_or_login(ctx, may_fetch=False)
        return verdict

    async def _discover(self) -> None:
        """Fetch the discovery document when it is due, joining a fetch already running; raises
        ConfigError while there is none to use. A fetch starts at most once per MIN_INTERVAL."""
        current = self.endpoints
        if self._discovery is None or (current is not None and time.monotonic() - current.fetched < _DISCOVERY_TTL):
            return
        task = self._discovering
        if task is None and time.monotonic() - self._discovery_attempt >= MIN_INTERVAL:
            self._discovery_attempt = time.monotonic()
            # A task of its own: a client that leaves does not cancel the fetch for the others.
            task = self._discovering = asyncio.get_running_loop().create_task(self._fetch_discovery())
        if task is not None:
            await asyncio.shield(task)
        if self.endpoints is None:
            raise ConfigError(self._discovery_where, f"discovery failed: {self._discovery_error}")

    async def _fetch_discovery(self) -> None:
        assert self._discovery is not None
        target, path = self._discovery
        try:
            response = await outbound.client().request(
                target, b"GET", path, [(b"accept", b"application/json")], timeout=outbound.CONNECT_TIMEOUT
            )
            body = await response.read(_MAX_RESPONSE)
            if response.status != 200:
                raise ValueError(f"HTTP status {response.status}")
            document = orjson.loads(body)
            endpoints = self._from_discovery(document, self._discovery_where)
        except (HttpClientError, ValueError, orjson.JSONDecodeError, ConfigError) as exc:
            self._discovery_error = str(exc)
            return  # keep what was discovered before, if anything
        finally:
            self._discovering = None
        current = self.endpoints
        if current is None or endpoints.key_set is not current.key_set:
            self.validator = self._validator(endpoints.key_set)
        self.endpoints = endpoints

    def _session_or_login(self, ctx: RequestCtx, may_fetch: bool = True) -> LocalReply | None:
        cookie = _cookie(ctx, self.session_cookie)
        if cookie is not None:
            token = self._open_session(cookie)
            if token is not None:
                assert self.validator is not None
                verdict = self.validator.check(token, may_fetch)
                if verdict is None:
                    return DEFER
                if isinstance(verdict, Verified):
                    ctx.learn("jwt", verdict.claims)
                    ctx.add_identity(verdict.identity)
                    ctx.jwt_token = token
                    _drop_own_cookies(ctx)
                    return None
                log.debug("oidc session token refused: %s", verdict.reason)
        mode = ctx.header(b"sec-fetch-mode")
        if mode is not None and mode.lower() in _NON_NAVIGATION:
            return LocalReply.text(401, "authentication required (log in through a page navigation)", [_NO_STORE])
        return self._start_login(ctx)

    def _open_session(self, value: bytes) -> str | None:
        try:
            plain = self.cipher.open(value.decode("latin-1"), b"session\0" + self.policy_id.encode())
            session = orjson.loads(plain)
        except (_native.SessionTokenError, orjson.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(session, dict):
            return None
        token, expires = session.get("idToken"), session.get("expiresAt")
        if not isinstance(token, str) or not isinstance(expires, int | float) or expires <= time.time():
            return None
        return token

    def _start_login(self, ctx: RequestCtx) -> LocalReply:
        assert self.endpoints is not None
        transaction_id = secrets.token_urlsafe(16)
        csrf = secrets.token_urlsafe(16)
        nonce = secrets.token_urlsafe(16)
        verifier = secrets.token_urlsafe(32)
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        transaction = {
            "transactionId": transaction_id,
            "csrfState": csrf,
            "nonce": nonce,
            "pkceVerifier": verifier,
            "originalUri": safe_return_path(ctx.target.decode("latin-1")),
            "expiresAt": int(time.time() + TRANSACTION_TTL),
        }
        sealed = self.cipher.seal(orjson.dumps(transaction), self._transaction_aad(transaction_id))
        state = _b64(orjson.dumps({"transactionId": transaction_id, "csrfState": csrf}))
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self.scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
            quote_via=quote,
        )
        endpoint = self.endpoints.authorization
        location = f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
        cookie = self._cookie(self.transaction_prefix + transaction_id, sealed, int(TRANSACTION_TTL))
        return LocalReply(
            302, ((b"location", location.encode()), (b"set-cookie", cookie), _NO_STORE), b"", "oidc login"
        )

    def _transaction_aad(self, transaction_id: str) -> bytes:
        return b"transaction\0" + self.policy_id.encode() + b"\0" + transaction_id.encode()

    async def _callback(self, ctx: RequestCtx, params: dict[str, str]) -> LocalReply:
        try:
            raw = orjson.loads(_unb64(params["state"]))
        except (ValueError, orjson.JSONDecodeError):
            return _refuse(400, "invalid callback state")
        transaction_id = raw.get("transactionId") if isinstance(raw, dict) else None
        csrf = raw.get("csrfState") if isinstance(raw, dict) else None
        if (
            not isinstance(transaction_id, str)
            or not isinstance(csrf, str)
            or not 0 < len(transaction_id) <= 64
            or not set(transaction_id) <= _TRANSACTION_ID_CHARS
        ):
            return _refuse(400, "invalid callback state")
        cookie_name = self.transaction_prefix + transaction_id
        sealed = _cookie(ctx, cookie_name.encode())
        if sealed is None:
            return _refuse(400, "no login in progress for this callback (missing transaction cookie)")
        clear = self._clear(cookie_name)
        try:
            transaction = orjson.loads(
                self.cipher.open(sealed.decode("latin-1"), self._transaction_aad(transaction_id))
            )
        except (_native.SessionTokenError, orjson.JSONDecodeError, UnicodeDecodeError):
            return _refuse(400, "invalid login transaction", clear)
        if not isinstance(transaction, dict) or not isinstance(transaction.get("expiresAt"), int):
            return _refuse(400, "invalid login transaction", clear)
        if transaction["expiresAt"] <= time.time():
            return _refuse(400, "the login took too long; start again", clear)
        expected = transaction.get("csrfState")
        if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(), csrf.encode()):
            return _refuse(400, "callback state does not match the login (CSRF)", clear)
        if "error" in params:
            return _refuse(401, f"the OpenID provider refused the login: {params['error'][:100]}", clear)
        code = params.get("code", "")
        if not code:
            return _refuse(400, "callback without a code", clear)
        try:
            id_token = await self._exchange_code(ctx, code, str(transaction.get("pkceVerifier", "")))
        except _TokenEndpointError as exc:
            log.warning("oidc %s: code exchange failed: %s", self.issuer, exc)
            return _refuse(exc.status, "the OpenID provider did not issue tokens for this login", clear)
        assert self.validator is not None
        verdict = self.validator.check(id_token)
        if verdict is None:
            await self.validator.fetch_keys()
            verdict = self.validator.check(id_token, may_fetch=False)
        if not isinstance(verdict, Verified):
            reason = verdict.reason if isinstance(verdict, Rejected) else "unknown signing key"
            return _refuse(401, f"invalid ID token: {reason}", clear)
        nonce = verdict.claims.get("nonce")
        expected_nonce = transaction.get("nonce")
        if (
            not isinstance(nonce, str)
            or not isinstance(expected_nonce, str)
            or not hmac.compare_digest(nonce.encode(), expected_nonce.encode())
        ):
            return _refuse(401, "ID token nonce does not match the login", clear)
        now = time.time()
        expires = now + SESSION_TTL
        exp = verdict.claims.get("exp")
        if isinstance(exp, int | float):
            expires = min(expires, float(exp))
        session = orjson.dumps({"idToken": id_token, "expiresAt": int(expires)})
        sealed_session = self.cipher.seal(session, b"session\0" + self.policy_id.encode())
        if len(sealed_session) > _MAX_COOKIE_VALUE:
            return _refuse(500, "the ID token is too large for a session cookie", clear)
        session_cookie = self._cookie(self.session_cookie.decode(), sealed_session, max(0, int(expires - now)))
        location = safe_return_path(str(transaction.get("originalUri", "/")))
        return LocalReply(
            302,
            ((b"location", location.encode()), (b"set-cookie", session_cookie), (b"set-cookie", clear), _NO_STORE),
            b"",
            "oidc login complete",
        )

    async def _exchange_code(self, ctx: RequestCtx, code: str, verifier: str) -> str:
        assert self.endpoints is not None
        endpoints = self.endpoints
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
        }
        headers = [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"accept", b"application/json"),
        ]
        if endpoints.auth_method == "clientSecretPost":
            form["client_id"] = self.client_id
            form["client_secret"] = self.client_secret
        else:
            headers.append((b"authorization", basic_credentials(self.client_id, self.client_secret)))
        target, path = endpoints.token_target
        # The code redemption is a call of the callback request (a CLIENT span when it is traced).
        span = start_call(
            ctx,
            "oidc token",
            {"http.request.method": "POST", "server.address": target.host, "server.port": target.port},
        )
        parent = traceparent_for(ctx, span)
        if parent is not None:
            headers.append((b"traceparent", parent))
        try:
            response = await outbound.client().request(
                target, b"POST", path, headers, urlencode(form).encode(), timeout=_TOKEN_TIMEOUT
            )
            body = await response.read(_MAX_RESPONSE)
        except HttpClientError as exc:
            if span is not None:
                end_call(span, 0, exc.message)
            raise _TokenEndpointError(502, exc.message) from None
        if span is not None:
            end_call(span, response.status, "" if response.status == 200 else f"HTTP {response.status}")
        if response.status != 200:
            # 4xx: the code was refused (used, expired, PKCE failed); 5xx: the provider's fault.
            raise _TokenEndpointError(401 if 400 <= response.status < 500 else 502, f"HTTP {response.status}")
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _TokenEndpointError(502, "the token response is not JSON") from None
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise _TokenEndpointError(502, "the token response has no id_token")
        return id_token

    def _logout(self, ctx: RequestCtx) -> LocalReply:
        if ctx.method != b"POST":
            return LocalReply.text(405, "logout takes a POST", [(b"allow", b"POST")])
        origin = ctx.header(b"origin")
        if origin is None or origin.lower() != self.origin:
            return LocalReply.text(403, "logout must come from this site (Origin)")
        headers: list[tuple[bytes, bytes]] = [(b"location", self.logout_redirect.encode()), _NO_STORE]
        headers.append((b"set-cookie", self._clear(self.session_cookie.decode())))
        for name, _ in _cookies(ctx):
            if name.startswith(self.transaction_prefix.encode()):
                headers.append((b"set-cookie", self._clear(name.decode("latin-1"))))
        return LocalReply(303, headers, b"", "oidc logout")

    def _cookie(self, name: str, value: str, max_age: int) -> bytes:
        secure = "; Secure" if self.secure else ""
        return f"{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}".encode()

    def _clear(self, name: str) -> bytes:
        return self._cookie(name, "", 0)


class _TokenEndpointError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def basic_credentials(client_id: str, secret: str) -> bytes:
    """RFC 6749 §2.3.1: both form-encoded, then HTTP Basic."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return b"Basic " + base64.b64encode(pair.encode())


def _refuse(status: int, message: str, clear: bytes | None = None) -> LocalReply:
    headers: list[tuple[bytes, bytes]] = [_NO_STORE]
    if clear is not None:
        headers.append((b"set-cookie", clear))
    return LocalReply.text(status, message, headers)


def _http_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(where, f"{url!r} is not an absolute http(s) URL")


def _read_document(source: OidcSource | str, base_dir: Path | None, where: str) -> Any:
    if isinstance(source, str):
        text = source.encode()
    else:
        if source.file is None:
            raise ConfigError(where, "exactly one of file or url must be set (or the document as a string)")
        path = resolve_file(source.file, base_dir, f"{where}.file")
        try:
            text = referenced.read_bytes(path)
        except OSError as exc:
            raise ConfigError(f"{where}.file", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(where, f"not a discovery document (invalid JSON: {exc})") from None


def _callback_params(ctx: RequestCtx) -> dict[str, str] | None:
    """``state`` and ``code`` or ``error`` of a callback (the first of each), or None."""
    if not ctx.query:
        return None
    found: dict[str, str] = {}
    for key, value in parse_qsl(ctx.query.decode("latin-1"), keep_blank_values=True):
        if key in ("state", "code", "error") and key not in found:
            found[key] = value
    if "state" not in found or ("code" not in found and "error" not in found):
        return None
    return found


def _cookies(ctx: RequestCtx) -> list[tuple[bytes, bytes]]:
    out = []
    for k, v in ctx.headers:
        if k == b"cookie":
            for part in v.split(b";"):
                name, sep, value = part.strip().partition(b"=")
                if sep:
                    out.append((name.strip(), value.strip()))
    return out


def _cookie(ctx: RequestCtx, name: bytes) -> bytes | None:
    for k, v in _cookies(ctx):
        if k == name:
            return v
    return None


def _drop_own_cookies(ctx: RequestCtx) -> None:
    """The policy's cookies are the gateway's, not the upstream's."""
    prefix = COOKIE_PREFIX.encode()
    headers = []
    for k, v in ctx.headers:
        if k == b"cookie":
            kept = [p.strip() for p in v.split(b";") if p.strip() and not p.strip().startswith(prefix)]
            if not kept:
                continue
            v = b"; ".join(kept)
        headers.append((k, v))
    ctx.headers = headers
