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

Credentials that need I/O (the AWS chain, Google tokens) are fetched in a thread the first time
and when they near expiry; requests meanwhile wait for that one fetch. A failure answers 500.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from agentgateway.config import referenced
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import BackendAuth as BackendAuthConfig
from agentgateway.config.schema import BackendKey, FileRef
from agentgateway.config.tlsfiles import resolve_path
from agentgateway.core.reply import LocalReply

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx

Headers = list[tuple[bytes, bytes]]
# Header changes: (name, value) replaces every header of that name; a None value removes them.
HeaderEdits = list[tuple[bytes, bytes | None]]

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
_REFRESH_BEFORE = 60.0  # seconds before expiry when a token is fetched anew
_CHAIN_RECHECK = 60.0  # how often refreshable AWS credentials are looked at again


class BackendAuthError(Exception):
    """The credentials could not be had (no credentials, a token endpoint down)."""


class Outbound:
    """What a backend auth may read and sign: one request as it will be sent."""

    __slots__ = ("method", "scheme", "host", "path", "headers", "body", "token")

    def __init__(
        self,
        method: bytes,
        scheme: bytes,
        host: bytes,
        path: bytes,
        headers: Headers,
        body: bytes,
        token: str | None = None,
    ) -> None:
        # token: the client's credential an authentication policy validated and removed
        self.token = token
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.headers = headers
        self.body = body


class BackendAuth:
    """One backend's credentials. ``ready()`` says whether ``apply`` can run now; otherwise
    ``await prepare()`` first (it fetches what is missing, or raises BackendAuthError)."""

    kind = "backendAuth"
    needs_body = False

    def ready(self) -> bool:
        return True

    async def prepare(self) -> None:
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


class KeyAuth(BackendAuth):
    __slots__ = ("header", "value", "query", "cookie")

    def __init__(self, secret: str, cfg: BackendKey | None, where: str) -> None:
        location = cfg.location if cfg is not None else None
        self.header: bytes | None = b"authorization"
        self.query: str | None = None
        self.cookie: str | None = None
        prefix = "Bearer "
        if location is not None:
            given = [x for x in (location.header, location.query_parameter, location.cookie) if x is not None]
            if len(given) != 1:
                raise ConfigError(f"{where}.location", "exactly one of header, queryParameter or cookie must be set")
            self.header = None
            if location.header is not None:
                name = location.header.name.lower().encode()
                if not name or any(c not in _TOKEN for c in name):
                    raise ConfigError(f"{where}.location.header.name", f"{location.header.name!r} is not a header name")
                self.header = name
                prefix = location.header.prefix or ""
            elif location.query_parameter is not None:
                self.query = location.query_parameter.name
            elif location.cookie is not None:
                self.cookie = location.cookie.name
        value = (prefix + secret) if self.header is not None else secret
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(where, "the key contains a line break")
        self.value = value.encode()

    def apply(self, out: Outbound) -> tuple[bytes, HeaderEdits]:
        if self.header is not None:
            return out.path, [(self.header, self.value)]
        if self.query is not None:
            path, _, query = out.path.partition(b"?")
            name = quote(self.query, safe="").encode()
            pairs = [p for p in query.split(b"&") if p and p.partition(b"=")[0] != name]
            pairs.append(name + b"=" + quote(self.value, safe="").encode())
            return path + b"?" + b"&".join(pairs), []
        assert self.cookie is not None
        name = self.cookie.encode()
        crumbs = [
            c.strip()
            for k, v in out.headers
            if k == b"cookie"
            for c in v.split(b";")
            if c.strip() and c.strip().partition(b"=")[0] != name
        ]
        crumbs.append(name + b"=" + self.value)
        return out.path, [(b"cookie", b"; ".join(crumbs))]


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

    def ready(self) -> bool:
        return self.source.fresh()

    async def prepare(self) -> None:
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

    def ready(self) -> bool:
        return self.explicit is not None or _aws_chain.fresh()

    async def prepare(self) -> None:
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


def compile_backend_auth(
    cfg: BackendAuthConfig, where: str, host: str, base_dir: Path | None, mcp: bool = False
) -> BackendAuth:
    """The runtime form of one ``backendAuth`` for a backend at ``host``."""
    given = [k for k in ("passthrough", "key", "gcp", "aws") if getattr(cfg, k) is not None]
    if len(given) != 1:
        raise ConfigError(where, "exactly one of passthrough, key, gcp or aws must be set")
    kind = given[0]
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
