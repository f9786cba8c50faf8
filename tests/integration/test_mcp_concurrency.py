"""Calls of one MCP session go upstream concurrently, over pooled keep-alive connections shared by
the sessions of a worker, through the real daemon: 32 connections sending on one session reach an
upstream (official SDK server, streamable HTTP) that holds every call until 32 are in flight at
once; the connections they used are then reused by other sessions; the idle pool is bounded by
``config.backend.poolMaxSize``; the order of what one client sends is kept."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp_types import ElicitResult

from tests.support.gateway import Process, ServerProcess, free_port, mcp_config

pytestmark = pytest.mark.anyio

CALLS = 32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def inflight_server(tmp_path: Path, processes: list[Process]) -> Callable[[], ServerProcess]:
    def start() -> ServerProcess:
        port = free_port()
        args = [sys.executable, "-m", "tests.support.inflight_server", "--port", str(port)]
        server = ServerProcess(args, tmp_path / f"inflight-{port}.log", port, what="inflight MCP server")
        processes.append(server)
        return server

    return start


class RawSession:
    """One MCP session over plain HTTP POSTs (JSON answers), on as many connections as calls in flight."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.token = ""
        self._ids = 0

    async def post(self, msg: dict[str, Any]) -> httpx.Response:
        headers = {"accept": "application/json", "content-type": "application/json"}
        if self.token:
            headers["mcp-session-id"] = self.token
        return await self.http.post(self.url, content=json.dumps(msg), headers=headers)

    async def open(self) -> RawSession:
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        answer = await self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})
        assert answer.status_code == 200, answer.text
        self.token = answer.headers["mcp-session-id"]
        done = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert done.status_code == 202, done.text
        return self

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        self._ids += 1
        msg = {
            "jsonrpc": "2.0",
            "id": self._ids,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        answer = await self.post(msg)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "result" in body, body
        return str(body["result"]["content"][0]["text"])


def _client() -> httpx.AsyncClient:
    # Enough connections for every call in flight, each kept alive.
    return httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=CALLS * 2))


async def _concurrent(session: RawSession, key: str) -> set[str]:
    """``CALLS`` calls of ``rendezvous`` on ``session`` at once; the ports of the gateway's
    connections that carried them (each must have met the others upstream)."""
    answers: list[str] = []

    async def one() -> None:
        answers.append(await session.call("rendezvous", {"key": key, "group": CALLS}))

    async with anyio.create_task_group() as tasks:
        for _ in range(CALLS):
            tasks.start_soon(one)
    met = [answer.partition(" via ")[0] for answer in answers]
    assert met == [f"met {CALLS}"] * CALLS, answers
    return {answer.partition(" via ")[2] for answer in answers}


async def test_calls_of_one_session_reach_the_upstream_concurrently(gateway, inflight_server):
    server = inflight_server()
    port = free_port()
    gateway(mcp_config(port, [{"name": "inflight", "mcp": {"host": server.endpoint()}}]))
    async with _client() as http:
        session = await RawSession(http, f"http://127.0.0.1:{port}/mcp").open()
        # The upstream answers only once all of them are in flight at once: a gateway that sent
        # them one at a time (or a few at a time) would see each call give up waiting.
        first = await _concurrent(session, "one-session")
        assert len(first) == CALLS  # a connection each
        # And again on the same session: the connections of the first round carry the second.
        assert await _concurrent(session, "again") == first


async def test_upstream_connections_are_pooled_and_reused_across_sessions(gateway, inflight_server):
    server = inflight_server()
    port = free_port()
    idle_kept = 4
    config = mcp_config(port, [{"name": "inflight", "mcp": {"host": server.endpoint()}}])
    config["config"] = {"backend": {"poolMaxSize": idle_kept}}
    gateway(config)
    url = f"http://127.0.0.1:{port}/mcp"
    async with _client() as http:
        first = await RawSession(http, url).open()
        opened = await _concurrent(first, "pool")
        assert len(opened) == CALLS
        # Sessions opened afterwards (each its own upstream session) use the connections the first
        # session's calls opened, those the pool kept idle: no new ones.
        ports: set[str] = set()
        for _ in range(3):
            other = await RawSession(http, url).open()
            for _ in range(5):
                ports.add(await other.call("peer", {}))
        assert ports <= opened, (ports, opened)
        assert len(ports) <= idle_kept
        # 32 calls in flight on one session again: the connections beyond the pool's bound were
        # closed when they went idle; as many as the calls need are opened again.
        again = await _concurrent(first, "pool-again")
        assert len(again) == CALLS
        assert len(again & opened) <= idle_kept


async def test_requests_in_flight_to_a_target_are_bounded(gateway, inflight_server):
    """``config.mcp.maxUpstreamConnections``: beyond the bound, calls wait their turn (and are
    served, in groups as large as the bound), on no more connections than the bound."""
    server = inflight_server()
    port = free_port()
    bound = 4
    config = mcp_config(port, [{"name": "inflight", "mcp": {"host": server.endpoint()}}])
    config["config"] = {"mcp": {"maxUpstreamConnections": bound}}
    gateway(config)
    async with _client() as http:
        sessions = [await RawSession(http, f"http://127.0.0.1:{port}/mcp").open() for _ in range(2)]
        answers: list[str] = []

        async def one(session: RawSession) -> None:
            answers.append(await session.call("rendezvous", {"key": "bounded", "group": bound}))

        async with anyio.create_task_group() as tasks:
            for index in range(bound * 4):
                tasks.start_soon(one, sessions[index % 2])
        # Every call met `bound` others upstream: they went in groups of the bound, never more.
        assert [answer.partition(" via ")[0] for answer in answers] == [f"met {bound}"] * (bound * 4), answers
        assert await sessions[0].call("most", {"key": "bounded"}) == str(bound)
        assert len({answer.partition(" via ")[2] for answer in answers}) <= bound


async def test_a_clients_answers_never_wait_behind_the_calls_that_wait_for_them(gateway, mcp_server):
    """With one place for requests to the target, a call that asks the client something (an
    elicitation, on the call's event stream) holds it; the client's answer is no request and
    goes through, so the call finishes instead of waiting for good."""
    beta = mcp_server("beta", "http")
    port = free_port()
    config = mcp_config(port, [{"name": "beta", "mcp": {"host": beta.url}}])
    config["config"] = {"mcp": {"maxUpstreamConnections": 1}}
    gateway(config)
    asked: list[str] = []

    async def on_elicit(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    with anyio.fail_after(60):
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy", elicitation_callback=on_elicit) as client:
            for _ in range(2):
                result = await client.call_tool("confirm", {"question": "Ship?"})
                assert result.content[0].text == "beta: confirmed=True"  # type: ignore[union-attr]
            assert (await client.call_tool("echo", {"text": "x"})).content[0].text == "beta: x"  # type: ignore[union-attr]
    assert asked == ["Ship?", "Ship?"]


async def test_the_order_one_client_sends_in_is_kept(gateway, inflight_server):
    server = inflight_server()
    port = free_port()
    gateway(mcp_config(port, [{"name": "inflight", "mcp": {"host": server.endpoint()}}]))
    async with _client() as http:
        session = await RawSession(http, f"http://127.0.0.1:{port}/mcp").open()
        # The first call right after the handshake works: the upstream had its initialize and
        # notifications/initialized before (the SDK server refuses calls of an uninitialized
        # session). Calls sent one after the other arrive in that order.
        for step in range(10):
            assert await session.call("order", {"key": "k", "step": step}) == "ok"
        assert await session.call("steps", {"key": "k"}) == ",".join(str(step) for step in range(10))


async def test_a_streamed_answer_starts_while_its_call_is_still_running(gateway, inflight_server):
    """A streamed (SSE) answer's head waits briefly for the answer, to go out in one write with
    it; a call that takes longer shows its stream started without waiting for the answer."""
    server = inflight_server()
    port = free_port()
    gateway(mcp_config(port, [{"name": "inflight", "mcp": {"host": server.endpoint()}}]))
    url = f"http://127.0.0.1:{port}/mcp"
    async with _client() as http:
        session = await RawSession(http, url).open()
        call = {
            "jsonrpc": "2.0",
            "id": "held",
            "method": "tools/call",
            "params": {"name": "rendezvous", "arguments": {"key": "head", "group": 2}},
        }
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            "mcp-session-id": session.token,
        }
        async with http.stream("POST", url, content=json.dumps(call), headers=headers) as held:
            # The head is here though the upstream holds the call until a second one arrives,
            # which is sent only now.
            assert held.status_code == 200
            assert held.headers["content-type"].startswith("text/event-stream")
            second = await session.call("rendezvous", {"key": "head", "group": 2})
            assert second.startswith("met 2 via "), second
            body = (await held.aread()).decode()
        events = [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]
        assert len(events) == 1, body
        answer = json.loads(events[0])
        assert answer["id"] == "held"
        assert answer["result"]["content"][0]["text"].startswith("met 2 via ")
    # A quick call's streamed answer: one complete event stream, the answer its only event.
    async with _client() as http:
        session = await RawSession(http, url).open()
        call["params"] = {"name": "peer", "arguments": {}}
        headers["mcp-session-id"] = session.token
        quick = await http.post(url, content=json.dumps(call), headers=headers)
        assert quick.status_code == 200 and quick.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in quick.text.splitlines() if line.startswith("data: ")]
        assert [json.loads(event)["id"] for event in events] == ["held"]
