"""A test upstream: a small HTTP/1.1 server with endpoints that exercise a proxy.

Run as ``python -m tests.support.upstream --port P --name NAME [--cert C --key K [--client-ca CA]]``.
It prints ``ready`` once listening. Every response carries ``x-upstream: NAME`` and ``x-conn: <id>``
(the connection number), so tests can tell replicas and connection reuse apart; over mutual TLS
also ``x-client-cert: <subject CN of the client's certificate>``.

Endpoints (query parameters in brackets):
  /echo (and any path not below)  JSON: method, target, headers, body length and sha256 (streamed)
  /bytes [n, chunk, chunked=1]   n bytes of a repeating pattern, content-length or chunked
  /sse [n, delay]       n server-sent events, ``delay`` seconds apart
  /slow [delay]         answers after ``delay`` seconds
  /status [code]        an empty response with that status
  /close-delimited [n]  HTTP/1.0-style body ended by closing the connection
  /drop                 closes the connection without answering
  /truncate [n]         promises n bytes, sends half, closes
  /hop                  answers with hop-by-hop headers a proxy must remove
  /head-length [n]      HEAD-friendly: content-length n on HEAD and GET
  /fail [key, times, code]  the first `times` requests with this key get `code`, later ones the echo
  /hang                 reads the request and never answers
  /partial              sends the start of a response head, then closes

Bookkeeping (not logged themselves), for tests that count and time what reached the upstream:
  /__log                JSON: every request so far (method, target, headers, body length and sha256,
                        arrival time on the upstream's monotonic clock) and the open connections
  /__reset              forgets the log
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

PATTERN = bytes(range(256)) * 256  # 64 KiB
SPECIAL_PATHS = frozenset(
    (
        "/bytes",
        "/sse",
        "/slow",
        "/status",
        "/close-delimited",
        "/drop",
        "/truncate",
        "/hop",
        "/head-length",
        "/fail",
        "/hang",
        "/partial",
        "/__log",
        "/__reset",
    )
)


def pattern_bytes(n: int) -> bytes:
    out = PATTERN * (n // len(PATTERN)) + PATTERN[: n % len(PATTERN)]
    return out


class Upstream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.conn_ids = itertools.count(1)
        self.log: list[dict[str, object]] = []
        self.open_connections = 0
        self.failures: dict[str, int] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_id = next(self.conn_ids)
        self.open_connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                keep = await self.request(head, reader, writer, conn_id)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()

    async def request(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_id: int
    ) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers.append((k.strip().lower(), v.strip()))
        hdr = dict(headers)
        url = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        keep_alive = version == "HTTP/1.1" and hdr.get("connection", "").lower() != "close"
        base = [("x-upstream", self.name), ("x-conn", str(conn_id))]
        peer = writer.get_extra_info("peercert") or {}
        client_cn = next((v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"), "")
        if client_cn:
            base.append(("x-client-cert", client_cn))

        sha = hashlib.sha256()
        length = 0
        if "chunked" in hdr.get("transfer-encoding", "").lower():
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                remaining = size
                while remaining:
                    chunk = await reader.read(min(remaining, 1 << 20))
                    if not chunk:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    sha.update(chunk)
                    remaining -= len(chunk)
                length += size
                await reader.readexactly(2)
        elif "content-length" in hdr:
            remaining = int(hdr["content-length"])
            while remaining:
                chunk = await reader.read(min(remaining, 1 << 20))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", remaining)
                sha.update(chunk)
                length += len(chunk)
                remaining -= len(chunk)

        async def send(status: int, body: bytes = b"", extra: list[tuple[str, str]] | None = None) -> None:
            fields = base + (extra or []) + [("content-length", str(len(body)))]
            if not keep_alive:
                fields.append(("connection", "close"))
            out = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
            writer.write(out.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()

        path = url.path
        if not path.startswith("/__"):
            self.log.append(
                {
                    "method": method,
                    "target": target,
                    "headers": headers,
                    "body_length": length,
                    "body_sha256": sha.hexdigest(),
                    "time": asyncio.get_running_loop().time(),
                    "conn": conn_id,
                }
            )
        if path not in SPECIAL_PATHS:
            body = json.dumps(
                {
                    "upstream": self.name,
                    "method": method,
                    "target": target,
                    "version": version,
                    "headers": headers,
                    "body_length": length,
                    "body_sha256": sha.hexdigest(),
                    "chunked": "chunked" in hdr.get("transfer-encoding", ""),
                }
            ).encode()
            await send(200, body, [("content-type", "application/json")])
        elif path == "/bytes":
            n = int(q.get("n", "1024"))
            step = int(q.get("chunk", str(64 * 1024)))
            chunked = q.get("chunked") == "1"
            fields = base + ([("transfer-encoding", "chunked")] if chunked else [("content-length", str(n))])
            writer.write(("HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode())
            if method != "HEAD":
                sent = 0
                while sent < n:
                    size = min(step, n - sent)
                    offset = sent % len(PATTERN)
                    piece = (PATTERN[offset:] + PATTERN)[:size] if size <= len(PATTERN) else pattern_bytes(size)
                    writer.write(b"%x\r\n%b\r\n" % (size, piece) if chunked else piece)
                    sent += size
                    await writer.drain()
                if chunked:
                    writer.write(b"0\r\n\r\n")
            await writer.drain()
        elif path == "/sse":
            n = int(q.get("n", "5"))
            delay = float(q.get("delay", "0.1"))
            fields = base + [("content-type", "text/event-stream"), ("transfer-encoding", "chunked")]
            writer.write(("HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode())
            await writer.drain()
            loop = asyncio.get_running_loop()
            for i in range(n):
                event = f"id: {i}\ndata: {json.dumps({'i': i, 't': loop.time()})}\n\n".encode()
                writer.write(b"%x\r\n%b\r\n" % (len(event), event))
                await writer.drain()
                if i + 1 < n:
                    await asyncio.sleep(delay)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        elif path == "/slow":
            await asyncio.sleep(float(q.get("delay", "1")))
            await send(200, b"slow done\n")
        elif path == "/status":
            await send(int(q.get("code", "200")))
        elif path == "/close-delimited":
            n = int(q.get("n", "1000"))
            writer.write(b"HTTP/1.0 200 OK\r\nx-upstream: " + self.name.encode() + b"\r\n\r\n" + pattern_bytes(n))
            await writer.drain()
            return False
        elif path == "/drop":
            return False
        elif path == "/truncate":
            n = int(q.get("n", "100000"))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % n + pattern_bytes(n // 2))
            await writer.drain()
            return False
        elif path == "/hop":
            await send(
                200,
                b"hop\n",
                [
                    ("connection", "x-private"),
                    ("x-private", "secret"),
                    ("keep-alive", "timeout=5"),
                    ("x-public", "ok"),
                ],
            )
        elif path == "/head-length":
            n = int(q.get("n", "12345"))
            await send(200, pattern_bytes(n))
        elif path == "/fail":
            key = q.get("key", "")
            seen = self.failures.get(key, 0)
            self.failures[key] = seen + 1
            if seen < int(q.get("times", "1")):
                await send(int(q.get("code", "503")), b"failing on purpose\n")
            else:
                await send(
                    200,
                    json.dumps({"upstream": self.name, "attempt": seen + 1, "body_length": length}).encode(),
                )
        elif path == "/hang":
            await reader.read()  # until the client closes
            return False
        elif path == "/partial":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")
            await writer.drain()
            return False
        elif path == "/__log":
            body = json.dumps({"requests": self.log, "open": self.open_connections}).encode()
            await send(200, body, [("content-type", "application/json")])
        elif path == "/__reset":
            self.log.clear()
            self.failures.clear()
            await send(200)
        return keep_alive


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="upstream")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca", help="require client certificates signed by this CA")
    args = parser.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
    up = Upstream(args.name)
    server = await asyncio.start_server(up.handle, "127.0.0.1", args.port, ssl=ctx, limit=1 << 20)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
