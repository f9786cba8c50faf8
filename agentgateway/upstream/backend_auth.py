"""``backendAuth``: credentials the gateway puts on the requests it sends to a backend.

A backend policy (on ``routes[].policies``, ``routes[].backends[].policies``,
``backends[].policies`` or an MCP target's ``policies``; the most specific wins). Each compiled
HTTP target carries its ``BackendAuth`` (``HttpTarget.auth``); the proxy (``proxy/forward.py``)
and the gateway's own client (``upstream/client.py``, MCP targets) apply it to every request, so
a retry or a pooled connection never carries another backend's credentials, and mirrors get none.

* ``passthrough``: the token a ``jwtAuth`` (or ``mcpAuthentication``) policy validated and removed
  from the request goes upstream again as ``Authorization: Bearer <token>``, as agentgateway
  does; without such a token the client's headers go as received.
* ``key``: a secret (inline, ``$ENV``, or ``{file: path}``) sent as ``Authorization: Bearer <key>``
  or at ``location``: a header with an optional prefix, a query parameter or a cookie.
* ``aws``: the request is signed with AWS SigV4 (botocore's ``SigV4Auth``): explicit
  ``accessKeyId``/``secretAccessKey``/``sessionToken`` or the standard credential chain, ``region``
  (else the chain's region), ``serviceName`` (default ``bedrock``). The signature covers the
  whole body, so routes with such a backend buffer the request body (up to
  ``frontendPolicies.http.maxBufferSize``, 413 beyond).
* ``gcp``: a Google access token (default) or ID token (``type: idToken``, ``audience`` default
  the backend's host) from Application Default Credentials (google-auth), cached until shortly
  before it expires.

* ``jwtSign``: a JWT signed with ``signingKey`` (PEM, inline or ``{file}``; RSA for RS*/PS*, an
  EC P-256/P-384 key for ES256/ES384) carrying the configured ``claims`` plus ``iat`` (ten seconds
  back, for skewed clocks) and ``exp`` (``ttl`` later, default 300s); ``iat``, ``exp`` and ``nbf``
  cannot be configured. Sent as ``Authorization: Bearer`` or at ``location``. A token is reused for
  at most a minute, and never within 15 s of its expiry.
* ``oauthTokenExchange``: the client's token (``subjectToken.source``, default the
  ``Authorization: Bearer`` header, or the token ``jwtAuth`` validated) is exchanged at the token
  endpoint (``host`` or ``backend``, ``path``) for the backend's: RFC 8693 (``grantType:
  tokenExchange``, with ``actorToken``, ``audiences``, ``scopes``, ``resources``,
  ``requestedTokenType``, ``additionalParams`` CEL) or RFC 7523 (``jwtBearer``: the token is the
  ``assertion``). The subject (and actor) token is taken off the request and the exchanged token
  put at ``authorizationLocation``. Answers are cached by a digest of the subject token and every
  other input (``cache.maxEntries``, default 8192, 0 disables; ``cache.defaultTtl`` when the
  server gives no ``expires_in``, default 300s), never past the subject token's own ``exp``. A
  request without a subject token, or whose token the server refuses (a 4xx other than
  401/403), gets 400; other failures 500.
* ``crossAppAccess``: Identity Assertion Authorization Grant (ID-JAG): the user's ID token is
  exchanged at ``identityProvider`` (RFC 8693, ``requested_token_type`` id-jag, ``audience``,
  ``resources``, ``scopes``) for an ID-JAG, which ``resourceAuthorizationServer`` exchanges (RFC
  7523 JWT-bearer, ``accessTokenScopes`` or ``scopes``) for the access token sent upstream.
* ``azure``: a Microsoft Entra ID token for ``https://cognitiveservices.azure.com/.default`` (or
  ``https://ai.azure.com/.default`` for ``*.services.ai.azure.com``): ``explicitConfig`` with
  ``clientSecret`` (client credentials at ``AZURE_AUTHORITY_HOST``, default
  ``https://login.microsoftonline.com``), ``managedIdentity`` (App Service's
  ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` when set, else the instance metadata service at
  ``AZURE_POD_IDENTITY_AUTHORITY_HOST``, default ``http://169.254.169.254``) or
  ``workloadIdentity`` (``AZURE_FEDERATED_TOKEN_FILE``, ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``);
  or ``implicit``: the first of those the environment sets up (``AZURE_CLIENT_SECRET`` with the
  tenant and client ids, then workload identity, then managed identity).

Credentials that need I/O (the AWS chain, Google and Azure tokens, token exchanges) are fetched
the first time and when they near expiry; requests meanwhile wait for that one fetch. A failure
answers 500 (400 where said above).
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote

from agentgateway.config import referenced
from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import (
    AuthorizationLocation,
    BackendKey,
    BackendTls,
    CredentialLocation,
    FileRef,
    TokenCacheConfig,
)
from agentgateway.config.schema import AzureAuth as AzureAuthConfig
from agentgateway.config.schema import BackendAuth as BackendAuthConfig
from agentgateway.config.schema import CrossAppAccess as CrossAppAccessConfig
from agentgateway.config.schema import JwtSign as JwtSignConfig
from agentgateway.config.schema import OAuthClientAuth as OAuthClientAuthConfig
from agentgateway.config.schema import OAuthTokenExchange as OAuthTokenExchangeConfig
from agentgateway.config.tlsfiles import resolve_path
from agentgateway.core.reply import LocalReply
from agentgateway.core.request import query_without
from agentgateway.upstream import oauth

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentgateway.core.context import RequestCtx
    from agentgateway.upstream.target import HttpTarget

    # (host, backend, backendTLS, where) → the target a token endpoint is at
    TargetResolver = Callable[[str | None, str | None, BackendTls | None, str], HttpTarget]
    ExpressionCompiler = Callable[[str, str], "RequestValue"]


class RequestValue(Protocol):
    """A CEL expression of the config, evaluated against a request (policy.expression's
    ValueExpression, compiled by the config step and handed down)."""

    def evaluate(self, ctx: RequestCtx) -> bytes | None: ...


Headers = list[tuple[bytes, bytes]]
# Header changes: (name, value) replaces every header of that name; a None value removes them.
HeaderEdits = list[tuple[bytes, bytes | None]]

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_REFRESH_BEFORE = 60.0  # seconds before expiry when a token is fetched anew
_CHAIN_RECHECK = 60.0  # how often refreshable AWS credentials are looked at again


class BackendAuthError(Exception):
    """The credentials could not be had (no credentials, a token endpoint down); ``status`` is
    what the client gets."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


class Outbound:
    """What a backend auth may read and sign: one request as it will be sent."""

    __slots__ = ("method", "scheme", "host", "path", "headers", "body", "token", "ctx")

    def __init__(
        self,
        method: bytes,
        scheme: bytes,
        host: bytes,
        path: bytes,
        headers: Headers,
        body: bytes,
        token: str | None = None,
        ctx: RequestCtx | None = None,
    ) -> None:
        # token: the client's credential an authentication policy validated and removed
        self.token = token
        # the client's request this one proxies (None: a request of the gateway's own)
        self.ctx = ctx
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.headers = headers
        self.body = body


class BackendAuth:
    """One backend's credentials. ``ready(ctx)`` says whether ``apply`` can run now for the
    client's request ``ctx`` (None: a request of the gateway's own); otherwise ``await
    prepare(ctx)`` first (it fetches what is missing, or raises BackendAuthError)."""

    kind = "backendAuth"
    needs_body = False

    def ready(self, ctx: RequestCtx | None = None) -> bool:
        return True

    async def prepare(self, ctx: RequestCtx | None = None) -> None:
        return None

    def apply(self, out: Outbound) -> tuple[bytes, HeaderEdits]:
        """The path to send (a query parameter may be added) and the header edits."""
        raise NotImplementedError


def edit_headers(headers: Headers, edits: HeaderEdits) -> Headers:
    names = {name for name, _ in edits}
    kept = [(k, v) for k, v in headers if k not in names]
    kept += [(k, v) for k, v in edits if v is not None]
    return kept


# ---------------------------------------------------------------- key


class Placement:
    """Where a credential goes on the backend request: a header (with a prefix; default
    ``Authorization: Bearer``), a query parameter or a cookie, replacing what was there."""

    __slots__ = ("header", "prefix", "query", "cookie")

    def __init__(self, location: AuthorizationLocation | CredentialLocation | None, where: str) -> None:
        self.header: bytes | None = b"authorization"
        self.prefix = b"Bearer "
        self.query: str | None = None
        self.cookie: str | None = None
        if location is None:
            return
        if isinstance(location, CredentialLocation) and location.expression is not None:
            raise ConfigError(f"{where}.expression", "an expression can read a credential, not place one")
        given = [x for x in (location.header, location.query_parameter, location.cookie) if x is not None]
        if len(given) != 1:
            raise ConfigError(where, "exactly one of header, queryParameter or cookie must be set")
        self.header = None
        self.prefix = b""
        if location.header is not None:
            name = location.header.name.lower().encode()
            if not name or any(c not in _TOKEN for c in name):
                raise ConfigError(f"{where}.header.name", f"{location.header.name!r} is not a header name")
            self.header = name
            self.prefix = (location.header.prefix or "").encode("latin-1")
        elif location.query_parameter is not None:
            self.query = location.query_parameter.name
        elif location.cookie is not None:
            self.cookie = location.cookie.name

    def place(self, out: Outbound, value: bytes, path: bytes | None = None) -> tuple[bytes, HeaderEdits]:
        path = out.path if path is None else path
        if self.header is not None:
            edits: HeaderEdits = [(self.header, self.prefix + value)]
            underscored = self.header.replace(b"-", b"_")
            if underscored != self.header:
                # CGI-style upstreams (WSGI, PHP, Rack) read the client's ``x_api_key`` as
                # ``x-api-key``: beside the gateway's, or in its place when read last.
                edits.append((underscored, None))
            return path, edits
        if self.query is not None:
            base, _, query = path.partition(b"?")
            name = quote(self.query, safe="").encode()
            # A client's parameter of the same name goes, in every spelling the upstream's
            # parser decodes to that name (``api%5Fkey``, ``%61pi_key``, ``api+key``), and after
            # a ';' as well as a '&' (Go before 1.17, Rack 2 and Python before 3.9.2 split there,
            # and read the client's first). The rest is kept as it came, separators included.
            kept = query_without(query, (self.query,))
            param = name + b"=" + quote(value, safe="").encode()
            return base + b"?" + (kept + b"&" + param if kept else param), []
        assert self.cookie is not None
        name = self.cookie.encode()
        # A client's cookie of the same name goes, however spaced (``session =x``): parsers that
        # trim names would otherwise read the client's value, and some keep the first.
        crumbs = [
            c.strip()
            for k, v in out.headers
            if k == b"cookie"
            for c in v.split(b";")
            if c.strip() and c.partition(b"=")[0].strip(b" \t") != name
        ]
        crumbs.append(name + b"=" + value)
        return path, [(b"cookie", b"; ".join(crumbs))]


class KeyAuth(BackendAuth):
    __slots__ = ("placement", "value")

    def __init__(self, secret: str, cfg: BackendKey | None, where: str) -> None:
        self.placement = Placement(cfg.location if cfg is not None else None, f"{where}.location")
        value = (self.placement.prefix.decode("latin-1") + secret) if self.placement.header is not None else secret
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(where, "the key contains a line break")
        self.value = secret.encode()

    def apply(self, out: Outbound) -> tuple[bytes, HeaderEdits]:
        return self.placement.place(out, self.value)


class PassthroughAuth(BackendAuth):
    """The client's credentials go through as received (see the module doc)."""

    __slots__ = ()

    def apply(self, out: Outbound) -> tuple[bytes, HeaderEdits]:
        if out.token is None:
            return out.path, []
        return out.path, [(b"authorization", b"Bearer " + out.token.encode())]


# ---------------------------------------------------------------- gcp (google-auth)


class _GoogleToken:
    """One kind of Google token (access, or ID for one audience), shared by every backend that
    asks for it in this worker, across config reloads."""

    __slots__ = ("audience", "token", "expires", "credentials", "lock")

    def __init__(self, audience: str | None) -> None:
        self.audience = audience
        self.token: bytes | None = None
        self.expires = 0.0
        self.credentials: Any = None
        self.lock: asyncio.Lock | None = None

    def fresh(self) -> bool:
        return self.token is not None and time.time() < self.expires - _REFRESH_BEFORE

    def fetch(self) -> None:
        """Blocking (runs in a thread): make the credentials once, refresh them."""
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.urllib3
        import urllib3
        from google.oauth2 import id_token

        request = google.auth.transport.urllib3.Request(urllib3.PoolManager(timeout=10.0, retries=False))  # type: ignore[no-untyped-call]
        try:
            if self.credentials is None:
                if self.audience is None:
                    self.credentials, _ = google.auth.default(scopes=[_CLOUD_PLATFORM])
                else:
                    self.credentials = id_token.fetch_id_token_credentials(self.audience, request=request)  # type: ignore[no-untyped-call]
            self.credentials.refresh(request)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise BackendAuthError(f"gcp: {exc}") from None
        except (OSError, ValueError, urllib3.exceptions.HTTPError) as exc:
            raise BackendAuthError(f"gcp: {exc}") from None
        token = self.credentials.token
        if not token:
            raise BackendAuthError("gcp: the credentials gave no token")
        expiry: datetime.datetime | None = self.credentials.expiry
        if expiry is None:
            self.expires = time.time() + 300.0
        else:
            self.expires = expiry.replace(tzinfo=datetime.UTC).timestamp()
        self.token = token.encode() if isinstance(token, str) else token


_google_tokens: dict[str | None, _GoogleToken] = {}


class GcpAuth(BackendAuth):
    __slots__ = ("source",)

    def __init__(self, audience: str | None) -> None:
        source = _google_tokens.get(audience)
        if source is None:
            source = _google_tokens[audience] = _GoogleToken(audience)
        self.source = source

    def ready(self, ctx: RequestCtx | None = None) -> bool:
        return self.source.fresh()

    async def prepare(self, ctx: RequestCtx | None = None) -> None:
        source = self.source
        if source.lock is None:
            source.lock = asyncio.Lock()
        async with source.lock:
            if not source.fresh():
                await asyncio.to_thread(source.fetch)

    def apply(self, out: Outbound) -> tuple[bytes, HeaderEdits]:
        token = self.source.token
        if token is None:
            raise BackendAuthError("gcp: no token")
        return out.path, [(b"authorization", b"Bearer " + token)]


# ---------------------------------------------------------------- aws (botocore SigV4)


class _AwsChain:
    """The standard AWS credential chain (environment, shared files, SSO, container and instance
    roles) and region, through botocore; shared by the backends of this worker."""

    __slots__ = ("credentials", "frozen", "region", "checked", "lock")

    def __init__(self) -> None:
        self.credentials: Any = None
        self.frozen: Any = None
        self.region: str | None = None
        self.checked = 0.0
        self.lock: asyncio.Lock | None = None

    def fresh(self) -> bool:
        return self.frozen is not None and time.monotonic() < self.checked + _CHAIN_RECHECK

    def load(self) -> None:
        """Blocking (runs in a thread)."""
        import botocore.exceptions
        import botocore.session

        try:
            if self.credentials is None:
                session = botocore.session.get_session()
                self.credentials = session.get_credentials()
                # botocore reads AWS_DEFAULT_REGION and the profile; the other SDKs read AWS_REGION.
                self.region = session.get_config_variable("region") or os.environ.get("AWS_REGION") or None
                if self.credentials is None:
                    raise BackendAuthError("aws: no credentials found by the standard chain")
            self.frozen = self.credentials.get_frozen_credentials()
        except botocore.exceptions.BotoCoreError as exc:
            raise BackendAuthError(f"aws: {exc}") from None
        self.checked = time.monotonic()


_aws_chain = _AwsChain()


class AwsAuth(BackendAuth):
    __slots__ = ("explicit", "region", "service")
    needs_body = True

    def __init__(self, explicit: Any, region: str | None, service: str) -> None:
        self.explicit = explicit
        self.region = region
        self.service = service

    def ready(self, ctx: RequestCtx | None = None) -> bool:
        return self.explicit is not None or _aws_chain.fresh()

    async def prepare(self, ctx: RequestCtx | None = None) -> None:
        if self.explicit is not None:
            return
        chain = _aws_chain
        if chain.lock is None:
            chain.lock = asyncio.Lock()
        async with chain.lock:
            if not chain.fresh():
                await asyncio.to_thread(chain.load)

    def apply(self, out: Outbound) -> tuple[bytes, HeaderEdits]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        credentials = self.explicit if self.explicit is not None else _aws_chain.frozen
        region = self.region or _aws_chain.region
        if credentials is None:
            raise BackendAuthError("aws: no credentials")
        if not region:
            raise BackendAuthError("aws: no region (set backendAuth.aws.region, AWS_REGION or AWS_DEFAULT_REGION)")
        # Signed: the host and the client's own x-amz-* headers (all sent unchanged); the rest of
        # the request may still be edited by the gateway (x-forwarded-*) without breaking it.
        signed = {"host": out.host.decode("latin-1")}
        for name, value in out.headers:
            if name.startswith(b"x-amz-") and name not in (b"x-amz-date", b"x-amz-security-token"):
                signed[name.decode("latin-1")] = value.decode("latin-1")
        url = (out.scheme + b"://" + out.host + out.path).decode("latin-1")
        request = AWSRequest(method=out.method.decode("latin-1"), url=url, data=out.body, headers=signed)
        SigV4Auth(credentials, self.service, region).add_auth(request)
        edits: HeaderEdits = [
            (b"authorization", request.headers["Authorization"].encode("latin-1")),
            (b"x-amz-date", request.headers["X-Amz-Date"].encode("latin-1")),
        ]
        token = request.headers.get("X-Amz-Security-Token")
        edits.append((b"x-amz-security-token", token.encode("latin-1") if token else None))
        return out.path, edits


class SigningBuffer:
    """A route whose backend signs the body (aws) reads the whole body first: the request
    phase waits for it (up to ``limit`` bytes, 413 beyond) and hands it on as the body to send."""

    kind = "backendAuth"
    is_async = True
    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None:
        if ctx.request_body is not None or not ctx.has_body or ctx.read_body is None:
            return None
        body, complete = await ctx.read_body(self.limit)
        if not complete or len(body) > self.limit:
            return LocalReply.text(413, f"request body larger than {self.limit} bytes (backendAuth aws signs the body)")
        ctx.request_body = body
        return None


# ---------------------------------------------------------------- jwtSign

_JWT_RESERVED = ("iat", "exp", "nbf")
_JWT_REUSE = 60.0  # a signed token is reused for at most this long
_JWT_BACKDATE = 10  # seconds iat is set back, for validators whose clocks trail ours


def load_private_key(pem: str, alg: str, where: str) -> Any:
    """A PEM private key fit for ``alg`` (RSA for RS*/PS*, EC on the curve of ES256/ES384)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(where, f"not an unencrypted PEM private key: {exc}") from None
    if alg.startswith(("RS", "PS")):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(where, f"{alg} needs an RSA key")
        if key.key_size < 2048:
            raise ConfigError(where, "an RSA key has at least 2048 bits")
    else:
        curve = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}[alg]
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, curve):
            raise ConfigError(where, f"{alg} needs an EC key on curve {curve.name}")
    return key


class JwtSignAuth(BackendAuth):
    __slots__ = ("key", "alg", "kid", "claims", "ttl", "placement", "_cached")

    def __init__(self, cfg: JwtSignConfig, base_dir: Path | None, where: str) -> None:
        pem = _secret(cfg.signing_key, f"{where}.signingKey", base_dir)
        self.alg = cfg.alg
        self.key = load_private_key(pem, cfg.alg, f"{where}.signingKey")
        self.kid = cfg.kid
        for claim in _JWT_RESERVED:
            if claim in cfg.claims:
                raise ConfigError(f"{where}.claims.{claim}", "is set by the signer and cannot be configured")
        self.claims = dict(cfg.claims)
        ttl = 300.0
        if cfg.ttl is not None:
            try:
                ttl = parse_duration(cfg.ttl)
            except ValueError as exc:
                raise ConfigError(f"{where}.ttl", str(exc)) from None
            if ttl <= 0:
                raise ConfigError(f"{where}.ttl", "must be positive")
        self.ttl = math.ceil(ttl)
        self.placement = Placement(cfg.location, f"{where}.location")
        self._cached: tuple[bytes, float, float] | None = None  # token, signed at, expires

    def token(self) -> bytes:
        now = time.time()
        cached = self._cached
        if cached is not None and now - cached[1] < _JWT_REUSE and cached[2] - now > 15.0:
            return cached[0]
        import jwt

        issued = int(now)
        claims = {**self.claims, "iat": issued - _JWT_BACKDATE, "exp": issued + self.ttl}
        headers = {"kid": self.kid} if self.kid else None
        token = jwt.encode(claims, self.key, algorithm=self.alg, headers=headers).encode()
        self._cached = (token, now, float(issued + self.ttl))
        return token

    def apply(self, out: Outbound) -> tuple[bytes, HeaderEdits]:
        return self.placement.place(out, self.token())


# ---------------------------------------------------------------- token exchange, crossAppAccess


class TokenSource:
    """Where a token is read in the client's request, and how it is taken off the backend's."""

    __slots__ = ("header", "prefix", "query", "cookie", "expression", "default")

    def __init__(
        self, location: CredentialLocation | None, compile_expression: ExpressionCompiler | None, where: str
    ) -> None:
        self.header: bytes | None = b"authorization"
        self.prefix = b"bearer "
        self.query: str | None = None
        self.cookie: bytes | None = None
        self.expression: RequestValue | None = None
        # The default place: a token jwtAuth validated (and took off) counts as found there.
        self.default = location is None
        if location is None:
            return
        given = [
            x
            for x in (location.header, location.query_parameter, location.cookie, location.expression)
            if x is not None
        ]
        if len(given) != 1:
            raise ConfigError(where, "exactly one of header, queryParameter, cookie or expression must be set")
        self.header = None
        self.prefix = b""
        if location.header is not None:
            self.header = location.header.name.lower().encode()
            self.prefix = (location.header.prefix or "").lower().encode("latin-1")
        elif location.query_parameter is not None:
            self.query = location.query_parameter.name
        elif location.cookie is not None:
            self.cookie = location.cookie.name.encode()
        else:
            assert location.expression is not None
            if compile_expression is None:
                raise ConfigError(f"{where}.expression", "not available here")
            self.expression = compile_expression(location.expression, f"{where}.expression")

    def extract(self, ctx: RequestCtx) -> str | None:
        found: bytes | None = None
        if self.header is not None:
            for k, v in ctx.headers:
                if k == self.header:
                    if self.prefix and v[: len(self.prefix)].lower() != self.prefix:
                        return None
                    found = v[len(self.prefix) :].strip()
                    break
            if found is None and self.default and ctx.jwt_token:
                return ctx.jwt_token
        elif self.query is not None:
            for param, text in parse_qsl(ctx.query.decode("latin-1"), keep_blank_values=True):
                if param == self.query:
                    found = text.encode("latin-1")
                    break
        elif self.cookie is not None:
            for k, v in ctx.headers:
                if k == b"cookie":
                    for part in v.split(b";"):
                        name, sep, crumb = part.strip().partition(b"=")
                        if sep and name.strip() == self.cookie:
                            found = crumb.strip()
                            break
        else:
            assert self.expression is not None
            found = self.expression.evaluate(ctx)
        if not found or not found.strip():
            return None
        return found.decode("latin-1")

    def remove(self, out: Outbound, path: bytes, edits: HeaderEdits) -> bytes:
        """Take the token off the backend request (edits appended); the path without it."""
        if self.header is not None:
            if all(name != self.header for name, _ in edits):
                edits.append((self.header, None))
        elif self.query is not None:
            base, sep, query = path.partition(b"?")
            kept = query_without(query, (self.query,))
            path = base + (b"?" + kept if kept else b"")
        elif self.cookie is not None:
            crumbs = [
                c.strip()
                for k, v in out.headers
                if k == b"cookie"
                for c in v.split(b";")
                if c.strip() and c.strip().partition(b"=")[0].strip() != self.cookie
            ]
            edits.append((b"cookie", b"; ".join(crumbs) if crumbs else None))
        return path


class TokenEndpoint:
    __slots__ = ("target", "path", "client_auth")

    def __init__(self, target: HttpTarget, path: str | None, client_auth: oauth.ClientAuth | None, where: str) -> None:
        if path is not None and not path.startswith("/"):
            raise ConfigError(f"{where}.path", "must start with /")
        self.target = target
        self.path = (path or "/").encode()
        self.client_auth = client_auth


class _PerRequestToken(BackendAuth):
    """A credential got for each client's request (cached per subject): ``prepare`` gets it and
    keeps it on the request; ``apply`` puts it in place of the client's token."""

    __slots__ = ("subject", "actor", "placement", "cache")

    subject: TokenSource
    actor: TokenSource | None
    placement: Placement
    cache: oauth.TokenCache

    def ready(self, ctx: RequestCtx | None = None) -> bool:
        if ctx is None:
            return False
        held = ctx.backend_token
        return held is not None and held[0] is self

    async def prepare(self, ctx: RequestCtx | None = None) -> None:
        if ctx is None:
            raise BackendAuthError("a token exchange needs the client's request (not available here)")
        subject = self.subject.extract(ctx)
        if subject is None:
            raise BackendAuthError("no subject token in the request", 400)
        actor = None
        if self.actor is not None:
            actor = self.actor.extract(ctx)
            if actor is None:
                raise BackendAuthError("no actor token in the request", 400)
        try:
            token = await self.fetch(ctx, subject, actor)
        except oauth.TokenError as exc:
            raise BackendAuthError(str(exc), exc.status) from None
        ctx.backend_token = (self, token)

    async def fetch(self, ctx: RequestCtx, subject: str, actor: str | None) -> str:
        raise NotImplementedError

    def apply(self, out: Outbound) -> tuple[bytes, HeaderEdits]:
        ctx = out.ctx
        held = ctx.backend_token if ctx is not None else None
        if held is None or held[0] is not self:
            raise BackendAuthError("no exchanged token for this request")
        edits: HeaderEdits = []
        path = self.subject.remove(out, out.path, edits)
        if self.actor is not None:
            path = self.actor.remove(out, path, edits)
        edits = [(k, v) for k, v in edits if k != self.placement.header]
        path, placed = self.placement.place(out, held[1].encode(), path)
        return path, [e for e in edits if all(e[0] != p[0] for p in placed)] + placed


_RESERVED_PARAMS = frozenset(
    (
        "grant_type",
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "assertion",
        "audience",
        "resource",
        "scope",
        "requested_token_type",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
    )
)


def _cache(cfg: TokenCacheConfig | None, where: str) -> oauth.TokenCache:
    entries = oauth.DEFAULT_CACHE_ENTRIES
    ttl = oauth.DEFAULT_CACHE_TTL
    if cfg is not None:
        if cfg.max_entries is not None:
            if cfg.max_entries < 0:
                raise ConfigError(f"{where}.maxEntries", "must not be negative")
            entries = cfg.max_entries
        if cfg.default_ttl is not None:
            try:
                ttl = parse_duration(cfg.default_ttl)
            except ValueError as exc:
                raise ConfigError(f"{where}.defaultTtl", str(exc)) from None
            ttl = ttl or oauth.DEFAULT_CACHE_TTL
    return oauth.TokenCache(entries, ttl)


class TokenExchangeAuth(_PerRequestToken):
    __slots__ = (
        "endpoint",
        "grant",
        "subject_type",
        "actor_type",
        "enforce_may_act",
        "audiences",
        "scopes",
        "resources",
        "requested_type",
        "params",
    )

    def __init__(
        self,
        cfg: OAuthTokenExchangeConfig,
        where: str,
        base_dir: Path | None,
        resolve: TargetResolver,
        compile_expression: ExpressionCompiler,
    ) -> None:
        self.endpoint = TokenEndpoint(
            _token_target(cfg.host, cfg.backend, cfg.policies, where, resolve),
            cfg.path,
            _client_auth(cfg.client_auth, f"{where}.clientAuth", base_dir),
            where,
        )
        self.grant = cfg.grant_type
        spec = cfg.subject_token
        self.subject = TokenSource(spec.source if spec else None, compile_expression, f"{where}.subjectToken.source")
        self.subject_type = oauth.token_type_urn(
            spec.token_type if spec else None, oauth.TOKEN_TYPE_ACCESS, f"{where}.subjectToken.tokenType"
        )
        self.actor = None
        self.actor_type = oauth.TOKEN_TYPE_ACCESS
        self.enforce_may_act = False
        if cfg.actor_token is not None:
            aw = f"{where}.actorToken"
            if self.grant != "tokenExchange":
                raise ConfigError(aw, "only with grantType tokenExchange")
            self.actor = TokenSource(cfg.actor_token.source, compile_expression, f"{aw}.source")
            self.actor_type = oauth.token_type_urn(
                cfg.actor_token.token_type, oauth.TOKEN_TYPE_ACCESS, f"{aw}.tokenType"
            )
            self.enforce_may_act = cfg.actor_token.enforce_may_act
            if self.enforce_may_act and self.actor_type != oauth.TOKEN_TYPE_JWT:
                raise ConfigError(f"{aw}.enforceMayAct", f"needs actorToken.tokenType {oauth.TOKEN_TYPE_JWT}")
        self.requested_type = cfg.requested_token_type
        if self.requested_type is not None:
            if self.grant != "tokenExchange":
                raise ConfigError(f"{where}.requestedTokenType", "only with grantType tokenExchange")
            if self.requested_type not in (oauth.TOKEN_TYPE_ACCESS, oauth.TOKEN_TYPE_JWT, oauth.TOKEN_TYPE_ID):
                raise ConfigError(f"{where}.requestedTokenType", f"{self.requested_type!r} is not supported here")
        self.audiences = list(cfg.audiences)
        self.scopes = list(cfg.scopes)
        self.resources = list(cfg.resources)
        params = []
        for name, text in sorted(cfg.additional_params.items()):
            if name.lower() in _RESERVED_PARAMS:
                raise ConfigError(f"{where}.additionalParams.{name}", "would override a parameter of the exchange")
            params.append((name, compile_expression(text, f"{where}.additionalParams.{name}")))
        self.params = tuple(params)
        self.placement = Placement(cfg.authorization_location, f"{where}.authorizationLocation")
        self.cache = _cache(cfg.cache, f"{where}.cache")

    async def fetch(self, ctx: RequestCtx, subject: str, actor: str | None) -> str:
        extra: list[tuple[str, str]] = []
        for name, expression in self.params:
            got = expression.evaluate(ctx)
            if got is None:
                raise oauth.TokenError(f"additionalParams.{name} gave no value", 400)
            extra.append((name, got.decode("utf-8", "replace")))
        if actor is not None and self.enforce_may_act and not _may_act(ctx, subject, actor):
            raise oauth.TokenError("the subject token's may_act claim does not allow this actor", 403)
        fields = [subject, self.subject_type, actor or "", self.actor_type if actor else ""]
        for name, value in extra:
            fields += [name, value]
        key = oauth.TokenCache.key(*fields)

        async def request() -> oauth.TokenAnswer:
            form: list[tuple[str, str]]
            if self.grant == "tokenExchange":
                form = [
                    ("grant_type", oauth.GRANT_TOKEN_EXCHANGE),
                    ("subject_token", subject),
                    ("subject_token_type", self.subject_type),
                ]
                if actor is not None:
                    form += [("actor_token", actor), ("actor_token_type", self.actor_type)]
                if self.requested_type is not None:
                    form.append(("requested_token_type", self.requested_type))
            else:
                form = [("grant_type", oauth.GRANT_JWT_BEARER), ("assertion", subject)]
            form += [("audience", a) for a in self.audiences]
            if self.scopes:
                form.append(("scope", " ".join(self.scopes)))
            form += [("resource", r) for r in self.resources]
            form += extra
            endpoint = self.endpoint
            return await oauth.request_token(
                endpoint.target, endpoint.path, form, endpoint.client_auth, self.requested_type, ctx=ctx
            )

        return await self.cache.get_or_fetch(key, subject, request)


def _may_act(ctx: RequestCtx, subject: str, actor: str) -> bool:
    """RFC 8693 §4.4: every claim the subject's ``may_act`` names must be the actor's too."""
    claims = oauth.unverified_claims(subject)
    may_act = claims.get("may_act") if claims is not None else None
    if not isinstance(may_act, dict) or not may_act:
        return False
    actor_claims = oauth.unverified_claims(actor)
    if actor_claims is None:
        return False
    return all(actor_claims.get(k) == v for k, v in may_act.items())


class CrossAppAccessAuth(_PerRequestToken):
    __slots__ = ("idp", "resource_server", "audience", "resources", "scopes", "access_scopes", "subject_type")

    def __init__(
        self,
        cfg: CrossAppAccessConfig,
        where: str,
        base_dir: Path | None,
        resolve: TargetResolver,
        compile_expression: ExpressionCompiler,
    ) -> None:
        if not cfg.audience:
            raise ConfigError(f"{where}.audience", "must not be empty")
        endpoints = []
        for key, ep in (
            ("identityProvider", cfg.identity_provider),
            ("resourceAuthorizationServer", cfg.resource_authorization_server),
        ):
            ew = f"{where}.{key}"
            endpoints.append(
                TokenEndpoint(
                    _token_target(ep.host, ep.backend, ep.policies, ew, resolve),
                    ep.path,
                    _client_auth(ep.client_auth, f"{ew}.clientAuth", base_dir),
                    ew,
                )
            )
        self.idp, self.resource_server = endpoints
        self.audience = cfg.audience
        self.resources = list(cfg.resources)
        self.scopes = list(cfg.scopes)
        self.access_scopes = list(cfg.access_token_scopes) if cfg.access_token_scopes is not None else self.scopes
        spec = cfg.subject_token
        self.subject = TokenSource(spec.source if spec else None, compile_expression, f"{where}.subjectToken.source")
        self.subject_type = oauth.token_type_urn(
            spec.token_type if spec else None, oauth.TOKEN_TYPE_ID, f"{where}.subjectToken.tokenType"
        )
        self.actor = None
        self.placement = Placement(None, where)
        self.cache = _cache(cfg.cache, f"{where}.cache")

    async def fetch(self, ctx: RequestCtx, subject: str, actor: str | None) -> str:
        key = oauth.TokenCache.key(subject, self.subject_type)

        async def request() -> oauth.TokenAnswer:
            # Leg 1 (RFC 8693 at the user's identity provider): the ID token for an ID-JAG.
            form = [
                ("grant_type", oauth.GRANT_TOKEN_EXCHANGE),
                ("requested_token_type", oauth.TOKEN_TYPE_ID_JAG),
                ("audience", self.audience),
                ("subject_token", subject),
                ("subject_token_type", self.subject_type),
            ]
            form += [("resource", r) for r in self.resources]
            if self.scopes:
                form.append(("scope", " ".join(self.scopes)))
            idp = self.idp
            grant = await oauth.request_token(
                idp.target, idp.path, form, idp.client_auth, oauth.TOKEN_TYPE_ID_JAG, bearer=False, ctx=ctx
            )
            if grant.issued_type != oauth.TOKEN_TYPE_ID_JAG:
                raise oauth.TokenError("the identity provider did not issue an ID-JAG")
            # Leg 2 (RFC 7523 at the resource's authorization server): the ID-JAG for a token.
            form = [("grant_type", oauth.GRANT_JWT_BEARER), ("assertion", grant.token)]
            if self.access_scopes:
                form.append(("scope", " ".join(self.access_scopes)))
            rs = self.resource_server
            return await oauth.request_token(rs.target, rs.path, form, rs.client_auth, ctx=ctx)

        return await self.cache.get_or_fetch(key, subject, request)


def _token_target(
    host: str | None,
    backend: str | None,
    policies: Any,
    where: str,
    resolve: TargetResolver,
) -> HttpTarget:
    tls = None
    if policies is not None:
        for attr, key in (("backend_auth", "backendAuth"), ("health", "health"), ("ai", "ai")):
            if getattr(policies, attr, None) is not None:
                raise ConfigError(f"{where}.policies.{key}", "only backendTLS applies to a token endpoint")
        tls = policies.backend_tls
    return resolve(host, backend, tls, where)


def _client_auth(cfg: OAuthClientAuthConfig | None, where: str, base_dir: Path | None) -> oauth.ClientAuth | None:
    if cfg is None:
        return None
    method = cfg.method or "clientSecretBasic"
    secret = _secret(cfg.client_secret, f"{where}.clientSecret", base_dir) if cfg.client_secret is not None else None
    if method == "privateKeyJwt":
        if cfg.signing_key is None or not cfg.assertion_audience:
            raise ConfigError(where, "privateKeyJwt needs signingKey and assertionAudience")
        if secret is not None:
            raise ConfigError(f"{where}.clientSecret", "not with privateKeyJwt")
        pem = _secret(cfg.signing_key, f"{where}.signingKey", base_dir)
        key = load_private_key(pem, cfg.alg, f"{where}.signingKey")
        return oauth.ClientAuth(cfg.client_id, None, method, key, cfg.alg, cfg.kid, cfg.assertion_audience)
    if cfg.signing_key is not None or cfg.assertion_audience is not None:
        raise ConfigError(where, "signingKey and assertionAudience go with method privateKeyJwt")
    if method == "clientSecretBasic" and secret is None:
        raise ConfigError(f"{where}.clientSecret", "required with clientSecretBasic")
    return oauth.ClientAuth(cfg.client_id, secret, method)


# ---------------------------------------------------------------- azure (Microsoft Entra ID)

_AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
_AZURE_FOUNDRY_SCOPE = "https://ai.azure.com/.default"
_AZURE_AUTHORITY = "https://login.microsoftonline.com"
_IMDS = "http://169.254.169.254"


class _AzureToken:
    """One credential's token for one scope, shared by the backends of this worker that use it."""

    __slots__ = ("source", "scope", "token", "expires", "lock")

    def __init__(self, source: tuple[str, ...], scope: str) -> None:
        self.source = source
        self.scope = scope
        self.token: bytes | None = None
        self.expires = 0.0
        self.lock: asyncio.Lock | None = None

    def fresh(self) -> bool:
        return self.token is not None and time.time() < self.expires - _REFRESH_BEFORE

    async def fetch(self) -> None:
        import os

        kind = self.source[0]
        if kind == "implicit":
            env = os.environ
            if env.get("AZURE_TENANT_ID") and env.get("AZURE_CLIENT_ID") and env.get("AZURE_CLIENT_SECRET"):
                source: tuple[str, ...] = (
                    "clientSecret",
                    env["AZURE_TENANT_ID"],
                    env["AZURE_CLIENT_ID"],
                    env["AZURE_CLIENT_SECRET"],
                )
            elif env.get("AZURE_FEDERATED_TOKEN_FILE"):
                source = ("workloadIdentity",)
            else:
                source = ("managedIdentity", "clientId", env.get("AZURE_CLIENT_ID", ""))
        else:
            source = self.source
        try:
            answer = await _azure_request(source, self.scope)
        except oauth.TokenError as exc:
            raise BackendAuthError(f"azure: {exc}") from None
        self.token = answer.token.encode()
        self.expires = time.time() + (answer.expires_in or 300.0)


async def _azure_request(source: tuple[str, ...], scope: str) -> oauth.TokenAnswer:
    import os

    from agentgateway.upstream.target import HttpTarget, UpstreamTls, system_roots_context

    def target_of(url: str) -> tuple[HttpTarget, bytes]:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise oauth.TokenError(f"{url!r} is not an http(s) URL")
        tls = None
        if parts.scheme == "https":
            tls = UpstreamTls(system_roots_context(), parts.hostname, ("system-roots", parts.hostname))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = HttpTarget(parts.hostname, port, tls, f"{parts.hostname}:{port}", 5.0)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return target, path.encode()

    kind = source[0]
    if kind in ("clientSecret", "workloadIdentity"):
        if kind == "clientSecret":
            _, tenant, client_id, secret = source
            form = [("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret)]
        else:
            token_file = os.environ.get("AZURE_FEDERATED_TOKEN_FILE", "")
            tenant = os.environ.get("AZURE_TENANT_ID", "")
            client_id = os.environ.get("AZURE_CLIENT_ID", "")
            if not token_file or not tenant or not client_id:
                raise oauth.TokenError(
                    "workload identity needs AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID and AZURE_CLIENT_ID"
                )
            try:
                with open(token_file) as f:
                    assertion = f.read().strip()
            except OSError as exc:
                raise oauth.TokenError(f"cannot read AZURE_FEDERATED_TOKEN_FILE: {exc.strerror}") from None
            form = [
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion),
            ]
        form.append(("scope", scope))
        authority = (os.environ.get("AZURE_AUTHORITY_HOST") or _AUTHORITY_DEFAULT).rstrip("/")
        target, path = target_of(f"{authority}/{quote(tenant, safe='')}/oauth2/v2.0/token")
        return await oauth.request_token(target, path, form, None)
    # managed identity
    _, id_kind, id_value = source
    resource = scope.removesuffix("/.default")
    endpoint, header = os.environ.get("IDENTITY_ENDPOINT"), os.environ.get("IDENTITY_HEADER")
    if endpoint and header:
        # App Service / Functions (api-version 2019-08-01)
        params = [("api-version", "2019-08-01"), ("resource", resource)]
        names = {"clientId": "client_id", "objectId": "principal_id", "resourceId": "mi_res_id"}
        headers = [(b"x-identity-header", header.encode())]
    else:
        host = (os.environ.get("AZURE_POD_IDENTITY_AUTHORITY_HOST") or _IMDS).rstrip("/")
        endpoint = f"{host}/metadata/identity/oauth2/token"
        params = [("api-version", "2018-02-01"), ("resource", resource)]
        names = {"clientId": "client_id", "objectId": "object_id", "resourceId": "msi_res_id"}
        headers = [(b"metadata", b"true")]
    if id_value:
        params.append((names[id_kind], id_value))
    from urllib.parse import urlencode

    target, path = target_of(endpoint)
    path += (b"&" if b"?" in path else b"?") + urlencode(params).encode()
    try:
        response = await oauth.client().request(target, b"GET", path, headers, timeout=oauth.TOKEN_TIMEOUT)
        body = await asyncio.wait_for(response.read(64 * 1024), oauth.TOKEN_TIMEOUT)
    except Exception as exc:  # HttpClientError, TimeoutError
        raise oauth.TokenError(f"managed identity endpoint: {getattr(exc, 'message', exc)}") from None
    if response.status != 200:
        raise oauth.TokenError(f"managed identity endpoint answered {response.status}")
    import orjson

    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise oauth.TokenError("managed identity endpoint answered with something other than JSON") from None
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token or not token.isascii() or any(c in token for c in "\r\n\0"):
        raise oauth.TokenError("managed identity endpoint gave no usable access_token")
    expires_in: float | None = None
    expires_on = answer.get("expires_on")
    if isinstance(expires_on, str) and expires_on.isdigit():
        expires_in = float(expires_on) - time.time()
    elif isinstance(answer.get("expires_in"), str | int) and str(answer["expires_in"]).isdigit():
        expires_in = float(answer["expires_in"])
    return oauth.TokenAnswer(token, expires_in if expires_in and expires_in > 0 else None, None)


_AUTHORITY_DEFAULT = _AZURE_AUTHORITY
_azure_tokens: dict[tuple[tuple[str, ...], str], _AzureToken] = {}


class AzureAuth(BackendAuth):
    __slots__ = ("source",)

    def __init__(self, cfg: AzureAuthConfig, host: str, where: str) -> None:
        if (cfg.explicit_config is None) == (cfg.implicit is None):
            raise ConfigError(where, "exactly one of explicitConfig or implicit must be set")
        source: tuple[str, ...] = ("implicit",)
        if cfg.explicit_config is not None:
            ec = cfg.explicit_config
            ew = f"{where}.explicitConfig"
            kinds = [x for x in (ec.client_secret, ec.managed_identity, ec.workload_identity) if x is not None]
            if len(kinds) != 1:
                raise ConfigError(ew, "exactly one of clientSecret, managedIdentity or workloadIdentity must be set")
            if ec.client_secret is not None:
                cs = ec.client_secret
                for key, value in (
                    ("tenant_id", cs.tenant_id),
                    ("client_id", cs.client_id),
                    ("client_secret", cs.client_secret),
                ):
                    if not value:
                        raise ConfigError(f"{ew}.clientSecret.{key}", "must not be empty")
                source = ("clientSecret", cs.tenant_id, cs.client_id, cs.client_secret)
            elif ec.managed_identity is not None:
                uai = ec.managed_identity.user_assigned_identity
                if uai is None:
                    source = ("managedIdentity", "clientId", "")
                else:
                    given = [
                        (k, v)
                        for k, v in (
                            ("clientId", uai.client_id),
                            ("objectId", uai.object_id),
                            ("resourceId", uai.resource_id),
                        )
                        if v is not None
                    ]
                    if len(given) != 1:
                        raise ConfigError(
                            f"{ew}.managedIdentity.userAssignedIdentity",
                            "exactly one of clientId, objectId or resourceId",
                        )
                    source = ("managedIdentity", given[0][0], given[0][1] or "")
            else:
                source = ("workloadIdentity",)
        scope = _AZURE_FOUNDRY_SCOPE if host.lower().endswith(".services.ai.azure.com") else _AZURE_SCOPE
        token = _azure_tokens.get((source, scope))
        if token is None:
            token = _azure_tokens[(source, scope)] = _AzureToken(source, scope)
        self.source = token

    def ready(self, ctx: RequestCtx | None = None) -> bool:
        return self.source.fresh()

    async def prepare(self, ctx: RequestCtx | None = None) -> None:
        source = self.source
        if source.lock is None:
            source.lock = asyncio.Lock()
        async with source.lock:
            if not source.fresh():
                await source.fetch()

    def apply(self, out: Outbound) -> tuple[bytes, HeaderEdits]:
        token = self.source.token
        if token is None:
            raise BackendAuthError("azure: no token")
        return out.path, [(b"authorization", b"Bearer " + token)]


# ---------------------------------------------------------------- compile


def _secret(value: str | FileRef, where: str, base_dir: Path | None) -> str:
    if isinstance(value, FileRef):
        path = resolve_path(value.file, base_dir, f"{where}.file")
        try:
            text = referenced.read_text(path)
        except OSError as exc:
            raise ConfigError(f"{where}.file", f"cannot read {value.file!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}.file", f"{value.file!r} is not a text (UTF-8) file") from None
        value = text.strip()
    if not value:
        raise ConfigError(where, "the key is empty")
    return value


_KINDS = (
    ("passthrough", "passthrough"),
    ("key", "key"),
    ("gcp", "gcp"),
    ("aws", "aws"),
    ("azure", "azure"),
    ("jwt_sign", "jwtSign"),
    ("oauth_token_exchange", "oauthTokenExchange"),
    ("cross_app_access", "crossAppAccess"),
)


def compile_backend_auth(
    cfg: BackendAuthConfig,
    where: str,
    host: str,
    base_dir: Path | None,
    mcp: bool = False,
    resolve: TargetResolver | None = None,
    compile_expression: ExpressionCompiler | None = None,
) -> BackendAuth:
    """The runtime form of one ``backendAuth`` for a backend at ``host``. ``resolve`` finds the
    target of a token endpoint (``host`` or a named ``backend``); ``compile_expression`` compiles
    the CEL of token exchanges."""
    given = [k for k, _ in _KINDS if getattr(cfg, k) is not None]
    if len(given) != 1:
        raise ConfigError(where, f"exactly one of {', '.join(key for _, key in _KINDS)} must be set")
    kind = given[0]
    if kind in ("oauth_token_exchange", "cross_app_access"):
        name = dict(_KINDS)[kind]
        if mcp:
            raise ConfigError(f"{where}.{name}", "not supported for MCP targets yet (it needs the client's request)")
        if resolve is None or compile_expression is None:
            raise ConfigError(f"{where}.{name}", "not available here")
        if kind == "oauth_token_exchange":
            assert cfg.oauth_token_exchange is not None
            return TokenExchangeAuth(cfg.oauth_token_exchange, f"{where}.{name}", base_dir, resolve, compile_expression)
        assert cfg.cross_app_access is not None
        return CrossAppAccessAuth(cfg.cross_app_access, f"{where}.{name}", base_dir, resolve, compile_expression)
    if kind == "jwt_sign":
        assert cfg.jwt_sign is not None
        return JwtSignAuth(cfg.jwt_sign, base_dir, f"{where}.jwtSign")
    if kind == "azure":
        assert cfg.azure is not None
        return AzureAuth(cfg.azure, host, f"{where}.azure")
    if kind == "passthrough":
        if mcp:
            raise ConfigError(f"{where}.passthrough", "not supported for MCP targets yet")
        return PassthroughAuth()
    if kind == "key":
        key = cfg.key
        if isinstance(key, str):
            return KeyAuth(_secret(key, f"{where}.key", base_dir), None, f"{where}.key")
        assert key is not None
        if (key.value is None) == (key.file is None):
            raise ConfigError(f"{where}.key", "exactly one of value or file must be set")
        source: str | FileRef = key.value if key.value is not None else FileRef(file=key.file or "")
        kwhere = f"{where}.key.value" if key.value is not None else f"{where}.key"
        return KeyAuth(_secret(source, kwhere, base_dir), key, f"{where}.key")
    if kind == "gcp":
        assert cfg.gcp is not None
        if cfg.gcp.type in ("idToken", "IdToken"):
            return GcpAuth(cfg.gcp.audience or host)
        if cfg.gcp.audience is not None:
            raise ConfigError(f"{where}.gcp.audience", "only with type: idToken")
        return GcpAuth(None)
    aws = cfg.aws
    assert aws is not None
    explicit = None
    if (aws.access_key_id is None) != (aws.secret_access_key is None):
        raise ConfigError(f"{where}.aws", "accessKeyId and secretAccessKey go together")
    if aws.access_key_id is not None:
        from botocore.credentials import Credentials

        explicit = Credentials(aws.access_key_id, aws.secret_access_key, aws.session_token).get_frozen_credentials()
    elif aws.session_token is not None:
        raise ConfigError(f"{where}.aws.sessionToken", "only with accessKeyId and secretAccessKey")
    region = aws.region
    if explicit is not None and region is None:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise ConfigError(f"{where}.aws.region", "required with explicit credentials (or set AWS_REGION)")
    service = aws.service_name or "bedrock"
    if not service or "/" in service:
        raise ConfigError(f"{where}.aws.serviceName", f"{service!r} is not a service name")
    return AwsAuth(explicit, region, service)
