"""A byte relay between two connections: an upgraded HTTP/1.1 connection (WebSocket or another
``Upgrade`` protocol) and its upstream, or a TCP / TLS-passthrough client and its backend.

Nothing is parsed: WebSocket frames, TLS records, any protocol pass as they are. Each transport
is given a ``TunnelEnd`` protocol (``transport.set_protocol``) and what one end reads is written
to the other at once, through callbacks, never through a queue.

- Back-pressure: when one end's write buffer passes its high-water mark, the other end stops
  reading until it drains, so a fast sender and a slow reader never pile bytes up in memory.
- Half-close: an end that reads EOF shuts down writing on the other end (plain TCP can; a TLS
  transport cannot, so its side closes), and the other direction keeps flowing. The tunnel
  closes once both directions are done or an end is lost; a clean loss closes the other end
  after its buffered bytes are written (within ``LINGER`` seconds), a reset aborts it.
- Idle: the owner's periodic sweep calls ``check_idle``; no byte in either direction for the
  idle timeout closes both ends. The sweep compares byte counts: no timer or clock per read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# Seconds an end that is being closed may take to write what it still buffers after the other
# end went away (a peer that stopped reading would otherwise hold it open for ever).
LINGER = 10.0


class TunnelEnd(asyncio.Protocol):
    """One connection of a tunnel. ``received`` counts the bytes read from it (all of which were
    written to the peer)."""

    __slots__ = ("tunnel", "transport", "peer", "received", "eof", "lost")

    def __init__(self, tunnel: Tunnel, transport: asyncio.Transport) -> None:
        self.tunnel = tunnel
        self.transport = transport
        self.peer: TunnelEnd = self
        self.received = 0
        self.eof = False
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        peer = self.peer
        if not peer.lost:
            peer.transport.write(data)

    def eof_received(self) -> bool | None:
        return self.tunnel.end_eof(self)

    def pause_writing(self) -> None:
        # This end's buffer is full: stop reading what would be written to it.
        peer = self.peer
        if not peer.lost and not peer.transport.is_closing():
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if not peer.lost and not peer.transport.is_closing():
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.end_lost(self, exc)


class Tunnel:
    """Relays bytes between ``client`` and ``upstream`` until both are closed, then calls
    ``on_end`` once (the owner logs and counts the connection)."""

    __slots__ = ("client", "upstream", "_on_end", "ended", "error", "_seen", "_idle", "_linger")

    def __init__(
        self,
        client: asyncio.Transport,
        upstream: asyncio.Transport,
        on_end: Callable[[Tunnel], None],
    ) -> None:
        self.client = TunnelEnd(self, client)
        self.upstream = TunnelEnd(self, upstream)
        self.client.peer = self.upstream
        self.upstream.peer = self.client
        self._on_end = on_end
        self.ended = False
        # Why the tunnel was cut, for the access log (empty when an end closed it).
        self.error = ""
        # The idle clock of ``check_idle``: bytes relayed at the last sweep and seconds since
        # they last changed.
        self._seen = 0
        self._idle = 0.0
        self._linger: asyncio.TimerHandle | None = None

    @property
    def from_client(self) -> int:
        return self.client.received

    @property
    def from_upstream(self) -> int:
        return self.upstream.received

    def start(self, client_early: bytes = b"", upstream_early: bytes = b"") -> None:
        """Take both transports over. ``client_early`` and ``upstream_early`` are bytes already
        read from each side (after an HTTP head, or a TLS ClientHello read to route by SNI):
        they are relayed first."""
        for end in (self.client, self.upstream):
            end.transport.set_protocol(end)
        for end, early in ((self.client, client_early), (self.upstream, upstream_early)):
            if early:
                end.data_received(early)
        # The former protocols may have paused reading (to hold a request, or for back-pressure);
        # an end reads again unless its peer's write buffer is still over the high-water mark
        # (then the peer's transport calls ``resume_writing`` on its new protocol when it drains).
        for end in (self.client, self.upstream):
            transport = end.transport
            peer = end.peer.transport
            if transport.is_closing():
                continue
            if peer.get_write_buffer_size() > peer.get_write_buffer_limits()[1]:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # ------------------------------------------------------------------ ends

    def end_eof(self, end: TunnelEnd) -> bool:
        """``end`` read EOF: pass the half-close on. The answer keeps ``end`` open for the other
        direction when it is plain TCP (a TLS transport has no half-close and closes)."""
        end.eof = True
        keep = end.transport.can_write_eof()
        peer = end.peer
        if peer.eof or peer.lost:
            self.close()
        elif peer.transport.can_write_eof() and not peer.transport.is_closing():
            peer.transport.write_eof()
        else:
            # The peer cannot be half-closed: close it once its buffer is written.
            self.close()
        return keep

    def end_lost(self, end: TunnelEnd, exc: Exception | None) -> None:
        end.lost = True
        peer = end.peer
        if exc is not None and not self.error:
            self.error = f"{'client' if end is self.client else 'upstream'} connection lost: {exc}"
        if not peer.lost:
            if exc is None:
                self._close_end(peer)
            else:
                peer.transport.abort()
            return
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self.ended:
            self.ended = True
            self._on_end(self)

    def _close_end(self, end: TunnelEnd) -> None:
        transport = end.transport
        if not transport.is_closing():
            transport.close()
        if self._linger is None and not end.lost:
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(LINGER, self._linger_over)

    def _linger_over(self) -> None:
        self._linger = None
        for end in (self.client, self.upstream):
            if not end.lost:
                end.transport.abort()

    # ------------------------------------------------------------------ the owner's controls

    def close(self) -> None:
        """Close both ends once what they buffer is written."""
        for end in (self.client, self.upstream):
            if not end.lost:
                self._close_end(end)

    def abort(self, reason: str = "") -> None:
        """Cut both ends at once (the gateway stops, or the tunnel idled)."""
        if reason and not self.error:
            self.error = reason
        for end in (self.client, self.upstream):
            if not end.lost:
                end.transport.abort()

    def check_idle(self, elapsed: float, timeout: float) -> None:
        """Called by the owner's sweep ``elapsed`` seconds after the previous call: a tunnel
        that relayed nothing for ``timeout`` seconds is closed."""
        total = self.client.received + self.upstream.received
        if total != self._seen:
            self._seen = total
            self._idle = 0.0
            return
        self._idle += elapsed
        if self._idle >= timeout and not self.ended:
            self.abort(f"idle for {timeout:g}s (frontendPolicies.tcp.idleTimeout)")
