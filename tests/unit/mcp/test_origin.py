"""The Origin rule of MCP endpoints and the opt-in DNS-rebinding protection (mcp/origin.py)."""

from __future__ import annotations

import pytest

from agentgateway.mcp.origin import origin_problem, parse_origin, split_authority


@pytest.mark.parametrize(
    "value,expected",
    [
        (b"example.com", ("example.com", None)),
        (b"Example.COM:8080", ("example.com", 8080)),
        (b"127.0.0.1:9", ("127.0.0.1", 9)),
        (b"[::1]", ("::1", None)),
        (b"[::1]:3000", ("::1", 3000)),
        (b"", None),
        (b"a.example:port", None),
        (b"user@a.example", None),
        (b"a.example/path", None),
        (None, None),
    ],
)
def test_host_values(value, expected):
    assert split_authority(value) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        (b"http://a.example", ("http", "a.example", 80)),
        (b"https://A.example", ("https", "a.example", 443)),
        (b"http://localhost:5173", ("http", "localhost", 5173)),
        (b"http://[::1]:8080", ("http", "::1", 8080)),
        (b"http://a.example/", ("http", "a.example", 80)),
        (b"null", None),
        (b"ftp://a.example", None),
        (b"http://a.example/path", None),
        (b"http://a.example?x", None),
        (b"http://u:p@a.example", None),
        (b"http://[::1]garbage", None),
        (b"http://a.example:99999", None),
    ],
)
def test_origin_values(value, expected):
    assert parse_origin(value) == expected


@pytest.mark.parametrize(
    "host,origin,forwarded",
    [
        (b"mcp.example.com", None, None),  # not a browser
        (b"mcp.example.com", b"https://mcp.example.com", None),  # same origin, default port
        (b"mcp.example.com:443", b"https://mcp.example.com", None),
        (b"mcp.example.com:8443", b"https://mcp.example.com:8443", None),
        (b"127.0.0.1:3000", b"http://localhost:5173", None),  # a local page, a local gateway
        (b"localhost:3000", b"http://[::1]:6274", None),
        (b"10.0.0.7:3000", b"https://mcp.example.com", b"mcp.example.com, proxy.internal"),  # behind a proxy
    ],
)
def test_origins_allowed_by_default(host, origin, forwarded):
    assert origin_problem(host, [origin] if origin else [], forwarded, localhost_only=False) is None


@pytest.mark.parametrize(
    "host,origins",
    [
        (b"mcp.example.com", [b"https://evil.example"]),
        (b"mcp.example.com", [b"http://mcp.example.com:8080"]),  # another port is another origin
        (b"127.0.0.1:3000", [b"https://evil.example"]),
        (b"mcp.example.com", [b"http://localhost:5173"]),  # a local page, a remote gateway
        (b"mcp.example.com", [b"null"]),
        (b"mcp.example.com", [b"https://mcp.example.com", b"https://evil.example"]),
        (None, [b"https://mcp.example.com"]),
    ],
)
def test_origins_refused_by_default(host, origins):
    assert origin_problem(host, origins, None, localhost_only=False)


def test_dns_rebinding_protection_requires_localhost():
    # The rebinding attack: same-origin, but not localhost.
    assert origin_problem(b"evil.example.com", [b"http://evil.example.com"], None, localhost_only=False) is None
    problem = origin_problem(b"evil.example.com", [b"http://evil.example.com"], None, localhost_only=True)
    assert problem and "Host evil.example.com" in problem
    assert origin_problem(b"evil.example.com", [], None, localhost_only=True)
    assert origin_problem(b"127.0.0.1:3000", [b"http://evil.example.com"], None, localhost_only=True)
    # X-Forwarded-Host does not make a request local.
    assert origin_problem(b"evil.example.com", [], b"localhost", localhost_only=True)
    for host in (b"localhost", b"localhost:8080", b"127.0.0.1:9", b"[::1]", b"[::1]:3000"):
        assert origin_problem(host, [], None, localhost_only=True) is None
        assert origin_problem(host, [b"http://127.0.0.1:3000"], None, localhost_only=True) is None
