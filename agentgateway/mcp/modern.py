"""Modern MCP clients (2026-07-28): stateless requests with a ``_meta`` envelope.

Each request is checked the way the spec's ladder does (envelope keys, then the ``MCP-Protocol-
Version`` / ``Mcp-Method`` / ``Mcp-Name`` headers against the body, then the version), and served
from a shared upstream session per service and worker (upstreams are spoken to in the legacy
shape, which every deployed server understands).

When an upstream asks the client something during a call (elicitation, sampling, roots) a
modern client cannot be sent a request: the call is parked and the client gets an
``input_required`` result carrying the question and a sealed ``requestState``; its retry (with
``inputResponses``) answers the upstream and resumes the parked call (MRTR, DESIGN §4 and the
protocol brief §1.13).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

from agentgateway import __version__
from agentgateway.mcp import protocol
from agentgateway.mcp.authorization import CURRENT_CALLER
from agentgateway.mcp.federation import Result, Sink, merge_capabilities, merge_instructions
from agentgateway.mcp.protocol import McpError, Message, RawJson
from agentgateway.mcp.session import SessionTokenError

if TYPE_CHECKING:
    from agentgateway.mcp.config import McpService
    from agentgateway.mcp.runtime import McpRuntime
    from agentgateway.mcp.session import DownstreamSession
    from agentgateway.mcp.upstream.base import UpstreamSession

log = logging.getLogger("agentgateway.mcp.modern")

_PARKED_TTL = 300.0  # how long an input_required round may take the client
_SERVER_INFO = {"name": "agentgateway", "version": __version__}
_META = {protocol.META_SERVER_INFO: _SERVER_INFO}
# The envelope the gateway answers for: not passed on to upstreams spoken to in the legacy shape.
_ENVELOPE_KEYS = frozenset(
    (
        protocol.META_PROTOCOL_VERSION,
        protocol.META_CLIENT_CAPABILITIES,
        protocol.META_CLIENT_INFO,
        protocol.META_LOG_LEVEL,
    )
)
# Client capabilities a server may ask for during a call (bridged by input_required rounds), with
# the sub-features passed on. Others name nothing the gateway relays to a stateless client.
_ASKABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("roots", ()),
    ("sampling", ("context", "tools")),
    ("elicitation", ("form", "url")),
)
# Upstream sessions per service and worker, one per distinct set of client capabilities; beyond
# this the least recently used idle one is closed.
_SHARED_PER_SERVICE = 8
_RETIRE_WAIT = 300  # seconds a retired shared session may finish its calls before it is closed


def is_modern(msg: Message) -> bool:
    """A request carrying the modern envelope (or the modern-only discovery method)."""
    if msg.get("method") == "server/discover":
        return True
    params = msg.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and protocol.META_PROTOCOL_VERSION in meta


def decode_header_value(value: str | None) -> str | None:
    """Header values that are not plain ASCII travel as ``=?base64?<b64 of UTF-8>?=``."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    payload = value[len("=?base64?") : -2]
    try:
        decoded = base64.b64decode(payload, validate=True)
        if base64.b64encode(decoded).decode() != payload:
            return None
        return decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def check_envelope(msg: Message, headers: dict[str, str]) -> str:
    """The modern validation ladder; the request's protocol version, or McpError."""
    params = msg.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        raise McpError(protocol.INVALID_PARAMS, "params._meta must carry the protocol version and client capabilities")
    missing = [k for k in (protocol.META_PROTOCOL_VERSION, protocol.META_CLIENT_CAPABILITIES) if k not in meta]
    if missing:
        raise McpError(protocol.INVALID_PARAMS, f"params._meta is missing: {', '.join(missing)}")
    version = meta[protocol.META_PROTOCOL_VERSION]
    if headers.get("mcp-protocol-version") != version:
        raise McpError(protocol.HEADER_MISMATCH, "MCP-Protocol-Version header does not match params._meta")
    method = msg.get("method")
    if headers.get("mcp-method") != method:
        raise McpError(protocol.HEADER_MISMATCH, "Mcp-Method header does not match the request's method")
    name_key = protocol.NAME_PARAM.get(str(method))
    if name_key is not None and isinstance(params, dict):
        value = params.get(name_key)
        if value is not None and decode_header_value(headers.get("mcp-name")) != value:
            raise McpError(protocol.HEADER_MISMATCH, f"Mcp-Name header does not match params.{name_key}")
    if not isinstance(version, str):
        raise McpError(protocol.INVALID_PARAMS, "the protocol version must be a string")
    if version not in protocol.MODERN_VERSIONS:
        raise McpError(
            protocol.UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            {"supported": list(protocol.MODERN_VERSIONS), "requested": protocol.shown(version)},
        )
    return version


def upstream_capabilities(declared: Any) -> dict[str, Any]:
    """A modern client's ``clientCapabilities`` as its upstream sessions declare them, so that a
    server asks only for what the client can answer (and offers only the tools that need it)."""
    out: dict[str, Any] = {}
    if not isinstance(declared, dict):
        return out
    for name, features in _ASKABLE:
        value = declared.get(name)
        if isinstance(value, dict):
            out[name] = {f: {} for f in features if isinstance(value.get(f), dict)}
    return out


class ParkedCall:
    """An upstream call waiting for the client to answer what the upstream asked. Only the caller
    that made it (``identity``) may answer it, and only through a route of its backend (``scope``):
    another caller holding the ``requestState`` must not confirm what the upstream asked this one,
    nor may a route with looser policies resume a call made on another."""

    def __init__(self, upstream: UpstreamSession, identity: str, scope: str) -> None:
        self.upstream = upstream
        self.identity = identity
        self.scope = scope
        self.asks: asyncio.Queue[Message] = asyncio.Queue()
        self.waiting: dict[str, Any] = {}  # input request key → the upstream's request id
        self.task: asyncio.Task[dict[str, Any]] | None = None
        self.expires = time.monotonic() + _PARKED_TTL


class ModernServer:
    def __init__(self, runtime: McpRuntime) -> None:
        self.runtime = runtime
        # Upstream sessions for stateless clients, by service and declared capabilities (LRU order).
        self._shared: OrderedDict[tuple[str, bytes], DownstreamSession] = OrderedDict()
        self._starting: dict[tuple[str, bytes], asyncio.Future[DownstreamSession]] = {}
        self._in_use: dict[int, int] = {}  # id(shared session) → requests being served on it
        self._retiring: dict[asyncio.Task[None], DownstreamSession] = {}
        self._abandoning: set[asyncio.Task[None]] = set()
        self.parked: dict[str, ParkedCall] = {}

    async def shared_session(
        self, service: McpService, capabilities: dict[str, Any] | None = None
    ) -> DownstreamSession:
        """The worker's upstream sessions for stateless clients of ``service`` that declare
        ``capabilities``, made once per distinct set. Stateless legacy clients (no capabilities
        per request, no stream a server's ask could reach them on) declare none."""
        capabilities = capabilities or {}
        key = (service.scope, orjson.dumps(capabilities, option=orjson.OPT_SORT_KEYS))
        session = self._shared.get(key)
        if session is not None and not session.closed and session.service is service:
            self._shared.move_to_end(key)
            return session
        starting = self._starting.get(key)
        if starting is not None:
            return await asyncio.shield(starting)
        future: asyncio.Future[DownstreamSession] = asyncio.get_running_loop().create_future()
        self._starting[key] = future
        try:
            from agentgateway.mcp.session import DownstreamSession

            session = DownstreamSession(self.runtime, service)
            session.shared = True
            params = {
                "protocolVersion": protocol.LATEST_LEGACY,
                "capabilities": capabilities,
                "clientInfo": dict(_SERVER_INFO),
            }
            session.init_answer = await self.runtime.federation.initialize(session, params)
            previous = self._shared.pop(key, None)
            if previous is not None:
                self._retire(previous)
            self._shared[key] = session
            self._trim(service.scope)
            future.set_result(session)
            return session
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters re-raise it
            raise
        finally:
            self._starting.pop(key, None)

    def _trim(self, scope: str) -> None:
        """Close the least recently used idle sessions of a service beyond its bound."""
        keys = [k for k in self._shared if k[0] == scope]
        excess = len(keys) - _SHARED_PER_SERVICE
        for key in keys:
            if excess <= 0:
                return
            session = self._shared[key]
            if self._busy(session):
                continue
            del self._shared[key]
            log.info("closing the least recently used upstream sessions of stateless clients (%s)", scope)
            self._retire(session)
            excess -= 1

    def _busy(self, session: DownstreamSession) -> bool:
        if self._in_use.get(id(session)):
            return True
        upstreams = set(map(id, session.upstreams.values()))
        return any(id(parked.upstream) in upstreams for parked in self.parked.values())

    def _retire(self, session: DownstreamSession) -> None:
        """Close a shared session no longer handed out, once the calls on it are over."""

        async def close_when_idle() -> None:
            for _ in range(_RETIRE_WAIT):
                if not self._busy(session):
                    break
                await asyncio.sleep(1.0)
            await session.close()

        task = asyncio.get_running_loop().create_task(close_when_idle())
        self._retiring[task] = session
        task.add_done_callback(lambda done: self._retiring.pop(done, None))

    async def answer_unrelated(self, session: DownstreamSession, target: str, msg: Message) -> None:
        """A server's request outside any call, on a shared session. Stateless clients can be
        asked only during a call (an input_required round), so the gateway answers: ``ping``,
        and an error for anything else (``roots/list``, sampling, elicitation), which tells the
        server to ask again during a call rather than wait for an answer that cannot come."""
        upstream = session.upstreams.get(target)
        if upstream is None:
            return
        method = msg.get("method")
        if method == "ping":
            await upstream.respond(msg.get("id"), {})
            return
        await upstream.respond(
            msg.get("id"),
            err=McpError(
                protocol.INVALID_REQUEST,
                f"{method} outside a request: this session serves stateless clients, who can be asked "
                "only during a call",
            ),
        )

    # ------------------------------------------------------------------ requests

    async def request(self, service: McpService, msg: Message, related: Sink) -> Result:
        method = msg.get("method")
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        assert isinstance(params, dict)
        meta = params.get("_meta")
        declared = meta.get(protocol.META_CLIENT_CAPABILITIES) if isinstance(meta, dict) else None
        session = await self.shared_session(service, upstream_capabilities(declared))
        self._in_use[id(session)] = self._in_use.get(id(session), 0) + 1
        try:
            return await self._serve(session, msg, method, params, related)
        finally:
            left = self._in_use.pop(id(session)) - 1
            if left:
                self._in_use[id(session)] = left

    async def _serve(
        self, session: DownstreamSession, msg: Message, method: Any, params: dict[str, Any], related: Sink
    ) -> Result:
        if method == "server/discover":
            return self._discover(session)
        if method in protocol.LIST_METHODS:
            return await self.runtime.federation.fan_out_list(session, str(method), _strip_envelope(params))
        if method in protocol.NAME_PARAM or method == "completion/complete":
            return await self._interactive(session, msg, str(method), params, related)
        if method == "ping":
            return {}
        raise McpError(protocol.METHOD_NOT_FOUND, f"Method not found: {protocol.shown(method)}")

    def _discover(self, session: DownstreamSession) -> dict[str, Any]:
        results = {name: u.init_result or {} for name, u in session.upstreams.items()}
        out: dict[str, Any] = {
            "supportedVersions": [*protocol.MODERN_VERSIONS, *reversed(protocol.LEGACY_VERSIONS)],
            "capabilities": merge_capabilities(results.values()),
            "ttlMs": 0,
            "cacheScope": "private",
        }
        instructions = merge_instructions(results)
        if instructions:
            out["instructions"] = instructions
        return out

    async def _interactive(
        self, session: DownstreamSession, msg: Message, method: str, params: dict[str, Any], related: Sink
    ) -> dict[str, Any]:
        """tools/call, prompts/get, resources/read: may need the client's input (MRTR)."""
        state = params.get("requestState")
        caller = CURRENT_CALLER.get()
        identity = caller.ctx.identity if caller is not None else ""
        if state is not None:
            parked = self._resume(state, identity, session.service.scope)
            await self._answer(parked, params.get("inputResponses"))
        else:
            target, upstream_params = await self.runtime.federation.route(session, method, _strip_envelope(params))
            upstream = session.upstreams.get(target)
            if upstream is None:
                raise McpError(protocol.INTERNAL_ERROR, f"MCP target {target} is not available")
            parked = ParkedCall(upstream, identity, session.service.scope)

            async def relay(server_msg: Message) -> None:
                if protocol.is_request(server_msg):
                    parked.asks.put_nowait(server_msg)  # answered through an input_required round
                else:
                    await related(server_msg)  # progress and logging reach the client's stream

            async def result() -> dict[str, Any]:
                answer = await upstream.call(method, upstream_params, relay)
                return self.runtime.federation.to_client_result(session, target, method, answer)

            parked.task = asyncio.get_running_loop().create_task(result())
        return await self._next_step(parked)

    async def _next_step(self, parked: ParkedCall) -> dict[str, Any]:
        """The call's result, or the next input_required round if the upstream asked first."""
        assert parked.task is not None
        ask = asyncio.get_running_loop().create_task(parked.asks.get())
        try:
            done, _ = await asyncio.wait({parked.task, ask}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            ask.cancel()
            parked.task.cancel()  # the client closed its stream: that cancels the request
            raise
        if parked.task in done:
            ask.cancel()
            return parked.task.result()
        requests: dict[str, Any] = {}
        first = ask.result()
        for server_msg in (first, *_drain(parked.asks)):
            key = secrets.token_hex(6)
            parked.waiting[key] = server_msg.get("id")
            requests[key] = {"method": server_msg.get("method"), "params": server_msg.get("params") or {}}
        handle = secrets.token_hex(12)
        parked.expires = time.monotonic() + _PARKED_TTL
        self.parked[handle] = parked
        # Ended while the client was away (the upstream gave up waiting): nothing left to resume.
        parked.task.add_done_callback(lambda _: self._drop(handle, parked))
        state = self.runtime.codec.seal({"k": 1, "r": handle, "o": self.runtime.owner_id}, parked.identity)
        return {"resultType": "input_required", "inputRequests": requests, "requestState": state}

    def _resume(self, state: Any, identity: str, scope: str) -> ParkedCall:
        handle = self.state_handle(state, identity)
        parked = self.parked.get(handle) if handle else None
        if (
            handle is None
            or parked is None
            or parked.identity != identity
            or parked.scope != scope
            or parked.task is None
            or parked.task.done()
        ):
            raise McpError(protocol.INVALID_PARAMS, "unknown or expired requestState")
        del self.parked[handle]
        return parked

    def state_handle(self, state: Any, identity: str) -> str | None:
        """The parked call a requestState names, if this gateway sealed it for ``identity``."""
        if not isinstance(state, str):
            return None
        try:
            opened = self.runtime.codec.open(state, identity)
        except SessionTokenError:
            return None
        handle = opened.get("r")
        return handle if isinstance(handle, str) else None

    def state_owner(self, state: Any, identity: str) -> str | None:
        if not isinstance(state, str):
            return None
        with contextlib.suppress(SessionTokenError):
            owner = self.runtime.codec.open(state, identity).get("o")
            return owner if isinstance(owner, str) else None
        return None

    async def _answer(self, parked: ParkedCall, responses: Any) -> None:
        if not isinstance(responses, dict):
            responses = {}
        for key, upstream_id in list(parked.waiting.items()):
            value = responses.get(key)
            if isinstance(value, dict):
                await parked.upstream.respond(upstream_id, value)
            else:
                await parked.upstream.respond(
                    upstream_id, err=McpError(protocol.INVALID_PARAMS, f"the client gave no answer for {key}")
                )
            del parked.waiting[key]

    def _drop(self, handle: str, parked: ParkedCall) -> None:
        if self.parked.get(handle) is parked:
            del self.parked[handle]

    def sweep(self) -> None:
        """End input_required rounds the client did not finish in time: the upstream's questions
        get an error answer (its handler stops waiting) and the call is cancelled."""
        now = time.monotonic()
        for handle, parked in list(self.parked.items()):
            if parked.expires < now:
                del self.parked[handle]
                log.info("an input_required round was not answered within %gs: call cancelled", _PARKED_TTL)
                task = asyncio.get_running_loop().create_task(self._abandon(parked))
                self._abandoning.add(task)
                task.add_done_callback(self._abandoning.discard)

    async def _abandon(self, parked: ParkedCall) -> None:
        unanswered = McpError(protocol.INTERNAL_ERROR, "the client did not answer in time")
        for upstream_id in parked.waiting.values():
            with contextlib.suppress(McpError, OSError):
                await parked.upstream.respond(upstream_id, err=unanswered)
        parked.waiting.clear()
        if parked.task is not None:
            parked.task.cancel()

    async def close(self) -> None:
        retiring = list(self._retiring.values())
        for task in list(self._retiring):
            task.cancel()
        for parked in self.parked.values():
            if parked.task is not None:
                parked.task.cancel()
        self.parked.clear()
        sessions = [*self._shared.values(), *retiring]
        self._shared.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def finish_result(result: Result) -> Result:
    """Modern results say whether they are complete, how long they may be cached (lists) and
    which server answered."""
    if isinstance(result, RawJson):
        raw = result.raw
        if b'"ttlMs"' in raw or b'"cacheScope"' in raw:
            result = orjson.loads(raw)  # rare: upstream cache hints were merged in; add to them
        else:
            # A merged list (from the native merge, so a JSON object with none of these keys):
            # the fields are spliced in rather than paid for with a parse of the whole list.
            extra = orjson.dumps({"resultType": "complete", "ttlMs": 0, "cacheScope": "private", "_meta": _META})
            return RawJson(raw[:-1] + b"," + extra[1:] if raw != b"{}" else extra)
    assert isinstance(result, dict)
    out = dict(result)
    out.setdefault("resultType", "complete")
    meta = out.get("_meta")
    out["_meta"] = {**(meta if isinstance(meta, dict) else {}), **_META}
    return out


def _strip_envelope(params: dict[str, Any]) -> dict[str, Any]:
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        return params
    kept = {k: v for k, v in meta.items() if k not in _ENVELOPE_KEYS}
    out = {k: v for k, v in params.items() if k != "_meta"}
    if kept:
        out["_meta"] = kept
    return out


def _drain(queue: asyncio.Queue[Message]) -> list[Message]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
