"""Which protocol a client connection speaks, decided before any request byte is parsed.

TLS: the protocol ALPN selected (``h2``, else HTTP/1.1). Plaintext: HTTP/2 with prior knowledge
when the first bytes are the HTTP/2 connection preface (RFC 9113 §3.3), else HTTP/1.1. Until the
first bytes arrive, the HTTP/1.1 connection already holds the connection's deadline (a client
that sends nothing is closed after the header timeout as before). ``Upgrade: h2c`` is not
offered (agentgateway does not accept it either): such a request is served over HTTP/1.1.
"""

from __future__ import annotations

import asyncio
from typing import cast

from agentgateway.core.http2 import PREFACE
from agentgateway.server.host import ConnectionHost, ServedBind
from agentgateway.server.http1 import HttpConnection
from agentgateway.server.http2 import Http2Connection

_PREFACE_LENGTH = len(PREFACE)


def client_protocol(
    worker: ConnectionHost, bind: ServedBind, tls: bool, client: tuple[str, int] | None = None
) -> asyncio.Protocol:
    """The protocol of a connection accepted on an HTTP port. ``client``: the address a PROXY
    protocol header named (else the peer's)."""
    return AlpnSelector(worker, bind, client) if tls else PrefaceSniffer(worker, bind, client)


def _with_client(conn: HttpConnection | Http2Connection, client: tuple[str, int] | None) -> None:
    if client is not None:
        conn.client_ip, conn.client_port = client


class AlpnSelector(asyncio.Protocol):
    """TLS: the handshake is done when the connection is made; ALPN names the protocol."""

    __slots__ = ("worker", "bind", "client")

    def __init__(self, worker: ConnectionHost, bind: ServedBind, client: tuple[str, int] | None) -> None:
        self.worker = worker
        self.bind = bind
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        protocol: HttpConnection | Http2Connection
        if sslobj is not None and sslobj.selected_alpn_protocol() == "h2":
            protocol = Http2Connection(self.worker, self.bind)
        else:
            protocol = HttpConnection(self.worker, self.bind)
        _with_client(protocol, self.client)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


class PrefaceSniffer(asyncio.Protocol):
    """Plaintext: looks at the first bytes, then hands the connection over for good."""

    __slots__ = ("worker", "bind", "client", "transport", "http1", "_seen")

    def __init__(self, worker: ConnectionHost, bind: ServedBind, client: tuple[str, int] | None) -> None:
        self.worker = worker
        self.bind = bind
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.http1 = HttpConnection(worker, bind)
        _with_client(self.http1, client)
        self._seen = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.http1.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        seen = self._seen + data if self._seen else data
        n = min(len(seen), _PREFACE_LENGTH)
        if seen[:n] != PREFACE[:n]:
            transport.set_protocol(self.http1)
            self.http1.data_received(seen)
            return
        if n < _PREFACE_LENGTH:
            self._seen = seen  # "PRI * HT...": wait for the rest of the preface
            return
        # HTTP/2 with prior knowledge: the HTTP/1.1 connection never saw a byte; it steps aside.
        self.worker.connections.discard(self.http1)
        self.http1.closed = True
        http2 = Http2Connection(self.worker, self.bind)
        _with_client(http2, self.client)
        transport.set_protocol(http2)
        http2.connection_made(transport)
        http2.data_received(seen)

    def eof_received(self) -> bool | None:
        return self.http1.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.http1.connection_lost(exc)

    def pause_writing(self) -> None:
        self.http1.pause_writing()

    def resume_writing(self) -> None:
        self.http1.resume_writing()
