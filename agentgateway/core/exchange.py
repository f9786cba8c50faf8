"""The interfaces between the server and what serves a request.

The server's connection (``server/http1.py``) implements ``ResponseWriter``: backends and
policies write their answer to it and steer the request body through it, without importing the
server. What serves a request implements ``Exchange``: the connection feeds it the request body
and flow-control events. A proxied response taken over by a policy goes through a
``ResponseProcessor``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from agentgateway.core.context import RequestCtx

# Reasons reading from the client is paused; reading resumes when none is left.
PAUSE_PIPELINE = 1
PAUSE_UPSTREAM = 2
PAUSE_BODY_BUFFER = 4


class Exchange(Protocol):
    """What serves one request. The connection feeds it the body and flow-control events."""

    def request_body(self, chunk: bytes) -> None: ...

    def request_end(self) -> None: ...

    def client_write_paused(self) -> None: ...

    def client_write_resumed(self) -> None: ...

    def client_lost(self) -> None: ...

    def client_data_done(self) -> None:
        """Everything the client sent in one read has been fed: flush what it produced."""


class _Discard:
    """Exchange for a request that was already answered: its remaining body is dropped."""

    __slots__ = ()

    def request_body(self, chunk: bytes) -> None:
        pass

    def request_end(self) -> None:
        pass

    def client_write_paused(self) -> None:
        pass

    def client_write_resumed(self) -> None:
        pass

    def client_lost(self) -> None:
        pass

    def client_data_done(self) -> None:
        pass


DISCARD = _Discard()


class BindInfo(Protocol):
    """The listening port a connection arrived on."""

    @property
    def port(self) -> int: ...

    @property
    def internal(self) -> bool:
        """The socket other workers of this gateway relay requests to (trusted: its requests
        passed the route's request policies in the worker that relayed them)."""


class ResponseWriter(Protocol):
    """A client connection as exchanges see it: where the response goes, and the controls of
    the request body. Implemented by the server's connection."""

    @property
    def closed(self) -> bool: ...

    @property
    def write_paused(self) -> bool:
        """The client reads slower than the response is produced: pause the producer."""

    @property
    def bind(self) -> BindInfo: ...

    @property
    def max_buffer_size(self) -> int:
        """``frontendPolicies.http.maxBufferSize`` of this connection's listener."""

    def send_continue(self) -> None:
        """``100 Continue`` for a client that waits for it before sending the body."""

    def send_head(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], content_length: int | None, has_body: bool
    ) -> None:
        """Queue the status line and headers (without framing headers: the writer adds them)."""

    def send_head_fields(self, status: int, fields: bytes, content_length: int | None, has_body: bool) -> None:
        """``send_head`` for a header block already serialized (``name: value\\r\\n`` lines)."""

    def send_body(self, chunk: bytes) -> None:
        """Queue a body chunk; written by the next ``flush`` (or ``end_response``)."""

    def flush(self) -> None:
        """Write what was queued, in one system call."""

    def end_response(self) -> None:
        """The whole response was sent."""

    def abort(self) -> None:
        """The response cannot be completed: close so the client sees it truncated."""

    def reply(self, ctx: RequestCtx, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """A short text answer the gateway writes itself."""

    def switch_exchange(self, old: Exchange, new: Exchange) -> None:
        """``old`` hands the request over to ``new`` (a no-op if ``old`` no longer serves it)."""

    def pause_request_body(self, reason: int = PAUSE_UPSTREAM) -> None: ...

    def resume_request_body(self, reason: int = PAUSE_UPSTREAM) -> None: ...

    def expect_response(self, seconds: float) -> None:
        """The backend has this long to start answering (checked by the connection's sweep)."""

    def response_arrived(self) -> None:
        """Clears ``expect_response``: the backend answered (or the exchange is over)."""

    def switch_protocols(self, fields: bytes, upstream: asyncio.Transport, early: bytes) -> None:
        """The backend accepted the client's ``Upgrade`` (``ctx.upgrade``): answer ``101`` with
        ``fields`` (``name: value\\r\\n`` lines, Upgrade and Connection included), then relay
        bytes both ways between the client and ``upstream`` (``early``: what the upstream sent
        after its own 101 head) until either side closes. The writer owns ``upstream`` now."""


class ResponseProcessor(Protocol):
    """Takes over a proxied response from its head on (a policy's ``process_response`` made it,
    having sent the head or decided to hold it): the agent card rewrite, stream observers."""

    def body(self, chunk: bytes) -> bool:
        """One body chunk. False: the processor has answered the request itself (an error)
        and the rest of the upstream response is dropped."""

    def end(self) -> bool:
        """The upstream body is complete. False: the processor has already ended the response."""

    def close(self) -> None:
        """The exchange is over (or was cut short): release timers. Called once, last."""
