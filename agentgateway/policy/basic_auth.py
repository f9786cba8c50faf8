"""``basicAuth``: username and password checked against an htpasswd file (agentgateway's policy).

``htpasswd`` is the file's text or ``{file: path}``; ``realm`` (default ``Restricted``) goes in
``WWW-Authenticate: Basic realm="..."`` on 401; ``mode`` is ``strict`` (credentials required) or
``optional`` (the default: credentials that are present must be valid). The credentials are read
at ``authorizationLocation`` (default ``Authorization: Basic``) and removed once accepted; the
user becomes ``basicAuth.username`` in CEL.

bcrypt is slow on purpose (milliseconds per check), so a bcrypt check runs in a thread, off the
event loop (the policy returns ``DEFER``), and credentials that passed are remembered (a salted
SHA-256 of them, in memory, bounded) so a client that sends them on every request costs one hash.
An unknown user costs as much as a known one, so timing does not tell which users exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
from pathlib import Path

from agentgateway.config import referenced
from agentgateway.config.errors import ConfigError
from agentgateway.config.paths import resolve_file
from agentgateway.config.schema import BasicAuth
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import DEFER, LocalReply
from agentgateway.policy.credentials import Location
from agentgateway.policy.htpasswd import HtpasswdEntry, parse_htpasswd

_VERIFIED_ENTRIES = 1024


class BasicAuthPolicy:
    kind = "basicAuth"

    __slots__ = ("users", "location", "mode", "_salt", "_verified", "_decoy", "_missing", "_invalid")

    def __init__(self, cfg: BasicAuth, base_dir: Path | None, where: str) -> None:
        if isinstance(cfg.htpasswd, str):
            text, hwhere = cfg.htpasswd, f"{where}.htpasswd"
        else:
            hwhere = f"{where}.htpasswd.file"
            path = resolve_file(cfg.htpasswd.file, base_dir, hwhere)
            try:
                text = referenced.read_text(path)
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(hwhere, f"cannot read {path}: {exc}") from None
        users, problems = parse_htpasswd(text)
        if problems:
            raise ConfigError(hwhere, problems[0])
        if not users:
            raise ConfigError(hwhere, "no users")
        self.users = users
        self.location = Location.compile(cfg.authorization_location, "Basic ", f"{where}.authorizationLocation")
        self.mode = cfg.mode
        self._salt = os.urandom(16)
        self._verified: dict[bytes, str] = {}
        # What an unknown user is checked against: the cost of a real check (the first bcrypt
        # entry when there is one).
        self._decoy: HtpasswdEntry = next((e for e in users.values() if e.slow), next(iter(users.values())))
        challenge = [(b"www-authenticate", f'Basic realm="{cfg.realm or "Restricted"}"'.encode())]
        self._missing = LocalReply.text(401, "authentication required: basic credentials", challenge)
        self._invalid = LocalReply.text(401, "invalid username or password", challenge)

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        credentials = self.location.extract(ctx)
        if credentials is None:
            return self._missing if self.mode == "strict" else None
        known = self._verified.get(self._fingerprint(credentials))
        if known is not None:
            self._accept(ctx, known)
            return None
        parsed = _decode(credentials)
        if parsed is None:
            return self._invalid
        user, password = parsed
        entry = self.users.get(user)
        if (entry or self._decoy).slow:
            return DEFER
        return self._decide(ctx, credentials, user, entry, password)

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None:
        """A bcrypt check, in a worker thread."""
        credentials = self.location.extract(ctx)
        parsed = _decode(credentials) if credentials is not None else None
        if credentials is None or parsed is None:
            return self.on_request(ctx)
        user, password = parsed
        entry = self.users.get(user)
        checked = entry or self._decoy
        ok = await asyncio.get_running_loop().run_in_executor(None, checked.verify, password)
        return self._decide(ctx, credentials, user, entry, password, ok)

    def _decide(
        self,
        ctx: RequestCtx,
        credentials: str,
        user: str,
        entry: HtpasswdEntry | None,
        password: bytes,
        ok: bool | None = None,
    ) -> LocalReply | None:
        if ok is None:
            ok = (entry or self._decoy).verify(password)
        if entry is None or not ok:
            return self._invalid
        verified = self._verified
        if len(verified) >= _VERIFIED_ENTRIES:
            del verified[next(iter(verified))]
        verified[self._fingerprint(credentials)] = user
        self._accept(ctx, user)
        return None

    def _accept(self, ctx: RequestCtx, user: str) -> None:
        ctx.learn("basicAuth", {"username": user})
        ctx.add_identity(f"basic:{user}")
        if self.location.removable:
            self.location.remove(ctx)

    def _fingerprint(self, credentials: str) -> bytes:
        return hashlib.sha256(self._salt + credentials.encode("latin-1", "replace")).digest()


def _decode(credentials: str) -> tuple[str, bytes] | None:
    try:
        raw = base64.b64decode(credentials, validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user.decode(), password
    except UnicodeDecodeError:
        return None
