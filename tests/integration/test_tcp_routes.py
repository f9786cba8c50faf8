"""TCP and TLS listeners with tcpRoutes through the real daemon: a TCP echo relayed byte for byte,
TLS passed through to two backends chosen by SNI (Python ssl and ``openssl s_client`` clients see
the backends' own certificates: the gateway holds none), TLS terminated by the gateway, backendTLS
to the backend, and the ways a connection is refused (unknown name, malformed or missing
ClientHello) while the gateway keeps serving."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.client_hello import hello_body, records, sni_extension
from tests.support.gateway import ResponseReader, free_port, raw_connection, wait_for
from tests.support.tcp_echo import TcpEchoServer


@pytest.fixture
def echo_servers() -> Iterator[list[TcpEchoServer]]:
    started: list[TcpEchoServer] = []
    yield started
    for server in started:
        server.stop()


def _echo(echo_servers: list[TcpEchoServer], **kwargs: object) -> TcpEchoServer:
    server = TcpEchoServer(**kwargs)  # type: ignore[arg-type]
    echo_servers.append(server)
    return server


def _cert(ca: trustme.CA, tmp_path: Path, name: str) -> tuple[str, str]:
    cert = ca.issue_cert(name)
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


def _tcp_config(port: int, backends: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {
        "binds": [
            {"port": port, "listeners": [{"protocol": "TCP", "tcpRoutes": [{"name": "echo", "backends": backends}]}]}
        ],
        **extra,
    }


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(1 << 20, n - len(out)))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def _connection_lines(gw) -> list[str]:
    return [line for line in gw.output().splitlines() if "\tconnection\t" in line]


def test_tcp_echo_through_a_tcp_route(gateway, echo_servers):
    echo = _echo(echo_servers)
    port = free_port()
    gw = gateway(_tcp_config(port, [{"host": echo.address}]))
    with raw_connection(port, timeout=20) as s:
        s.sendall(b"hello over tcp")
        assert _recv_exactly(s, 14) == b"hello over tcp"
        # Several MiB: more than the socket buffers, so back-pressure works on both legs
        # (written by a thread while this one reads).
        big = os.urandom(8 * 1024 * 1024)
        writer = _Writer(s, big)
        assert _recv_exactly(s, len(big)) == big
        writer.join()
        # Half-close: the echo server sees EOF, finishes and half-closes back.
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b""
    wait_for(lambda: _connection_lines(gw), 10, "the connection's log line")
    line = _connection_lines(gw)[0]
    total = 14 + 8 * 1024 * 1024
    assert "protocol=tcp" in line and "route=echo" in line and f"endpoint={echo.address}" in line
    assert f"bytes.received={total}" in line and f"bytes.sent={total}" in line
    assert echo.half_closes == 1
    assert gw.metric("agentgateway_downstream_connections_total", route="echo", protocol="tcp") == 1
    assert gw.metric("agentgateway_downstream_received_bytes_total", route="echo") == total
    assert gw.metric("agentgateway_downstream_sent_bytes_total", route="echo") == total


class _Writer:
    def __init__(self, sock: socket.socket, data: bytes) -> None:
        import threading

        self._thread = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join(30)


def test_a_client_that_does_not_read_holds_the_backend_back(gateway):
    """Back-pressure: a backend writing to a client that reads nothing is soon blocked (the
    relay stops reading it) instead of the gateway buffering everything; then every byte arrives
    intact. Kernel buffers on both legs hold a few MiB; 64 MiB would pass without it."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    port = free_port()
    total = 64 * 1024 * 1024
    sent = [0]
    blocked = threading.Event()
    chunk = os.urandom(256 * 1024)

    def produce(server: socket.socket) -> None:
        server.settimeout(3)  # a send that makes no progress for 3 s: the relay holds it back
        try:
            while sent[0] < total:
                sent[0] += server.send(chunk)
        except TimeoutError:
            blocked.set()
            server.settimeout(30)  # the rest goes once the client reads
            rest = total - sent[0]
            while rest > 0:
                n = server.send(chunk[: min(len(chunk), rest)])
                rest -= n
                sent[0] += n

    try:
        gateway(_tcp_config(port, [{"host": f"127.0.0.1:{listener.getsockname()[1]}"}]))
        with raw_connection(port, timeout=60) as client:
            client.sendall(b"start")
            server, _ = listener.accept()
            with server:
                assert server.recv(5) == b"start"
                producer = threading.Thread(target=produce, args=(server,), daemon=True)
                producer.start()
                assert blocked.wait(60), "the backend was never held back"
                assert sent[0] < 48 * 1024 * 1024, sent[0]
                received = 0
                while received < total:
                    data = client.recv(1 << 20)
                    assert data, f"closed after {received} bytes"
                    received += len(data)
                producer.join(30)
                assert received == total == sent[0]
    finally:
        listener.close()


def test_a_server_that_speaks_first_and_weighted_backends(gateway, echo_servers):
    first = _echo(echo_servers, banner=b"220 first\r\n")
    second = _echo(echo_servers, banner=b"220 second\r\n")
    port = free_port()
    gateway(_tcp_config(port, [{"host": first.address, "weight": 1}, {"host": second.address, "weight": 0}]))
    for _ in range(3):
        with raw_connection(port) as s:
            # The banner arrives before the client says anything.
            assert _recv_exactly(s, 11) == b"220 first\r\n"
            s.sendall(b"EHLO x\r\n")
            assert _recv_exactly(s, 8) == b"EHLO x\r\n"
    assert second.connections == 0


def test_backend_down_closes_the_connection_and_is_logged(gateway):
    dead = free_port()
    port = free_port()
    gw = gateway(_tcp_config(port, [{"host": f"127.0.0.1:{dead}"}]))
    with raw_connection(port) as s:
        s.sendall(b"anyone?")
        assert s.recv(10) == b""
    line = wait_for(lambda: _connection_lines(gw), 10, "the connection's log line")[0]
    assert "upstream connect error" in line


@pytest.fixture
def tls_backends(tmp_path: Path, upstream):
    """Two HTTPS upstreams with their own certificates, for a.example.com and b.example.com."""
    ca = trustme.CA()
    a_cert, a_key = _cert(ca, tmp_path, "a.example.com")
    b_cert, b_key = _cert(ca, tmp_path, "b.example.com")
    up_a = upstream("a", tls=(a_cert, a_key))
    up_b = upstream("b", tls=(b_cert, b_key))
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return ca, up_a, up_b, ca_path


def _passthrough(port: int, routes: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {"binds": [{"port": port, "listeners": [{"protocol": "TLS", "tcpRoutes": routes}]}], **extra}


def _tls_client(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def test_tls_passthrough_to_two_backends_by_sni(gateway, tls_backends):
    ca, up_a, up_b, _ = tls_backends
    port = free_port()
    gw = gateway(
        _passthrough(
            port,
            [
                {"name": "a", "hostnames": ["a.example.com"], "backends": [{"host": up_a.address}]},
                {"name": "b", "hostnames": ["b.example.com"], "backends": [{"host": up_b.address}]},
            ],
        )
    )
    ctx = _tls_client(ca)
    for name, expected in (("a.example.com", "a"), ("b.example.com", "b"), ("A.Example.Com", "a")):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as s,
        ):
            # The certificate verified against the name is the backend's: the gateway has none.
            assert ("DNS", name.lower()) in s.getpeercert()["subjectAltName"]
            s.sendall(f"GET /echo HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
            status, headers, _ = ResponseReader(s).read()
            assert status == 200 and headers["x-upstream"] == expected
    lines = wait_for(lambda: len(_connection_lines(gw)) >= 3 and _connection_lines(gw), 10, "log lines")
    assert any("protocol=tls" in x and "tls.sni=a.example.com" in x and "route=a" in x for x in lines)
    assert any("tls.sni=b.example.com" in x and "route=b" in x for x in lines)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_s_client_through_passthrough(gateway, tls_backends):
    _, up_a, up_b, ca_path = tls_backends
    port = free_port()
    gateway(
        _passthrough(
            port,
            [
                {"hostnames": ["a.example.com"], "backends": [{"host": up_a.address}]},
                {"hostnames": ["*.example.com"], "backends": [{"host": up_b.address}]},
            ],
        )
    )
    for name, expected in (("a.example.com", "a"), ("b.example.com", "b")):
        result = subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                name,
                "-CAfile",
                str(ca_path),
                "-verify_hostname",
                name,
                "-verify_return_error",
                "-quiet",
            ],
            input=f"GET /echo HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        out = result.stdout.decode(errors="replace")
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        assert "HTTP/1.1 200" in out and f"x-upstream: {expected}" in out


def test_unknown_or_missing_sni_is_refused(gateway, tls_backends):
    ca, up_a, _, _ = tls_backends
    port = free_port()
    gw = gateway(_passthrough(port, [{"hostnames": ["a.example.com"], "backends": [{"host": up_a.address}]}]))
    ctx = _tls_client(ca)
    ctx.check_hostname = False
    for name in ("c.example.com", None):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name"),
        ):
            ctx.wrap_socket(raw, server_hostname=name)
    # The gateway serves the next client.
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        _tls_client(ca).wrap_socket(raw, server_hostname="a.example.com") as s,
    ):
        assert s.getpeercert() is not None
    lines = wait_for(lambda: len(_connection_lines(gw)) >= 3 and _connection_lines(gw), 10, "log lines")
    refused = [x for x in lines if "no TCP route" in x]
    assert len(refused) == 2 and any("tls.sni=c.example.com" in x for x in refused)
    # Nothing reached the backend for them (no endpoint was chosen).
    assert all("endpoint=" not in x for x in refused)


def test_sni_look_alikes_do_not_match(gateway, tls_backends):
    """Names that only look like a route's hostname are refused: a suffix added, a prefix added,
    the wildcard's own domain, a name with a NUL byte (a hand-made hello)."""
    ca, up_a, up_b, _ = tls_backends
    port = free_port()
    gw = gateway(
        _passthrough(
            port,
            [
                {"name": "a", "hostnames": ["a.example.com"], "backends": [{"host": up_a.address}]},
                {"name": "wild", "hostnames": ["*.b.example.com"], "backends": [{"host": up_b.address}]},
            ],
        )
    )
    ctx = _tls_client(ca)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for name in ("a.example.com.evil.test", "evil-a.example.com", "b.example.com", "xa.example.com"):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name"),
        ):
            ctx.wrap_socket(raw, server_hostname=name)
    # Deeper names under the wildcard go to its route (the backend's certificate does not cover
    # them, which the client sees: the gateway did not terminate).
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="x.y.b.example.com") as s,
    ):
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: b\r\n\r\n")
        assert ResponseReader(s).read()[1]["x-upstream"] == "b"
    with raw_connection(port) as s:
        s.sendall(records(hello_body([sni_extension((0, b"a.example.com\x00.evil"))])))
        assert s.recv(100) == b""
    lines = wait_for(lambda: len(_connection_lines(gw)) >= 6 and _connection_lines(gw), 10, "log lines")
    assert sum("no TCP route" in x for x in lines) == 4
    assert any("invalid host name" in x for x in lines)


def test_malformed_or_slow_client_hello(gateway, tls_backends):
    ca, up_a, _, _ = tls_backends
    port = free_port()
    config = _passthrough(port, [{"backends": [{"host": up_a.address}]}])
    config["frontendPolicies"] = {"tls": {"handshakeTimeout": "1s"}}
    gw = gateway(config)
    bad = [
        b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",  # plain HTTP on a TLS port
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # a handshake that is not a ClientHello
        b"\x16\x03\x01\x01\x00\x01\x10\x00\x00" + b"\x00" * 200,  # a hello of 1 MiB announced
        b"\x80\x2e\x01\x03\x01\x00\x15",  # SSLv2-style
    ]
    for data in bad:
        with raw_connection(port) as s:
            s.sendall(data)
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(100) == b""
    # A client that sends half a hello and stops is cut after the handshake timeout.
    with raw_connection(port, timeout=15) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        started = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - started < 14
    # The gateway still serves a well-formed client (any name: the route has no hostnames).
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        _tls_client(ca).wrap_socket(raw, server_hostname="a.example.com") as s,
    ):
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        assert ResponseReader(s).read()[0] == 200
    lines = wait_for(lambda: len(_connection_lines(gw)) >= len(bad) + 2 and _connection_lines(gw), 10, "log lines")
    invalid = [x for x in lines if "invalid TLS ClientHello" in x]
    assert len(invalid) == len(bad) and all("endpoint=" not in x for x in invalid)
    assert any("no complete TLS ClientHello within 1s" in x for x in lines)


def test_tls_terminated_by_the_gateway(gateway, echo_servers, tmp_path):
    """A TLS listener with ``tls``: the gateway's certificate (chosen by SNI among listeners),
    plaintext to the backend."""
    ca = trustme.CA()
    cert, key = _cert(ca, tmp_path, "echo.example.com")
    echo = _echo(echo_servers)
    port = free_port()
    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {
                            "hostname": "echo.example.com",
                            "protocol": "TLS",
                            "tls": {"cert": cert, "key": key},
                            "tcpRoutes": [{"backends": [{"host": echo.address}]}],
                        }
                    ],
                }
            ]
        }
    )
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        _tls_client(ca).wrap_socket(raw, server_hostname="echo.example.com") as s,
    ):
        assert ("DNS", "echo.example.com") in s.getpeercert()["subjectAltName"]
        s.sendall(b"plaintext behind the gateway")
        assert _recv_exactly(s, 28) == b"plaintext behind the gateway"
    assert echo.received == 28


def test_backend_tls_on_a_tcp_route(gateway, tmp_path, upstream):
    """A TCP listener whose route speaks TLS to its backend (backendTLS with the backend's CA)."""
    ca = trustme.CA()
    cert, key = _cert(ca, tmp_path, "backend.internal")
    up = upstream("secure", tls=(cert, key))
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    port = free_port()
    gateway(
        _tcp_config(
            port,
            [{"host": up.address, "policies": {"backendTLS": {"root": str(ca_path), "hostname": "backend.internal"}}}],
        )
    )
    with raw_connection(port) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: backend.internal\r\n\r\n")
        status, headers, _ = ResponseReader(s).read()
        assert status == 200 and headers["x-upstream"] == "secure"


def test_tcp_routes_in_the_gateways_form(gateway, echo_servers, tls_backends):
    ca, up_a, _, _ = tls_backends
    echo = _echo(echo_servers)
    tcp_port, tls_port = free_port(), free_port()
    gateway(
        {
            "gateways": {
                "raw": {"port": tcp_port, "protocol": "TCP"},
                "edge": {"port": tls_port, "listeners": [{"name": "pass", "protocol": "TLS"}]},
            },
            "tcpRoutes": [
                {"name": "echo", "gateways": "raw", "backends": [{"host": echo.address}]},
                {
                    "name": "a",
                    "gateways": "edge/pass",
                    "hostnames": ["a.example.com"],
                    "backends": [{"host": up_a.address}],
                },
            ],
        }
    )
    with raw_connection(tcp_port) as s:
        s.sendall(b"ping")
        assert _recv_exactly(s, 4) == b"ping"
    with (
        socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw,
        _tls_client(ca).wrap_socket(raw, server_hostname="a.example.com") as s,
    ):
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        assert ResponseReader(s).read()[1]["x-upstream"] == "a"


def test_idle_tcp_connection_is_closed(gateway, echo_servers):
    echo = _echo(echo_servers)
    port = free_port()
    gw = gateway(_tcp_config(port, [{"host": echo.address}], frontendPolicies={"tcp": {"idleTimeout": "1s"}}))
    with raw_connection(port, timeout=15) as s:
        s.sendall(b"x")
        assert _recv_exactly(s, 1) == b"x"
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b""
    line = wait_for(lambda: _connection_lines(gw), 10, "the connection's log line")[0]
    assert "idle for 1s" in line


@pytest.mark.parametrize(
    "listener, error",
    [
        ({"protocol": "TCP", "tcpRoutes": [], "routes": [{"backends": [{"host": "127.0.0.1:1"}]}]}, "takes tcpRoutes"),
        ({"protocol": "TLS"}, "protocol TLS requires tcpRoutes"),
        ({"protocol": "HTTP", "tcpRoutes": [{"backends": [{"host": "127.0.0.1:1"}]}]}, "need protocol TCP or TLS"),
        ({"protocol": "TCP", "tcpRoutes": [{"backends": []}]}, "needs a backend"),
        (
            {"protocol": "TCP", "tcpRoutes": [{"hostnames": ["a.test"], "backends": [{"host": "127.0.0.1:1"}]}]},
            "need TLS",
        ),
        ({"protocol": "TLS", "tcpRoutes": [{"backends": [{"service": {"name": "x", "port": 1}}]}]}, "not supported"),
        ({"protocol": "HBONE"}, "not supported"),
    ],
)
def test_config_errors(tmp_path, listener, error):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"binds": [{"port": free_port(), "listeners": [listener]}]}))
    result = subprocess.run(
        [os.sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"],  # type: ignore[attr-defined]
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert error in (result.stdout + result.stderr).decode(), result.stderr
