"""Federation: many upstream MCP servers presented as one (agentgateway's semantics).

- ``initialize`` reaches every target with the client's parameters; the answers are merged (lowest
  protocol version, union of capabilities, instructions of all targets).
- ``tools/list``, ``prompts/list``, ``resources/list``, ``resources/templates/list`` fan out
  concurrently; names become ``<target>_<name>`` and resource URIs ``<target>+<uri>`` when prefixing
  applies; each target's paging continues through one composite cursor.
- ``tools/call``, ``prompts/get``, ``resources/read``, ``completion/complete`` and subscriptions go
  to the target that owns the name, with the target's own name.
- What servers send (progress, logging, list changes, their requests) reaches the client with
  request ids rewritten so the client's answers find their way back.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from agentgateway import __version__
from agentgateway._native import (
    ListResultError,
    list_item_keys,
    merge_list_results,
    split_prefixed_name,
    split_prefixed_uri,
)
from agentgateway.mcp import protocol
from agentgateway.mcp.authorization import CURRENT_CALLER
from agentgateway.mcp.config import McpService
from agentgateway.mcp.protocol import McpError, Message, RawJson
from agentgateway.mcp.upstream.base import UpstreamSession

if TYPE_CHECKING:
    from agentgateway.mcp.runtime import McpRuntime
    from agentgateway.mcp.session import DownstreamSession

log = logging.getLogger("agentgateway.mcp")

DELIMITER = "_"
# Ids of server requests relayed to the client: agw/<target>/<upstream id as JSON>.
_RELAY_PREFIX = "agw/"
# prefixMode never: the owner noted for a name that more than one target lists.
_AMBIGUOUS = ""
_ITEM_WORD = {"tools": "tool", "prompts": "prompt", "resources": "resource"}
_LIST_CAPABILITY = {"tools/list": "tools", "prompts/list": "prompts", "resources/list": "resources",
                    "resources/templates/list": "resources"}  # fmt: skip
_INSTRUCTIONS_PREAMBLE = (
    "This server is a gateway to a set of MCP servers. The instructions of each server follow, "
    "marked with its name; its tools, prompts and resources carry that name as a prefix."
)

Sink = Callable[[Message], Awaitable[None]]
# A result object: decoded, or (merged lists) already serialized.
Result = dict[str, Any] | RawJson


class Federation:
    def __init__(self, runtime: McpRuntime) -> None:
        self.runtime = runtime

    # ------------------------------------------------------------------ initialize

    async def initialize(self, session: DownstreamSession, params: dict[str, Any]) -> dict[str, Any]:
        service = session.service
        requested = params.get("protocolVersion")
        version = requested if requested in protocol.LEGACY_VERSIONS else protocol.LATEST_LEGACY
        params = self.runtime.interned(params)
        session.client_params = params
        for spec in service.targets:
            session.make_upstream(spec)
        names = list(session.upstreams)
        results = await asyncio.gather(
            *(session.upstreams[name].initialize(params) for name in names), return_exceptions=True
        )
        answered: dict[str, dict[str, Any]] = {}
        for name, outcome in zip(names, results, strict=True):
            if isinstance(outcome, BaseException):
                message = outcome.message if isinstance(outcome, McpError) else repr(outcome)
                log.warning("MCP target %s failed to initialize: %s", name, message)
                if not service.fail_open:
                    await session.close()
                    raise McpError(protocol.INTERNAL_ERROR, f"MCP target {name} failed to initialize: {message}")
                await session.upstreams.pop(name).close()
            else:
                outcome = session.upstreams[name].init_result = self.runtime.interned(outcome)
                answered[name] = outcome
        if not answered:
            await session.close()
            raise McpError(protocol.INTERNAL_ERROR, "no MCP target could be initialized")
        versions = [v for r in answered.values() if isinstance(v := r.get("protocolVersion"), str)]
        session.protocol_version = min([version, *versions])
        return {
            "protocolVersion": session.protocol_version,
            "capabilities": merge_capabilities(answered.values()),
            "serverInfo": {"name": "agentgateway", "version": __version__},
            **({"instructions": text} if (text := merge_instructions(answered)) else {}),
        }

    # ------------------------------------------------------------------ requests

    async def request(self, session: DownstreamSession, msg: Message, related: Sink) -> Result:
        """Serve one client request; returns the result object (raises McpError)."""
        method = msg.get("method")
        params = msg.get("params")
        if not isinstance(params, dict):
            params = {}
        if method in protocol.NAME_PARAM or method in ("resources/subscribe", "resources/unsubscribe"):
            return await self.routed(session, msg, method, params, related)  # (first: the common case)
        if method == "ping":
            return {}
        if method in protocol.LIST_METHODS:
            return await self.fan_out_list(session, method, params)
        if method == "completion/complete":
            return await self.routed(session, msg, method, params, related)
        if method == "logging/setLevel":
            await self._broadcast_call(session, "logging/setLevel", params, capability="logging")
            return {}
        if method == "initialize":
            raise McpError(protocol.INVALID_REQUEST, "the session is already initialized")
        raise McpError(protocol.METHOD_NOT_FOUND, f"Method not found: {protocol.shown(method)}")

    async def fan_out_list(self, session: DownstreamSession, method: str, params: dict[str, Any]) -> RawJson:
        """Every target's list, merged natively (names prefixed, duplicates dropped in prefixMode
        never), as the result object's JSON (passed on without being parsed again)."""
        service = session.service
        key = protocol.LIST_METHODS[method]
        capability = _LIST_CAPABILITY[method]
        cursor = params.get("cursor")
        if cursor is not None:
            cursors = decode_cursor(cursor, service)
        else:
            cursors = {name: None for name, up in session.upstreams.items() if _offers(up, capability)}
        names = [n for n in cursors if n in session.upstreams]
        upstream_params = {k: v for k, v in params.items() if k != "cursor"}

        async def one(name: str) -> bytes:
            p = dict(upstream_params)
            if cursors[name] is not None:
                p["cursor"] = cursors[name]
            return await session.upstreams[name].call_raw(method, p, None, timeout=60.0)

        outcomes = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        results: list[tuple[str, bytes]] = []
        next_cursors: dict[str, str] = {}
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self._skip_or_fail(service, name, method, outcome)
                continue
            results.append((name, outcome))
            if b'"nextCursor"' in outcome:  # rare: only then is the result parsed here
                nxt = orjson.loads(outcome).get("nextCursor")
                if isinstance(nxt, str) and nxt:
                    next_cursors[name] = nxt
        composite = encode_cursor(next_cursors) if next_cursors else None
        while True:
            try:
                # What the caller may not see (mcpAuthorization, changed tools) is left out here.
                shown, allowed = results, None
                if service.access is not None:
                    shown, allowed = service.access.screen_list(session, key, method, results)
                merged = merge_list_results(
                    key,
                    shown,
                    prefix=service.prefix,
                    delimiter=DELIMITER,
                    dedupe=service.dedupe,
                    allowed=allowed,
                    next_cursor=composite,
                )
                if key in ("tools", "prompts") and not service.prefix and len(session.upstreams) > 1:
                    # Unprefixed names are routed by what each target listed (the pages before
                    # this one included); a name two targets list is routed to neither.
                    known = dict(session.names.get(key, {})) if cursor is not None else {}
                    for target, name in list_item_keys(key, results):
                        known[name] = target if known.get(name, target) == target else _AMBIGUOUS
                    session.names[key] = known
                return RawJson(merged)
            except ListResultError as exc:
                self._skip_or_fail(service, exc.target, method, exc)
                del results[exc.index]

    def _skip_or_fail(self, service: McpService, target: str, method: str, exc: BaseException) -> None:
        message = exc.message if isinstance(exc, McpError) else str(exc)
        if not service.fail_open:
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {target} failed {method}: {message}")
        log.warning("MCP target %s failed %s (failOpen: skipped): %s", target, method, message)

    async def routed(
        self, session: DownstreamSession, msg: Message, method: str, params: dict[str, Any], related: Sink
    ) -> dict[str, Any]:
        if session.service.access is None:  # (no coroutine for ``route`` in the common case)
            target, upstream_params = self._resolve_call(session, method, params)
        else:
            target, upstream_params = await self.route(session, method, params)
        upstream = session.upstreams.get(target)
        if upstream is None:
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {target} is not available")
        client_id = _inflight_key(session, msg.get("id"))

        async def relay(server_msg: Message) -> None:
            rewritten = self.from_upstream(session, target, server_msg)
            if rewritten is not None:
                await related(rewritten)

        def track(upstream_id: int) -> None:
            # Lets a notifications/cancelled from the client reach the right upstream request.
            session.inflight[client_id] = (upstream, upstream_id)

        try:
            result = await upstream.call(method, upstream_params, relay, track=track)
        finally:
            session.inflight.pop(client_id, None)
        return self.to_client_result(session, target, method, result)

    async def route(
        self, session: DownstreamSession, method: str, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """``resolve``, for a call the client makes: what the caller may not use (mcpAuthorization,
        a hidden tool) is answered as unknown."""
        target, upstream_params = self._resolve_call(session, method, params)
        if session.service.access is not None:
            await session.service.access.admit(session, method, params, target, upstream_params)
        return target, upstream_params

    def _resolve_call(
        self, session: DownstreamSession, method: str, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """``resolve``, the target noted for the access log and metrics of the client's request."""
        target, upstream_params = self.resolve(session, method, params)
        caller = CURRENT_CALLER.get()
        if caller is not None:
            caller.target = target
        return target, upstream_params

    def resolve(self, session: DownstreamSession, method: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The target owning the request's name, and the params with the target's own name."""
        if method == "completion/complete":
            ref = params.get("ref")
            if not isinstance(ref, dict):
                raise McpError(protocol.INVALID_PARAMS, "completion/complete needs params.ref")
            field = "uri" if ref.get("type") == "ref/resource" else "name"
            target, original = self._owner(session, "resources" if field == "uri" else "prompts", ref.get(field))
            return target, {**params, "ref": {**ref, field: original}}
        if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
            target, original = self._owner(session, "resources", params.get("uri"))
            return target, {**params, "uri": original}
        kind = "tools" if method == "tools/call" else "prompts"
        target, original = self._owner(session, kind, params.get("name"))
        return target, {**params, "name": original}

    def _owner(self, session: DownstreamSession, kind: str, name: Any) -> tuple[str, str]:
        service = session.service
        if not isinstance(name, str) or not name:
            what = _ITEM_WORD[kind]
            raise McpError(protocol.INVALID_PARAMS, f"missing {what} {'uri' if kind == 'resources' else 'name'}")
        names = service.target_names
        upstreams = session.upstreams
        if len(names) == 1:  # (the common case: no list to build)
            live: Sequence[str] = names if names[0] in upstreams else ()
        else:
            live = [n for n in names if n in upstreams]
        if service.prefix:
            if kind == "resources":
                split = split_prefixed_uri(name, live)
            else:
                split = split_prefixed_name(name, live, DELIMITER)
            if split is None:
                raise McpError(protocol.INVALID_PARAMS, f"Unknown {_ITEM_WORD[kind]}: {protocol.shown(name)}")
            return live[split[0]], split[1]
        if len(live) == 1:
            return live[0], name
        known = session.names.get(kind, {})
        if name in known:
            owner = known[name]
            if owner == _AMBIGUOUS:
                # agentgateway refuses such a call too: whichever target was picked, the other
                # (perhaps a hostile one listing the name on purpose) would capture its calls.
                raise McpError(
                    protocol.INVALID_PARAMS,
                    f"{_ITEM_WORD[kind]} {protocol.shown(name)} is served by multiple targets; "
                    "names must be unique across targets when prefixMode is never",
                )
            return owner, name
        if kind == "resources" and live:
            return live[0], name
        raise McpError(protocol.INVALID_PARAMS, f"Unknown {_ITEM_WORD[kind]}: {protocol.shown(name)}")

    async def _broadcast_call(
        self, session: DownstreamSession, method: str, params: dict[str, Any], capability: str
    ) -> None:
        upstreams = [u for u in session.upstreams.values() if _offers(u, capability)]
        await asyncio.gather(*(u.call(method, params, None, timeout=30.0) for u in upstreams), return_exceptions=True)

    # ------------------------------------------------------------------ client notifications/answers

    async def client_notification(self, session: DownstreamSession, msg: Message) -> None:
        method = msg.get("method")
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        assert isinstance(params, dict)
        if method == "notifications/cancelled":
            entry = session.inflight.get(_inflight_key(session, params.get("requestId")))
            if entry is not None:
                upstream, upstream_id = entry
                await upstream.cancel(upstream_id, str(params.get("reason") or "cancelled by the client"))
        elif method == "notifications/roots/list_changed":
            await asyncio.gather(
                *(u.notify(method, params or None) for u in session.upstreams.values()),
                return_exceptions=True,
            )
        # notifications/initialized was sent to every target at initialize; others are not
        # defined client→server and are dropped.

    async def client_response(self, session: DownstreamSession, msg: Message) -> None:
        """The client answered a server request the gateway relayed: route it back."""
        relayed = msg.get("id")
        if not isinstance(relayed, str) or not relayed.startswith(_RELAY_PREFIX):
            log.info("dropping an answer to an unknown request id %r", relayed)
            return
        target, _, original = relayed[len(_RELAY_PREFIX) :].partition("/")
        upstream = session.upstreams.get(target)
        if upstream is None:
            return
        try:
            original_id = orjson.loads(original)
        except orjson.JSONDecodeError:
            # Not an id the gateway wrote (the client's own spelling): nobody asked this.
            log.info("dropping an answer to an unknown request id %r", protocol.shown(relayed))
            return
        if "error" in msg:
            await upstream.respond(original_id, err=protocol.error_from_message(msg))
        else:
            result = msg.get("result")
            await upstream.respond(original_id, result if isinstance(result, dict) else {})

    # ------------------------------------------------------------------ server → client

    def to_client_result(
        self, session: DownstreamSession, target: str, method: str, result: dict[str, Any]
    ) -> dict[str, Any]:
        """A routed call's result as the client must see it: what ``resources/read`` returns
        names the URIs as the client knows them (``<target>+<uri>``), as agentgateway does."""
        if method == "resources/read" and session.service.prefix:
            contents = result.get("contents")
            if isinstance(contents, list):
                result = {**result, "contents": [_prefixed_content(target, c) for c in contents]}
        return result

    def from_upstream(self, session: DownstreamSession, target: str, msg: Message) -> Message | None:
        """A message a server sent, as the client must see it."""
        service = session.service
        if protocol.is_request(msg):
            return {**msg, "id": f"{_RELAY_PREFIX}{target}/{orjson.dumps(msg['id']).decode()}"}
        method = msg.get("method")
        if method == "notifications/resources/updated" and service.prefix:
            params = msg.get("params")
            if isinstance(params, dict) and isinstance(params.get("uri"), str) and _has_scheme(params["uri"]):
                return {**msg, "params": {**params, "uri": f"{target}+{params['uri']}"}}
        return msg


def _inflight_key(session: DownstreamSession, request_id: Any) -> bytes:
    """Where a client's call is noted for its ``notifications/cancelled``: by its request id, and
    on a session stateless clients share, also by who asks (the identity the route's
    authentication proved, else the client's address). Request ids are each client's own: on a
    shared session two callers' ``7`` are two calls, and one caller's cancel must not reach the
    other's (the upstream stops it and never answers: the other client's request hung)."""
    key = orjson.dumps(request_id)
    if session.shared:
        caller = CURRENT_CALLER.get()
        if caller is not None:
            ctx = caller.ctx
            who = f"identity:{ctx.identity}" if ctx.identity else f"address:{ctx.client_ip}"
            key = who.encode() + b"\n" + key
    return key


def _offers(upstream: UpstreamSession, capability: str) -> bool:
    caps = (upstream.init_result or {}).get("capabilities")
    return isinstance(caps, dict) and capability in caps


def _prefixed_content(target: str, content: Any) -> Any:
    uri = content.get("uri") if isinstance(content, dict) else None
    if isinstance(uri, str) and _has_scheme(uri):
        return {**content, "uri": f"{target}+{uri}"}
    return content


def _has_scheme(uri: str) -> bool:
    scheme, sep, _ = uri.partition(":")
    return bool(sep) and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum() and scheme[:1].isalpha()


def encode_cursor(cursors: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(cursors)).rstrip(b"=").decode()


def decode_cursor(cursor: Any, service: McpService) -> dict[str, str | None]:
    """A composite cursor from ``encode_cursor``: each target's own cursor, never another's."""
    if not isinstance(cursor, str):
        raise McpError(protocol.INVALID_PARAMS, "invalid cursor")
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise McpError(protocol.INVALID_PARAMS, "invalid cursor") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k in service.by_name and isinstance(v, str) for k, v in value.items()
    ):
        raise McpError(protocol.INVALID_PARAMS, "invalid cursor")
    return dict(value)


def merge_capabilities(results: Any) -> dict[str, Any]:
    """Union of what the targets offer; listChanged/subscribe when any target provides them."""
    merged: dict[str, Any] = {}
    for result in results:
        caps = result.get("capabilities")
        if not isinstance(caps, dict):
            continue
        for name in ("tools", "prompts", "resources"):
            cap = caps.get(name)
            if isinstance(cap, dict):
                into = merged.setdefault(name, {})
                for flag in ("listChanged", "subscribe"):
                    if cap.get(flag):
                        into[flag] = True
        for name in ("logging", "completions"):
            if name in caps:
                merged[name] = {}
    return merged


def merge_instructions(results: dict[str, dict[str, Any]]) -> str | None:
    parts = [(name, text) for name, r in results.items() if isinstance(text := r.get("instructions"), str) and text]
    if not parts:
        return None
    if len(results) == 1:
        return parts[0][1]
    return "\n\n".join([_INSTRUCTIONS_PREAMBLE, *(f"[{name}]\n{text}" for name, text in parts)])
