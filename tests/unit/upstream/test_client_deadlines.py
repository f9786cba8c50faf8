"""``HttpClient.request`` deadlines against a real upstream on 127.0.0.1 that accepts and never
answers: a short one has a timer of its own, a far one (``_SWEPT_TIMEOUT`` and more) is expired by
the client's periodic sweep; both end in a 504, and nothing is left behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentgateway.upstream import client as client_module
from agentgateway.upstream.client import HttpClient, HttpClientError
from agentgateway.upstream.pool import UpstreamPool
from agentgateway.upstream.target import HttpTarget


async def _silent_server() -> tuple[asyncio.Server, int, list[asyncio.StreamWriter]]:
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], held


async def _timed_request(timeout: float) -> tuple[float, HttpClient, HttpClientError]:
    server, port, held = await _silent_server()
    client = HttpClient(UpstreamPool(asyncio.get_running_loop(), 30.0, 4))
    target = HttpTarget("127.0.0.1", port, None, f"127.0.0.1:{port}", 5.0)
    started = time.monotonic()
    try:
        with pytest.raises(HttpClientError) as info:
            await client.request(target, b"POST", b"/mcp", [(b"content-type", b"application/json")], b"{}", timeout)
        return time.monotonic() - started, client, info.value
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def test_a_short_deadline_has_its_own_timer() -> None:
    elapsed, client, error = asyncio.run(_timed_request(0.3))
    assert error.status == 504 and "did not answer within 0.3s" in error.message
    assert 0.25 < elapsed < 2.0
    assert not client._far and client._sweeper is None  # never swept


def test_a_far_deadline_is_expired_by_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same path as an MCP call's 300 s wait, scaled down: far from 0.2 s, swept every 0.05 s.
    monkeypatch.setattr(client_module, "_SWEPT_TIMEOUT", 0.2)
    monkeypatch.setattr(client_module, "_SWEEP_PERIOD", 0.05)
    elapsed, client, error = asyncio.run(_timed_request(0.3))
    assert error.status == 504 and "did not answer within 0.3s" in error.message
    assert 0.25 < elapsed < 2.0
    assert not client._far  # the expired wait left the sweep's table


def test_the_sweep_stops_when_nothing_is_awaited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_SWEPT_TIMEOUT", 0.2)
    monkeypatch.setattr(client_module, "_SWEEP_PERIOD", 0.05)

    async def run() -> HttpClient:
        _, client, _ = await _timed_request(0.3)
        await asyncio.sleep(0.2)  # a few periods: the sweep found nothing and was not set again
        return client

    client = asyncio.run(run())
    assert client._sweeper is None
