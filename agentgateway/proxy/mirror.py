"""A copy of a request sent to a mirror backend (``requestMirror``), body included.

The mirror never slows or changes the primary exchange: it gets the same bytes the primary
upstream gets, buffered up to a bound while its connection is made; a mirror that cannot keep up
(its buffer past the bound) is dropped, never waited for. Its response is read and discarded.
A worker keeps at most ``MAX_IN_FLIGHT`` copies open at once; past that, requests are not
mirrored until some end (a mirror that accepts and never answers would otherwise hold a
connection per request for ``MIRROR_DEADLINE``: a client could run the worker out of file
descriptors at its request rate).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agentgateway.upstream.pool import UpstreamConnectError

if TYPE_CHECKING:
    from agentgateway.proxy.host import ProxyHost
    from agentgateway.upstream.http1 import Headers, UpstreamConnection
    from agentgateway.upstream.target import HttpTarget

_BUFFER_LIMIT = 256 * 1024
# A mirror whose backend does not answer within this time is abandoned (its connection closed).
MIRROR_DEADLINE = 30.0
MAX_IN_FLIGHT = 512


class MirrorCall:
    # Copies started and not yet finished, in this worker process (``admit``).
    in_flight = 0

    __slots__ = (
        "worker",
        "target",
        "upstream",
        "_pending",
        "_pending_bytes",
        "_request_done",
        "_done",
        "_task",
        "_timer",
    )

    def __init__(self, worker: ProxyHost, target: HttpTarget, head: bytes) -> None:
        self.worker = worker
        self.target = target
        self.upstream: UpstreamConnection | None = None
        self._pending: list[bytes] = [head]
        self._pending_bytes = len(head)
        self._request_done = False
        self._done = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        MirrorCall.in_flight += 1  # until ``_finish``

    @classmethod
    def admit(cls) -> bool:
        """Room for another copy (``MAX_IN_FLIGHT``); a copy not admitted is not made."""
        return cls.in_flight < MAX_IN_FLIGHT

    def start(self) -> None:
        if self._done:
            return  # dropped already (its body was past the bound): no connection
        worker = self.worker
        self._timer = worker.loop.call_later(MIRROR_DEADLINE, self.abort)
        upstream = worker.pool.take(self.target)
        if upstream is not None:
            self._attach(upstream)
        else:
            self._task = worker.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            upstream = await self.worker.pool.connect(self.target)
        except UpstreamConnectError:
            self._finish()
            return
        finally:
            self._task = None
        if self._done:
            self.worker.pool.release(upstream)
            return
        self._attach(upstream)

    def _attach(self, upstream: UpstreamConnection) -> None:
        self.upstream = upstream
        upstream.begin(self, False)
        data = b"".join(self._pending)
        self._pending = []
        self._pending_bytes = 0
        upstream.write(data)

    def send(self, data: bytes) -> None:
        """Bytes for the mirror, framed as the primary upstream gets them."""
        if self._done:
            return
        upstream = self.upstream
        if upstream is None:
            self._pending.append(data)
            self._pending_bytes += len(data)
            if self._pending_bytes > _BUFFER_LIMIT:
                self.abort()
            return
        transport = upstream.transport
        if transport is not None and transport.get_write_buffer_size() > _BUFFER_LIMIT:
            self.abort()
            return
        upstream.write(data)

    def request_end(self) -> None:
        self._request_done = True

    def abort(self) -> None:
        if self._done:
            return
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.abort()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._finish()

    def _finish(self) -> None:
        if not self._done:
            MirrorCall.in_flight -= 1
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------------ UpstreamSink

    def upstream_head(self, status: int, headers: Headers) -> None:
        pass

    def upstream_body(self, chunk: bytes) -> None:
        pass

    def upstream_data_done(self) -> None:
        pass

    def upstream_trailers(self, trailers: Headers) -> None:
        pass

    def upstream_end(self, keep_alive: bool) -> None:
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if keep_alive and self._request_done:
                self.worker.pool.release(upstream)
            else:
                upstream.close()
        self._finish()

    def upstream_failed(self, status: int, message: str) -> None:
        self.upstream = None
        self._finish()

    def upstream_write_paused(self) -> None:
        pass

    def upstream_write_resumed(self) -> None:
        pass
