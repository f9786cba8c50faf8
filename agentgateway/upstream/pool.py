"""Keep-alive connection pools, one idle list per upstream key (host, port, TLS identity)."""

from __future__ import annotations

import asyncio
import ssl

from agentgateway.upstream.http1 import UpstreamConnection
from agentgateway.upstream.target import HttpTarget


class UpstreamConnectError(Exception):
    """The connection could not be made; ``message`` is fit for a client-facing error body."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamPool:
    """Idle connections are reused last-in first-out (the warmest first) and checked when taken:
    a connection the upstream closed while idle is dropped, never handed out."""

    __slots__ = ("loop", "idle_timeout", "max_idle", "_idle")

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_timeout: float, max_idle: int | None) -> None:
        self.loop = loop
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self._idle: dict[tuple[object, ...], list[UpstreamConnection]] = {}

    def take(self, target: HttpTarget) -> UpstreamConnection | None:
        idle = self._idle.get(target.pool_key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    async def connect(self, target: HttpTarget) -> UpstreamConnection:
        key = target.pool_key
        label = target.label
        tls = target.tls
        try:
            async with asyncio.timeout(target.connect_timeout):
                if target.host.startswith("unix:"):  # another worker of this gateway (upstream/relay.py)
                    _, conn = await self.loop.create_unix_connection(
                        lambda: UpstreamConnection(self, key, label), target.host[5:]
                    )
                elif tls is None:
                    _, conn = await self.loop.create_connection(
                        lambda: UpstreamConnection(self, key, label), target.host, target.port
                    )
                else:
                    _, conn = await self.loop.create_connection(
                        lambda: UpstreamConnection(self, key, label),
                        target.host,
                        target.port,
                        ssl=tls.context,
                        server_hostname=tls.server_hostname,
                    )
        except TimeoutError:
            raise UpstreamConnectError(
                f"upstream connect timeout: {label} did not accept within {target.connect_timeout:g}s"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(f"upstream TLS error with {label}: {exc.reason or exc}") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UpstreamConnectError(f"upstream connect error: {label}: {reason}") from None
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection whose response is complete and that may be reused."""
        if conn.closed:
            return
        if conn.parsing:
            # The response ended inside a read that is still being parsed: the connection
            # comes back once the rest of that read is known to hold nothing more
            # (UpstreamConnection.data_received), not to a request started meanwhile.
            conn.release_due = True
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = []
        if self.max_idle is not None and len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        if conn.reading_paused:
            conn.resume_reading()  # it was paused for a slow client
        idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """Called when a connection closes; it must not stay in an idle list."""
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than the pool's idle timeout."""
        limit = now - self.idle_timeout
        for key, idle in list(self._idle.items()):
            stale = [c for c in idle if c.idle_since < limit]
            for conn in stale:
                conn.close()
            if not idle:
                del self._idle[key]

    def close_all(self) -> None:
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.close()
        self._idle.clear()

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())
