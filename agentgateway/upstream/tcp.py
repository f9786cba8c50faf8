"""Raw TCP connections to upstreams (TLS to them when a backendTLS policy says so), for the byte
relays of TCP and TLS routes. They are never pooled: a relayed connection belongs to one client.
"""

from __future__ import annotations

import asyncio
import ssl

from agentgateway.upstream.pool import UpstreamConnectError
from agentgateway.upstream.target import HttpTarget

# Bytes an upstream may send before the relay takes its connection over (a server that speaks
# first: SMTP, MySQL, SSH banners); reading pauses beyond them.
_EARLY_LIMIT = 64 * 1024


class OpeningStream(asyncio.Protocol):
    """The protocol of a new upstream connection until the relay takes it over: it keeps what
    the upstream sends meanwhile, and whether it already half-closed or went away."""

    __slots__ = ("transport", "early", "eof", "lost")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.early = b""
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.early += data
        if len(self.early) > _EARLY_LIMIT and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        return True  # the relay decides when this side closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


async def open_stream(loop: asyncio.AbstractEventLoop, target: HttpTarget) -> tuple[asyncio.Transport, OpeningStream]:
    """Connect to ``target`` within its connect timeout; ``UpstreamConnectError`` says why not."""
    label = target.label
    tls = target.tls
    try:
        async with asyncio.timeout(target.connect_timeout):
            if tls is None:
                transport, opening = await loop.create_connection(OpeningStream, target.host, target.port)
            else:
                transport, opening = await loop.create_connection(
                    OpeningStream, target.host, target.port, ssl=tls.context, server_hostname=tls.server_hostname
                )
    except TimeoutError:
        raise UpstreamConnectError(
            f"upstream connect timeout: {label} did not accept within {target.connect_timeout:g}s"
        ) from None
    except ssl.SSLError as exc:
        raise UpstreamConnectError(f"upstream TLS error with {label}: {exc.reason or exc}") from None
    except OSError as exc:
        raise UpstreamConnectError(f"upstream connect error: {label}: {exc.strerror or exc}") from None
    return transport, opening
