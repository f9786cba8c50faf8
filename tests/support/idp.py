"""A small OAuth 2.1 authorization server, OpenID provider and JWKS host for the authentication
tests, in a thread of the test process on 127.0.0.1.

It serves ``/jwks.json`` (the public halves of its current keys; fetches are counted), RFC 8414
metadata at ``/.well-known/oauth-authorization-server``, dynamic client registration
(``/register``), an ``/authorize`` endpoint that approves at once (redirecting with a code, as a
user who clicks "allow"), and ``/token`` (authorization code with PKCE S256, checked; the access
token is a JWT for the ``resource`` the client asked for, RFC 8707). Tests mint tokens directly
with ``mint``, and rotate keys with ``add_key``/``drop_key``.

As an OpenID provider (``/.well-known/openid-configuration``): ``register_client`` adds a
confidential client (``client_secret_basic`` or ``client_secret_post``, checked at ``/token``);
``/authorize`` then also takes ``scope`` (``openid`` required), ``nonce`` and ``response_type=code``
strictly, and the code's token answer carries an ``id_token`` for the client (``id_token_claims``
overrides its claims, to test validation; ``deny_next_login`` makes the next authorization
redirect with ``error=access_denied``). Codes are single use.

As a security token service (``/token``): RFC 8693 token exchange of its own tokens (the subject
token must verify against its keys), with ``requested_token_type`` id-jag for an Identity
Assertion JWT Authorization Grant (ID-JAG) whose audience is the requested ``audience``, and
RFC 7523 JWT-bearer grants of ID-JAGs from ``trusted_assertion_issuer`` (another provider).
Every token request's form is kept in ``token_requests``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


def new_key(kind: str = "RSA") -> Any:
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(kid: str, key: Any, alg: str | None = None) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = json.loads(ECAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(OKPAlgorithm.to_jwk(public))
    jwk["kid"] = kid
    jwk["use"] = "sig"
    if alg:
        jwk["alg"] = alg
    return jwk


_DEFAULT_ALG = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}


class IdentityProvider:
    def __init__(self, subject: str = "alice") -> None:
        self.keys: dict[str, tuple[Any, str]] = {}  # kid → (private key, alg)
        self.current = ""
        self.subject = subject
        self.jwks_fetches = 0
        self.clients: dict[str, dict[str, Any]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.id_token_claims: dict[str, Any] = {}
        self.deny_next_login = False
        self.token_requests: list[dict[str, Any]] = []
        self.trusted_assertion_issuer: IdentityProvider | None = None
        self.exchange_expires_in: int | None = 600
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.add_key("k1")

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks.json"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ keys and tokens

    def add_key(self, kid: str, kind: str = "RSA") -> None:
        """A new signing key, used for tokens from now on (a rotation)."""
        with self.lock:
            self.keys[kid] = (new_key(kind), _DEFAULT_ALG[kind])
            self.current = kid

    def drop_key(self, kid: str) -> None:
        with self.lock:
            del self.keys[kid]

    def register_client(
        self, client_id: str, secret: str, redirect_uris: list[str], method: str = "client_secret_basic"
    ) -> None:
        """A confidential client, as an administrator registers one."""
        self.clients[client_id] = {
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": method,
        }

    def verify(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """The claims of a token this provider signed (jwt errors otherwise)."""
        kid = jwt.get_unverified_header(token)["kid"]
        key, alg = self.keys[kid]
        options = {"verify_aud": audience is not None}
        claims: dict[str, Any] = jwt.decode(
            token, key.public_key(), algorithms=[alg], audience=audience, issuer=self.issuer, options=options
        )
        return claims

    def jwks(self) -> dict[str, Any]:
        with self.lock:
            return {"keys": [public_jwk(kid, key) for kid, (key, _) in self.keys.items()]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": self.subject, "iat": now, "exp": now + 600}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(
        self, kid: str | None = None, alg: str | None = None, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A token signed with key ``kid`` (default: the current one). ``claims`` override the
        defaults (iss, sub, iat, exp = now + 10 min); a claim set to None is left out."""
        kid = kid or self.current
        key, default_alg = self.keys[kid]
        return jwt.encode(
            self.claims(**claims), key, algorithm=alg or default_alg, headers={"kid": kid, **(headers or {})}
        )

    # ------------------------------------------------------------------ HTTP

    def metadata(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "registration_endpoint": f"{base}/register",
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        }

    def openid_configuration(self) -> dict[str, Any]:
        return {
            **self.metadata(),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": ["openid", "profile", "email"],
        }

    def _client_authenticated(self, headers: Any, form: dict[str, str]) -> dict[str, Any] | None:
        """The client the token request authenticates as (None: it does not)."""
        import base64 as b64
        from urllib.parse import unquote_plus

        basic = headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                raw = b64.b64decode(basic[6:]).decode()
            except ValueError:
                return None
            client_id, _, secret = raw.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
            method = "client_secret_basic"
        elif "client_secret" in form:
            client_id, secret, method = form.get("client_id", ""), form["client_secret"], "client_secret_post"
        else:
            client = self.clients.get(form.get("client_id", ""))
            return client if client is not None and client["token_endpoint_auth_method"] == "none" else None
        client = self.clients.get(client_id)
        if client is None or client.get("token_endpoint_auth_method") != method:
            return None
        if not secrets.compare_digest(client.get("client_secret", ""), secret):
            return None
        return client

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                if body is not None:
                    self.send_header("content-type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path in ("/jwks.json", "/protocol/openid-connect/certs"):  # the second: Keycloak's
                    with idp.lock:
                        idp.jwks_fetches += 1
                    self._send(200, idp.jwks())
                elif url.path == "/.well-known/oauth-authorization-server":
                    self._send(200, idp.metadata())
                elif url.path == "/.well-known/openid-configuration":
                    self._send(200, idp.openid_configuration())
                elif url.path == "/authorize":
                    pairs = parse_qs(url.query)
                    if any(len(v) > 1 for v in pairs.values()):
                        self._send(400, {"error": "invalid_request", "error_description": "repeated parameter"})
                        return
                    q = {k: v[0] for k, v in pairs.items()}
                    client = idp.clients.get(q.get("client_id", ""))
                    if client is None or q.get("redirect_uri") not in client["redirect_uris"]:
                        self._send(400, {"error": "invalid_client"})
                        return
                    if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                        self._send(400, {"error": "invalid_request", "error_description": "PKCE S256 required"})
                        return
                    if "scope" in q and "openid" in q["scope"].split() and q.get("response_type") != "code":
                        self._send(400, {"error": "unsupported_response_type"})
                        return
                    if idp.deny_next_login:
                        idp.deny_next_login = False
                        location = (
                            q["redirect_uri"] + "?" + urlencode({"error": "access_denied", "state": q.get("state", "")})
                        )
                        self._send(302, None, {"location": location})
                        return
                    code = secrets.token_urlsafe(16)
                    idp.codes[code] = q
                    location = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
                    self._send(302, None, {"location": location})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                url = urlsplit(self.path)
                if url.path in ("/register", "/clients-registrations/openid-connect"):  # the second: Keycloak's
                    request = json.loads(raw or b"{}")
                    client_id = secrets.token_hex(8)
                    client = {**request, "client_id": client_id, "client_id_issued_at": int(time.time())}
                    client.setdefault("token_endpoint_auth_method", "none")
                    if client["token_endpoint_auth_method"] != "none":
                        client["client_secret"] = secrets.token_hex(16)
                    idp.clients[client_id] = client
                    self._send(201, client)
                elif url.path == "/token":
                    if self.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
                        self._send(400, {"error": "invalid_request", "error_description": "form encoding required"})
                        return
                    pairs = parse_qs(raw.decode(), keep_blank_values=True)
                    form = {k: v[0] for k, v in pairs.items()}
                    with idp.lock:
                        idp.token_requests.append(
                            {
                                "form": {k: v if len(v) > 1 else v[0] for k, v in pairs.items()},
                                "headers": dict(self.headers),
                            }
                        )
                    grant_type = form.get("grant_type")
                    if grant_type == "urn:ietf:params:oauth:grant-type:token-exchange":
                        self._token_exchange(pairs, form)
                        return
                    if grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                        self._jwt_bearer(form)
                        return
                    grant = idp.codes.pop(form.get("code", ""), None)
                    if grant_type != "authorization_code" or grant is None:
                        self._send(400, {"error": "invalid_grant"})
                        return
                    client = idp.clients.get(grant.get("client_id", ""))
                    assert client is not None
                    if client["token_endpoint_auth_method"] != "none":
                        authed = idp._client_authenticated(self.headers, form)
                        if authed is None or authed["client_id"] != client["client_id"]:
                            self._send(401, {"error": "invalid_client"})
                            return
                    if form.get("redirect_uri") != grant.get("redirect_uri"):
                        self._send(400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
                        return
                    verifier = form.get("code_verifier", "")
                    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
                    if challenge.decode() != grant.get("code_challenge"):
                        self._send(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
                        return
                    resource = form.get("resource") or grant.get("resource")
                    token = idp.mint(aud=resource, scope=grant.get("scope", ""))
                    answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": 600}
                    if "openid" in grant.get("scope", "").split():
                        claims = {"aud": grant["client_id"], "nonce": grant.get("nonce"), **idp.id_token_claims}
                        answer["id_token"] = idp.mint(**claims)
                    self._send(200, answer)
                else:
                    self._send(404, {"error": "not found"})

            def _token_exchange(self, pairs: dict[str, list[str]], form: dict[str, str]) -> None:
                """RFC 8693 §2.1, strictly: one subject token of a known type, signed here."""
                if any(len(v) > 1 for k, v in pairs.items() if k not in ("audience", "resource")):
                    self._send(400, {"error": "invalid_request", "error_description": "repeated parameter"})
                    return
                if idp._client_authenticated(self.headers, form) is None:
                    self._send(401, {"error": "invalid_client"})
                    return
                subject, subject_type = form.get("subject_token"), form.get("subject_token_type")
                if not subject or not subject_type:
                    self._send(
                        400, {"error": "invalid_request", "error_description": "subject_token and its type required"}
                    )
                    return
                if ("actor_token" in form) != ("actor_token_type" in form):
                    self._send(400, {"error": "invalid_request", "error_description": "actor_token needs its type"})
                    return
                try:
                    claims = idp.verify(subject)
                except jwt.PyJWTError as exc:
                    self._send(400, {"error": "invalid_grant", "error_description": str(exc)})
                    return
                requested = form.get("requested_token_type", "urn:ietf:params:oauth:token-type:access_token")
                audiences = pairs.get("audience", [])
                if requested == "urn:ietf:params:oauth:token-type:id-jag":
                    if subject_type != "urn:ietf:params:oauth:token-type:id_token" or len(audiences) != 1:
                        self._send(
                            400,
                            {
                                "error": "invalid_request",
                                "error_description": "ID-JAG needs an id_token and one audience",
                            },
                        )
                        return
                    now = int(time.time())
                    grant = {
                        "iss": idp.issuer,
                        "sub": claims["sub"],
                        "aud": audiences[0],
                        "client_id": claims.get("aud"),
                        "jti": secrets.token_hex(8),
                        "iat": now,
                        "exp": now + 300,
                        "scope": form.get("scope", ""),
                        "resource": pairs.get("resource", []),
                    }
                    kid = idp.current
                    key, alg = idp.keys[kid]
                    token = jwt.encode(grant, key, algorithm=alg, headers={"kid": kid, "typ": "oauth-id-jag+jwt"})
                    self._send(
                        200,
                        {"access_token": token, "issued_token_type": requested, "token_type": "N_A", "expires_in": 300},
                    )
                    return
                extra: dict[str, Any] = {"act": {"sub": "gateway"}} if "actor_token" in form else {}
                token = idp.mint(
                    sub=claims["sub"],
                    aud=audiences[0] if len(audiences) == 1 else audiences or None,
                    scope=form.get("scope"),
                    exchanged_from=claims.get("jti") or claims["sub"],
                    **extra,
                )
                answer: dict[str, Any] = {"access_token": token, "issued_token_type": requested, "token_type": "Bearer"}
                if idp.exchange_expires_in is not None:
                    answer["expires_in"] = idp.exchange_expires_in
                self._send(200, answer)

            def _jwt_bearer(self, form: dict[str, str]) -> None:
                """RFC 7523 §2.1 with an ID-JAG from the trusted identity provider."""
                client = idp._client_authenticated(self.headers, form)
                if client is None:
                    self._send(401, {"error": "invalid_client"})
                    return
                trusted = idp.trusted_assertion_issuer
                assertion = form.get("assertion", "")
                if trusted is None or not assertion:
                    self._send(400, {"error": "invalid_grant"})
                    return
                try:
                    if jwt.get_unverified_header(assertion).get("typ") != "oauth-id-jag+jwt":
                        raise jwt.InvalidTokenError("not an ID-JAG")
                    claims = trusted.verify(assertion, audience=idp.issuer)
                except jwt.PyJWTError as exc:
                    self._send(400, {"error": "invalid_grant", "error_description": str(exc)})
                    return
                token = idp.mint(sub=claims["sub"], scope=form.get("scope"), aud=claims.get("resource") or None)
                self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 600})

        return Handler
