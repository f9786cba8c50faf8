"""``mcpAuthentication``: the gateway as the OAuth 2.1 resource server of an MCP endpoint (MCP
authorization, 2025-06-18 and later; agentgateway's policy).

* Tokens are JWTs from ``issuer``, checked against its keys (``jwks``, default
  ``<issuer>/.well-known/jwks.json``) and its ``audiences`` (RFC 8707: the token must have been
  issued for this server), as ``jwtAuth`` checks them. ``mode`` defaults to ``strict``.
* A request without a valid token gets 401 with ``WWW-Authenticate: Bearer
  resource_metadata="<base>/.well-known/oauth-protected-resource<path>"`` (plus
  ``error="invalid_token"`` and why, when it had one), which starts the client's discovery.
* ``GET /.well-known/oauth-protected-resource[/<path>]`` answers the RFC 9728 metadata:
  ``resource`` (from the request's URL, unless ``resourceMetadata.resource`` sets it),
  ``authorization_servers: [issuer]`` and the other ``resourceMetadata`` keys (camelCase keys
  written snake_case: ``scopesSupported`` → ``scopes_supported``).
* ``GET /.well-known/oauth-authorization-server[/<path>]`` answers the issuer's RFC 8414
  metadata, fetched from it (and kept five minutes).

The route must match those well-known paths for the gateway to answer them (the ``mcp:`` shortcut
does so by itself). The validated token's claims are the CEL variable ``jwt``; the token is not
sent to MCP upstreams.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import JwksSource, McpAuthentication
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import DEFER, LocalReply
from agentgateway.policy import outbound
from agentgateway.policy.credentials import Location
from agentgateway.policy.jwks import compile_key_set
from agentgateway.policy.jwt_auth import (
    UNDECIDED,
    JwtValidator,
    Provider,
    Rejected,
    Verified,
    accept,
    bearer_challenge,
    reject,
)
from agentgateway.upstream.client import HttpClientError
from agentgateway.upstream.target import HttpTarget

log = logging.getLogger("agentgateway.policy.mcp")

PROTECTED_RESOURCE = b"/.well-known/oauth-protected-resource"
AUTHORIZATION_SERVER = b"/.well-known/oauth-authorization-server"
_METADATA_TTL = 300.0
_MAX_METADATA_BYTES = 256 * 1024
_JSON = (b"content-type", b"application/json")
_CORS = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, OPTIONS"),
    (b"access-control-allow-headers", b"content-type, mcp-protocol-version"),
)
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class McpAuthenticationPolicy:
    kind = "mcpAuthentication"

    __slots__ = (
        "validator",
        "location",
        "mode",
        "issuer",
        "metadata",
        "resource",
        "base_url",
        "_as_target",
        "_as_cache",
    )

    def __init__(self, cfg: McpAuthentication, base_dir: Path | None, where: str) -> None:
        if not cfg.audiences:
            raise ConfigError(f"{where}.audiences", "needs at least one audience (the URL clients use for this server)")
        jwks: JwksSource | str = cfg.jwks or JwksSource(url=cfg.issuer.rstrip("/") + "/.well-known/jwks.json")
        key_set = compile_key_set(jwks, base_dir, f"{where}.jwks")
        self.validator = JwtValidator(
            [Provider(cfg.issuer, list(cfg.audiences), key_set, cfg.jwt_validation_options, where)]
        )
        self.location = Location.compile(cfg.authorization_location, "Bearer ", f"{where}.authorizationLocation")
        self.mode = cfg.mode
        self.issuer = cfg.issuer
        self.metadata = {_CAMEL.sub("_", k).lower(): v for k, v in cfg.resource_metadata.items()}
        resource = self.metadata.get("resource")
        if resource is not None and not isinstance(resource, str):
            raise ConfigError(f"{where}.resourceMetadata.resource", "must be a URL")
        self.resource = resource
        # Where the metadata is, in challenges: the configured resource's origin, else the request's.
        self.base_url: str | None = None
        if resource:
            parts = urlsplit(resource)
            if not parts.scheme or not parts.netloc:
                raise ConfigError(f"{where}.resourceMetadata.resource", f"{resource!r} is not an absolute URL")
            self.base_url = f"{parts.scheme}://{parts.netloc}"
        try:
            self._as_target: tuple[HttpTarget, bytes] | None = outbound.url_target(
                _rfc8414_url(cfg.issuer), f"{where}.issuer"
            )
        except ConfigError:
            self._as_target = None  # an issuer that is not a URL has no metadata to pass on
        self._as_cache: tuple[float, bytes] | None = None

    # ------------------------------------------------------------------ request path

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        path = ctx.path
        if path.startswith(b"/.well-known/"):
            if path.startswith(PROTECTED_RESOURCE):
                return self._protected_resource(ctx)
            if path.startswith(AUTHORIZATION_SERVER):
                cached = self._as_cache
                if cached is not None and time.monotonic() - cached[0] < _METADATA_TTL:
                    return _json_reply(cached[1])
                return DEFER
        token = self.location.extract(ctx)
        if token is None:
            if self.mode != "strict":
                return None
            return self._challenge(ctx, None, "authentication required")
        verdict = self.validator.check(token)
        if verdict is None:
            return DEFER
        return self._apply(ctx, token, verdict)

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None:
        if ctx.path.startswith(AUTHORIZATION_SERVER):
            return await self._authorization_server()
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
        verdict = verdict or UNDECIDED
        if verdict.status != 401:
            return reject(verdict)
        return self._challenge(ctx, verdict.reason, f"invalid token: {verdict.reason}")

    def _challenge(self, ctx: RequestCtx, reason: str | None, message: str) -> LocalReply:
        url = f"{self._base(ctx)}{PROTECTED_RESOURCE.decode()}{ctx.path.decode('latin-1')}"
        header = bearer_challenge(reason, f'resource_metadata="{url}"')
        return LocalReply.text(401, message, [(b"www-authenticate", header)])

    def _base(self, ctx: RequestCtx) -> str:
        if self.base_url is not None:
            return self.base_url
        scheme = (ctx.header(b"x-forwarded-proto") or ctx.scheme).decode("latin-1").split(",")[0].strip()
        return f"{scheme}://{ctx.host.decode('latin-1')}"

    # ------------------------------------------------------------------ metadata

    def _protected_resource(self, ctx: RequestCtx) -> LocalReply:
        """RFC 9728 §3: the metadata of the resource at the path after the well-known prefix."""
        rest = ctx.path[len(PROTECTED_RESOURCE) :].decode("latin-1")
        document: dict[str, Any] = {
            "resource": f"{self._base(ctx)}{rest}",
            "authorization_servers": [self.issuer],
        }
        document.update(self.metadata)
        return _json_reply(orjson.dumps(document))

    async def _authorization_server(self) -> LocalReply:
        """The issuer's RFC 8414 metadata, as the issuer serves it."""
        cached = self._as_cache
        if cached is not None and time.monotonic() - cached[0] < _METADATA_TTL:
            return _json_reply(cached[1])
        if self._as_target is None:
            return LocalReply.text(404, f"issuer {self.issuer!r} is not a URL: no authorization server metadata")
        target, path = self._as_target
        try:
            response = await outbound.client().request(
                target, b"GET", path, [(b"accept", b"application/json")], timeout=outbound.CONNECT_TIMEOUT
            )
            body = await response.read(_MAX_METADATA_BYTES)
            if response.status != 200:
                raise ValueError(f"HTTP status {response.status}")
            if not isinstance(orjson.loads(body), dict):
                raise ValueError("not a JSON object")
        except (HttpClientError, ValueError, orjson.JSONDecodeError) as exc:
            log.warning("authorization server metadata of %s not fetched: %s", self.issuer, exc)
            return LocalReply.text(502, "authorization server metadata unavailable")
        self._as_cache = (time.monotonic(), body)
        return _json_reply(body)


def _rfc8414_url(issuer: str) -> str:
    """RFC 8414 §3.1: the well-known segment goes between the issuer's host and its path."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{path}"


def _json_reply(body: bytes) -> LocalReply:
    return LocalReply(200, (_JSON, *_CORS), body, "")
