"""Signing keys for JWT validation: JSON Web Key Sets written in the config, read from a file, or
fetched from a URL.

Each key is decoded once (to a ``cryptography`` public key) with the algorithms it may verify:
the JWK's own ``alg`` if it names one, else every algorithm of its key type (RSA: RS*/PS*; EC:
the one ES* of its curve; OKP: EdDSA). A token is only checked with an algorithm of its key, so a
token "signed" with HS256 using an RSA public key as the secret (algorithm confusion) or with
``alg: none`` never reaches a signature check. Symmetric keys (``kty: oct``) are refused: a JWKS
a gateway trusts holds public keys.

A key set from a URL is fetched on first need, not at config load (the gateway starts while the
identity provider is down), and again when a token names a ``kid`` it does not hold (the provider
rotated its keys) or when it is older than ``MAX_AGE`` (in the background). Fetches of one URL are
shared by every policy of the worker, never run two at a time, and start at most once per
``MIN_INTERVAL``: a flood of tokens with made-up ``kid`` values costs the provider one request per
interval, not one per token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import orjson
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from agentgateway.config import referenced
from agentgateway.config.errors import ConfigError
from agentgateway.config.paths import resolve_file
from agentgateway.config.schema import JwksSource
from agentgateway.policy import outbound
from agentgateway.upstream.client import HttpClientError
from agentgateway.upstream.target import HttpTarget

log = logging.getLogger("agentgateway.policy.jwt")

MIN_INTERVAL = 2.0  # seconds between two fetches of one URL
MAX_AGE = 600.0  # a fetched key set is refreshed in the background after this
_FETCH_TIMEOUT = 5.0
_MAX_JWKS_BYTES = 1024 * 1024

_RSA_ALGORITHMS = frozenset(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"))
_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
_OKP_CURVES = frozenset(("Ed25519", "Ed448"))


class SigningKey:
    """A verification key and the algorithms it may verify."""

    __slots__ = ("kid", "key", "algorithms")

    def __init__(self, kid: str, key: Any, algorithms: frozenset[str]) -> None:
        self.kid = kid
        self.key = key
        self.algorithms = algorithms


def decode_jwk(jwk: object) -> SigningKey:
    """One JWK → its key; ValueError says what is wrong with it."""
    if not isinstance(jwk, dict):
        raise ValueError("a key must be a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("a key needs a kid (tokens name their key by it)")
    kty = jwk.get("kty")
    alg = jwk.get("alg")
    key: Any
    try:
        if kty == "RSA":
            family = _RSA_ALGORITHMS
            key = RSAAlgorithm.from_jwk(jwk)
        elif kty == "EC":
            crv = jwk.get("crv")
            if crv not in _EC_ALGORITHMS:
                raise ValueError(f"key {kid}: unsupported EC curve {crv!r}")
            family = frozenset((_EC_ALGORITHMS[crv],))
            key = ECAlgorithm.from_jwk(jwk)
        elif kty == "OKP":
            if jwk.get("crv") not in _OKP_CURVES:
                raise ValueError(f"key {kid}: unsupported OKP curve {jwk.get('crv')!r}")
            family = frozenset(("EdDSA",))
            key = OKPAlgorithm.from_jwk(jwk)
        elif kty == "oct":
            raise ValueError(f"key {kid}: symmetric keys (kty oct) are not accepted, only public keys")
        else:
            raise ValueError(f"key {kid}: unsupported key type {kty!r}")
    except InvalidKeyError as exc:
        raise ValueError(f"key {kid}: {exc}") from None
    if hasattr(key, "public_key"):  # a JWK with private parameters: only its public half is used
        key = key.public_key()
    if alg is not None:
        if alg not in family:
            raise ValueError(f"key {kid}: alg {alg!r} does not fit a {kty} key")
        family = frozenset((alg,))
    return SigningKey(kid, key, family)


def decode_jwks(document: object) -> tuple[dict[str, SigningKey], list[str]]:
    """A JWKS (``{"keys": [...]}``) → its usable signing keys by kid, and what was wrong with the
    others (keys for encryption, ``use: enc``, are skipped silently)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS is a JSON object with a "keys" list')
    keys: dict[str, SigningKey] = {}
    problems: list[str] = []
    for i, jwk in enumerate(document["keys"]):
        if isinstance(jwk, dict) and jwk.get("use") == "enc":
            continue
        try:
            key = decode_jwk(jwk)
        except ValueError as exc:
            problems.append(f"keys[{i}]: {exc}")
            continue
        keys.setdefault(key.kid, key)
    return keys, problems


class KeySet:
    """The keys of one source. ``version`` changes whenever they do, so verdicts cached against
    the old keys are dropped."""

    __slots__ = ("keys", "version", "description")

    remote = False

    def __init__(self, keys: dict[str, SigningKey], description: str) -> None:
        self.keys = keys
        self.version = 0
        self.description = description

    @property
    def loaded(self) -> bool:
        return True

    def may_fetch(self) -> bool:
        return False

    def stale(self) -> bool:
        return False

    def refresh_in_background(self) -> None:
        return None

    async def fetch(self) -> None:
        return None


class RemoteKeySet(KeySet):
    """A JWKS URL, shared by every policy of this worker that names it (see ``remote_key_set``)."""

    __slots__ = ("url", "target", "path", "fetched_at", "last_attempt", "_loaded", "_inflight")

    remote = True

    def __init__(self, url: str, target: HttpTarget, path: bytes) -> None:
        super().__init__({}, url)
        self.url = url
        self.target = target
        self.path = path
        self.fetched_at = 0.0
        self.last_attempt = -MIN_INTERVAL
        self._loaded = False
        self._inflight: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded

    def may_fetch(self) -> bool:
        """A fetch is running (join it) or one may start now."""
        return self._inflight is not None or time.monotonic() - self.last_attempt >= MIN_INTERVAL

    def stale(self) -> bool:
        return self._loaded and time.monotonic() - self.fetched_at > MAX_AGE

    def refresh_in_background(self) -> None:
        if self._inflight is None and self.may_fetch():
            self._start()

    async def fetch(self) -> None:
        """Fetch the key set now unless the rate bound says no; join a fetch already running.
        The fetch is a task of its own: a request that gives up waiting (its client left) does
        not cancel it for the others. Failures are logged and leave the keys as they were."""
        task = self._inflight
        if task is None:
            if time.monotonic() - self.last_attempt < MIN_INTERVAL:
                return
            task = self._start()
        await asyncio.shield(task)

    def _start(self) -> asyncio.Task[None]:
        self.last_attempt = time.monotonic()
        task = self._inflight = asyncio.get_running_loop().create_task(self._load())
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("JWKS %s: fetch failed: %r", self.url, exc, exc_info=exc)

    async def _load(self) -> None:
        try:
            response = await outbound.client().request(
                self.target, b"GET", self.path, [(b"accept", b"application/json")], timeout=_FETCH_TIMEOUT
            )
            body = await response.read(_MAX_JWKS_BYTES)
            if response.status != 200:
                raise ValueError(f"HTTP status {response.status}")
            keys, problems = decode_jwks(orjson.loads(body))
        except (HttpClientError, ValueError, orjson.JSONDecodeError) as exc:
            log.warning("JWKS %s not loaded: %s", self.url, exc)
            return
        for problem in problems:
            log.warning("JWKS %s: %s (key skipped)", self.url, problem)
        changed = {k: v.algorithms for k, v in keys.items()} != {k: v.algorithms for k, v in self.keys.items()}
        if changed or not self._loaded:
            log.info("JWKS %s loaded: keys %s", self.url, ", ".join(sorted(keys)) or "none")
        if changed:
            self.keys = keys
            self.version += 1
        self._loaded = True
        self.fetched_at = time.monotonic()


_remote_sets: dict[str, RemoteKeySet] = {}


def remote_key_set(url: str, where: str) -> RemoteKeySet:
    """The worker's key set for ``url`` (made on first use, kept across config reloads)."""
    found = _remote_sets.get(url)
    if found is None:
        target, path = outbound.url_target(url, where)
        found = _remote_sets[url] = RemoteKeySet(url, target, path)
    return found


def compile_key_set(source: JwksSource | str, base_dir: Path | None, where: str) -> KeySet:
    """The keys a config names: inline and file key sets are read now (a bad one is a config
    error); a URL is fetched when first needed."""
    if isinstance(source, str):
        return _static(_parse_json(source.encode(), where), where, "inline JWKS")
    chosen = [k for k, v in (("file", source.file), ("url", source.url), ("keys", source.keys)) if v is not None]
    if len(chosen) != 1:
        raise ConfigError(where, "exactly one of file, url or keys must be set (or the JWKS as a JSON string)")
    if source.url is not None:
        return remote_key_set(source.url, f"{where}.url")
    if source.keys is not None:
        return _static({"keys": source.keys}, f"{where}.keys", "inline JWKS")
    assert source.file is not None
    path = resolve_file(source.file, base_dir, f"{where}.file")
    try:
        text = referenced.read_bytes(path)
    except OSError as exc:
        raise ConfigError(f"{where}.file", f"cannot read {path}: {exc.strerror or exc}") from None
    return _static(_parse_json(text, f"{where}.file"), f"{where}.file", str(path))


def _parse_json(text: bytes, where: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(where, f"not a JWKS (invalid JSON: {exc})") from None


def _static(document: object, where: str, description: str) -> KeySet:
    try:
        keys, problems = decode_jwks(document)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None
    if problems:
        raise ConfigError(where, problems[0])
    if not keys:
        raise ConfigError(where, "the key set has no signing key")
    return KeySet(keys, description)
