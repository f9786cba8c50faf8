"""Attacks where a policy and the upstream could read one request differently: the headers a
client names in ``Connection``, JSON bodies with duplicate or escaped keys (MCP, A2A, LLM), and
the path and headers CEL reads. Through the daemon, with raw sockets where a client library
would normalize the request. One gateway serves every route of the header and CEL tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import Gateway, UpstreamServer, free_port, raw_connection, read_response

DENY_ADMIN = '!request.path.startsWith("/admin")'


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, UpstreamServer]]:
    """A gateway in front of the test upstream: ``guarded.test`` refuses ``/admin`` by CEL,
    ``tenant.test`` needs ``x-tenant: a``, ``stamped.test`` sets ``x-user`` itself."""
    tmp: Path = tmp_path_factory.mktemp("attack-parsing")
    procs: list[Any] = []
    try:
        up = UpstreamServer(tmp, "up")
        procs.append(up)
        backends = [{"host": up.address}]
        routes = [
            {
                "hostnames": ["guarded.test"],
                "backends": backends,
                "policies": {"authorization": {"rules": [DENY_ADMIN]}},
            },
            {
                "hostnames": ["tenant.test"],
                "backends": backends,
                "policies": {"authorization": {"rules": ['request.headers["x-tenant"] == "a"']}},
            },
            {
                "hostnames": ["stamped.test"],
                "backends": backends,
                "policies": {"requestHeaderModifier": {"set": {"x-user": "gateway"}}},
            },
        ]
        port = free_port()
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        procs.append(Gateway(gw_dir, {"binds": [{"port": port, "listeners": [{"routes": routes}]}]}))
        yield port, up
    finally:
        for proc in reversed(procs):
            proc.stop()


def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends ``raw`` on a new connection and reads the first response."""
    with raw_connection(port, timeout=5) as sock:
        sock.sendall(raw)
        return read_response(sock)


def _targets(up: UpstreamServer, since: int) -> list[str]:
    return [str(r["target"]) for r in up.requests()[since:]]


# ---------------------------------------------------------------------------------------- Connection


@pytest.mark.parametrize(
    "connection",
    [
        b"Connection: content-length\r\n",
        b"Connection: Content-Length\r\n",
        b"Connection: close, content-length\r\n",
        b"Connection: keep-alive\r\nConnection: content-length\r\n",
        b"Connection: host, content-length, transfer-encoding\r\n",
    ],
)
def test_connection_option_cannot_unframe_the_body(edge, connection: bytes) -> None:
    """``Connection: content-length`` once made the gateway drop Content-Length on the way out
    after it had framed the body by it: the body reached the upstream as a second request that
    no policy had read (here ``GET /admin/secret`` past a rule refusing ``/admin``)."""
    port, up = edge
    since = len(up.requests())
    smuggled = b"GET /admin/secret HTTP/1.1\r\nHost: guarded.test\r\n\r\n"
    head = b"POST /echo HTTP/1.1\r\nHost: guarded.test\r\n" + connection
    assert _exchange(port, head + b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled)[0] == 200
    time.sleep(0.2)  # (a smuggled second request would reach the upstream right after the first)
    seen = up.requests()[since:]
    assert [r["target"] for r in seen] == ["/echo"], seen
    assert seen[0]["body_length"] == len(smuggled)


def test_connection_option_is_removed_before_the_policies(edge) -> None:
    """A header the client names in ``Connection`` is this hop's: it is gone before any policy
    reads it (the upstream never gets it), so a rule cannot be satisfied by a value the upstream
    does not see."""
    port, up = edge
    since = len(up.requests())
    status = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: tenant.test\r\nConnection: x-tenant\r\nX-Tenant: a\r\n\r\n")
    assert status[0] == 403
    assert _targets(up, since) == []
    status = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: tenant.test\r\nConnection: x-other\r\nX-Tenant: a\r\n\r\n")
    assert status[0] == 200


@pytest.mark.parametrize("listed", [b"x-user", b"X-User", b"keep-alive, x-user"])
def test_connection_option_cannot_remove_a_header_the_gateway_sets(edge, listed: bytes) -> None:
    """``requestHeaderModifier.set`` replaces the client's ``x-user``; naming ``x-user`` in
    ``Connection`` once made the gateway strip its own value on the way out."""
    port, up = edge
    status, _, body = _exchange(
        port, b"GET /echo HTTP/1.1\r\nHost: stamped.test\r\nConnection: " + listed + b"\r\nX-User: admin\r\n\r\n"
    )
    assert status == 200
    sent = [v for k, v in json.loads(body)["headers"] if k == "x-user"]
    assert sent == ["gateway"]
