"""The Origin rule of MCP endpoints and the DNS-rebinding protection (mcp/origin.py)."""

from __future__ import annotations

import pytest

from agentgateway.mcp.origin import is_loopback_client, origin_problem, parse_origin, split_authority


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


@pytest.mark.parametrize(
    "host",
    [
        b"evil.example",
        b"localhost.evil.example",
        b"127.0.0.1.nip.io",
        b"localhost.",  # a trailing dot is another name to the resolver's search rules
        b"127.1",  # browsers send 127.0.0.1 for a page of this machine, never this
        b"127.0.0.2",
        b"0.0.0.0",
        b"[::ffff:127.0.0.1]",
        b"[0:0:0:0:0:0:0:1]",
        b"localhost:3000@evil.example",
        b"evil.example#@localhost",
        b"",
        None,
    ],
)
def test_rebinding_protection_refuses_other_hosts(host):
    assert origin_problem(host, [], None, localhost_only=True)


@pytest.mark.parametrize("host", [b"LOCALHOST", b"LocalHost:3000", b"[::1]", b"[::1]:1", b"127.0.0.1"])
def test_localhost_names_in_any_case(host):
    assert origin_problem(host, [], None, localhost_only=True) is None
    assert origin_problem(host, [b"HTTP://LOCALHOST:5173"], None, localhost_only=True) is None


@pytest.mark.parametrize(
    "origins",
    [
        [b"null"],
        [b"http://evil.example"],
        [b"http://localhost.evil.example"],
        [b"http://localhost:3000", b"http://evil.example"],
        [b"http://localhost:3000", b"http://localhost:3000"],
        [b"http://localhost/path"],
        [b"file://localhost"],
        [b"http://user@localhost"],
    ],
)
def test_rebinding_protection_refuses_other_origins(origins):
    assert origin_problem(b"localhost:3000", origins, None, localhost_only=True)


def test_refusals_quote_little_of_the_value():
    problem = origin_problem(b"x" * 10_000 + b".example", [], None, localhost_only=True)
    assert problem and len(problem) < 300
    problem = origin_problem(b"localhost", [b"http://" + b"x" * 10_000], None, localhost_only=True)
    assert problem and len(problem) < 300


@pytest.mark.parametrize(
    "address,expected",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.7", False),
        ("192.168.1.2", False),
        ("::ffff:10.0.0.7", False),
        ("", False),
    ],
)
def test_loopback_clients(address, expected):
    assert is_loopback_client(address) is expected
