"""Downstream MCP sessions: their upstream sessions, their id (a sealed token), their event stream.

A legacy client's session id is a token that carries everything needed to serve it: the id of
each HTTP upstream's session and the negotiated versions, sealed with AES-256-GCM (DESIGN §4). The
identity that created the session (what the route's authentication policies proved: JWT issuer and
subject, API key, basic-auth user) is bound into the seal as associated data, so the token opens
only for that identity: another client presenting a stolen session id is told the session does
not exist (404), as for any unknown session. Any
worker (and any replica with the same key) can therefore serve a session whose targets are all
HTTP servers. stdio and legacy-SSE upstreams are tied to the worker that started them (a process,
a long-lived stream); the token names that worker so the request can be relayed to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from agentgateway._native import SessionCipher
from agentgateway._native import SessionTokenError as NativeTokenError
from agentgateway.mcp import protocol
from agentgateway.mcp.config import OPENAPI, SSE, STDIO, STREAMABLE, McpService, McpTargetSpec
from agentgateway.mcp.pinning import SessionTools
from agentgateway.mcp.protocol import Message
from agentgateway.mcp.upstream.base import RelatedSink, UpstreamSession
from agentgateway.mcp.upstream.openapi import OpenApiSession
from agentgateway.mcp.upstream.sse import LegacySseSession
from agentgateway.mcp.upstream.stdio import StdioSession
from agentgateway.mcp.upstream.streamable import StreamableHttpSession

if TYPE_CHECKING:
    from agentgateway.mcp.runtime import McpRuntime

log = logging.getLogger("agentgateway.mcp.session")

_TOKEN_VERSION = 1
_AAD = b"agentgateway-mcp-session"
_STREAM_BUFFER = 256  # events kept for a client that reconnects with Last-Event-ID
# Bytes of events the session stream holds, kept for a reconnect or waiting for a listener that
# reads slower than a target sends: a hostile target's flood is bounded by them, not by the
# event count (one event may be many MB).
_STREAM_BYTES = 8 * 1024 * 1024


class SessionTokenError(Exception):
    pass


class SessionCodec:
    """Seals session state into an opaque ``Mcp-Session-Id`` (visible ASCII, as MCP requires),
    with AES-256-GCM in the native module. ``aad`` binds a token to what must match when it is
    used again (the identity that created the session, once authentication is configured)."""

    def __init__(self, key: bytes) -> None:
        self._cipher = SessionCipher(key)

    def seal(self, state: dict[str, Any], identity: str = "") -> str:
        return self._cipher.seal(orjson.dumps(state), identity_aad(identity))

    def open(self, token: str, identity: str = "") -> dict[str, Any]:
        """The state sealed in ``token``; SessionTokenError when it is not a token of this gateway
        or was sealed for another identity."""
        try:
            state = orjson.loads(self._cipher.open(token, identity_aad(identity)))
        except (NativeTokenError, orjson.JSONDecodeError):
            raise SessionTokenError("not a session of this gateway") from None
        if not isinstance(state, dict) or state.get("k") != _TOKEN_VERSION:
            raise SessionTokenError("not a session of this gateway")
        return state


def identity_aad(identity: str) -> bytes:
    """The associated data a session token is sealed with: anonymous sessions keep the plain
    prefix; an authenticated one adds a digest of the identity (the token itself names nobody)."""
    if not identity:
        return _AAD
    return _AAD + b"\0" + hashlib.sha256(identity.encode()).digest()


class StreamListener:
    """A client's event stream being served: the events waiting to be written to it, and their
    bytes. A target that sends faster than the client reads waits for room (``room``), so the
    gateway stops reading that target instead of buffering its flood."""

    __slots__ = ("_queue", "pending", "_room")

    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self.pending = 0
        self._room: asyncio.Future[None] | None = None

    def put(self, event: tuple[str, bytes]) -> None:
        self._queue.put_nowait(event)
        self.pending += len(event[1])

    def end(self) -> None:
        """No more events: the stream ends once what is queued is written (room waiters go on)."""
        self._queue.put_nowait(None)
        self._wake()

    async def get(self) -> tuple[str, bytes] | None:
        item = await self._queue.get()
        if item is not None:
            self.pending -= len(item[1])
            if not self.full:
                self._wake()
        return item

    @property
    def full(self) -> bool:
        return self.pending >= _STREAM_BYTES or self._queue.qsize() >= _STREAM_BUFFER

    async def room(self) -> None:
        """Until the client has read enough of what waits (or the stream ended)."""
        if self.full:
            if self._room is None or self._room.done():
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)

    def _wake(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)


class SessionStream:
    """Messages for the client not tied to a request: delivered on the GET stream when one is
    open, kept (bounded in count and bytes) otherwise, and replayable by event id."""

    __slots__ = ("sid", "_seq", "buffer", "_buffered", "listener")

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self._seq = 0
        # Made at the first event: most sessions never have one, and an empty deque costs more
        # than the rest of an idle session's stream.
        self.buffer: deque[tuple[str, bytes]] | None = None
        self._buffered = 0  # bytes in ``buffer``
        self.listener: StreamListener | None = None

    def push(self, msg: Message) -> None:
        self._seq += 1
        event = (f"{self.sid[:8]}-{self._seq}", protocol.dumps(msg))
        if self.buffer is None:
            self.buffer = deque()
        self.buffer.append(event)
        self._buffered += len(event[1])
        while len(self.buffer) > 1 and (len(self.buffer) > _STREAM_BUFFER or self._buffered > _STREAM_BYTES):
            self._buffered -= len(self.buffer.popleft()[1])
        if self.listener is not None:
            self.listener.put(event)

    async def room(self) -> None:
        """Back-pressure for whoever pushes: wait while the listening client is behind (a
        session without a listener keeps only its bounded replay buffer, and never waits)."""
        listener = self.listener
        while listener is not None and listener.full and listener is self.listener:
            await listener.room()

    def attach(self, last_event_id: str | None) -> StreamListener:
        """A new GET stream: replaces any previous one; replays what it has not seen."""
        if self.listener is not None:
            self.listener.end()
        listener = StreamListener()
        replay = list(self.buffer) if self.buffer is not None else []
        if last_event_id:
            ids = [eid for eid, _ in replay]
            replay = replay[ids.index(last_event_id) + 1 :] if last_event_id in ids else replay
        for event in replay:
            listener.put(event)
        self.listener = listener
        return listener

    def detach(self, listener: StreamListener) -> None:
        if self.listener is listener:
            self.listener = None
            listener.end()  # (wakes whoever waits for its room)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.end()
            self.listener = None


class DownstreamSession:
    """A legacy (initialize-based) client session on one MCP service. Many live idle at once (a
    client that never ends its session keeps it for ``sessionTtl``): slots, and nothing made
    before it is needed."""

    __slots__ = (
        "runtime",
        "service",
        "identity",
        "client_key",
        "sid",
        "token",
        "protocol_version",
        "client_params",
        "upstreams",
        "stream",
        "inflight",
        "last_seen",
        "closed",
        "names",
        "init_answer",
        "tools",
        "shared",
        "holds_processes",
        "local_only",
        "created",
    )

    def __init__(self, runtime: McpRuntime, service: McpService, sid: str | None = None, identity: str = "") -> None:
        self.runtime = runtime
        self.service = service
        # Who created it (RequestCtx.identity): only that identity may use it.
        self.identity = identity
        # Whose quota it counts against in this worker (runtime.client_key); "" for a session
        # started in another worker and continued here, which counts there.
        self.client_key = ""
        self.sid = sid or secrets.token_hex(16)
        self.token = ""
        # When it started (wall clock, ms; sealed in its token): a worker that no longer
        # remembers every ended session refuses to take up one this old (McpRuntime.forget).
        self.created = time.time_ns() // 1_000_000
        self.protocol_version = protocol.LATEST_LEGACY
        self.client_params: dict[str, Any] = {}
        self.upstreams: dict[str, UpstreamSession] = {}
        self.stream = SessionStream(self.sid)
        # Client request id (as JSON text) → (upstream session, upstream request id), for cancels.
        self.inflight: dict[bytes, tuple[UpstreamSession, int]] = {}
        self.last_seen = time.monotonic()
        self.closed = False
        # Names offered by each target at the last listing, for prefixMode never routing.
        self.names: dict[str, dict[str, str]] = {}
        # The merged initialize result (kept for shared sessions, which answer many clients).
        self.init_answer: dict[str, Any] = {}
        # Each target's tools as last listed (their definitions' digests), for tool pinning.
        self.tools = SessionTools()
        # Serves stateless clients (mcp/modern.py): nobody to pass a server's own asks to.
        self.shared = False
        # Its stdio targets run as processes of their own (bounded: ``config.mcp``).
        self.holds_processes = any(t.kind == STDIO for t in service.targets)
        # Tied to this worker: a target that is a process or a long-lived stream.
        self.local_only = self.holds_processes or any(t.kind == SSE for t in service.targets)

    @property
    def idle(self) -> bool:
        """Not in use: no call in flight, no client listening on its stream."""
        return not self.inflight and self.stream.listener is None

    def make_upstream(self, spec: McpTargetSpec, upstream_sid: bytes | None = None) -> UpstreamSession:
        on_message = self._session_sink(spec.name)
        session: UpstreamSession
        if spec.kind == STDIO:
            session = StdioSession(spec, on_message)
        elif spec.kind == STREAMABLE:
            gate = self.runtime.gate(spec.http)
            session = StreamableHttpSession(spec, on_message, self.runtime.http, gate, upstream_sid)
            session.listen_early = self.shared
        elif spec.kind == OPENAPI:
            session = OpenApiSession(spec, on_message, self.runtime.http)
        else:
            session = LegacySseSession(spec, on_message, self.runtime.http)
        self.upstreams[spec.name] = session
        return session

    def _session_sink(self, target: str) -> RelatedSink:
        async def deliver(msg: Message) -> None:
            if self.shared and protocol.is_request(msg):
                await self.runtime.modern.answer_unrelated(self, target, msg)
                return
            rewritten = self.runtime.federation.from_upstream(self, target, msg)
            if rewritten is not None:
                await self.to_stream(rewritten)

        return deliver

    async def to_stream(self, msg: Message) -> None:
        """Send ``msg`` on the session's stream; waits while the client is behind (the target's
        stream is not read meanwhile)."""
        self.stream.push(msg)
        await self.stream.room()

    def token_state(self) -> dict[str, Any]:
        targets = []
        for name, upstream in self.upstreams.items():
            sid = None
            if isinstance(upstream, StreamableHttpSession) and upstream.session_id:
                sid = upstream.session_id.decode()
            caps = (upstream.init_result or {}).get("capabilities")
            offered = sorted(caps) if isinstance(caps, dict) else []
            targets.append([name, sid, upstream.protocol_version, offered])
        return {
            "k": _TOKEN_VERSION,
            "s": self.sid,
            "b": self.service.scope,
            "v": self.protocol_version,
            "t": targets,
            "o": self.runtime.owner_id if self.local_only else None,
            "p": self.client_params,
            "c": self.created,
        }

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stream.close()
        await asyncio.gather(*(u.close() for u in self.upstreams.values()), return_exceptions=True)
        self.upstreams.clear()
