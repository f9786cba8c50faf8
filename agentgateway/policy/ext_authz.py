"""``extAuthz``: an external service decides whether a request may go on (Envoy's ext_authz).

Two protocols, as agentgateway:

* **gRPC** (the default): ``envoy.service.auth.v3.Authorization/Check`` at ``host`` (or a named
  ``backend``). The check carries the request's method, path, host, scheme, headers (all of them,
  pseudo-headers included, unless ``includeRequestHeaders`` names some), the client's address and
  ``protocol.grpc.context`` as ``context_extensions``. An OK answer's header mutations
  (``headers`` with Envoy's append rules, ``headers_to_remove``, query parameters) apply to the
  request before it goes upstream, ``response_headers_to_add`` to the answer; a denial answers
  with the service's status (403 when it gives none), headers and body. The answer's
  ``dynamic_metadata`` becomes the CEL variable ``extauthz``.
* **HTTP**: the request is sent to the service as a check request: same method, the request's path
  (or ``protocol.http.path``, CEL), the ``Authorization`` header only (or
  ``includeRequestHeaders``) plus ``addRequestHeaders`` (CEL). A 2xx answer allows, copying
  ``includeResponseHeaders`` from it into the request; any other answer is relayed to the client
  as it is (status, headers, body), or, for 401/403 with ``redirect`` (CEL), a 302 there.

``protocol.http.metadata`` names CEL expressions evaluated on an allowed answer; their values
become the CEL variable ``extauthz`` for the policies after it. Besides the request's variables
they may read the answer: ``response.code``, ``response.headers["name"]``, ``response.body`` and
``json(response.body)`` followed by fields (``json(response.body).user.name``).

``cache`` reuses decisions: ``key`` is a list of CEL expressions, evaluated per request (a key
whose expression fails, or an empty list, is never cached); ``ttl`` a duration (``5m``) or a CEL
expression giving one, evaluated once the answer is applied (so it may read ``extauthz``);
``maxEntries`` (default 10000) bounds the cache, the oldest entry going first. Allowed answers
(with the header changes they made and the metadata they gave) and denials (the service's own
answer, not a failure) are kept. The identity earlier authentication policies proved is always
part of the key: a decision made for one caller is never replayed for another, whatever the
configured key says.

``includeRequestBody`` sends up to ``maxRequestBytes`` (default 8192) of the body along, waiting
for it (it is kept for the backend); a larger body is refused with 413 unless
``allowPartialMessage``. ``failureMode`` decides when the service cannot answer (down, timeout,
a broken answer): ``deny`` (default, 403), ``allow``, or ``{denyWithStatus: N}``.

gRPC channels and the HTTP client are made on first use in the worker and shared by every policy
that names the same service, across config reloads.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import ExtAuthz as ExtAuthzConfig
from agentgateway.core.reply import LocalReply
from agentgateway.core.request import query_without
from agentgateway.observe.counters import COUNTERS
from agentgateway.observe.tracing import end_call, start_call
from agentgateway.policy.cel import CelEvaluationError, CelExpression
from agentgateway.policy.expression import ValueExpression, compile_value
from agentgateway.policy.header_modifier import service_header

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.upstream.client import HttpClient
    from agentgateway.upstream.target import HttpTarget

log = logging.getLogger("agentgateway.policy")

_DEFAULT_TIMEOUT = 2.0
_MAX_DENIAL_BODY = 1024 * 1024
_PSEUDO = (":method", ":path", ":authority", ":scheme")
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Headers of an answer the gateway writes itself, or that describe only one hop.
_NOT_RELAYED = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te", b"trailer", b"upgrade")
)
# Whether the body a check carries was cut at maxRequestBytes (Envoy's header for it): set by the
# gateway when it sends a body, never taken from the client.
_PARTIAL_BODY = "x-envoy-auth-partial-body"
_PARTIAL_BODY_B = _PARTIAL_BODY.encode()
# Request headers an authorizer may not touch: the gateway's framing of the request.
_PROTECTED = frozenset((b"content-length", b"transfer-encoding", b"connection", b"expect"))


class AuthzUnavailable(Exception):
    """The service gave no decision (down, timeout, an answer that makes no sense)."""


class _InvalidHeader(Exception):
    """A header of a gRPC answer that cannot be written on the wire (its name, for the log)."""


class Decision:
    """What one check decided, as changes to the request: replayed from the cache as they were
    first applied. ``reply`` set: denied with that answer."""

    __slots__ = ("reply", "remove", "set", "response_headers", "query_set", "query_remove", "metadata")

    def __init__(self, reply: LocalReply | None = None) -> None:
        self.reply = reply
        self.remove: list[bytes] = []
        self.set: list[tuple[bytes, bytes, str]] = []
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.query_set: list[tuple[str, str]] = []
        self.query_remove: list[str] = []
        self.metadata: dict[str, Any] | None = None

    def apply(self, ctx: RequestCtx) -> LocalReply | None:
        if self.metadata is not None:
            ctx.learn("extauthz", self.metadata)
        if self.reply is not None:
            return self.reply
        # A header the service sets or removes is its own: the client's underscore spelling of
        # it goes too (CGI-style upstreams, WSGI, PHP, Rack, read ``x_user`` as ``x-user``).
        for name in self.remove:
            if name != b"host" and not name.startswith(b":") and name not in _PROTECTED:
                names = (name, name.replace(b"-", b"_"))
                ctx.headers[:] = [(k, v) for k, v in ctx.headers if k not in names]
        for name, value, action in self.set:
            if b"-" in name and name not in _PROTECTED and not name.startswith(b":"):
                underscored = name.replace(b"-", b"_")
                ctx.headers[:] = [(k, v) for k, v in ctx.headers if k != underscored]
            set_request_header(ctx, name, value, action)
        for name, value in self.response_headers:
            ctx.add_response_header(name, value)
        if self.query_set or self.query_remove:
            _set_query(ctx, self.query_set, self.query_remove)
        return None


class _Entry:
    __slots__ = ("decision", "expires")

    def __init__(self, decision: Decision, expires: float) -> None:
        self.decision = decision
        self.expires = expires


class DecisionCache:
    """``extAuthz.cache``: decisions by key, each until its ttl, at most ``max_entries``."""

    __slots__ = ("keys", "ttl", "ttl_expression", "max_entries", "entries")

    def __init__(self, keys: list[str], ttl: str, max_entries: int, where: str) -> None:
        self.keys = tuple(CelExpression(k, f"{where}.key[{i}]") for i, k in enumerate(keys))
        if max_entries < 0:
            raise ConfigError(f"{where}.maxEntries", "must not be negative")
        self.max_entries = max_entries
        self.ttl: float | None = None
        self.ttl_expression: CelExpression | None = None
        try:
            self.ttl = parse_duration(ttl)
        except ValueError:
            self.ttl_expression = CelExpression(ttl, f"{where}.ttl")
        self.entries: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()

    def key(self, ctx: RequestCtx) -> tuple[object, ...] | None:
        """The cache key of ``ctx``, or None (not cacheable)."""
        if not self.keys or self.max_entries == 0:
            return None
        values: list[object] = [ctx.identity]
        for expression in self.keys:
            try:
                value = expression.evaluate(ctx, ctx.cel_vars)
            except CelEvaluationError:
                return None
            if value is not None and not isinstance(value, str | bytes | int | float | bool):
                return None  # lists and maps are no keys (agentgateway takes scalars only)
            values.append((type(value).__name__, value))
        return tuple(values)

    def get(self, key: tuple[object, ...]) -> Decision | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            del self.entries[key]
            return None
        return entry.decision

    def put(self, key: tuple[object, ...], ctx: RequestCtx, decision: Decision) -> None:
        ttl = self.ttl
        if ttl is None:
            assert self.ttl_expression is not None
            try:
                value = self.ttl_expression.evaluate(ctx, ctx.cel_vars)
                ttl = parse_duration(value) if isinstance(value, str) else None
            except (CelEvaluationError, ValueError):
                ttl = None
        if ttl is None or ttl <= 0:
            return
        entries = self.entries
        entries.pop(key, None)
        while len(entries) >= self.max_entries:
            entries.popitem(last=False)
        entries[key] = _Entry(decision, time.monotonic() + ttl)


def _header_name(text: str, where: str) -> str:
    name = text.lower()
    if name in _PSEUDO:
        return name
    if not name or any(c not in _TOKEN for c in name):
        raise ConfigError(where, f"{text!r} is not a header name")
    return name


def _pseudo_value(ctx: RequestCtx, name: str) -> bytes:
    if name == ":method":
        return ctx.method
    if name == ":path":
        return ctx.target
    if name == ":authority":
        return ctx.host
    return ctx.scheme


def _joined(ctx: RequestCtx, name: bytes) -> bytes | None:
    """All values of a request header as one (``; `` for cookies, ``, `` otherwise, as Envoy)."""
    values = [v for k, v in ctx.headers if k == name]
    if not values:
        return None
    return (b"; " if name == b"cookie" else b", ").join(values)


def set_request_header(ctx: RequestCtx, name: bytes, value: bytes, action: str) -> None:
    """Apply one header mutation to the request: ``append``, ``add`` (if absent), ``overwrite``
    (replace or add) or ``overwrite_existing`` (replace only)."""
    if name in _PROTECTED or name.startswith(b":"):
        return
    if name == b"host":
        if action != "append" and (action != "add" or not ctx.host):
            ctx.host = value
            ctx.keep_host = True  # sent as set, whatever the backend
        return
    present = any(k == name for k, _ in ctx.headers)
    if action == "append" or (action == "add" and not present):
        ctx.headers.append((name, value))
    elif action in ("overwrite", "overwrite_existing") and present:
        ctx.headers[:] = [(k, v) for k, v in ctx.headers if k != name]
        ctx.headers.append((name, value))
    elif action == "overwrite":
        ctx.headers.append((name, value))


def _set_query(ctx: RequestCtx, to_set: list[tuple[str, str]], to_remove: list[str]) -> None:
    """The service's query changes. A parameter it sets or removes goes in every occurrence the
    upstream might read: also after a ';' (Go before 1.17, Rack 2 and Python before 3.9.2 split
    there too) and in any escaped spelling of its name; the others are kept byte for byte, each
    with the separator that came before it."""
    drop = set(to_remove) | {k for k, _ in to_set}
    kept = [query_without(ctx.query, drop)] if ctx.query else []
    kept += [f"{quote(k, safe='')}={quote(v, safe='')}".encode("latin-1") for k, v in to_set]
    query = b"&".join(part for part in kept if part)
    ctx.query = query
    ctx.target = ctx.path + (b"?" + query if query else b"")


class ExtAuthz:
    kind = "extAuthz"
    is_async = True
    __slots__ = (
        "client",
        "fail_open",
        "fail_status",
        "include",
        "body_limit",
        "partial",
        "pack_bytes",
        "timeout",
        "labels",
        "cache",
    )

    def __init__(
        self,
        cfg: ExtAuthzConfig,
        where: str,
        target: HttpTarget,
        grpc_tls: tuple[bytes | None, bytes | None, bytes | None] | None,
        labels: tuple[str, str, str],
    ) -> None:
        mode = cfg.failure_mode
        self.fail_open = mode == "allow"
        self.fail_status = 403 if isinstance(mode, str) else mode.deny_with_status
        if not 200 <= self.fail_status <= 599:
            raise ConfigError(f"{where}.failureMode.denyWithStatus", "must be an HTTP status (200-599)")
        self.include = tuple(
            _header_name(h, f"{where}.includeRequestHeaders[{i}]") for i, h in enumerate(cfg.include_request_headers)
        )
        body = cfg.include_request_body
        self.body_limit = -1
        self.partial = self.pack_bytes = False
        if body is not None:
            if body.max_request_bytes < 0:
                raise ConfigError(f"{where}.includeRequestBody.maxRequestBytes", "must not be negative")
            self.body_limit = body.max_request_bytes
            self.partial = body.allow_partial_message
            self.pack_bytes = body.pack_as_bytes
        self.timeout = _DEFAULT_TIMEOUT
        if cfg.timeout is not None:
            try:
                self.timeout = parse_duration(cfg.timeout)
            except ValueError as exc:
                raise ConfigError(f"{where}.timeout", str(exc)) from None
        protocol = cfg.protocol
        if protocol is not None and (protocol.grpc is None) == (protocol.http is None):
            raise ConfigError(f"{where}.protocol", "exactly one of grpc or http must be set")
        self.client: _GrpcCheck | _HttpCheck
        if protocol is not None and protocol.http is not None:
            self.client = _HttpCheck(self, protocol.http, f"{where}.protocol.http", target)
        else:
            context = dict(protocol.grpc.context) if protocol is not None and protocol.grpc is not None else {}
            self.client = _GrpcCheck(self, target, grpc_tls, context)
        self.labels = labels
        self.cache = (
            DecisionCache(cfg.cache.key, cfg.cache.ttl, cfg.cache.max_entries, f"{where}.cache")
            if cfg.cache is not None
            else None
        )

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None:
        cache = self.cache
        key = cache.key(ctx) if cache is not None else None
        if key is not None:
            assert cache is not None
            cached = cache.get(key)
            if cached is not None:
                reply = cached.apply(ctx)
                self._count("allowed" if reply is None else "denied")
                return reply
        body: bytes | None = None
        partial = False
        if self.body_limit >= 0:
            if ctx.request_body is not None or ctx.read_body is None:
                data, complete = ctx.request_body or b"", True
            else:
                data, complete = await ctx.read_body(self.body_limit)
            if len(data) > self.body_limit:
                complete = False
            if not complete and not self.partial:
                self._count("denied")
                return LocalReply.text(413, "request body larger than extAuthz includeRequestBody.maxRequestBytes")
            body = data[: self.body_limit]
            partial = not complete
        span = start_call(ctx, "ext_authz check", {"agw.policy": "extAuthz"})
        try:
            decision = await self.client.check(ctx, body, partial)
        except AuthzUnavailable as exc:
            if span is not None:
                end_call(span, 0, str(exc))
            log.warning("extAuthz check failed for route %s: %s", ctx.route, exc)
            if self.fail_open:
                self._count("failed_open")
                return None
            self._count("failed_closed")
            if self.fail_status == 403:
                return LocalReply.text(403, "external authorization failed")
            return LocalReply.text(self.fail_status, "Authorization service unavailable")
        reply = decision.apply(ctx)
        self._count("allowed" if reply is None else "denied")
        if span is not None:
            span.attributes["agw.ext_authz.result"] = "allowed" if reply is None else "denied"
            end_call(span, 0)
        if key is not None and (reply is None or reply.status < 500):
            assert cache is not None
            cache.put(key, ctx, decision)
        return reply

    def check_headers(self, ctx: RequestCtx, default_all: bool) -> list[tuple[str, bytes]]:
        """The request headers the service sees (names lower-case). Never the client's
        ``x-envoy-auth-partial-body``: that one is the gateway's word on the body it sends."""
        out: list[tuple[str, bytes]] = []
        if self.include:
            for name in self.include:
                if name.startswith(":"):
                    out.append((name, _pseudo_value(ctx, name)))
                elif name == _PARTIAL_BODY:
                    continue
                else:
                    value = _joined(ctx, name.encode())
                    if value is not None:
                        out.append((name, value))
            return out
        if not default_all:
            value = _joined(ctx, b"authorization")
            return [("authorization", value)] if value is not None else []
        for name in _PSEUDO:
            out.append((name, _pseudo_value(ctx, name)))
        seen: set[bytes] = {_PARTIAL_BODY_B}
        for name_b, _ in ctx.headers:
            if name_b not in seen:
                seen.add(name_b)
                value = _joined(ctx, name_b)
                assert value is not None
                out.append((name_b.decode("latin-1"), value))
        return out

    def _count(self, result: str) -> None:
        COUNTERS.inc("agentgateway_ext_authz_decisions", (*self.labels, result))


# ---------------------------------------------------------------- gRPC (envoy.service.auth.v3)

_channels: dict[tuple[object, ...], Any] = {}
_APPEND_ACTIONS = {0: "append", 1: "add", 2: "overwrite", 3: "overwrite_existing"}


def _header_option(option: Any) -> tuple[bytes, bytes, str]:
    """(name, value, action) of an Envoy HeaderValueOption; the deprecated ``append`` decides
    when no ``append_action`` is given (false or unset: overwrite, as ext_authz documents).
    Raises _InvalidHeader for a name that is no token or a value with CR, LF, NUL or another
    control character: an authorizer that copies a caller's claim into a header would otherwise
    let the caller write header lines of its own into the upstream request or the answer."""
    header = option.header
    checked = service_header(header.key, bytes(header.raw_value) or header.value)
    if checked is None:
        raise _InvalidHeader(repr(header.key[:64]))
    name, value = checked
    if option.append_action == 0:
        action = "append" if option.HasField("append") and option.append.value else "overwrite"
    else:
        action = _APPEND_ACTIONS.get(option.append_action, "append")
    return name, value, action


def _struct_to_python(struct: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    result: dict[str, Any] = MessageToDict(struct)
    return result


class _GrpcCheck:
    __slots__ = ("policy", "address", "tls", "context", "server_hostname")

    def __init__(
        self,
        policy: ExtAuthz,
        target: HttpTarget,
        tls: tuple[bytes | None, bytes | None, bytes | None] | None,
        context: dict[str, str],
    ) -> None:
        self.policy = policy
        host = f"[{target.host}]" if ":" in target.host else target.host
        self.address = f"{host}:{target.port}"
        self.tls = tls
        self.server_hostname = target.tls.server_hostname if target.tls is not None else None
        self.context = context

    def _channel(self) -> Any:
        import grpc

        key = (self.address, self.tls, self.server_hostname)
        channel = _channels.get(key)
        if channel is None:
            if self.tls is None:
                channel = grpc.aio.insecure_channel(self.address)
            else:
                root, key_pem, cert = self.tls
                creds = grpc.ssl_channel_credentials(
                    root_certificates=root, private_key=key_pem, certificate_chain=cert
                )
                options = []
                if self.server_hostname:
                    options.append(("grpc.ssl_target_name_override", self.server_hostname))
                channel = grpc.aio.secure_channel(self.address, creds, options=options)
            _channels[key] = channel
        return channel

    def _request(self, ctx: RequestCtx, body: bytes | None, partial: bool) -> Any:
        from envoy.config.core.v3 import address_pb2
        from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
        from google.protobuf.timestamp_pb2 import Timestamp

        attr = attribute_context_pb2.AttributeContext
        headers = {name: value.decode("latin-1") for name, value in self.policy.check_headers(ctx, True)}
        if body is not None:
            headers[_PARTIAL_BODY] = "true" if partial else "false"
        size = ctx.content_length
        if size is None:
            size = len(body) if body is not None and not partial else (0 if not ctx.has_body else -1)
        http = attr.HttpRequest(
            id=(ctx.header(b"x-request-id") or uuid.uuid4().hex.encode()).decode("latin-1"),
            method=ctx.method.decode("latin-1"),
            headers=headers,
            path=ctx.target.decode("latin-1"),
            host=ctx.host.decode("latin-1"),
            scheme=ctx.scheme.decode("latin-1"),
            protocol=f"HTTP/{ctx.version}",
            size=size,
        )
        if body is not None:
            if self.policy.pack_bytes:
                http.raw_body = body
            else:
                http.body = body.decode("utf-8", "replace")
        now = Timestamp()
        now.GetCurrentTime()
        source = attr.Peer(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=ctx.client_ip, port_value=ctx.client_port)
            )
        )
        return external_auth_pb2.CheckRequest(
            attributes=attr(
                source=source,
                request=attr.Request(time=now, http=http),
                context_extensions=self.context,
            )
        )

    async def check(self, ctx: RequestCtx, body: bytes | None, partial: bool) -> Decision:
        import grpc
        from envoy.service.auth.v3 import external_auth_pb2_grpc

        stub = external_auth_pb2_grpc.AuthorizationStub(self._channel())
        try:
            response = await stub.Check(self._request(ctx, body, partial), timeout=self.policy.timeout)
        except grpc.aio.AioRpcError as exc:
            raise AuthzUnavailable(f"{exc.code().name} from {self.address}") from None
        if response.status.code != 0:
            decision = Decision(self._denied(response))
        else:
            decision = Decision()
            if response.HasField("ok_response"):
                try:
                    self._allowed(decision, response.ok_response)
                except _InvalidHeader as exc:
                    raise AuthzUnavailable(f"the answer sets header {exc}, which is not a valid header") from None
        if response.HasField("dynamic_metadata") and response.dynamic_metadata.fields:
            decision.metadata = _struct_to_python(response.dynamic_metadata)
        return decision

    @staticmethod
    def _denied(response: Any) -> LocalReply:
        if not response.HasField("denied_response"):
            return LocalReply.text(403, "denied by external authorization")
        denied = response.denied_response
        status = denied.status.code if denied.HasField("status") and denied.status.code else 403
        if not 200 <= status <= 599:
            status = 403
        headers: list[tuple[bytes, bytes]] = []
        for option in denied.headers:
            try:
                parsed = _header_option(option)
            except _InvalidHeader as exc:
                # Still a denial: answered without that header.
                log.warning("extAuthz denial header %s dropped: not a valid header", exc)
                continue
            if parsed[0] in _NOT_RELAYED:
                continue
            name, value, action = parsed
            present = any(k == name for k, _ in headers)
            if action in ("overwrite", "overwrite_existing") and present:
                headers = [(k, v) for k, v in headers if k != name]
                headers.append((name, value))
            elif action == "append" or action == "overwrite" or (action == "add" and not present):
                headers.append((name, value))
        return LocalReply(status, headers, denied.body.encode(), "denied by external authorization")

    @staticmethod
    def _allowed(decision: Decision, ok: Any) -> None:
        decision.remove = [name.lower().encode() for name in ok.headers_to_remove]
        for option in ok.headers:
            decision.set.append(_header_option(option))
        for option in ok.response_headers_to_add:
            parsed = _header_option(option)
            if parsed[0] not in _NOT_RELAYED:
                decision.response_headers.append((parsed[0], parsed[1]))
        decision.query_set = [(q.key, q.value) for q in ok.query_parameters_to_set]
        decision.query_remove = list(ok.query_parameters_to_remove)


# ---------------------------------------------------------------- HTTP

_http_client: HttpClient | None = None


def _client() -> HttpClient:
    """The HTTP client of this worker's checks, with its own pool (made on first use)."""
    global _http_client
    if _http_client is None:
        from agentgateway.upstream.client import HttpClient
        from agentgateway.upstream.pool import UpstreamPool

        _http_client = HttpClient(UpstreamPool(asyncio.get_running_loop(), 60.0, 64))
    return _http_client


class _HttpCheck:
    __slots__ = ("policy", "target", "path", "redirect", "body", "add_headers", "copy_headers", "metadata")

    def __init__(self, policy: ExtAuthz, cfg: Any, where: str, target: HttpTarget) -> None:
        self.policy = policy
        self.target = target
        self.path: ValueExpression | None = compile_value(cfg.path, f"{where}.path") if cfg.path else None
        self.redirect = compile_value(cfg.redirect, f"{where}.redirect") if cfg.redirect else None
        self.body = compile_value(cfg.body, f"{where}.body") if cfg.body else None
        self.add_headers = tuple(
            (
                _header_name(k, f"{where}.addRequestHeaders.{k}").encode(),
                compile_value(v, f"{where}.addRequestHeaders.{k}"),
            )
            for k, v in cfg.add_request_headers.items()
        )
        self.copy_headers = tuple(
            _header_name(h, f"{where}.includeResponseHeaders[{i}]").encode()
            for i, h in enumerate(cfg.include_response_headers)
        )
        self.metadata = tuple(
            (name, compile_answer_value(text, f"{where}.metadata.{name}")) for name, text in cfg.metadata.items()
        )

    async def check(self, ctx: RequestCtx, body: bytes | None, partial: bool) -> Decision:
        from agentgateway.upstream.client import HttpClientError

        policy = self.policy
        path = ctx.target
        if self.path is not None:
            value = self.path.evaluate_target(ctx)
            if not value or not value.startswith(b"/"):
                raise AuthzUnavailable(f"path expression gave {value!r}, not a path")
            path = value
        headers: list[tuple[bytes, bytes]] = []
        for text, value in policy.check_headers(ctx, False):
            if not text.startswith(":") and text not in ("host", "content-length", "transfer-encoding", "connection"):
                headers.append((text.encode(), value))
        send_body: bytes | None = None
        if self.body is not None:
            send_body = self.body.evaluate(ctx)
            if send_body is None:
                raise AuthzUnavailable("body expression gave no value")
        elif body is not None:
            send_body = body
            headers.append((_PARTIAL_BODY_B, b"true" if partial else b"false"))
        for added, expr in self.add_headers:
            # The gateway's names carry only the gateway's values: the client's header of that
            # name goes even when the expression has none (an anonymous caller's x-user).
            headers = [(k, v) for k, v in headers if k != added]
            extra = expr.evaluate_header(ctx)
            if extra is not None:
                headers.append((added, extra))
        try:
            response = await _client().request(
                self.target, ctx.method, path, headers, send_body, timeout=policy.timeout
            )
            answer = await asyncio.wait_for(response.read(_MAX_DENIAL_BODY), policy.timeout)
        except (HttpClientError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, HttpClientError) else "timed out"
            raise AuthzUnavailable(reason) from None
        status = response.status
        if 200 <= status < 300:
            decision = Decision()
            for copied in self.copy_headers:
                found = response.header(copied)
                if found is not None:
                    decision.set.append((copied, found, "overwrite"))
            if self.metadata:
                answer_vars = _Answer(status, response.headers, answer)
                values: dict[str, Any] = {}
                for name, expression in self.metadata:
                    got = expression.evaluate(ctx, answer_vars)
                    if got is not _MISSING:
                        values[name] = got
                decision.metadata = values
            return decision
        if status in (401, 403) and self.redirect is not None:
            location = self.redirect.evaluate_header(ctx)
            if not location:
                raise AuthzUnavailable("redirect expression gave no value")
            return Decision(
                LocalReply(302, ((b"location", location),), b"", "denied by external authorization (redirect)")
            )
        kept = [(k, v) for k, v in response.headers if k not in _NOT_RELAYED]
        return Decision(LocalReply(status, kept, answer, "denied by external authorization"))


# ---------------------------------------------------------------- metadata expressions

_MISSING = object()
_RESPONSE_HEADER = re.compile(r"""^response\.headers\[\s*(?:"([^"]+)"|'([^']+)')\s*\]$""")
_JSON_BODY = re.compile(
    r"^json\(\s*response\.body\s*\)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(?:\"[^\"]*\"|'[^']*'|\d+)\s*\])*)$"
)
_PATH_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:"([^"]*)"|'([^']*)'|(\d+))\s*\]""")


class _Answer:
    """The authorization service's answer, as the metadata expressions read it."""

    __slots__ = ("status", "headers", "body", "_json")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self._json: object = _MISSING

    def json(self) -> object:
        if self._json is _MISSING:
            try:
                self._json = orjson.loads(self.body)
            except orjson.JSONDecodeError:
                self._json = None
        return self._json


class AnswerValue:
    """A metadata expression: a read of the answer (done here: the CEL engine has no ``response``
    variable), or a CEL expression over the request's variables."""

    __slots__ = ("kind", "name", "path", "expression")

    def __init__(
        self,
        kind: str,
        name: bytes = b"",
        path: tuple[str | int, ...] = (),
        expression: CelExpression | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.path = path
        self.expression = expression

    def evaluate(self, ctx: RequestCtx, answer: _Answer) -> object:
        kind = self.kind
        if kind == "code":
            return answer.status
        if kind == "header":
            for k, v in answer.headers:
                if k == self.name:
                    return v.decode("latin-1")
            return _MISSING
        if kind == "body":
            return answer.body.decode("utf-8", "replace")
        if kind == "json":
            value = answer.json()
            for step in self.path:
                if isinstance(step, int):
                    if not isinstance(value, list) or not 0 <= step < len(value):
                        return _MISSING
                    value = value[step]
                else:
                    if not isinstance(value, dict) or step not in value:
                        return _MISSING
                    value = value[step]
            return value
        assert self.expression is not None
        try:
            return self.expression.evaluate(ctx, ctx.cel_vars)
        except CelEvaluationError:
            return _MISSING


def compile_answer_value(text: str, where: str) -> AnswerValue:
    stripped = text.strip()
    if stripped == "response.code":
        return AnswerValue("code")
    if stripped == "response.body":
        return AnswerValue("body")
    m = _RESPONSE_HEADER.match(stripped)
    if m:
        return AnswerValue("header", name=(m.group(1) or m.group(2)).lower().encode("latin-1"))
    m = _JSON_BODY.match(stripped)
    if m:
        path: list[str | int] = []
        for step in _PATH_STEP.finditer(m.group(1)):
            field, dq, sq, index = step.groups()
            if field is not None:
                path.append(field)
            elif index is not None:
                path.append(int(index))
            else:
                path.append(dq if dq is not None else sq)
        return AnswerValue("json", path=tuple(path))
    expression = CelExpression(text, where)
    # ``response`` is a CEL variable of log and trace fields (the finished request's); here the
    # answer is read only in the forms above.
    if "response" in expression.variables:
        raise ConfigError(
            where,
            'the answer is read only as response.code, response.headers["name"], response.body or '
            "json(response.body).field... (and not inside other expressions)",
        )
    return AnswerValue("cel", expression=expression)
