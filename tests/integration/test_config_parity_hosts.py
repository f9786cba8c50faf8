"""Hosts, listeners and rewrites mean what they mean in agentgateway, through the real daemon:
the Host an upstream named by DNS gets (agentgateway rewrites it to the backend's name unless a
policy says otherwise: the client does not choose the virtual host behind the gateway), hostnames
of the config in the spelling requests are matched in, and the authority sent to an IPv6 backend."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.gateway import binds, free_port, raw_connection, read_response


def _echo(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return dict(r.json())


def _header(echo: dict[str, Any], name: str) -> str | None:
    for k, v in echo["headers"]:
        if k.lower() == name:
            return str(v)
    return None


# ------------------------------------------------------------------ Host sent to named upstreams


def test_named_backend_gets_its_own_host_not_the_clients(gateway, upstream):
    """agentgateway rewrites the authority of a request for a backend named by DNS to that name
    by default (``hostRewrite: auto``); an IP backend keeps the client's. Here every backend got
    the client's Host, so on a catch-all route a client picked the virtual host of a shared
    upstream (``Host: admin.internal``) that the config named no route for."""
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "name": "named",
                    "matches": [{"path": {"pathPrefix": "/named"}}],
                    "backends": [{"host": f"localhost:{up.port}"}],
                },
                {"name": "ip", "matches": [{"path": {"pathPrefix": "/ip"}}], "backends": [{"host": up.address}]},
                {
                    "name": "kept",
                    "matches": [{"path": {"pathPrefix": "/kept"}}],
                    "backends": [{"host": f"localhost:{up.port}"}],
                    "policies": {"urlRewrite": {"authority": "none"}},
                },
                {
                    "name": "none",
                    "matches": [{"path": {"pathPrefix": "/none"}}],
                    "backends": [{"host": f"localhost:{up.port}"}],
                    "policies": {"hostRewrite": "none"},
                },
                {
                    "name": "set",
                    "matches": [{"path": {"pathPrefix": "/set"}}],
                    "backends": [{"host": f"localhost:{up.port}"}],
                    "policies": {"requestHeaderModifier": {"set": {"host": "chosen.example"}}},
                },
            ],
        )
    )
    evil = {"host": "admin.internal"}
    named = _echo(httpx.get(f"http://127.0.0.1:{port}/named", headers=evil, timeout=10))
    assert _header(named, "host") == f"localhost:{up.port}"
    # the client's authority still reaches the upstream, as X-Forwarded-Host
    assert _header(named, "x-forwarded-host") == "admin.internal"
    assert (
        _header(_echo(httpx.get(f"http://127.0.0.1:{port}/ip", headers=evil, timeout=10)), "host") == "admin.internal"
    )
    # an explicit choice of the config wins: none (either key) keeps the client's, a set Host is sent
    kept = _echo(httpx.get(f"http://127.0.0.1:{port}/kept", headers=evil, timeout=10))
    assert _header(kept, "host") == "admin.internal"
    none = _echo(httpx.get(f"http://127.0.0.1:{port}/none", headers=evil, timeout=10))
    assert _header(none, "host") == "admin.internal"
    chosen = _echo(httpx.get(f"http://127.0.0.1:{port}/set", headers=evil, timeout=10))
    assert _header(chosen, "host") == "chosen.example"


# ------------------------------------------------------------------------ hostnames of the config


def test_config_hostnames_are_matched_in_the_requests_spelling(gateway):
    """A request's host is matched without its trailing dot (``admin.example.`` is
    ``admin.example``); a route or listener hostname written with one never matched, so its
    requests went to the catch-all route instead of the route (and policies) meant for them."""
    port = free_port()
    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {
                            "routes": [
                                {
                                    "name": "admin",
                                    "hostnames": ["Admin.Example."],
                                    "policies": {"directResponse": {"status": 200, "body": "admin"}},
                                },
                                {"name": "other", "policies": {"directResponse": {"status": 200, "body": "other"}}},
                            ]
                        }
                    ],
                }
            ]
        }
    )
    for host in ("admin.example", "ADMIN.example.", f"admin.example:{port}"):
        r = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": host}, timeout=10)
        assert r.text == "admin", host
    assert httpx.get(f"http://127.0.0.1:{port}/", headers={"host": "x.example"}, timeout=10).text == "other"


def test_listener_hostname_with_trailing_dot_takes_its_hosts(gateway):
    port = free_port()
    direct = {"policies": {"directResponse": {"status": 200, "body": "admin"}}}
    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {"name": "admin", "hostname": "*.Admin.Example.", "routes": [direct]},
                        {
                            "name": "other",
                            "routes": [{"policies": {"directResponse": {"status": 200, "body": "other"}}}],
                        },
                    ],
                }
            ]
        }
    )
    r = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": "a.admin.example"}, timeout=10)
    assert r.text == "admin"


@pytest.mark.parametrize("hostname", ["bücher.example", "*.bücher.example", "%61dmin.example", "..", "*.a.*.example"])
def test_config_hostname_no_request_can_name_is_refused(tmp_path: Path, hostname: str):
    """A hostname no valid Host can spell (non-ASCII: requests carry IDNs in punycode; a
    percent-encoding, which requests may not carry; dots alone) matched nothing, silently: a
    config error now, naming the key."""
    file = tmp_path / "c.yaml"
    route = {"hostnames": [hostname], "policies": {"directResponse": {"status": 200, "body": "x"}}}
    file.write_text(yaml.safe_dump(binds(free_port(), [route]), allow_unicode=True), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(file), "--validate-only"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "hostnames[0]" in out.stderr + out.stdout


# --------------------------------------------------------------------------------- IPv6 backends


@pytest.fixture
def v6_echo() -> Iterator[tuple[int, list[bytes]]]:
    """A one-shot HTTP/1.1 server on [::1] that records the request heads it reads."""
    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::1", 0))
    srv.listen(4)
    srv.settimeout(10)
    heads: list[bytes] = []

    def serve() -> None:
        for _ in range(4):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                heads.append(data.split(b"\r\n\r\n")[0])
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], heads
    srv.close()
    t.join(5)


def test_ipv6_backend_authority_is_bracketed(gateway, v6_echo):
    """``urlRewrite.authority: auto`` (and an HTTP/1.0 request without Host) send the backend's
    authority; for an IPv6 backend it was ``::1:8080``, which is no Host at all."""
    v6_port, heads = v6_echo
    port = free_port()
    gateway(
        binds(port, [{"backends": [{"host": f"[::1]:{v6_port}"}], "policies": {"urlRewrite": {"authority": "auto"}}}])
    )
    with raw_connection(port) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nhost: front.example\r\nconnection: close\r\n\r\n")
        status, _, body = read_response(s)
    assert status == 200 and body == b"ok"
    host = [line for line in heads[0].split(b"\r\n") if line.lower().startswith(b"host:")]
    assert host == [b"host: [::1]:%d" % v6_port]


# ------------------------------------------------------------------------ header modifiers


@pytest.mark.parametrize("side", ["requestHeaderModifier", "responseHeaderModifier"])
@pytest.mark.parametrize("name", ["content-length", "Transfer-Encoding", "connection"])
def test_header_modifier_cannot_write_framing(tmp_path: Path, side: str, name: str):
    """The framing of a message is the gateway's (as for ``transformations``). A modifier that
    added ``content-length: 0`` to requests sent the upstream the client's body as a request of
    its own, one no route or policy saw; on the gateway's own answers (a 401, a redirect, a
    direct response) it wrote a second length for the client. A config error now."""
    file = tmp_path / "c.yaml"
    route = {"policies": {side: {"add": {name: "0"}}, "directResponse": {"status": 200, "body": "x"}}}
    file.write_text(yaml.safe_dump(binds(free_port(), [route])))
    out = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(file), "--validate-only"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert f"{side}.add" in out.stderr + out.stdout


# ----------------------------------------------------------------------- rewrites and redirects (held)


def test_prefix_rewrite_sees_whole_segments_and_normalized_paths(gateway, upstream):
    """``/api`` → ``/internal``: ``/apix`` is not under ``/api`` (404, never ``/internalx``), and an
    upstream gets no dot segment or doubled slash, whatever the spelling."""
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "matches": [{"path": {"pathPrefix": "/api"}}],
                    "backends": [{"host": up.address}],
                    "policies": {"urlRewrite": {"path": {"prefix": "/internal"}}},
                }
            ],
        )
    )
    cases = {
        b"/api/x?q=1": b"/internal/x?q=1",
        b"/api": b"/internal",
        b"/api//x": b"/internal/x",
        b"/api/a/%2e%2e/x": b"/internal/x",
        b"/%61pi/x": b"/internal/x",
    }
    for sent, expected in cases.items():
        with raw_connection(port) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n" % sent)
            status, _, body = read_response(s)
        assert status == 200, sent
        assert httpx.Response(200, content=body).json()["target"] == expected.decode(), sent
    for outside in (b"/apix", b"/api/../x", b"/x/..%2fapi"):
        with raw_connection(port) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n" % outside)
            status, _, _ = read_response(s)
        assert status in (400, 404), outside


def test_redirect_location_keeps_the_configured_host(gateway):
    """The Location of a redirect with ``authority.host`` names that host whatever the client's,
    and a path spelled ``//evil.example`` cannot make it protocol-relative or another host."""
    port = free_port()
    redirect = {"authority": {"host": "good.example"}, "path": {"prefix": "/new"}, "scheme": "https"}
    gateway(binds(port, [{"matches": [{"path": {"pathPrefix": "/old"}}], "policies": {"requestRedirect": redirect}}]))
    for path in (b"/old//evil.example/x", b"/old/x", b"/old/%2e%2e/old//x"):
        with raw_connection(port) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nhost: evil.example:8443\r\nconnection: close\r\n\r\n" % path)
            status, headers, _ = read_response(s)
        assert status == 302, path
        location = headers["location"]
        assert location.startswith("https://good.example/new/") and "//" not in location[8:], location


@pytest.mark.parametrize(
    ("where", "route"),
    [
        ("backends[0].host", {"backends": [{"host": "app.internal\r\nx-admin: 1:80"}]}),
        ("backends[0].host", {"backends": [{"host": "app internal:80"}]}),
        (
            "urlRewrite.authority.full",
            {
                "backends": [{"host": "127.0.0.1:9"}],
                "policies": {"urlRewrite": {"authority": {"full": "a\r\nx-admin:1"}}},
            },
        ),
        (
            "requestRedirect.authority.host",
            {"policies": {"requestRedirect": {"authority": {"host": "good.example\r\nx"}}}},
        ),
    ],
)
def test_config_authorities_cannot_write_header_lines(tmp_path: Path, where: str, route: dict[str, Any]):
    """An authority of the config goes into request heads (a named backend's Host, a rewritten
    authority) or a Location: CR/LF in it wrote header lines of its own. It must be a
    ``host[:port]`` as a request's Host must."""
    file = tmp_path / "c.yaml"
    file.write_text(yaml.safe_dump(binds(free_port(), [route])))
    out = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(file), "--validate-only"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert where in out.stderr + out.stdout, out.stderr + out.stdout


def test_hostname_precedence_and_unknown_hosts(gateway):
    """Held: as agentgateway, a listener by exact name, then the longest wildcard (any depth below
    it, never the bare name), then the one without hostname; a host no listener takes is 404. On a
    listener, routes for the exact host before the most specific wildcard before hostless ones.
    Case, a port, a trailing dot or an IPv6 literal do not move a request to another listener."""
    port = free_port()

    def answer(body: str, **extra: Any) -> dict[str, Any]:
        return {**extra, "policies": {"directResponse": {"status": 200, "body": body}}}

    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {
                            "name": "wild",
                            "hostname": "*.example.com",
                            "routes": [
                                answer("exact", hostnames=["a.b.example.com"]),
                                answer("deep", hostnames=["*.b.example.com"]),
                                answer("wild-any"),
                            ],
                        },
                        {"name": "exact", "hostname": "example.com", "routes": [answer("bare")]},
                        {"name": "deeper", "hostname": "*.x.example.com", "routes": [answer("deeper")]},
                    ],
                }
            ]
        }
    )
    cases = {
        "a.b.example.com": "exact",
        "A.B.Example.COM.": "exact",
        f"a.b.example.com:{port}": "exact",
        "c.b.example.com": "deep",
        "z.c.b.example.com": "deep",
        "b.example.com": "wild-any",
        "example.com": "bare",
        "q.x.example.com": "deeper",
        "x.example.com": "wild-any",
    }
    for host, body in cases.items():
        r = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": host}, timeout=10)
        assert (r.status_code, r.text) == (200, body), host
    for host in ("example.org", "[::1]", f"[::1]:{port}", "127.0.0.1", "notexample.com", "xexample.com"):
        r = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": host}, timeout=10)
        assert r.status_code == 404, host
