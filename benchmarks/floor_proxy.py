"""The floor of a Python proxy: uvloop + httptools and nothing else.

No routing, no policies, no limits, no metrics, no logging, one upstream, one pooled upstream
connection per client connection. It is what the gateway's data plane is built from; the distance
between it and the gateway is the cost of the gateway's features, and the distance between it and
nginx is the cost of Python itself. Not for use in front of anything real.

    python -m benchmarks.floor_proxy LISTEN_PORT UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httptools
import uvloop

HOST = "127.0.0.1"
_HOP = frozenset((b"connection", b"keep-alive", b"transfer-encoding"))


class UpstreamSide(asyncio.Protocol):
    def __init__(self, client: ClientSide) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.out: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)
        if self.out:
            self.client.transport.write(b"".join(self.out))
            self.out = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parts = [b"HTTP/1.1 %d OK\r\n" % self.parser.get_status_code()]
        for name, value in self.headers:
            if name.lower() not in _HOP:
                parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self.out.append(b"".join(parts))
        self.headers = []

    def on_body(self, body: bytes) -> None:
        self.out.append(body)


class ClientSide(asyncio.Protocol):
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.parser = httptools.HttpRequestParser(self)
        self.upstream: UpstreamSide | None = None
        self.transport: Any = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parts = [self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self.head = b"".join(parts)
        self.url = b""
        self.headers = []

    def on_message_complete(self) -> None:
        if self.upstream is None:
            asyncio.get_running_loop().create_task(self.connect(self.head))
        else:
            self.upstream.transport.write(self.head)

    async def connect(self, head: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, self.upstream = await loop.create_connection(lambda: UpstreamSide(self), HOST, self.upstream_port)
        self.upstream.transport.write(head)


async def serve(port: int, upstream_port: int) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: ClientSide(upstream_port), HOST, port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
