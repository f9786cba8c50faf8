"""A small OAuth 2.1 authorization server and JWKS host for the authentication tests, in a thread
of the test process on 127.0.0.1.

It serves ``/jwks.json`` (the public halves of its current keys; fetches are counted), RFC 8414
metadata at ``/.well-known/oauth-authorization-server``, dynamic client registration
(``/register``), an ``/authorize`` endpoint that approves at once (redirecting with a code, as a
user who clicks "allow"), and ``/token`` (authorization code with PKCE S256, checked; the access
token is a JWT for the ``resource`` the client asked for, RFC 8707). Tests mint tokens directly
with ``mint``, and rotate keys with ``add_key``/``drop_key``.
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
                if url.path == "/jwks.json":
                    with idp.lock:
                        idp.jwks_fetches += 1
                    self._send(200, idp.jwks())
                elif url.path == "/.well-known/oauth-authorization-server":
                    self._send(200, idp.metadata())
                elif url.path == "/authorize":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    client = idp.clients.get(q.get("client_id", ""))
                    if client is None or q.get("redirect_uri") not in client["redirect_uris"]:
                        self._send(400, {"error": "invalid_client"})
                        return
                    if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                        self._send(400, {"error": "invalid_request", "error_description": "PKCE S256 required"})
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
                if url.path == "/register":
                    request = json.loads(raw or b"{}")
                    client_id = secrets.token_hex(8)
                    client = {**request, "client_id": client_id, "client_id_issued_at": int(time.time())}
                    client.setdefault("token_endpoint_auth_method", "none")
                    if client["token_endpoint_auth_method"] != "none":
                        client["client_secret"] = secrets.token_hex(16)
                    idp.clients[client_id] = client
                    self._send(201, client)
                elif url.path == "/token":
                    form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    grant = idp.codes.pop(form.get("code", ""), None)
                    if form.get("grant_type") != "authorization_code" or grant is None:
                        self._send(400, {"error": "invalid_grant"})
                        return
                    verifier = form.get("code_verifier", "")
                    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
                    if challenge.decode() != grant.get("code_challenge"):
                        self._send(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
                        return
                    resource = form.get("resource") or grant.get("resource")
                    token = idp.mint(aud=resource, scope=grant.get("scope", ""))
                    self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 600})
                else:
                    self._send(404, {"error": "not found"})

        return Handler
