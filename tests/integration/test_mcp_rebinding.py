"""DNS rebinding and browsers at MCP endpoints, through the daemon with raw HTTP (a client library
would normalize or refuse the Host and Origin values tried here).

The gateway listens on every address; a client that reached it at a loopback address runs on
this machine, where a rebinding page would run too: unless ``dnsRebindingProtection`` says
otherwise, such a request must name localhost in ``Host`` and in a present ``Origin``."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gateway import McpServerProcess, free_port, mcp_config, raw_connection, read_response

_PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
_INIT = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }
).encode()


def _request(
    port: int, headers: list[tuple[str, str]], body: bytes = _PING, method: str = "POST", path: str = "/mcp"
) -> tuple[int, dict[str, str], Any]:
    """One request with exactly ``headers`` (Host included, as given); the status, headers and
    decoded JSON body (the text of any other body, None when there is none)."""
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += ["accept: application/json, text/event-stream", "connection: close"]
    if method == "POST":
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with raw_connection(port) as sock:
        sock.sendall(head + (body if method == "POST" else b""))
        status, got, raw = read_response(sock)
    if not raw:
        return status, got, None
    return status, got, json.loads(raw) if got.get("content-type") == "application/json" else raw.decode()


def _passes(status: int) -> bool:
    """The request went past the browser checks: a session-less ping is then refused with 400."""
    assert status in (400, 403), status
    return status == 400


@pytest.fixture
def server(mcp_server) -> McpServerProcess:
    return mcp_server("beta", "http")


@pytest.fixture
def endpoint(gateway, server) -> Iterator[int]:
    """A gateway with no dnsRebindingProtection key: on by default for loopback clients."""
    port = free_port()
    gateway(mcp_config(port, [{"name": "beta", "mcp": {"host": server.url}}]))
    yield port


FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:{port}",
    "localhost.evil.example",
    "localhost.evil.example:{port}",
    "127.0.0.1.nip.io:{port}",
    "127.1:{port}",
    "127.0.0.2:{port}",
    "0.0.0.0:{port}",
    "[::ffff:127.0.0.1]:{port}",
    "mcp.example.com",
]
# Not a valid Host at all: refused at the edge (server/http1.py) before any route sees it.
INVALID_HOSTS = ["localhost:{port}@evil.example", "localhost evil.example", "localhost:{port}/x"]


def test_foreign_hosts_are_refused_by_default(endpoint):
    for host in FOREIGN_HOSTS:
        status, _, body = _request(endpoint, [("Host", host.format(port=endpoint))])
        assert status == 403, host
        assert body["error"]["code"] == -32600
        assert "is not localhost, 127.0.0.1 or [::1] (dnsRebindingProtection)" in body["error"]["message"]
    for host in INVALID_HOSTS:
        status, _, body = _request(endpoint, [("Host", host.format(port=endpoint))])
        assert status == 400 and "invalid Host header" in body, host
    # (``localhost.`` is ``localhost``: the edge reads a host without its trailing dot, as routing does)
    for host in (
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LOCALHOST:{port}",
        "[::1]:{port}",
        "localhost",
        "localhost.:{port}",
    ):
        assert _passes(_request(endpoint, [("Host", host.format(port=endpoint))])[0]), host


def test_the_rebinding_attack_is_refused(endpoint):
    """What a rebinding page sends: its own name as Host and as Origin (same-origin)."""
    attack = [("Host", f"evil.example:{endpoint}"), ("Origin", f"http://evil.example:{endpoint}")]
    status, _, body = _request(endpoint, attack, _INIT)
    assert status == 403 and "Host evil.example" in body["error"]["message"]
    status, _, _ = _request(endpoint, attack, method="GET")  # an event stream
    assert status == 403
    status, _, _ = _request(endpoint, attack, method="GET", path="/mcp?x=1")
    assert status == 403


FOREIGN_ORIGINS = [
    ["http://evil.example"],
    ["http://localhost.evil.example:{port}"],
    ["null"],
    ["http://localhost:{port}", "http://evil.example"],  # two Origin headers
    ["http://evil.example", "http://localhost:{port}"],
    ["http://localhost:{port}", "http://localhost:{port}"],
    ["http://localhost:{port}/path"],
    ["file://localhost"],
    ["http://localhost:{port}@evil.example"],
]


def test_foreign_origins_are_refused(endpoint):
    for origins in FOREIGN_ORIGINS:
        headers = [("Host", f"127.0.0.1:{endpoint}")] + [("Origin", o.format(port=endpoint)) for o in origins]
        status, _, body = _request(endpoint, headers)
        assert status == 403, origins
        assert "Origin" in body["error"]["message"]
    for origin in ("http://localhost:5173", "http://127.0.0.1:{port}", "https://[::1]", "HTTP://LOCALHOST"):
        headers = [("Host", f"localhost:{endpoint}"), ("Origin", origin.format(port=endpoint))]
        assert _passes(_request(endpoint, headers)[0]), origin


def test_two_host_headers_are_refused(endpoint):
    # At the edge, for every route (RFC 9112 §3.2), before the MCP endpoint sees the request.
    for hosts in (["localhost", "evil.example"], ["evil.example", "localhost"], ["localhost", "localhost"]):
        status, _, body = _request(endpoint, [("Host", h) for h in hosts])
        assert status == 400 and "more than one Host header" in body, hosts


def test_refusals_do_not_echo_long_values(endpoint):
    status, _, body = _request(endpoint, [("Host", "a" * 8000 + ".example")])
    assert status == 403 and len(body["error"]["message"]) < 300


def test_legacy_sse_transport_is_covered(gateway, server):
    port = free_port()
    gateway({"mcp": {"port": port, "targets": [{"name": "beta", "mcp": {"host": server.url}}]}})
    status, _, _ = _request(port, [("Host", "evil.example")], method="GET", path="/sse")
    assert status == 403
    with raw_connection(port) as sock:
        sock.sendall(f"GET /sse HTTP/1.1\r\nHost: localhost:{port}\r\naccept: text/event-stream\r\n\r\n".encode())
        status, headers, _ = read_response(sock, head_only=True)
        assert status == 200 and headers["content-type"] == "text/event-stream"
        sock.shutdown(socket.SHUT_WR)


def test_protection_off_serves_public_names(gateway, server):
    """``dnsRebindingProtection: false`` (a gateway reached under its public name through a proxy
    on the same machine): any Host, and the Origin rule every endpoint keeps."""
    port = free_port()
    gateway(mcp_config(port, [{"name": "beta", "mcp": {"host": server.url}}], dnsRebindingProtection=False))
    assert _passes(_request(port, [("Host", "mcp.example.com")])[0])
    same_origin = [("Host", "mcp.example.com"), ("Origin", "http://mcp.example.com")]
    assert _passes(_request(port, same_origin)[0])
    status, _, _ = _request(port, [("Host", "mcp.example.com"), ("Origin", "https://evil.example")])
    assert status == 403
    status, _, _ = _request(port, [("Host", "mcp.example.com"), ("Origin", "http://localhost:5173")])
    assert status == 403  # a local page, a remote gateway


def test_cors_names_the_origins_allowed(gateway, server):
    """Pages of other origins: the ones the route's cors policy names (not its ``*``)."""
    port = free_port()
    config = mcp_config(port, [{"name": "beta", "mcp": {"host": server.url}}])
    route = config["binds"][0]["listeners"][0]["routes"][0]
    route["policies"] = {"cors": {"allowOrigins": ["https://app.example"], "allowHeaders": ["*"]}}
    star = free_port()
    config["binds"].append(
        {
            "port": star,
            "listeners": [
                {"routes": [{**route, "name": "star", "policies": {"cors": {"allowOrigins": ["*"]}}}]},
            ],
        }
    )
    gateway(config)
    host = ("Host", f"localhost:{port}")
    status, headers, _ = _request(port, [host, ("Origin", "https://app.example")])
    assert _passes(status) and headers["access-control-allow-origin"] == "https://app.example"
    assert _request(port, [host, ("Origin", "https://evil.example")])[0] == 403
    assert _request(port, [("Host", "evil.example"), ("Origin", "https://app.example")])[0] == 403
    # `*`, copied from examples, lets no page in here.
    assert _request(star, [("Host", f"localhost:{star}"), ("Origin", "https://evil.example")])[0] == 403
    assert _passes(_request(star, [("Host", f"localhost:{star}"), ("Origin", "http://localhost:5173")])[0])
