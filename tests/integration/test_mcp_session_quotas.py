"""Session quotas per client identity, through the daemon: one identity opening sessions without
end costs only itself (its own least recently used sessions end, then it is refused with a clear
error), never another identity's sessions nor all of a worker's processes. Identities here are
API keys (apiKey), and for anonymous clients their addresses (127.0.0.1 and 127.0.0.2)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.gateway import Gateway, free_port, mcp_config, read_response, stdio_target, wait_for

pytestmark = pytest.mark.anyio

QUOTA_ERROR = -32029
_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RawClient:
    """JSON-RPC over raw HTTP/1.1 connections from one source address, with one API key."""

    def __init__(self, port: int, key: str | None = None, source: str = "127.0.0.1") -> None:
        self.port = port
        self.key = key
        self.source = source
        self.streams: list[socket.socket] = []

    def _connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30, source_address=(self.source, 0))

    def _head(self, method: str, token: str | None, extra: str = "") -> str:
        lines = [f"{method} /mcp HTTP/1.1", f"host: 127.0.0.1:{self.port}"]
        if self.key:
            lines.append(f"authorization: Bearer {self.key}")
        if token:
            lines.append(f"mcp-session-id: {token}")
        return "\r\n".join(lines) + "\r\n" + extra

    def post(self, msg: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, str], Any]:
        body = json.dumps(msg).encode()
        extra = f"accept: application/json\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        with contextlib.closing(self._connect()) as sock:
            sock.sendall(self._head("POST", token, extra + "connection: close\r\n\r\n").encode() + body)
            status, headers, raw = read_response(sock)
        return status, headers, json.loads(raw) if raw else None

    def initialize(self) -> str:
        status, headers, body = self.post(_INIT)
        assert status == 200, body
        return headers["mcp-session-id"]

    def refused(self) -> dict[str, Any]:
        """An initialize the gateway refuses: its JSON-RPC error (checked to be the quota's)."""
        status, _, body = self.post(_INIT)
        assert status in (429, 503), (status, body)
        assert body["id"] == 1 and body["error"]["code"] == QUOTA_ERROR, body
        return dict(body["error"])

    def whoami(self, token: str) -> str:
        """The answering server's name, or "404" when the session is gone."""
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
        status, _, body = self.post(call, token)
        if status == 404:
            return "404"
        assert status == 200, body
        return str(body["result"]["content"][0]["text"])

    def listen(self, token: str) -> None:
        """Open the session's event stream and keep it open: the session is in use."""
        sock = self._connect()
        self.streams.append(sock)
        sock.sendall(self._head("GET", token, "accept: text/event-stream\r\n\r\n").encode())
        status, _, _ = read_response(sock, head_only=True)
        assert status == 200

    def close(self) -> None:
        for sock in self.streams:
            sock.close()
        self.streams.clear()


@contextlib.contextmanager
def raw_clients(*clients: RawClient) -> Iterator[None]:
    try:
        yield
    finally:
        for client in clients:
            client.close()


@contextlib.asynccontextmanager
async def sdk_client(port: int, key: str | None = None) -> AsyncIterator[Client]:
    """The official SDK's client (it listens on its session's stream)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http), mode="legacy") as client,  # type: ignore[arg-type]
    ):
        yield client


def _stdio_children(gw: Gateway) -> list[int]:
    pids = []
    for worker in gw.worker_pids():
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{worker}/task/{worker}/children").read_text().split()]
    return pids


def _keyed_config(port: int, targets: list[dict[str, Any]], **bounds: int) -> dict[str, Any]:
    config = mcp_config(port, targets)
    config["binds"][0]["listeners"][0]["routes"][0]["policies"] = {
        "apiKey": {"mode": "strict", "keys": [{"key": "key-a"}, {"key": "key-b"}]}
    }
    config["config"] = {"mcp": bounds}
    return config


async def test_one_identity_cannot_end_anothers_stdio_sessions(gateway):
    port = free_port()
    config = _keyed_config(port, [stdio_target("alpha")], maxStdioSessionsPerIdentity=2, maxSessionsPerIdentity=3)
    gw = gateway(config, workers=1)
    a, b = RawClient(port, "key-a"), RawClient(port, "key-b")
    with raw_clients(a, b):
        async with sdk_client(port, "key-b") as b_sdk:
            assert (await b_sdk.call_tool("whoami", {})).content[0].text == "alpha"
            b_idle = b.initialize()  # B's other session: no stream, no call (the first to go if B's were)
            assert b.whoami(b_idle) == "alpha"

            # A opens sessions without end: its own least recently used ones end.
            a_tokens = [a.initialize() for _ in range(6)]
            assert [a.whoami(t) for t in a_tokens] == ["404"] * 4 + ["alpha"] * 2
            wait_for(lambda: len(_stdio_children(gw)) == 4, 20, "A's ended sessions' servers to stop")
            assert b.whoami(b_idle) == "alpha"
            assert (await b_sdk.call_tool("whoami", {})).content[0].text == "alpha"

            # A's sessions all in use: A is refused, clearly; B is not affected.
            for token in a_tokens[-2:]:
                a.listen(token)
            error = a.refused()
            assert error["message"].startswith("Too many MCP sessions: this client already has 2 MCP sessions")
            assert "config.mcp.maxStdioSessionsPerIdentity" in error["message"]
            assert len(_stdio_children(gw)) == 4
            assert [a.whoami(t) for t in a_tokens[-2:]] == ["alpha", "alpha"]
            assert b.whoami(b_idle) == "alpha"
            assert (await b_sdk.call_tool("whoami", {})).content[0].text == "alpha"

            # B at its own quota ends its own idle session, not A's.
            b_new = b.initialize()
            assert b.whoami(b_new) == "alpha" and b.whoami(b_idle) == "404"
            assert [a.whoami(t) for t in a_tokens[-2:]] == ["alpha", "alpha"]
    assert "its client is at config.mcp.maxStdioSessionsPerIdentity; it was its least recently used" in gw.output()


async def test_a_full_backend_refuses_rather_than_end_another_identitys_session(gateway):
    port = free_port()
    config = _keyed_config(port, [stdio_target("alpha")], maxStdioSessions=2, maxStdioSessionsPerIdentity=2)
    gateway(config, workers=1)
    a, b = RawClient(port, "key-a"), RawClient(port, "key-b")
    with raw_clients(a, b):
        a_tokens = [a.initialize(), a.initialize()]  # idle, but A's
        error = b.refused()
        assert "this MCP backend already has 2 sessions running stdio servers" in error["message"]
        assert "config.mcp.maxStdioSessions" in error["message"]
        assert [a.whoami(t) for t in a_tokens] == ["alpha", "alpha"]
        status, _, _ = b.post(_INIT)
        assert status == 503
        # A over the backend's bound ends its own.
        a_tokens.append(a.initialize())
        assert [a.whoami(t) for t in a_tokens] == ["404", "alpha", "alpha"]


async def test_anonymous_clients_are_counted_by_address(gateway, mcp_server):
    """HTTP targets (sessions without processes): ``maxSessionsPerIdentity``. Anonymous clients
    are told apart by address: one that floods the gateway from 127.0.0.2 ends none of the
    sessions of the SDK client at 127.0.0.1."""
    beta = mcp_server("beta", "http")
    port = free_port()
    config = mcp_config(port, [{"name": "beta", "mcp": {"host": beta.url}}])
    config["config"] = {"mcp": {"maxSessionsPerIdentity": 3}}
    gateway(config, workers=1)
    flood, local = RawClient(port, source="127.0.0.2"), RawClient(port)
    with raw_clients(flood, local):
        async with sdk_client(port) as sdk:
            assert (await sdk.call_tool("whoami", {})).content[0].text == "beta"
            local_idle = local.initialize()
            tokens = [flood.initialize() for _ in range(20)]
            assert [flood.whoami(t) for t in tokens] == ["404"] * 17 + ["beta"] * 3
            for token in tokens[-3:]:
                flood.listen(token)
            error = flood.refused()
            assert (
                "this client already has 3 MCP sessions in this worker (config.mcp.maxSessionsPerIdentity)"
                in (error["message"])
            )
            assert (await sdk.call_tool("whoami", {})).content[0].text == "beta"
            assert local.whoami(local_idle) == "beta"


async def test_quotas_hold_in_every_worker(gateway):
    """Two workers: a stdio session lives in the worker that started it, and the other relays to
    it. A flood of sessions from one identity leaves another's working, and holds at most its
    quota of processes in each worker."""
    port = free_port()
    config = _keyed_config(port, [stdio_target("alpha")], maxStdioSessionsPerIdentity=1)
    gw = gateway(config, workers=2)
    a = RawClient(port, "key-a")
    with raw_clients(a):
        async with sdk_client(port, "key-b") as b_sdk:
            for _ in range(8):
                a.initialize()
                assert (await b_sdk.call_tool("whoami", {})).content[0].text == "alpha"
            wait_for(lambda: len(_stdio_children(gw)) <= 3, 20, "A's ended sessions' servers to stop")
