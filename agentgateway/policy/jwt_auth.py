"""``jwtAuth``: requests carry a JWT from a configured issuer.

Semantics are agentgateway's. ``mode``: ``strict`` (a valid token must be present), ``optional``
(the default: a token that is present must be valid) or ``permissive`` (never rejects; a valid
token's claims are still learned). A token is found at ``location`` (default ``Authorization:
Bearer``) and is valid when its ``kid`` names a key of a provider, its ``alg`` is one that key may
verify, the signature holds, ``iss`` is the provider's issuer, ``aud`` holds one of its
``audiences`` (when set), ``exp``/``nbf`` allow now (60 s leeway, as agentgateway) and the
``jwtValidationOptions.requiredClaims`` (default ``exp``) are present. Registered claims must have
their JSON types (RFC 7519 §4.1): ``exp``, ``nbf`` and ``iat`` a finite number (not a string, not a
boolean), ``iss`` and ``sub`` a string, ``aud`` a string or an array of strings; PyJWT alone would
read ``"exp": "9999999999"`` as a number. A rejected request gets 401
with ``WWW-Authenticate: Bearer error="invalid_token", error_description="<why>"``.

The claims become the CEL variable ``jwt``; the token is removed from the request (it is not the
upstream's credential; ``RequestCtx.jwt_token`` keeps it for ``backendAuth: passthrough``).

The common path is synchronous and cheap: a token seen before is answered from a cache of
verified tokens (claims, expiry, the key set version it was verified against) without parsing or
signature check; only its time window is checked again. The policy waits (``DEFER``) only when a
token names a key that must be fetched.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import re
import time
from base64 import urlsafe_b64decode
from pathlib import Path
from typing import Any

import jwt
from jwt import exceptions as jwt_errors

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import JwksSource, JwtAuth, JwtValidationOptions
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import DEFER, LocalReply
from agentgateway.policy.credentials import Location
from agentgateway.policy.jwks import KeySet, compile_key_set

# ``isinstance`` with a tuple: ``a | b`` would build a union object on every call.
_NUMBER = (int, float)

LEEWAY = 60.0  # seconds of clock skew allowed on exp, nbf and iat (agentgateway's default)
_CACHE_ENTRIES = 4096
_CACHE_TOKEN_BYTES = 8192
_REQUIRABLE = ("exp", "nbf", "aud", "iss", "sub")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


class Verified:
    """A token whose signature and claims checked out: what requests presenting it learn."""

    __slots__ = ("claims", "exp", "nbf", "key_set", "version", "identity")

    def __init__(self, claims: dict[str, Any], key_set: KeySet) -> None:
        self.claims = claims
        exp, nbf = claims.get("exp"), claims.get("nbf")
        self.exp = float(exp) if isinstance(exp, _NUMBER) else None
        self.nbf = float(nbf) if isinstance(nbf, _NUMBER) else None
        self.key_set = key_set
        self.version = key_set.version
        self.identity = token_identity(claims)


# Claims that differ between two tokens of one caller (a refreshed token): not its identity.
_PER_TOKEN = frozenset(("exp", "iat", "nbf", "jti"))


def token_identity(claims: dict[str, Any]) -> str:
    """Who a verified token names (``RequestCtx.identity``: MCP sessions, the extAuthz cache,
    quotas and budgets are bound to it): ``jwt:<iss> <sub>``. A token without ``sub`` (client
    credentials often carry only ``client_id`` or ``azp``) is named by a digest of its claims
    but those that change with every token, under another prefix: were it ``jwt:<iss> `` for
    all of them, any client of the issuer could continue another's MCP session."""
    sub = claims.get("sub")
    if isinstance(sub, str) and sub:
        return f"jwt:{claims.get('iss', '')} {sub}"
    rest = {k: v for k, v in claims.items() if k not in _PER_TOKEN}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), default=repr)
    return f"jwt-claims:{claims.get('iss', '')} {hashlib.sha256(text.encode()).hexdigest()}"


class Rejected:
    """Why a token is refused: ``status`` 401 (the token) or 503 (no keys to check it with)."""

    __slots__ = ("status", "reason")

    def __init__(self, reason: str, status: int = 401) -> None:
        self.status = status
        self.reason = reason


# What a verdict of None means after the keys were fetched (check(may_fetch=False) always decides).
UNDECIDED = Rejected("unknown signing key")


class Provider:
    __slots__ = ("issuer", "audiences", "key_set", "required", "where")

    def __init__(
        self,
        issuer: str,
        audiences: list[str] | None,
        key_set: KeySet,
        options: JwtValidationOptions | None,
        where: str,
    ) -> None:
        self.issuer = issuer
        self.audiences = audiences
        self.key_set = key_set
        required = ["exp"] if options is None or options.required_claims is None else options.required_claims
        for claim in required:
            if claim not in _REQUIRABLE:
                raise ConfigError(
                    f"{where}.jwtValidationOptions.requiredClaims",
                    f"{claim!r} cannot be required (one of {', '.join(_REQUIRABLE)})",
                )
        self.required = list(dict.fromkeys(required))
        self.where = where


class JwtValidator:
    """Validates tokens against one or more providers; shared by jwtAuth and mcpAuthentication."""

    __slots__ = ("providers", "_cache", "_remote")

    def __init__(self, providers: list[Provider]) -> None:
        self.providers = providers
        self._cache: dict[str, Verified] = {}
        self._remote = [p.key_set for p in providers if p.key_set.remote]

    def check(self, token: str, may_fetch: bool = True) -> Verified | Rejected | None:
        """The verdict for ``token``; None when keys must be fetched first (``fetch_keys``)."""
        entry = self._cache.get(token)
        if entry is not None:
            if entry.version == entry.key_set.version:
                now = time.time()
                if entry.exp is not None and now > entry.exp + LEEWAY:
                    del self._cache[token]
                    return Rejected("token expired")
                if entry.nbf is not None and now + LEEWAY < entry.nbf:
                    return Rejected("token not yet valid (nbf)")
                if entry.key_set.remote and entry.key_set.stale():
                    entry.key_set.refresh_in_background()
                return entry
            del self._cache[token]  # the keys changed since
        return self._verify(token, may_fetch)

    async def fetch_keys(self) -> None:
        for key_set in self._remote:
            await key_set.fetch()

    def _verify(self, token: str, may_fetch: bool) -> Verified | Rejected | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.PyJWTError as exc:
            return Rejected(f"malformed token: {exc}")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            return Rejected("unsigned token (alg none) refused")
        kid = header.get("kid")
        if not isinstance(kid, str):
            return Rejected("token header has no kid")
        for provider in self.providers:
            key = provider.key_set.keys.get(kid)
            if key is not None:
                break
        else:
            if may_fetch and any(k.may_fetch() for k in self._remote):
                return None
            if len(self._remote) == len(self.providers) and not any(k.loaded for k in self._remote):
                # Nothing to check any token with: the identity provider's fault, not the client's.
                return Rejected("signing keys unavailable (JWKS could not be fetched)", 503)
            return Rejected(f"unknown signing key (kid {kid})")
        if alg not in key.algorithms:
            return Rejected(f"algorithm {alg} is not accepted for key {kid}")
        problem = claim_type_problem(token)
        if problem is not None:
            return Rejected(problem)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=provider.audiences,
                issuer=provider.issuer,
                leeway=LEEWAY,
                options={"require": provider.required, "verify_aud": provider.audiences is not None},
            )
        except jwt_errors.ExpiredSignatureError:
            return Rejected("token expired")
        except jwt_errors.ImmatureSignatureError:
            return Rejected("token not yet valid (nbf or iat in the future)")
        except jwt_errors.InvalidAudienceError:
            return Rejected("token audience not accepted")
        except jwt_errors.InvalidIssuerError:
            return Rejected("token issuer not accepted")
        except jwt_errors.InvalidSignatureError:
            return Rejected("signature verification failed")
        except jwt_errors.MissingRequiredClaimError as exc:
            return Rejected(f"token has no {exc.claim} claim")
        except jwt_errors.PyJWTError as exc:
            return Rejected(f"invalid token: {exc}")
        verified = Verified(claims, provider.key_set)
        if len(token) <= _CACHE_TOKEN_BYTES:
            cache = self._cache
            if len(cache) >= _CACHE_ENTRIES:
                del cache[next(iter(cache))]  # the oldest
            cache[token] = verified
        return verified


def claim_type_problem(token: str) -> str | None:
    """Why a registered claim of ``token`` has the wrong JSON type, or None. The payload is read as
    PyJWT reads it (``json``, which also takes ``NaN`` and ``Infinity``); a payload that does not
    decode is left to PyJWT, which says so."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1]
    try:
        claims = json.loads(urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return "the claims are not a JSON object"
    for name in ("exp", "nbf", "iat"):
        if name in claims and not _is_numeric_date(claims[name]):
            return f"{name} claim is not a NumericDate (a JSON number of seconds)"
    for name in ("iss", "sub"):
        if name in claims and not isinstance(claims[name], str):
            return f"{name} claim is not a string"
    if "aud" in claims:
        aud = claims["aud"]
        if not isinstance(aud, str) and not (isinstance(aud, list) and all(isinstance(a, str) for a in aud)):
            return "aud claim is not a string or an array of strings"
    return None


def _is_numeric_date(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float: no date
        return False


def compile_providers(
    issuer: str | None,
    audiences: list[str] | None,
    jwks: JwksSource | str | None,
    options: JwtValidationOptions | None,
    providers: list[Any] | None,
    base_dir: Path | None,
    where: str,
) -> list[Provider]:
    if providers is not None:
        if issuer is not None or audiences is not None or jwks is not None:
            raise ConfigError(where, "providers replaces issuer, audiences and jwks; set one form")
        if not providers:
            raise ConfigError(f"{where}.providers", "needs at least one provider")
        return [
            Provider(
                p.issuer,
                p.audiences,
                compile_key_set(p.jwks, base_dir, f"{where}.providers[{i}].jwks"),
                p.jwt_validation_options or options,
                f"{where}.providers[{i}]",
            )
            for i, p in enumerate(providers)
        ]
    if issuer is None or jwks is None:
        raise ConfigError(where, "issuer and jwks are required (or providers)")
    return [Provider(issuer, audiences, compile_key_set(jwks, base_dir, f"{where}.jwks"), options, where)]


def bearer_challenge(reason: str | None, extra: str = "") -> bytes:
    """A ``WWW-Authenticate: Bearer`` value (RFC 6750 §3): no error code when the request had no
    token, ``invalid_token`` and the reason when it had one."""
    params = [extra] if extra else []
    if reason is not None:
        # RFC 6750 §3: printable ASCII but '"' and '\\'. Parts of a reason are the token's own
        # (an unverified header's kid or alg): a CR LF there would add headers to the answer.
        safe = _UNPRINTABLE.sub("?", reason.replace("\\", "/").replace('"', "'"))
        params += ['error="invalid_token"', f'error_description="{safe}"']
    return ("Bearer " + ", ".join(params) if params else "Bearer").encode("latin-1", "replace")


class JwtAuthPolicy:
    kind = "jwtAuth"

    __slots__ = ("validator", "location", "mode", "_missing")

    def __init__(self, cfg: JwtAuth, base_dir: Path | None, where: str) -> None:
        self.validator = JwtValidator(
            compile_providers(
                cfg.issuer, cfg.audiences, cfg.jwks, cfg.jwt_validation_options, cfg.providers, base_dir, where
            )
        )
        self.location = Location.compile(cfg.location, "Bearer ", f"{where}.location")
        self.mode = cfg.mode
        self._missing = LocalReply.text(
            401,
            f"authentication required: no JWT in the {self.location.describe}",
            [(b"www-authenticate", bearer_challenge(None))],
        )

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        token = self.location.extract(ctx)
        if token is None:
            return self._missing if self.mode == "strict" else None
        verdict = self.validator.check(token)
        if verdict is None:
            return DEFER
        return self._apply(ctx, token, verdict)

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None:
        """The token names a key this worker has not fetched yet."""
        token = self.location.extract(ctx)
        if token is None:
            return self.on_request(ctx)
        await self.validator.fetch_keys()
        return self._apply(ctx, token, self.validator.check(token, may_fetch=False))

    def _apply(self, ctx: RequestCtx, token: str, verdict: Verified | Rejected | None) -> LocalReply | None:
        if isinstance(verdict, Verified):
            accept(ctx, token, verdict, self.location)
            return None
        if self.mode == "permissive":
            return None
        return reject(verdict or UNDECIDED)


def accept(ctx: RequestCtx, token: str, verdict: Verified, location: Location) -> None:
    """A valid token: its claims become ``jwt.*``, its subject the caller's identity, and the token
    is kept for ``backendAuth.passthrough`` (and taken off the request where its location allows)."""
    ctx.learn("jwt", verdict.claims)
    ctx.add_identity(verdict.identity)
    ctx.jwt_token = token
    if location.removable:
        location.remove(ctx)


def reject(verdict: Rejected, extra: str = "") -> LocalReply:
    if verdict.status == 503:
        return LocalReply.text(503, verdict.reason)
    return LocalReply.text(
        401,
        f"invalid JWT: {verdict.reason}",
        [(b"www-authenticate", bearer_challenge(verdict.reason, extra))],
    )
