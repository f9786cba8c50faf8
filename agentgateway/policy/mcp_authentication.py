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
  metadata, fetched from it (and kept five minutes). Anyone may ask for it, so fetches are shared
  by the requests waiting for one and start at most once per ``jwks.MIN_INTERVAL`` (a failing
  issuer is not asked again for every request); meanwhile the last good copy, if any, is served.

``provider`` adapts this to identity providers that do not implement the MCP profile as written,
as agentgateway does (the protected resource metadata then names the gateway itself as the
authorization server, and the gateway serves adapted metadata):

* ``auth0``: RFC 8707 ``resource`` is not supported; the advertised ``authorization_endpoint``
  gets ``audience=<first audience>``. Default JWKS ``<issuer>/.well-known/jwks.json``.
* ``keycloak``: metadata from ``<issuer>/.well-known/openid-configuration``; its registration
  endpoint (no CORS) is proxied at ``<metadata URL>/client-registration``. Default JWKS
  ``<issuer>/protocol/openid-connect/certs``.
* ``okta``: OpenID discovery metadata, the audience added as for auth0, registration proxied to
  ``<origin>/oauth2/v1/clients``. ``descope``: OpenID discovery, registration proxied.
  ``authentik``: OpenID discovery; it has no registration, so the gateway advertises its own,
  which only answers with ``clientId``. These three need ``jwks``.
* ``clientId`` (any provider): the gateway's registration endpoint answers every registration
  with this pre-registered client instead of calling the provider.

``entra`` (which needs the gateway to proxy the authorization and token endpoints) is not
supported yet.

The route must match those well-known paths for the gateway to answer them (the ``mcp:`` shortcut
does so by itself). The validated token's claims are the CEL variable ``jwt``; the token is not
sent to MCP upstreams.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import JwksSource, McpAuthentication
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import DEFER, LocalReply
from agentgateway.policy import outbound
from agentgateway.policy.credentials import Location
from agentgateway.policy.jwks import MIN_INTERVAL, compile_key_set
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
_REGISTRATION_CORS = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"content-type"),
)
CLIENT_REGISTRATION = b"/client-registration"
_MAX_REGISTRATION_BYTES = 64 * 1024
# Providers whose metadata is OpenID discovery at <issuer>/.well-known/openid-configuration.
_OIDC_DISCOVERY = frozenset(("keycloak", "okta", "descope", "authentik"))
_PROVIDERS = ("auth0", "keycloak", "okta", "descope", "authentik", "entra")
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
        "_as_inflight",
        "_as_attempt",
        "provider",
        "audience",
        "client_id",
        "_registration",
    )

    def __init__(self, cfg: McpAuthentication, base_dir: Path | None, where: str) -> None:
        if not cfg.audiences:
            raise ConfigError(f"{where}.audiences", "needs at least one audience (the URL clients use for this server)")
        self.provider: str | None = None
        if cfg.provider is not None:
            given = [name for name in _PROVIDERS if getattr(cfg.provider, name) is not None]
            if len(given) != 1:
                raise ConfigError(f"{where}.provider", f"exactly one of {', '.join(_PROVIDERS)} must be set")
            self.provider = given[0]
            if self.provider == "entra":
                raise ConfigError(f"{where}.provider.entra", "not supported yet")
        self.audience = cfg.audiences[0]
        self.client_id = cfg.client_id
        issuer_base = cfg.issuer.rstrip("/")
        jwks: JwksSource | str
        if cfg.jwks is not None:
            jwks = cfg.jwks
        elif self.provider is None or self.provider == "auth0":
            jwks = JwksSource(url=issuer_base + "/.well-known/jwks.json")
        elif self.provider == "keycloak":
            jwks = JwksSource(url=issuer_base + "/protocol/openid-connect/certs")
        else:
            raise ConfigError(f"{where}.jwks", f"required with provider {self.provider} (it has no default JWKS URL)")
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
        metadata_url = (
            issuer_base + "/.well-known/openid-configuration"
            if self.provider in _OIDC_DISCOVERY
            else _rfc8414_url(cfg.issuer)
        )
        try:
            self._as_target: tuple[HttpTarget, bytes] | None = outbound.url_target(metadata_url, f"{where}.issuer")
        except ConfigError:
            self._as_target = None  # an issuer that is not a URL has no metadata to pass on
        self._as_cache: tuple[float, bytes] | None = None
        self._as_inflight: asyncio.Task[bytes | None] | None = None
        self._as_attempt = -MIN_INTERVAL  # when the last fetch started (monotonic)
        self._registration: tuple[HttpTarget, bytes] | None = None
        if self.client_id is None and self.provider != "authentik" and self._as_target is not None:
            self._registration = outbound.url_target(
                _registration_url(self.provider, issuer_base, f"{where}.issuer"), f"{where}.issuer"
            )

    # ------------------------------------------------------------------ request path

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        path = ctx.path
        if path.startswith(b"/.well-known/"):
            if _under(path, PROTECTED_RESOURCE):
                return self._protected_resource(ctx)
            if _under(path, AUTHORIZATION_SERVER):
                if path.endswith(CLIENT_REGISTRATION):
                    return self._registration_head(ctx)
                cached = self._as_cache
                if cached is not None and time.monotonic() - cached[0] < _METADATA_TTL:
                    return self._metadata_reply(ctx, cached[1])
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
        if _under(ctx.path, AUTHORIZATION_SERVER):
            if ctx.path.endswith(CLIENT_REGISTRATION):
                return await self._register(ctx)
            return await self._authorization_server(ctx)
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
        url = f"{self._base(ctx)}{PROTECTED_RESOURCE.decode()}{_url_path(ctx.path)}"
        header = bearer_challenge(reason, f'resource_metadata="{url}"')
        return LocalReply.text(401, message, [(b"www-authenticate", header)])

    def _base(self, ctx: RequestCtx) -> str:
        if self.base_url is not None:
            return self.base_url
        return f"{_scheme(ctx)}://{ctx.host.decode('latin-1')}"

    def _vary(self, ctx: RequestCtx) -> tuple[tuple[bytes, bytes], ...]:
        """A document whose URLs a trusted proxy's ``X-Forwarded-Proto`` chose says so: a cache in
        front keyed on the URL alone would give https clients the http document."""
        if self.base_url is None and ctx.header(b"x-forwarded-proto") is not None:
            return ((b"vary", b"x-forwarded-proto"),)
        return ()

    # ------------------------------------------------------------------ metadata

    def _protected_resource(self, ctx: RequestCtx) -> LocalReply:
        """RFC 9728 §3: the metadata of the resource at the path after the well-known prefix."""
        rest = _url_path(ctx.path[len(PROTECTED_RESOURCE) :])
        resource = f"{self._base(ctx)}{rest}"
        document: dict[str, Any] = {
            "resource": resource,
            # With a provider, the gateway serves the (adapted) authorization server metadata.
            "authorization_servers": [resource if self.provider is not None else self.issuer],
        }
        document.update(self.metadata)
        return _json_reply(orjson.dumps(document), self._vary(ctx))

    async def _authorization_server(self, ctx: RequestCtx) -> LocalReply:
        """The issuer's metadata, as the issuer serves it (adapted to the provider)."""
        cached = self._as_cache
        if cached is not None and time.monotonic() - cached[0] < _METADATA_TTL:
            return self._metadata_reply(ctx, cached[1])
        if self._as_target is None:
            return LocalReply.text(404, f"issuer {self.issuer!r} is not a URL: no authorization server metadata")
        task = self._as_inflight
        if task is None and time.monotonic() - self._as_attempt >= MIN_INTERVAL:
            self._as_attempt = time.monotonic()
            # A task of its own: a client that leaves does not cancel the fetch for the others.
            task = self._as_inflight = asyncio.get_running_loop().create_task(self._fetch_metadata())
        body = await asyncio.shield(task) if task is not None else None
        if body is None:
            cached = self._as_cache  # the last good copy, while the issuer fails
            if cached is None:
                return LocalReply.text(502, "authorization server metadata unavailable")
            body = cached[1]
        return self._metadata_reply(ctx, body)

    async def _fetch_metadata(self) -> bytes | None:
        assert self._as_target is not None
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
            return None
        finally:
            self._as_inflight = None
        self._as_cache = (time.monotonic(), body)
        return body

    def _metadata_reply(self, ctx: RequestCtx, body: bytes) -> LocalReply:
        provider = self.provider
        if provider is None:
            return _json_reply(body)
        document = orjson.loads(body)
        registration = f"{self._base(ctx)}{_url_path(ctx.path).rstrip('/')}{CLIENT_REGISTRATION.decode()}"
        if provider in ("auth0", "okta"):
            # No RFC 8707 resource indicators: the audience goes on the authorization request.
            endpoint = document.get("authorization_endpoint")
            if not isinstance(endpoint, str):
                return LocalReply.text(502, "authorization server metadata has no authorization_endpoint")
            sep = "&" if "?" in endpoint else "?"
            document["authorization_endpoint"] = f"{endpoint}{sep}audience={quote(self.audience, safe='')}"
        if provider in ("okta", "descope"):
            if isinstance(document.get("registration_endpoint"), str):
                document["registration_endpoint"] = registration
        elif provider == "keycloak":
            if not isinstance(document.get("registration_endpoint"), str):
                return LocalReply.text(502, "authorization server metadata has no registration_endpoint")
            document["registration_endpoint"] = registration
        elif provider == "authentik":
            document["registration_endpoint"] = registration
        return _json_reply(orjson.dumps(document), self._vary(ctx))

    # ------------------------------------------------------------------ client registration

    def _registration_head(self, ctx: RequestCtx) -> LocalReply | None:
        if ctx.method == b"OPTIONS":
            return LocalReply(204, _REGISTRATION_CORS, b"", "")
        if ctx.method != b"POST":
            return LocalReply.text(405, "client registration takes a POST", [(b"allow", b"POST, OPTIONS")])
        return DEFER

    async def _register(self, ctx: RequestCtx) -> LocalReply:
        """RFC 7591 registration: answered with ``clientId`` when set, else sent to the
        provider's registration endpoint."""
        body = ctx.request_body or b""
        if ctx.request_body is None and ctx.has_body:
            if ctx.read_body is None:
                return LocalReply.text(500, "the registration request body cannot be read here")
            body, complete = await ctx.read_body(_MAX_REGISTRATION_BYTES)
            if not complete or len(body) > _MAX_REGISTRATION_BYTES:
                return LocalReply.text(413, "registration request too large")
        if self.client_id is not None:
            try:
                request = orjson.loads(body) if body else {}
            except orjson.JSONDecodeError:
                request = {}
            document = dict(request) if isinstance(request, dict) else {}
            document["client_id"] = self.client_id
            document.setdefault("redirect_uris", [])
            return LocalReply(201, (_JSON, *_REGISTRATION_CORS), orjson.dumps(document), "")
        if self._registration is None:
            return LocalReply.text(
                400,
                f"{self.provider} has no dynamic client registration: set mcpAuthentication.clientId",
                _REGISTRATION_CORS,
            )
        target, path = self._registration
        content_type = ctx.header(b"content-type") or b"application/json"
        try:
            response = await outbound.client().request(
                target,
                b"POST",
                path,
                [(b"content-type", content_type), (b"accept", b"application/json")],
                body,
                timeout=outbound.CONNECT_TIMEOUT * 2,
            )
            answer = await response.read(_MAX_METADATA_BYTES)
        except HttpClientError as exc:
            log.warning("client registration at %s failed: %s", self.issuer, exc.message)
            return LocalReply.text(502, "client registration failed", _REGISTRATION_CORS)
        kept = [(k, v) for k, v in response.headers if k in (b"content-type", b"location")]
        return LocalReply(response.status, (*kept, *_REGISTRATION_CORS), answer, "")


def _registration_url(provider: str | None, issuer: str, where: str) -> str:
    """Where a provider registers clients (RFC 7591)."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    if provider == "okta":
        return f"{origin}/oauth2/v1/clients"  # relative to the org, not the authorization server
    if provider == "descope":
        segments = parts.path.strip("/").split("/")
        if len(segments) >= 5 and segments[:3] == ["v1", "apps", "agentic"]:
            return f"{origin}/v1/mgmt/mcp/client/{segments[3]}/{segments[4]}/register"
        raise ConfigError(where, "descope registration needs an agentic issuer (/v1/apps/agentic/<project>/<server>)")
    return f"{issuer}/clients-registrations/openid-connect"


def _rfc8414_url(issuer: str) -> str:
    """RFC 8414 §3.1: the well-known segment goes between the issuer's host and its path."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{path}"


def _json_reply(body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> LocalReply:
    return LocalReply(200, (_JSON, *_CORS, *extra), body, "")


def _under(path: bytes, prefix: bytes) -> bool:
    """``path`` is the well-known ``prefix`` or a path below it (``/.well-known/oauth-protected-
    resource@evil.example/mcp`` is neither: its document would name the resource
    ``http://<host>@evil.example/mcp``, a URL of another host)."""
    return path == prefix or path.startswith(prefix + b"/")


def _url_path(path: bytes) -> str:
    """A request path as it may stand in a URL the gateway writes: what RFC 3986 does not allow
    there percent-encoded (the edge passes ``"`` in a path, which would end the quoted
    ``resource_metadata`` of a challenge and let the path add parameters of its own)."""
    return quote(path, safe="/%:@!$&'()*+,;=-._~")


def _scheme(ctx: RequestCtx) -> str:
    """The scheme clients use: a trusted proxy's ``X-Forwarded-Proto`` when it is http or https,
    else the listener's."""
    forwarded = ctx.header(b"x-forwarded-proto")
    if forwarded is not None:
        first = forwarded.split(b",")[0].strip().lower()
        if first in (b"http", b"https"):
            return first.decode()
    return ctx.scheme.decode("latin-1")
