"""A test upstream that speaks only HTTP/2 (h2c with prior knowledge, or TLS with ALPN h2).

Run as ``python -m tests.support.h2_upstream --port P [--cert C --key K]``; prints ``ready``.
Built on the ``h2`` state machine directly, so what it sees is what the gateway sent.

Endpoints (query parameters in brackets):
  /echo (and any path not below)  JSON: method, path, authority, scheme, headers, body length
                                  and sha256; ``x-upstream-version: 2`` on every response
  /trailers            the echo, then trailers ``x-checksum`` (the body's sha256) and ``x-done``
  /bytes [n]           n bytes of a repeating pattern, sent as the client's window allows
  /slow [delay]        answers after ``delay`` seconds
  /cookies             an empty answer setting cookies: ``agw_oidc_s_x`` (the gateway's own
                       name, which it must not relay) and ``theme``
  /lazyack             the echo; the request body is acknowledged once, with one large window
                       update after its first 32 KiB (as a gRPC peer whose window grew does),
                       and never again: a sender that waits for another update stalls
  /__log               JSON: the requests so far and the streams the client reset
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded, StreamReset, WindowUpdated
from h2.exceptions import ProtocolError, StreamClosedError

PATTERN = bytes(range(256)) * 256
LAZY_WINDOW = 16 * 1024 * 1024  # /lazyack's one window update: room for the whole test body
LOG: dict[str, list[Any]] = {"requests": [], "resets": []}


class _Stream:
    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        self.pseudo = {k.decode(): v.decode() for k, v in headers if k.startswith(b":")}
        self.body = hashlib.sha256()
        self.length = 0
        self.out = b""
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.ended = False
        self.lazy_ack = urlsplit(self.pseudo.get(":path", "/")).path == "/lazyack"
        self.lazy_acked = False


class Http2Server(asyncio.Protocol):
    def __init__(self) -> None:
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.streams: dict[int, _Stream] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError:
            self.flush()
            assert self.transport is not None
            self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = _Stream(event.headers)
            elif isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.body.update(event.data)
                    stream.length += len(event.data)
                if stream is None or not stream.lazy_ack:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif not stream.lazy_acked and stream.length >= 32 * 1024:
                    stream.lazy_acked = True
                    self.conn.increment_flow_control_window(LAZY_WINDOW)
                    self.conn.increment_flow_control_window(LAZY_WINDOW, event.stream_id)
            elif isinstance(event, StreamEnded):
                if event.stream_id in self.streams:
                    self.respond(event.stream_id)
            elif isinstance(event, StreamReset):
                stream = self.streams.pop(event.stream_id, None)
                if stream is not None:
                    LOG["resets"].append(stream.pseudo.get(":path"))
            elif isinstance(event, WindowUpdated):
                for stream_id in list(self.streams):
                    self.send_pending(stream_id)
        self.flush()

    def respond(self, stream_id: int) -> None:
        stream = self.streams[stream_id]
        url = urlsplit(stream.pseudo.get(":path", "/"))
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        LOG["requests"].append(
            {
                **stream.pseudo,
                "headers": [[k.decode(), v.decode()] for k, v in stream.headers if not k.startswith(b":")],
                "body_length": stream.length,
            }
        )
        if url.path == "/__log":
            self.send(stream_id, 200, json.dumps(LOG).encode(), "application/json")
        elif url.path == "/bytes":
            n = int(query.get("n", "1024"))
            self.send(stream_id, 200, (PATTERN * (n // len(PATTERN) + 1))[:n], "application/octet-stream")
        elif url.path == "/cookies":
            cookies = [(b"set-cookie", b"agw_oidc_s_x=planted; Path=/"), (b"set-cookie", b"theme=dark; Path=/")]
            self.send(stream_id, 200, b"", "text/plain", cookies)
        elif url.path == "/slow":
            loop = asyncio.get_running_loop()
            loop.call_later(float(query.get("delay", "1")), self.send_later(stream_id, 200, b"slow\n", "text/plain"))
        else:
            body = json.dumps(
                {
                    "version": "HTTP/2",
                    "method": stream.pseudo.get(":method"),
                    "path": stream.pseudo.get(":path"),
                    "authority": stream.pseudo.get(":authority"),
                    "scheme": stream.pseudo.get(":scheme"),
                    "headers": [[k.decode(), v.decode()] for k, v in stream.headers if not k.startswith(b":")],
                    "body_length": stream.length,
                    "body_sha256": stream.body.hexdigest(),
                }
            ).encode()
            if url.path == "/trailers":
                stream.trailers = [(b"x-checksum", stream.body.hexdigest().encode()), (b"x-done", b"yes")]
            self.send(stream_id, 200, body, "application/json")

    def send_later(self, stream_id: int, status: int, body: bytes, content_type: str) -> Callable[[], None]:
        def later() -> None:
            if stream_id in self.streams:
                self.send(stream_id, status, body, content_type)
                self.flush()

        return later

    def send(
        self, stream_id: int, status: int, body: bytes, content_type: str, extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        stream = self.streams[stream_id]
        headers = [
            (b":status", str(status).encode()),
            (b"content-type", content_type.encode()),
            (b"x-upstream-version", b"2"),
            *extra,
        ]
        if stream.trailers is None:
            headers.append((b"content-length", str(len(body)).encode()))
        self.conn.send_headers(stream_id, headers)
        stream.out = body
        stream.ended = True
        self.send_pending(stream_id)

    def send_pending(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or not stream.ended:
            return
        try:
            while stream.out:
                window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
                if window <= 0:
                    return
                chunk, stream.out = stream.out[:window], stream.out[window:]
                self.conn.send_data(stream_id, chunk)
            if stream.trailers is not None:
                self.conn.send_headers(stream_id, stream.trailers, end_stream=True)
            else:
                self.conn.end_stream(stream_id)
        except StreamClosedError:
            pass
        del self.streams[stream_id]

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)


async def serve(port: int, cert: str | None, key: str | None) -> None:
    ctx = None
    if cert and key:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["h2"])
    server = await asyncio.get_running_loop().create_server(Http2Server, "127.0.0.1", port, ssl=ctx)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.cert, args.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
