"""``apiKey``: requests carry one of the configured API keys (agentgateway's policy).

``keys[]`` holds ``key`` (the key itself) or ``keyHash`` (``sha256:<hex>`` of it, or a bcrypt
hash), each with optional ``metadata`` that becomes the CEL variable ``apiKey`` (``apiKey.team``
…); ``allowedModels`` (patterns with ``*``) limits the models the key may call through an LLM
route. ``mode``: ``strict`` (a valid key required), ``optional`` (default: a key that is present
must be valid) or ``permissive`` (never rejects). ``location`` defaults to ``Authorization:
Bearer``; an accepted key is removed from the request.

Keys are held only as SHA-256 digests: a presented key is hashed once and looked up, and the match
is confirmed with a constant-time comparison. bcrypt entries (slow by design) are tried in a
thread off the event loop, and keys that matched one are remembered by digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import bcrypt

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import ApiKey
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import DEFER, LocalReply
from agentgateway.policy.credentials import Location

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_REMEMBERED = 1024


class _Key:
    __slots__ = ("digest", "metadata", "identity", "allowed_models")

    def __init__(self, digest: bytes, metadata: dict[str, Any], allowed_models: tuple[str, ...] | None) -> None:
        self.digest = digest
        self.metadata = metadata
        self.identity = f"apiKey:{digest.hex()}"
        self.allowed_models = allowed_models


class ApiKeyPolicy:
    kind = "apiKey"

    __slots__ = ("by_digest", "salted", "location", "mode", "_remembered", "_missing", "_invalid")

    def __init__(self, cfg: ApiKey, where: str) -> None:
        self.by_digest: dict[bytes, _Key] = {}
        self.salted: list[tuple[bytes, dict[str, Any], tuple[str, ...] | None]] = []
        for i, entry in enumerate(cfg.keys):
            kwhere = f"{where}.keys[{i}]"
            metadata = dict(entry.metadata or {})
            allowed = _allowed_models(entry.allowed_models, f"{kwhere}.allowedModels")
            if (entry.key is None) == (entry.key_hash is None):
                raise ConfigError(kwhere, "exactly one of key or keyHash must be set")
            if entry.key is not None:
                if not entry.key:
                    raise ConfigError(f"{kwhere}.key", "must not be empty")
                digest = hashlib.sha256(entry.key.encode()).digest()
            else:
                assert entry.key_hash is not None
                if entry.key_hash.startswith(_BCRYPT_PREFIXES):
                    self.salted.append((entry.key_hash.encode(), metadata, allowed))
                    continue
                digest = _parse_sha256(entry.key_hash, f"{kwhere}.keyHash")
            if digest in self.by_digest:
                raise ConfigError(kwhere, "the same key is listed twice")
            self.by_digest[digest] = _Key(digest, metadata, allowed)
        if not cfg.keys:
            raise ConfigError(f"{where}.keys", "needs at least one key")
        self.location = Location.compile(cfg.location, "Bearer ", f"{where}.location")
        self.mode = cfg.mode
        self._remembered: dict[bytes, _Key] = {}  # digests of keys that matched a bcrypt entry
        self._missing = LocalReply.text(401, f"authentication required: no API key in the {self.location.describe}")
        self._invalid = LocalReply.text(401, "invalid API key")

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        presented = self.location.extract(ctx)
        if presented is None:
            return self._missing if self.mode == "strict" else None
        digest = hashlib.sha256(presented.encode("latin-1", "replace")).digest()
        key = self.by_digest.get(digest) or self._remembered.get(digest)
        if key is not None and hmac.compare_digest(key.digest, digest):
            self._accept(ctx, key)
            return None
        if self.salted:
            return DEFER
        return None if self.mode == "permissive" else self._invalid

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None:
        """The key matched no plain entry: try the bcrypt ones, in a worker thread."""
        presented = self.location.extract(ctx)
        if presented is None:
            return self.on_request(ctx)
        raw = presented.encode("latin-1", "replace")
        matched = await asyncio.get_running_loop().run_in_executor(None, self._match_salted, raw)
        if matched is None:
            return None if self.mode == "permissive" else self._invalid
        key = _Key(hashlib.sha256(raw).digest(), *matched)
        if len(self._remembered) >= _REMEMBERED:
            del self._remembered[next(iter(self._remembered))]
        self._remembered[key.digest] = key
        self._accept(ctx, key)
        return None

    def _match_salted(self, raw: bytes) -> tuple[dict[str, Any], tuple[str, ...] | None] | None:
        for hashed, metadata, allowed in self.salted:
            try:
                if bcrypt.checkpw(raw, hashed):
                    return metadata, allowed
            except ValueError:
                continue
        return None

    def _accept(self, ctx: RequestCtx, key: _Key) -> None:
        ctx.learn("apiKey", key.metadata)
        ctx.add_identity(key.identity)
        if key.allowed_models is not None:
            ctx.allowed_models = key.allowed_models
        if self.location.removable:
            self.location.remove(ctx)


def _allowed_models(patterns: list[str] | None, where: str) -> tuple[str, ...] | None:
    if patterns is None:
        return None
    for j, pattern in enumerate(patterns):
        if not pattern:
            raise ConfigError(f"{where}[{j}]", "must not be empty")
    return tuple(patterns)


def _parse_sha256(text: str, where: str) -> bytes:
    if not text.startswith("sha256:"):
        raise ConfigError(where, "keyHash is sha256:<64 hex digits> or a bcrypt hash ($2b$...)")
    try:
        digest = bytes.fromhex(text[len("sha256:") :])
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ConfigError(where, "a sha256 keyHash has 64 hex digits")
    return digest
