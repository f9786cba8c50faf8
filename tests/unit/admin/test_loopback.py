"""The admin plane's client for the gateway's own listeners, against small servers on 127.0.0.1:
chunked and close-delimited bodies, what it sends, garbage and silence, and back-pressure (a
consumer that does not read leaves the rest of a large body unread, not buffered)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from agentgateway.admin import loopback

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _with_server(serve: Serve, use: Callable[[int], Awaitable[None]]) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await use(port)
    finally:
        server.close()
        await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def test_a_chunked_answer_streams_and_the_request_is_as_built() -> None:
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        seen.append(head + await reader.readexactly(2))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def use(port: int) -> None:
        answer = await loopback.request(port, "POST", "/mcp", [("host", "127.0.0.1"), ("accept", "x")], b"{}")
        assert answer.status == 200 and answer.header("content-type") == "text/event-stream"
        assert await answer.read_all(1000) == b"data: 1\n\ndata: 2\n\n"

    asyncio.run(_with_server(serve, use))
    head = seen[0].decode()
    assert head.startswith("POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: x\r\ncontent-length: 2\r\n")
    assert "connection: close" in head and head.endswith("{}")


def test_a_close_delimited_answer_ends_at_the_close() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\nno route here")
        await writer.drain()
        writer.close()

    async def use(port: int) -> None:
        answer = await loopback.request(port, "GET", "/", [("host", "h")], b"")
        assert answer.status == 404 and await answer.read_all(1000) == b"no route here"

    asyncio.run(_with_server(serve, use))


@pytest.mark.parametrize("reply", [b"", b"garbage\r\n\r\n"])
def test_no_valid_answer_is_an_error(reply: bytes) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    async def use(port: int) -> None:
        with pytest.raises(loopback.LoopbackError):
            await loopback.request(port, "GET", "/", [("host", "h")], b"")

    asyncio.run(_with_server(serve, use))


def test_a_closed_port_is_an_error() -> None:
    async def use() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(loopback.LoopbackError, match="cannot connect"):
            await loopback.request(port, "GET", "/", [("host", "h")], b"")

    asyncio.run(use())


def test_a_slow_consumer_holds_the_body_back() -> None:
    sent = 0
    stalled = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 104857600\r\n\r\n")
        block = b"x" * 65536
        try:
            while sent < 100 * 1024 * 1024:
                writer.write(block)
                sent += len(block)
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except TimeoutError:
                    stalled.set()  # the client stopped reading: back-pressure reached us
                    return
        finally:
            writer.close()

    async def use(port: int) -> None:
        answer = await loopback.request(port, "GET", "/", [("host", "h")], b"")
        body = answer.body()
        first = await anext(body)
        assert first
        await asyncio.wait_for(stalled.wait(), 30)
        assert sent < 20 * 1024 * 1024  # buffers of a few MiB at most, not the 100 MiB body
        await body.aclose()

    asyncio.run(_with_server(serve, use))
