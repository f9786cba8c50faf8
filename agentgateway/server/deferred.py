"""The exchange of a request whose policy chain waits: for I/O (a remote rate-limit service,
signing keys a JWT policy must fetch) or for the request body (a policy that reads it, such as
``a2a``, or peeks at it, such as ``extAuthz``).

The chain runs in a task; meanwhile the request body is buffered (reading pauses above a bound,
or above ``frontendPolicies.http.maxBufferSize`` once a policy asked for the whole body, or
above what a policy peeking at it through ``ctx.read_body`` waits for) and nothing is written.
When the chain answers, that answer is written; when it lets the request
through, the real exchange (the upstream call) takes over with the buffered body. Pipelined
requests behind this one wait as they always do: the connection starts the next request only
when this one's response is complete, so order is kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from agentgateway.core.exchange import DISCARD, PAUSE_BODY_BUFFER, Exchange
from agentgateway.core.reply import LocalReply
from agentgateway.policy.chain import respond, run_from

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.exchange import ResponseWriter
    from agentgateway.routing.route import CompiledRoute
    from agentgateway.server.host import ConnectionHost

log = logging.getLogger("agentgateway.policy")

_BUFFER_LIMIT = 256 * 1024


def _too_large(limit: int) -> LocalReply:
    return LocalReply.text(413, f"request body larger than frontendPolicies.http.maxBufferSize ({limit} bytes)")


class DeferredExchange:
    __slots__ = (
        "worker",
        "conn",
        "ctx",
        "route",
        "_body",
        "_body_bytes",
        "_ended",
        "_lost",
        "_next",
        "_task",
        "_limit",
        "_body_waiter",
    )

    def __init__(
        self,
        worker: ConnectionHost,
        conn: ResponseWriter,
        ctx: RequestCtx,
        route: CompiledRoute,
        index: int,
        resume: bool = False,
    ) -> None:
        self.worker = worker
        self.conn = conn
        self.ctx = ctx
        self.route = route
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._ended = False
        self._lost = False
        self._next: Exchange | None = None
        # Reading pauses above this many buffered bytes (raised while a policy reads the body).
        self._limit = _BUFFER_LIMIT
        self._body_waiter: asyncio.Future[None] | None = None
        ctx.read_body = self.peek_body
        self._task = worker.loop.create_task(self._run(index, resume))

    async def peek_body(self, limit: int) -> tuple[bytes, bool]:
        """The body received so far once it is complete or longer than ``limit`` bytes, and
        whether it is complete. The bytes stay buffered: the backend still gets all of them."""
        ctx = self.ctx
        if not ctx.has_body:
            return b"", True
        if ctx.expect_continue:
            # The client waits for this before sending the body; the forward must not send it again.
            ctx.expect_continue = False
            self.conn.send_continue()
        self._limit = max(self._limit, limit + 1)
        self.conn.resume_request_body(PAUSE_BODY_BUFFER)
        while not self._ended and self._body_bytes <= limit:
            waiter = self._body_waiter = self.worker.loop.create_future()
            try:
                await waiter
            finally:
                self._body_waiter = None
        return b"".join(self._body), self._ended

    async def _run(self, index: int, resume: bool) -> None:
        ctx = self.ctx
        route = self.route
        timeout = route.timeout.request if route.timeout is not None else None
        reply: LocalReply | None
        try:
            if timeout is not None:
                left = timeout - (time.perf_counter() - ctx.start)
                async with asyncio.timeout(max(left, 0.0)):
                    reply = await run_from(route.chain, index, ctx, self.read_body, resume)
            else:
                reply = await run_from(route.chain, index, ctx, self.read_body, resume)
        except TimeoutError:
            reply = LocalReply.text(504, f"request timeout: no response within {timeout:g}s")
        except Exception as exc:  # a policy bug must not leave the client hanging
            log.error("policy chain of route %s failed: %r", route.name, exc, exc_info=exc)
            reply = LocalReply.text(500, "internal error in the policy chain")
        if self._lost:
            return
        if reply is not None:
            self.conn.switch_exchange(self, DISCARD)
            respond(self.conn, ctx, reply, route.chain)
            return
        ctx.read_body = None
        nxt = self.worker.forward(self.conn, ctx, route)
        self._next = nxt
        self.conn.switch_exchange(self, nxt)
        for chunk in self._body:
            nxt.request_body(chunk)
        self._body = []
        if self._ended:
            nxt.request_end()
        else:
            nxt.client_data_done()
        self.conn.resume_request_body(PAUSE_BODY_BUFFER)

    async def read_body(self) -> LocalReply | None:
        """The whole request body into ``ctx.request_body`` (the buffered chunks stay queued for
        the exchange that takes over, which counts them and sends ``ctx.request_body``), or a
        413 when it is larger than ``maxBufferSize``."""
        ctx = self.ctx
        if not ctx.has_body or ctx.request_body is not None:
            return None
        limit = self.worker.runtime.limits.max_buffer_size
        if ctx.content_length is not None and ctx.content_length > limit:
            return _too_large(limit)
        body, complete = await self.peek_body(limit)
        # The end may arrive in the same read as the bytes past the limit: complete but too long.
        if not complete or len(body) > limit:
            return _too_large(limit)
        ctx.request_body = body
        return None

    # ------------------------------------------------------------------ Exchange

    def request_body(self, chunk: bytes) -> None:
        nxt = self._next
        if nxt is not None:
            nxt.request_body(chunk)
            return
        self._body.append(chunk)
        self._body_bytes += len(chunk)
        if self._body_bytes > self._limit:
            self.conn.pause_request_body(PAUSE_BODY_BUFFER)
        self._wake()

    def request_end(self) -> None:
        self._ended = True
        self._wake()
        if self._next is not None:
            self._next.request_end()

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def client_write_paused(self) -> None:
        if self._next is not None:
            self._next.client_write_paused()

    def client_write_resumed(self) -> None:
        if self._next is not None:
            self._next.client_write_resumed()

    def client_lost(self) -> None:
        self._lost = True
        self._task.cancel()
        if self._next is not None:
            self._next.client_lost()

    def client_data_done(self) -> None:
        if self._next is not None:
            self._next.client_data_done()
