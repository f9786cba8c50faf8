"""Token endpoints the gateway calls for a backend's credentials (backendAuth
``oauthTokenExchange``, ``crossAppAccess``, ``azure``): the form request with the client's
authentication, the answer checked, and a bounded cache of the tokens got.

Client authentication (``clientAuth``): ``clientSecretBasic`` (the default: both form-encoded,
then HTTP Basic, RFC 6749 §2.3.1), ``clientSecretPost`` (``client_id`` and ``client_secret`` in the
form), or ``privateKeyJwt`` (RFC 7523 §2.2: a JWT signed with ``signingKey``, issuer and subject
the client, audience ``assertionAudience``, one minute of validity, a random ``jti``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import orjson

from agentgateway.config.errors import ConfigError

if TYPE_CHECKING:
    # upstream.client applies backendAuth (which uses this module): imported when first used
    from agentgateway.upstream.client import HttpClient
    from agentgateway.upstream.target import HttpTarget

TOKEN_TIMEOUT = 10.0
_MAX_ANSWER = 256 * 1024
_SAFETY_MARGIN = 15.0  # a cached token this close to expiry is fetched again
DEFAULT_CACHE_ENTRIES = 8192
DEFAULT_CACHE_TTL = 300.0

TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_ID = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenError(Exception):
    """No token: ``status`` is what the client gets (400 when the authorization server refused the
    client's own token, 500 when the gateway or the server failed)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


_clients: dict[int, HttpClient] = {}


def client() -> HttpClient:
    """This worker's client for token endpoints (its own pool, made on first use)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(id(loop))
    if found is None or found.pool.loop is not loop:
        from agentgateway.upstream.client import HttpClient
        from agentgateway.upstream.pool import UpstreamPool

        _clients.clear()
        found = _clients[id(loop)] = HttpClient(UpstreamPool(loop, 30.0, 16))
    return found


class ClientAuth:
    """How the gateway proves itself to a token endpoint."""

    __slots__ = ("client_id", "secret", "method", "key", "alg", "kid", "audience")

    def __init__(
        self,
        client_id: str,
        secret: str | None,
        method: str,
        key: Any = None,
        alg: str = "RS256",
        kid: str | None = None,
        audience: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.secret = secret
        self.method = method
        self.key = key
        self.alg = alg
        self.kid = kid
        self.audience = audience

    def add_to(self, form: list[tuple[str, str]], headers: list[tuple[bytes, bytes]]) -> None:
        if self.method == "clientSecretPost":
            form.append(("client_id", self.client_id))
            if self.secret is not None:
                form.append(("client_secret", self.secret))
        elif self.method == "privateKeyJwt":
            import jwt

            now = int(time.time())
            claims = {
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": self.audience,
                "iat": now,
                "exp": now + 60,
                "jti": secrets.token_urlsafe(16),
            }
            headers_jws = {"kid": self.kid} if self.kid else None
            assertion = jwt.encode(claims, self.key, algorithm=self.alg, headers=headers_jws)
            form += [
                ("client_id", self.client_id),
                ("client_assertion_type", _ASSERTION_TYPE),
                ("client_assertion", assertion),
            ]
        elif self.secret is not None:
            pair = f"{quote(self.client_id, safe='')}:{quote(self.secret, safe='')}"
            headers.append((b"authorization", b"Basic " + base64.b64encode(pair.encode())))


class TokenAnswer:
    __slots__ = ("token", "expires_in", "issued_type")

    def __init__(self, token: str, expires_in: float | None, issued_type: str | None) -> None:
        self.token = token
        self.expires_in = expires_in
        self.issued_type = issued_type


async def request_token(
    target: HttpTarget,
    path: bytes,
    form: list[tuple[str, str]],
    auth: ClientAuth | None,
    expected_type: str | None = None,
    bearer: bool = True,
) -> TokenAnswer:
    """POST ``form`` to a token endpoint; the access token of a successful answer. ``bearer``:
    the answer's ``token_type`` must be Bearer (an ID-JAG's is not); ``expected_type``: the
    ``issued_token_type`` it must have, when it says one (RFC 8693 §2.2.1)."""
    from agentgateway.upstream.client import HttpClientError

    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"accept", b"application/json"),
    ]
    form = list(form)
    if auth is not None:
        auth.add_to(form, headers)
    try:
        response = await client().request(
            target, b"POST", path, headers, urlencode(form).encode(), timeout=TOKEN_TIMEOUT
        )
        body = await asyncio.wait_for(response.read(_MAX_ANSWER), TOKEN_TIMEOUT)
    except HttpClientError as exc:
        raise TokenError(f"token endpoint {target.label}: {exc.message}") from None
    except TimeoutError:
        raise TokenError(f"token endpoint {target.label} timed out") from None
    status = response.status
    if status != 200:
        detail = _error_detail(body)
        # A 4xx other than 401/403 refuses the request (the client's token); 401/403 refuse the
        # gateway's own credentials, and 5xx is the server's fault.
        client_fault = 400 <= status < 500 and status not in (401, 403)
        raise TokenError(f"token endpoint answered {status}{detail}", 400 if client_fault else 500)
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise TokenError("token endpoint answered with something other than JSON") from None
    if not isinstance(answer, dict):
        raise TokenError("token endpoint answer is not a JSON object")
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenError("token endpoint answer has no access_token")
    if any(c in token for c in "\r\n\0") or not token.isascii():
        raise TokenError("token endpoint gave a token that cannot go in a header")
    token_type = answer.get("token_type")
    if bearer and (not isinstance(token_type, str) or token_type.lower() != "bearer"):
        raise TokenError(f"token endpoint gave a token of type {token_type!r}, not Bearer")
    issued = answer.get("issued_token_type")
    if issued is not None and not isinstance(issued, str):
        raise TokenError("token endpoint answer has an invalid issued_token_type")
    if expected_type is not None and issued is not None and issued != expected_type:
        raise TokenError(f"token endpoint issued {issued}, not the {expected_type} asked for")
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():  # some servers quote it
        expires_in = int(expires_in)
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = None
    return TokenAnswer(token, float(expires_in) if expires_in is not None else None, issued)


def _error_detail(body: bytes) -> str:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return f" ({answer['error'][:64]})"
    return ""


def unverified_exp(token: str) -> float | None:
    """The ``exp`` of a JWT-shaped token, read without checking anything (only to bound how long
    a token got for it is kept)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


def unverified_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


class TokenCache:
    """Tokens by a digest of everything that went into getting them (the subject token first):
    a token got for one subject is never handed to another. Bounded; the oldest goes first.
    Concurrent requests for one key share one fetch."""

    __slots__ = ("max_entries", "default_ttl", "entries", "inflight")

    def __init__(self, max_entries: int, default_ttl: float) -> None:
        self.max_entries = max_entries
        self.default_ttl = default_ttl
        self.entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self.inflight: dict[bytes, asyncio.Future[str]] = {}

    @staticmethod
    def key(*fields: str) -> bytes:
        digest = hashlib.sha256()
        for field in fields:
            data = field.encode()
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        return digest.digest()

    def get(self, key: bytes) -> str | None:
        found = self.entries.get(key)
        if found is None:
            return None
        if found[1] - time.time() <= _SAFETY_MARGIN:
            del self.entries[key]
            return None
        return found[0]

    def put(self, key: bytes, token: str, expires_in: float | None, subject: str) -> None:
        if self.max_entries == 0:
            return
        expires = time.time() + (expires_in if expires_in is not None else self.default_ttl)
        subject_exp = unverified_exp(subject)
        if subject_exp is not None:
            expires = min(expires, subject_exp)  # never outlive the credential it stands for
        if expires - time.time() <= _SAFETY_MARGIN:
            return
        entries = self.entries
        entries.pop(key, None)
        while len(entries) >= self.max_entries:
            entries.popitem(last=False)
        entries[key] = (token, expires)

    async def get_or_fetch(self, key: bytes, subject: str, fetch: Callable[[], Awaitable[TokenAnswer]]) -> str:
        found = self.get(key)
        if found is not None:
            return found
        if self.max_entries == 0:
            return (await fetch()).token
        waiting = self.inflight.get(key)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            answer = await fetch()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else TokenError("cancelled"))
                future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self.inflight.pop(key, None)
        self.put(key, answer.token, answer.expires_in, subject)
        future.set_result(answer.token)
        return answer.token


def token_type_urn(value: str | None, default: str, where: str) -> str:
    """An RFC 8693 token type: an absolute URI (``urn:...``, ``https://...``), or the default."""
    if value is None:
        return default
    scheme, sep, rest = value.partition(":")
    if not sep or not rest or not scheme.isascii() or not scheme[:1].isalpha() or "#" in value:
        raise ConfigError(where, f"{value!r} is not a token type URI")
    return value
