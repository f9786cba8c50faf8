"""Requests relayed between workers: a request for a session that lives in another worker (a
stdio server) is passed to it over a private socket, with internal headers that say on which bind
it came and who the client is. What a client sends under those names must have no effect."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

from tests.support.gateway import free_port, read_response, stdio_target

_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
_WHOAMI = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}


def _post(port: int, msg: dict[str, Any], headers: list[tuple[str, str]]) -> tuple[int, dict[str, str], Any]:
    """On a new connection each time: the kernel hands it to either worker."""
    body = json.dumps(msg).encode()
    lines = ["POST /mcp HTTP/1.1", f"host: 127.0.0.1:{port}", "accept: application/json"]
    lines += ["content-type: application/json", f"content-length: {len(body)}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    with contextlib.closing(socket.create_connection(("127.0.0.1", port), timeout=30)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status, got, raw = read_response(sock)
    return status, got, json.loads(raw) if raw else None


def _route(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "policies": {"responseHeaderModifier": {"set": {"x-route": name}}},
        "backends": [{"mcp": {"targets": [stdio_target("alpha")]}}],
    }


def test_spoofed_internal_headers_have_no_effect(gateway):
    """Two binds serve the same MCP backend, each route marking its answers. A client of the
    first names the second in ``x-agentgateway-bind`` (and an identity of its choosing): the
    requests that reach the worker not owning the session are relayed to the owner, which must
    still serve them as requests of the first bind."""
    one, two = free_port(), free_port()
    config = {
        "binds": [
            {"port": one, "listeners": [{"routes": [_route("one")]}]},
            {"port": two, "listeners": [{"routes": [_route("two")]}]},
        ]
    }
    gateway(config, workers=2)
    status, headers, _ = _post(two, _INIT, [])
    assert status == 200 and headers["x-route"] == "two"
    status, headers, _ = _post(one, _INIT, [])
    assert status == 200 and headers["x-route"] == "one"
    token = headers["mcp-session-id"]
    spoofed = [
        ("mcp-session-id", token),
        ("x-agentgateway-bind", str(two)),
        ("X-Agentgateway-Bind", str(two)),
        ("x-agentgateway-identity", b"basic:admin".hex()),
        ("x-agentgateway-cel-vars", "eyJqd3QiOiB7InN1YiI6ICJhZG1pbiJ9fQ=="),
    ]
    # Enough requests on new connections that both workers get some (each one about half).
    for _ in range(16):
        status, headers, body = _post(one, _WHOAMI, spoofed)
        assert status == 200, body
        assert headers["x-route"] == "one"
        assert body["result"]["content"][0]["text"] == "alpha"
