"""The admin plane's door, through the real daemon over raw sockets: only loopback names or the
admin address as Host (DNS rebinding), state-changing requests only with the marker header and
without a foreign Origin (cross-site forms), and a server that bounds what a client may send."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.support.gateway import binds, free_port, raw_connection, read_response, wait_for

MARKER = "x-agentgateway-admin: 1\r\n"


def _exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    with raw_connection(port, timeout) as s:
        s.sendall(request)
        return read_response(s)


def _request(method: str, path: str, host: str | None, extra: str = "", body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    if body or method in ("POST", "PUT", "DELETE", "PATCH"):
        head += f"Content-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode("latin-1") + body


@pytest.fixture
def gw(gateway):
    port = free_port()
    return gateway(binds(port, [{"policies": {"directResponse": {"status": 200, "body": "ok"}}}]))


FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:15000",
    "localhost.evil.example",
    "localhost.evil.example:15000",
    "127.0.0.1.evil.example",
    "localhost.",
    "localhost:abc",
    "localhost:",
    "localhost:99999",
    "localhost:15000@evil.example",
    "%6cocalhost",
    "[::1",
    "[::1]x",
    "[localhost]",
    "0x7f.0.0.1",
    "127.1",
    "10.1.2.3",  # an IP literal, but the admin binds to 127.0.0.1 only
    "",
]


def test_a_foreign_host_is_refused_on_every_path(gw):
    paths = ["/config_dump", "/ui", "/", "/quitquitquit", "/no-such-endpoint", "/healthz/ready"]
    for host in FOREIGN_HOSTS:
        for path in paths:
            status, _, body = _exchange(gw.admin_port, _request("GET", path, host))
            assert status == 403, (host, path, status, body)
            assert b"forbidden" in body
    # Also with the marker and a POST: the Host check comes first.
    for host in ("evil.example", "localhost.evil.example"):
        status, _, _ = _exchange(gw.admin_port, _request("POST", "/quitquitquit", host, MARKER))
        assert status == 403
    status, _, _ = _exchange(gw.admin_port, _request("HEAD", "/config_dump", "evil.example"), timeout=5)
    assert status == 403
    assert gw.alive()


def test_missing_or_repeated_host_is_refused(gw):
    assert _exchange(gw.admin_port, _request("GET", "/config_dump", None))[0] == 403
    assert _exchange(gw.admin_port, b"GET /config_dump HTTP/1.0\r\n\r\n")[0] == 403
    for first, second in (("localhost", "evil.example"), ("evil.example", "localhost"), ("localhost", "localhost")):
        request = f"GET /config_dump HTTP/1.1\r\nHost: {first}\r\nHost: {second}\r\n\r\n".encode()
        assert _exchange(gw.admin_port, request)[0] in (400, 403), (first, second)


def test_loopback_names_and_the_admin_address_are_answered(gw):
    port = gw.admin_port
    for host in (
        f"localhost:{port}",
        f"127.0.0.1:{port}",
        "[::1]",
        f"[::1]:{port}",
        "localhost",
        "LOCALHOST",
        "127.0.0.2",
    ):
        status, headers, body = _exchange(port, _request("GET", "/config_dump", host))
        assert status == 200, (host, status, body)
        assert headers["content-type"] == "application/json"
        assert "access-control-allow-origin" not in headers
    status, headers, body = _exchange(port, _request("GET", "/ui", f"localhost:{port}"))
    assert status == 200 and b"<h1>agentgateway" in body
    # Through a client library too (it sends Host: 127.0.0.1:<port>).
    assert httpx.get(gw.admin_url + "/config_dump").status_code == 200


def test_state_changing_requests_need_the_marker_and_no_foreign_origin(gw):
    port = gw.admin_port
    host = f"127.0.0.1:{port}"
    refused = {
        "simple POST, no marker": "",
        "form POST, no marker": "Content-Type: application/x-www-form-urlencoded\r\n",
        "text POST, no marker": "Content-Type: text/plain\r\n",
        "JSON content type is not the marker": "Content-Type: application/json\r\n",
        "marker with a cross-site Origin": MARKER + "Origin: http://evil.example\r\n",
        "marker with Origin null": MARKER + "Origin: null\r\n",
        "marker with a look-alike Origin": MARKER + f"Origin: http://{host}.evil.example\r\n",
        "marker with an https Origin": MARKER + f"Origin: https://{host}\r\n",
        "marker with two Origins": MARKER + f"Origin: http://{host}\r\nOrigin: http://evil.example\r\n",
        "marker with Sec-Fetch-Site cross-site": MARKER + "Sec-Fetch-Site: cross-site\r\n",
        "marker with Sec-Fetch-Site same-site": MARKER + "Sec-Fetch-Site: same-site\r\n",
    }
    for name, extra in refused.items():
        status, _, body = _exchange(port, _request("POST", "/quitquitquit", host, extra))
        assert status == 403, (name, status, body)
    for method in ("PUT", "DELETE", "PATCH"):
        assert _exchange(port, _request(method, "/quitquitquit", host))[0] == 403
    assert gw.alive()
    assert httpx.get(gw.ready_url).status_code == 200
    # The documented form: curl -X POST -H 'x-agentgateway-admin: 1' http://localhost:15000/quitquitquit
    origin = f"Origin: http://{host}\r\nSec-Fetch-Site: same-origin\r\n"
    status, _, body = _exchange(port, _request("POST", "/quitquitquit", host, MARKER + origin))
    assert (status, body) == (200, b"draining and exiting\n")
    wait_for(lambda: not gw.alive(), 30, "the gateway to exit")
    assert gw.proc.returncode == 0


def test_curl_with_the_marker_stops_the_gateway(gw):
    import subprocess

    r = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            "-H",
            "x-agentgateway-admin: 1",
            f"http://localhost:{gw.admin_port}/quitquitquit",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.stdout == "draining and exiting\n", r.stderr
    wait_for(lambda: not gw.alive(), 30, "the gateway to exit")


def test_stats_and_readiness_answer_any_host_but_only_reads(gw):
    for port, path in ((gw.stats_port, "/metrics"), (gw.ready_port, "/healthz/ready")):
        for host in ("evil.example", "10.0.0.7:9090", "prometheus.monitoring.svc"):
            status, _, body = _exchange(port, _request("GET", path, host))
            assert status == 200, (port, host, body)
        for method in ("POST", "PUT", "DELETE"):
            status, headers, _ = _exchange(port, _request(method, path, "localhost", MARKER))
            assert status == 405 and headers["allow"] == "GET, HEAD"


def test_the_admin_server_bounds_what_a_client_sends(gw):
    port = gw.admin_port
    host = f"127.0.0.1:{port}"
    big = "x-filler: " + "a" * 40_000 + "\r\n"
    assert _exchange(port, _request("GET", "/config_dump", host, big))[0] == 431
    many = "".join(f"x-h{i}: v\r\n" for i in range(100))
    assert _exchange(port, _request("GET", "/config_dump", host, many))[0] == 431
    # A head that never ends is cut off once it passes the cap, without waiting for the end.
    with raw_connection(port) as s:
        s.sendall(f"GET /config_dump HTTP/1.1\r\nHost: {host}\r\nx-long: ".encode())
        status = None
        for _ in range(20):
            try:
                s.sendall(b"a" * 4096)
            except OSError:
                break
            s.settimeout(0.05)
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            status = int(data.split(b" ")[1]) if data else None
            break
        assert status == 431
    body = b"x" * (1024 * 1024 + 10)
    status, _, _ = _exchange(port, _request("POST", "/quitquitquit", host, MARKER, body))
    assert status == 413
    # One request per connection: a pipelined second request is not answered.
    with raw_connection(port) as s:
        request = _request("GET", "/config_dump", host)
        s.sendall(request + _request("POST", "/quitquitquit", host, MARKER))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.count(b"HTTP/1.1 ") == 1 and data.startswith(b"HTTP/1.1 200")
    # A slow client (slow loris) is closed after the request timeout, with 408.
    with raw_connection(port, timeout=30) as s:
        s.sendall(f"GET /config_dump HTTP/1.1\r\nHost: {host}\r\n".encode())
        started = time.monotonic()
        status, _, _ = read_response(s)
        assert status == 408 and time.monotonic() - started < 29
    assert gw.alive()
    assert httpx.get(gw.admin_url + "/config_dump").status_code == 200


def test_a_wildcard_admin_address_also_answers_ip_literals(gateway):
    port = free_port()
    admin = free_port()
    gw = gateway(
        {
            **binds(port, [{"policies": {"directResponse": {"status": 200, "body": "ok"}}}]),
            "config": {"adminAddr": f"0.0.0.0:{admin}"},
        }
    )
    addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    for host in (f"127.0.0.1:{admin}", f"10.1.2.3:{admin}", *(f"{a}:{admin}" for a in addresses)):
        assert _exchange(admin, _request("GET", "/config_dump", host))[0] == 200, host
    for host in ("evil.example", f"localhost.evil.example:{admin}", socket.gethostname() + ".evil.example"):
        assert _exchange(admin, _request("GET", "/config_dump", host))[0] == 403, host
    assert gw.alive()


def test_open_connections_per_plane_are_bounded(gw):
    port = gw.admin_port
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
    try:
        with raw_connection(port) as extra:
            # Closed at accept (the plane holds 64 already): end of stream, or a reset when the
            # request was sent before the close.
            try:
                extra.sendall(_request("GET", "/config_dump", f"127.0.0.1:{port}"))
                assert extra.recv(100) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in held:
            s.close()

    def answered() -> bool:
        try:
            return _exchange(port, _request("GET", "/config_dump", f"127.0.0.1:{port}"))[0] == 200
        except ConnectionError:
            return False

    wait_for(answered, 10, "the plane to take connections again")
