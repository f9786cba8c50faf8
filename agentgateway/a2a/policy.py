"""``a2a``: the route serves an A2A agent.

Request phase (after authentication, before ``authorization``; it reads the body, so the chain
waits for it, bounded by ``maxBufferSize``):

- ``GET …/.well-known/agent-card.json`` or ``…/agent.json``: an agent card fetch. The upstream
  request asks for an uncompressed, unconditional answer (the gateway rewrites the card and
  validates it against its own ETag), and must be complete, head and body, within the route's
  timeouts (the shorter of ``requestTimeout`` and ``backendRequestTimeout``; 10 s when it has
  none): a stalled agent is answered 504;
- the extended card (``GET …/extendedAgentCard``, 0.3 ``GET …/v1/card``, 0.2
  ``GET …/agent/authenticatedExtendedCard``, JSON-RPC ``GetExtendedAgentCard`` and
  ``agent/getAuthenticatedExtendedCard``): fetched the same way, its answer rewritten the same
  way. Card paths are recognized however an agent's router would take them (percent-encoded,
  any case, ``;`` parameters, a trailing slash);
- an HTTP+JSON operation (``POST …/message:send``, ``GET …/tasks/{id}``, 0.3 ``/v1/…``): the method
  from the path, ids from the path and the JSON body;
- any other ``POST``: a JSON-RPC request; the method and ids are read from it. A body that is
  not a JSON-RPC request is answered by the gateway as the agent's JSON-RPC endpoint would
  (``-32700`` / ``-32600``, HTTP 200), and is not forwarded.

The facts go to ``ctx.a2a`` (access log, metrics) and ``ctx.cel_vars["a2a"]`` (CEL of the
policies that run after this one). Response phase: ``process_response`` picks the card rewrite
(both cards), the stream relay with keep-alives, or the JSON observer (``agentgateway.a2a.response``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from agentgateway._native import JsonRpcError, json_duplicate_member, scan_jsonrpc
from agentgateway.a2a.card import CardPaths
from agentgateway.a2a.facts import (
    EXTENDED_CARD_METHODS,
    ID_SPELLINGS,
    JSONRPC,
    REST,
    A2aFacts,
    CardRequest,
    card_base,
    rest_operation,
)
from agentgateway.a2a.response import CardResponse, JsonResponse, StreamResponse
from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import A2aPolicy as A2aConfig
from agentgateway.core.jsonkeys import ambiguous_key, folded_names
from agentgateway.core.reply import LocalReply
from agentgateway.policy.timeout import TimeoutPolicy

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.exchange import ResponseProcessor, ResponseWriter

Headers = list[tuple[bytes, bytes]]

DEFAULT_KEEPALIVE = 15.0
# How long a card fetch may take (head and whole body) when the route sets no timeout: a card is
# a small document, and a client waiting on a stalled agent holds a connection.
DEFAULT_CARD_TIMEOUT = 10.0
_JSON = (b"content-type", b"application/json")
# Card fetches go upstream without these: the gateway needs the whole card, uncompressed.
_CARD_REQUEST_DROPPED = frozenset((b"accept-encoding", b"if-none-match", b"if-modified-since", b"range", b"if-range"))


def _jsonrpc_error(request_id: bytes | None, code: int, message: str) -> LocalReply:
    body = b'{"jsonrpc":"2.0","id":%s,"error":%s}' % (
        request_id or b"null",
        orjson.dumps({"code": code, "message": message}),
    )
    return LocalReply(200, (_JSON,), body, f"a2a: {message}")


def _rest_error(message: str) -> LocalReply:
    body = orjson.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": message}})
    return LocalReply(400, (_JSON,), body, f"a2a: {message}")


# The params names the facts (CEL ``a2a.*``) are read from, in params and in params.message: the
# JSON names and the proto field names of the ids (``ID_SPELLINGS``).
_PARAMS_NAMES = folded_names(("message", "id", *ID_SPELLINGS, *ID_SPELLINGS.values()))


def _two_spellings(obj: dict[str, Any]) -> str | None:
    """The proto name of an id that ``obj`` also names by its JSON name (``taskId`` and
    ``task_id``): agents differ on which one counts (ProtoJSON parsers the last, the 0.3 SDK the
    JSON name)."""
    for name, proto in ID_SPELLINGS.items():
        if name in obj and proto in obj:
            return proto
    return None


def _ambiguous_param(params: object) -> str | None:
    """A name in params (or params.message) that an agent matching names case-insensitively (Go's
    encoding/json) would read as one the facts were read from, or an id named twice (by its JSON
    and its proto name): the body goes to the agent as it came."""
    if not isinstance(params, dict):
        return None
    found = ambiguous_key(params, _PARAMS_NAMES) or _two_spellings(params)
    message = params.get("message")
    if found is None and isinstance(message, dict):
        found = ambiguous_key(message, _PARAMS_NAMES) or _two_spellings(message)
    return found


def _params_problem(params: object, raw: bytes) -> str | None:
    """Why the params cannot be forwarded as they came, or None: a name another spelling of one
    the facts were read from, or a name some object repeats (agents differ on which value counts:
    most the last, as the facts were read; some the first). Params the search cannot see to
    the end (nested past its depth limit) are refused too, or depth would hide a repeat."""
    name = _ambiguous_param(params)
    if name is None:
        try:
            name = json_duplicate_member(raw, nested=True)
        except ValueError as exc:
            return f"Invalid params: {exc}"
    if name is None:
        return None
    return f"Invalid params: member {name[:64]!r} is repeated or another spelling of one the gateway reads"


def _version(ctx: RequestCtx) -> str:
    """``A2A-Version`` (header, else query parameter); absent or empty means 0.3."""
    value = ctx.header(b"a2a-version")
    if value is None and ctx.query and b"A2A-Version" in ctx.query:
        found = parse_qs(ctx.query.decode("latin-1")).get("A2A-Version")
        if found:
            return found[0].strip() or "0.3"
    if value:
        return value.decode("latin-1").strip() or "0.3"
    return "0.3"


class A2aPolicy:
    kind = "a2a"
    needs_body = True
    __slots__ = ("keepalive", "prefix", "card_timeout")

    def __init__(
        self, cfg: A2aConfig, where: str, rewrite_prefix: str | None, timeout: TimeoutPolicy | None = None
    ) -> None:
        self.keepalive = DEFAULT_KEEPALIVE
        if cfg.keep_alive_interval is not None:
            try:
                self.keepalive = parse_duration(cfg.keep_alive_interval)
            except ValueError as exc:
                raise ConfigError(f"{where}.keepAliveInterval", str(exc)) from None
        # The route's urlRewrite prefix replacement: card URLs under it map back to the prefix
        # the route matched.
        self.prefix = rewrite_prefix
        # A card fetch is bounded whole (the card is held until its last byte): the route's
        # timeouts, the shorter one when both are set, else the default.
        limits = [t for t in (timeout.request, timeout.backend) if t is not None] if timeout else []
        self.card_timeout = min(limits) if limits else DEFAULT_CARD_TIMEOUT

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        method = ctx.method
        path = ctx.path
        if method == b"GET":
            base = card_base(path, "")
            if base is not None:
                facts = A2aFacts("", _version(ctx))
                facts.card = self._card_request(ctx, base)
                self._learned(ctx, facts)
                return None
            base = card_base(path, REST)
            if base is not None:
                facts = A2aFacts(REST, _version(ctx))
                facts.method = "GetExtendedAgentCard"
                facts.extended_card = self._card_request(ctx, base)
                self._learned(ctx, facts)
                return None
        rest = rest_operation(method, path)
        if rest is not None:
            facts = A2aFacts(REST, _version(ctx))
            facts.method, facts.task_id = rest
            body = ctx.request_body
            if body:
                try:
                    params = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    self._learned(ctx, facts)
                    return _rest_error(f"request body is not JSON: {exc}")
                problem = _params_problem(params, body)
                if problem is not None:
                    self._learned(ctx, facts)
                    return _rest_error(problem)
                other = facts.observe_params(params, facts.task_id)
                if other is not None:
                    self._learned(ctx, facts)
                    return _rest_error(f"the body names task {other[:64]!r}, the path {facts.task_id[:64]!r}")
            self._learned(ctx, facts)
            return None
        if method != b"POST":
            return None  # not an A2A operation (a health check, a static page)
        facts = A2aFacts(JSONRPC, _version(ctx))
        try:
            envelope = scan_jsonrpc(ctx.request_body or b"")
        except JsonRpcError as exc:
            facts.error_code = str(exc.code)
            self._learned(ctx, facts)
            return _jsonrpc_error(exc.id, exc.code, exc.message)
        if envelope.kind == "batch":
            facts.error_code = "-32600"
            self._learned(ctx, facts)
            return _jsonrpc_error(None, -32600, "batch requests are not supported by A2A")
        if envelope.kind not in ("request", "notification"):
            facts.error_code = "-32600"
            self._learned(ctx, facts)
            return _jsonrpc_error(envelope.id, -32600, f"expected a JSON-RPC request, got a {envelope.kind}")
        facts.method = envelope.method or ""
        if envelope.params is not None:
            params = orjson.loads(envelope.params)
            problem = _params_problem(params, envelope.params)
            if problem is not None:
                facts.error_code = "-32602"
                self._learned(ctx, facts)
                return _jsonrpc_error(envelope.id, -32602, problem)
            facts.observe_params(params)
        if facts.method.lower() in EXTENDED_CARD_METHODS:
            base = card_base(path, JSONRPC)
            assert base is not None
            facts.extended_card = self._card_request(ctx, base, envelope.id)
        self._learned(ctx, facts)
        return None

    def _card_request(self, ctx: RequestCtx, base: str, request_id: bytes | None = None) -> CardRequest:
        """A card is asked for: the upstream request asks for an uncompressed, unconditional
        answer (the gateway reads and rewrites it, and validates the card against its own ETag),
        bounded whole by the card timeout."""
        scheme = ctx.scheme
        forwarded = ctx.header(b"x-forwarded-proto")
        if forwarded in (b"http", b"https"):
            scheme = forwarded
        card = CardRequest(
            base,
            scheme.decode("latin-1"),
            ctx.host.decode("latin-1"),
            ctx.header(b"if-none-match"),
            request_id,
            forwarded is not None,
        )
        headers = [h for h in ctx.headers if h[0] not in _CARD_REQUEST_DROPPED]
        headers.append((b"accept-encoding", b"identity"))
        ctx.headers = headers
        ctx.fetch_timeout = self.card_timeout
        return card

    @staticmethod
    def _learned(ctx: RequestCtx, facts: A2aFacts) -> None:
        ctx.a2a = facts
        cel = ctx.cel_vars
        if cel is None:
            ctx.cel_vars = {"a2a": facts.cel()}
        else:
            cel["a2a"] = facts.cel()

    def process_response(
        self, ctx: RequestCtx, conn: ResponseWriter, status: int, headers: Headers
    ) -> ResponseProcessor | None:
        facts = ctx.a2a
        if not isinstance(facts, A2aFacts):
            return None
        limit = conn.max_buffer_size
        card = facts.card or facts.extended_card
        if card is not None:
            jsonrpc = facts.binding == JSONRPC
            # A card is any successful answer (a 203 is followed as a 200 is); a JSON-RPC card
            # is a ``result``, whatever the status, so every JSON-RPC answer is read.
            if jsonrpc or 200 <= status < 300:
                backend_base = card_base(ctx.path, facts.binding)  # after this route's urlRewrite
                matched = ctx.match_prefix
                prefix = (matched.decode("latin-1"), self.prefix) if self.prefix is not None and matched else None
                paths = CardPaths(card.scheme, card.authority, card.client_base, backend_base, prefix)
                return CardResponse(conn, ctx, status, headers, paths, card, limit, facts)
            if facts.card is not None:
                return None
        content_type = b""
        for name, value in headers:
            if name == b"content-type":
                content_type = value.lower()
                break
        if content_type.startswith(b"text/event-stream"):
            return StreamResponse(conn, facts, status, headers, self.keepalive)
        if b"json" in content_type:
            return JsonResponse(conn, facts, status, headers, limit)
        return None
