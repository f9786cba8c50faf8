"""Per-worker MCP state: sessions, the HTTP client for upstreams, the session-id codec."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

from agentgateway.core.timers import SharedDelay
from agentgateway.mcp.config import EPHEMERAL_KEY_ENV, STDIO, McpService
from agentgateway.mcp.federation import Federation
from agentgateway.mcp.modern import ModernServer
from agentgateway.mcp.protocol import Interned, McpError
from agentgateway.mcp.session import DownstreamSession, SessionCodec, SessionTokenError
from agentgateway.mcp.upstream.streamable import ConnectionGate
from agentgateway.proxy.host import ProxyHost
from agentgateway.upstream.client import HttpClient

if TYPE_CHECKING:
    from agentgateway.config.settings import RuntimeSettings
    from agentgateway.upstream.target import HttpTarget

log = logging.getLogger("agentgateway.mcp")

# The JSON-RPC error code of a session refused by a quota (a code of the range JSON-RPC leaves
# to servers), answered with HTTP 429 (503 when the backend is full).
SESSION_QUOTA = -32029
# Seconds a streamed answer's head may wait for the answer's first event (up to twice as many:
# the waits share one timer, core/timers.py); most calls answer sooner, in one write.
HEAD_WAIT = 0.05
# Ended session ids remembered, so their tokens are refused afterwards. Beyond them a worker
# refuses to take up any session as old as the ones it forgot (McpRuntime.forget).
_REVOKED_KEPT = 10_000


class SessionQuotaError(McpError):
    """A client may not start one more session (``McpRuntime._make_room``)."""

    status: int  # of the HTTP answer

    def __init__(self, key: str, limit: int) -> None:
        if key == "maxStdioSessions":
            # The backend is full of other clients' sessions: a condition of the gateway.
            self.status = 503
            text = (
                f"this MCP backend already has {limit} sessions running stdio servers in this worker "
                f"(config.mcp.{key}) and none of this client's can end; try again later"
            )
        else:
            self.status = 429
            what = "sessions running stdio servers" if key == "maxStdioSessionsPerIdentity" else "sessions"
            text = (
                f"this client already has {limit} MCP {what} in this worker (config.mcp.{key}), all in use "
                "(a call in flight or a listening stream): end one (HTTP DELETE) or let one expire"
            )
        super().__init__(SESSION_QUOTA, f"Too many MCP sessions: {text}")


def client_key(identity: str, client_ip: str) -> str:
    """Whose quota a session counts against: the identity the route's authentication proved, or
    for an anonymous client its address (anonymous clients are not one client)."""
    return f"identity:{identity}" if identity else f"address:{client_ip}"


class McpHost(ProxyHost, Protocol):
    """What MCP sessions need from the worker they live in (``server.worker.Worker``): the
    loop and upstream pool (requests relayed to another worker are proxied), the running
    config, and a way to tell the other workers (an ended session's id)."""

    @property
    def runtime(self) -> RuntimeSettings: ...

    def announce(self, message: dict[str, object]) -> None: ...


class Remote:
    """A session owned by another worker of this gateway, named by its pid."""

    __slots__ = ("owner",)

    def __init__(self, owner: str) -> None:
        self.owner = owner


class McpRuntime:
    def __init__(self, worker: McpHost) -> None:
        self.worker = worker
        self.http = HttpClient(worker.pool)
        self.federation = Federation(self)
        self.modern = ModernServer(self)
        self.sessions: dict[str, DownstreamSession] = {}
        # The sessions started in this worker, by whose quota they count against (client_key).
        self._by_client: dict[str, dict[str, DownstreamSession]] = {}
        # Session token → its session, for the sessions this worker serves: a request naming a
        # token this worker issued (or already opened) finds its session without opening the
        # seal again (AES-GCM, JSON) on every call. Cleared when the session key changes.
        self._by_token: dict[str, DownstreamSession] = {}
        # Ended sessions (id → when it started, ms), the most recently ended last.
        self.revoked: OrderedDict[str, int] = OrderedDict()
        # Sessions that started at or before this (ms) are continued only where they are served
        # already, never rebuilt from their token: the ended ones among them are forgotten.
        self.revoked_before = 0
        # Sessions other workers may hold copies of (not tied to this worker) that were served
        # here since the last sweep: told to the other workers, whose copies are then not idle.
        self._served: set[str] = set()
        self.owner_id = f"{os.getpid()}"
        self._codec: SessionCodec | None = None
        self._codec_key: bytes | None = None
        self._ending: set[asyncio.Task[None]] = set()
        # What sessions hold alike (clients' initialize params, targets' handshake answers), once.
        self.interned = Interned()
        # Requests in flight to each streamable-HTTP target (its pool key), bounded.
        self._gates: dict[tuple[object, ...], ConnectionGate] = {}
        # Streamed answers whose head waits for their first event (mcp/endpoint.py), one timer.
        self.head_waits = SharedDelay(worker.loop, HEAD_WAIT)

    @property
    def codec(self) -> SessionCodec:
        settings = self.worker.runtime.mcp_sessions
        key = settings.key or _ephemeral_key()
        if self._codec is None or key != self._codec_key:
            self._codec = SessionCodec(key)
            self._codec_key = key
            self._by_token.clear()  # tokens sealed with the old key no longer open
        return self._codec

    def gate(self, target: HttpTarget | None) -> ConnectionGate:
        """The bound on requests in flight to ``target`` (``config.mcp.maxUpstreamConnections``),
        shared by every session of this worker."""
        assert target is not None
        limit = self.worker.runtime.mcp_sessions.max_upstream_connections
        gate = self._gates.get(target.pool_key)
        if gate is None:
            gate = self._gates[target.pool_key] = ConnectionGate(limit)
        else:
            gate.limit = limit  # (a reload may have changed it)
        return gate

    def new_session(self, service: McpService, identity: str = "", client_ip: str = "") -> DownstreamSession:
        """A session for the client ``identity`` (``client_ip`` when anonymous). Raises
        SessionQuotaError when it may not have one more (``_make_room``)."""
        client = client_key(identity, client_ip)
        holds_processes = any(t.kind == STDIO for t in service.targets)
        self._make_room(client, service, holds_processes)
        session = DownstreamSession(self, service, identity=identity)
        session.client_key = client
        self.sessions[session.sid] = session
        self._by_client.setdefault(client, {})[session.sid] = session
        return session

    def _make_room(self, client: str, service: McpService, holds_processes: bool) -> None:
        """Room for one more session of ``client`` (client_key) in this worker, within the bounds of
        ``config.mcp``: ``maxSessionsPerIdentity`` sessions, ``maxStdioSessionsPerIdentity`` of
        them holding stdio processes, and ``maxStdioSessions`` sessions of a backend holding
        processes, of all identities. Beyond a bound, the least recently used of the client's own
        sessions end (their clients get 404 and start a new session, as MCP provides), never one
        of another identity, nor one in use (a call in flight, a client listening on its stream).
        When that cannot make room, SessionQuotaError and nothing ends. One identity can thus
        neither end another's sessions nor take all of this worker's processes."""
        settings = self.worker.runtime.mcp_sessions
        mine = list(self._by_client.get(client, {}).values())
        ending: dict[str, str] = {}  # session id → the bound it ends for

        def end_for(key: str, limit: int, held: int, candidates: list[DownstreamSession]) -> None:
            """``held`` sessions count against the bound ``key``: mark the least recently used
            idle ``candidates`` that take them below ``limit``."""
            over = held - limit + 1
            if over <= 0:
                return
            idle = sorted((s for s in candidates if s.idle and s.sid not in ending), key=lambda s: s.last_seen)
            if len(idle) < over:
                raise SessionQuotaError(key, limit)
            ending.update((s.sid, key) for s in idle[:over])

        end_for("maxSessionsPerIdentity", settings.max_per_identity, len(mine), mine)
        if holds_processes:
            running = [s for s in mine if s.holds_processes]
            held = sum(1 for s in running if s.sid not in ending)
            end_for("maxStdioSessionsPerIdentity", settings.max_stdio_per_identity, held, running)
            scope = service.scope
            on_backend = [s for s in self.sessions.values() if s.service.scope == scope and s.holds_processes]
            held = sum(1 for s in on_backend if s.sid not in ending)
            end_for("maxStdioSessions", settings.max_stdio, held, [s for s in on_backend if s.client_key == client])
        for sid, key in ending.items():
            log.info(
                "MCP session %s ended: its client is at config.mcp.%s; it was its least recently used", sid[:8], key
            )
            self._end_later(self.sessions[sid])

    def _expired(self, session: DownstreamSession, now: float) -> bool:
        """Idle for longer than its TTL: ``sessionTtl``, or ``stdioSessionTtl`` if it holds
        processes. A session whose client is listening on its event stream is in use."""
        if session.stream.listener is not None:
            return False
        settings = self.worker.runtime.mcp_sessions
        ttl = min(settings.ttl, settings.stdio_ttl) if session.holds_processes else settings.ttl
        return now - session.last_seen > ttl

    def _end_later(self, session: DownstreamSession) -> None:
        self.discard(session.sid)
        task = asyncio.get_running_loop().create_task(self.end(session))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    def seal(self, session: DownstreamSession) -> str:
        session.token = self.codec.seal(session.token_state(), session.identity)
        self._by_token[session.token] = session
        return session.token

    def lookup(self, token: str, service: McpService, identity: str = "") -> DownstreamSession | Remote | None:
        """The session a client names; ``Remote`` when another worker of this gateway owns it
        (the request is relayed there); None when it is unknown, ended or expired, or was made by
        another identity (HTTP 404: the client starts a new one)."""
        codec = self.codec  # (first: a changed key empties the table below)
        known = self._by_token.get(token)
        if known is not None:
            # The token opened before (or was sealed here) and names this session: what opening
            # it again would check is checked on the session itself.
            return self._usable(known, service, identity)
        try:
            state = codec.open(token, identity)
        except SessionTokenError:
            return None
        sid = state.get("s")
        if not isinstance(sid, str) or sid in self.revoked or state.get("b") != service.scope:
            return None
        session = self.sessions.get(sid)
        if session is not None:
            return self._usable(session, service, identity)
        owner = state.get("o")
        if owner is not None:
            # Its processes or streams live in the worker that started it.
            return Remote(str(owner)) if owner != self.owner_id else None
        created = state.get("c", 0)  # (0: sealed before tokens said when they started)
        if not isinstance(created, int) or (self.revoked_before and created <= self.revoked_before):
            # As old as sessions whose end this worker no longer remembers: it may be one of them.
            return None
        return self._rebuild(state, service, token, identity, created)

    def _usable(self, session: DownstreamSession, service: McpService, identity: str) -> DownstreamSession | None:
        """``session`` if ``identity`` may continue it on ``service`` now (marked as used)."""
        now = time.monotonic()
        if (
            session.closed
            or session.identity != identity
            or session.service.scope != service.scope
            or session.sid in self.revoked
            or self._expired(session, now)
        ):
            return None
        session.last_seen = now
        if not session.local_only:
            self._served.add(session.sid)
        _adopt(session, service)
        return session

    def lookup_sse(self, query_id: str, service: McpService, identity: str = "") -> DownstreamSession | Remote | None:
        """The HTTP+SSE session named in a POST's ``?sessionId=`` (``<owner>.<sid>``), if it was
        opened by ``identity`` on ``service`` (the backend of the route the POST reached: a
        session posted to another route's endpoint would reach its servers past its route's
        policies)."""
        owner, _, sid = query_id.partition(".")
        if owner != self.owner_id:
            return Remote(owner) if owner.isdigit() else None
        session = self.sessions.get(sid)
        if session is None or session.closed or session.identity != identity or session.service.scope != service.scope:
            return None
        _adopt(session, service)
        return session

    def sse_query_id(self, session: DownstreamSession) -> str:
        return f"{self.owner_id}.{session.sid}"

    def _rebuild(
        self, state: dict[str, object], service: McpService, token: str, identity: str, created: int
    ) -> DownstreamSession | None:
        """A session started by another worker or replica: its HTTP upstream sessions are named
        in the token, so it continues here without a new handshake."""
        session = DownstreamSession(self, service, sid=str(state["s"]), identity=identity)
        session.token = token
        session.created = created
        version = state.get("v")
        if isinstance(version, str):
            session.protocol_version = version
        params = state.get("p")
        session.client_params = self.interned(params) if isinstance(params, dict) else {}
        targets = state.get("t")
        if not isinstance(targets, list):
            return None
        for entry in targets:
            if not (isinstance(entry, list) and len(entry) == 4 and entry[0] in service.by_name):
                return None
            name, upstream_sid, upstream_version, offered = entry
            upstream = session.make_upstream(service.by_name[name], upstream_sid.encode() if upstream_sid else None)
            upstream.init_params = session.client_params
            upstream.init_result = self.interned(
                {"protocolVersion": upstream_version, "capabilities": dict.fromkeys(offered, {})}
            )
            upstream.protocol_version = str(upstream_version)
        self.sessions[session.sid] = session
        self._by_token[token] = session
        self._served.add(session.sid)
        return session

    async def end(self, session: DownstreamSession) -> None:
        """The client ended the session (DELETE, or its event stream closed): every worker must
        refuse its id from now on."""
        self.forget(session.sid, session.created)
        self.worker.announce({"op": "mcp_revoke", "sid": session.sid, "created": session.created})
        await session.close()

    def discard(self, sid: str) -> DownstreamSession | None:
        """Take a session out of this worker's tables (ending it is the caller's business)."""
        self._served.discard(sid)
        session = self.sessions.pop(sid, None)
        if session is not None:
            self._by_token.pop(session.token, None)
        if session is not None and session.client_key:
            owned = self._by_client.get(session.client_key)
            if owned is not None:
                owned.pop(sid, None)
                if not owned:
                    del self._by_client[session.client_key]
        return session

    def forget(self, sid: str, created: int) -> None:
        """The session ``sid`` (started at ``created``, ms) ended: its token is refused from now
        on. Only the last ``_REVOKED_KEPT`` ended ids are remembered; forgetting one raises
        ``revoked_before`` to its start, so that its token is still refused (a client could
        otherwise end that many sessions of its own to bring an ended one back)."""
        session = self.discard(sid)
        self.revoked[sid] = created
        self.revoked.move_to_end(sid)
        while len(self.revoked) > _REVOKED_KEPT:
            _, started = self.revoked.popitem(last=False)
            self.revoked_before = max(self.revoked_before, started)
        if session is not None:
            asyncio.get_running_loop().create_task(session.close())

    def touched(self, sids: list[str]) -> None:
        """Another worker served these sessions (or a client listens on one there): this
        worker's copies of them are not idle."""
        now = time.monotonic()
        for sid in sids:
            session = self.sessions.get(sid)
            if session is not None:
                session.last_seen = max(session.last_seen, now)

    def sweep(self) -> None:
        """End the sessions idle for longer than their TTL (``_expired``). A session continued
        in several workers has a copy in each: first the others are told which sessions were in
        use here, so that a copy idle in one worker does not end a session a client uses in
        another (ending is announced to every worker)."""
        self.modern.sweep()
        in_use = self._served
        self._served = set()
        in_use.update(sid for sid, s in self.sessions.items() if not s.local_only and not s.idle)
        if in_use:
            self.worker.announce({"op": "mcp_touch", "sids": list(in_use)})
        now = time.monotonic()
        for session in [s for s in self.sessions.values() if self._expired(s, now)]:
            log.info("MCP session %s idle for %.0fs: ended", session.sid[:8], now - session.last_seen)
            self._end_later(session)

    async def close_all(self) -> None:
        await self.modern.close()
        sessions = list(self.sessions.values())
        self.sessions.clear()
        self._by_token.clear()
        self._by_client.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


_ephemeral: bytes | None = None  # the run's key, read once (the supervisor sets it before the worker starts)


def _ephemeral_key() -> bytes:
    global _ephemeral
    if _ephemeral is not None:
        return _ephemeral
    text = os.environ.get(EPHEMERAL_KEY_ENV)
    if text:
        key = bytes.fromhex(text)
    else:
        # A worker started outside a supervisor (tests of the module): one key per process.
        key = os.urandom(32)
        os.environ[EPHEMERAL_KEY_ENV] = key.hex()
    _ephemeral = key
    return key


def _adopt(session: DownstreamSession, service: McpService) -> None:
    """A session continued after a reload that kept its backend in place serves on under the
    backend as it is now configured: its ``mcpAuthorization`` and tool pinning (a tool the
    operator revoked is revoked for open sessions too), names and Origin checks. Its upstream
    sessions stay (targets the reload removed are no longer routed to; added ones are not
    joined)."""
    if session.service is not service:
        session.service = service
