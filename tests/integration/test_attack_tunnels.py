"""Attacks where a connection stops being HTTP request/response (audit 12), raw sockets throughout
(client libraries would normalize what is tested).

Fixed (each test fails before its fix): a ClientHello dripped in one-byte records
(``test_client_hello_dripped_in_tiny_records_costs_linear_time``), tunnels of a port a reload
removes (``test_tunnels_of_a_bind_a_reload_removes_are_cut``), a 101 that does not answer the
upgrade (``test_a_101_that_does_not_answer_the_upgrade_opens_no_tunnel``), CONNECT over HTTP/1.1
(``test_connect_over_http1_opens_nothing``). Held: policies on upgrades read the normalized path,
HTTP/1.0 upgrades, PROXY headers on listeners that do not read them, odd server names."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client_hello import hello_body, other_extension, records, sni_extension
from tests.support.gateway import ResponseReader, free_port, wait_for
from tests.support.tcp_echo import TcpEchoServer
from tests.support.websocket_server import WebSocketServer


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def test_client_hello_dripped_in_tiny_records_costs_linear_time(gateway):
    """TLS lets a ClientHello be cut into records of one byte. Sent one record per packet, each
    read used to parse the whole buffer again: 8000 reads of an 8 KiB hello cost the worker 1.7 s
    of CPU (most of the 2.6 s the client took to send it, from a single connection; a few such
    clients take a worker). Now each byte is read once."""
    echo = TcpEchoServer()
    try:
        port = free_port()
        gw = gateway(
            {
                "binds": [
                    {
                        "port": port,
                        "listeners": [{"protocol": "TLS", "tcpRoutes": [{"backends": [{"host": echo.address}]}]}],
                    }
                ]
            }
        )
        (worker,) = gw.worker_pids()
        body = hello_body([sni_extension((0, b"a.example")), other_extension(21, bytes(8000))])
        data = records(body, cuts=list(range(1, len(body) + 4)))  # one byte per record
        before = _cpu_seconds(worker)
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(data), 6):
                s.sendall(data[i : i + 6])
                time.sleep(0.0002)  # one record per read
            sending = time.monotonic() - started
            # The hello was whole and valid: relayed to the backend, which echoes it back.
            got = b""
            with contextlib.suppress(TimeoutError):
                while len(got) < len(data):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            assert got == data
        spent = _cpu_seconds(worker) - before
        # (0.15 s measured; 1.7 s before, for 2.6 s of sending)
        assert spent < 0.7, (spent, sending)
    finally:
        echo.stop()


_WS_HANDSHAKE = (
    b"GET /echo HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _ws_text(payload: bytes) -> bytes:
    """A masked client text frame (RFC 6455 §5.2) with an all-zero mask: the payload as is."""
    return bytes([0x81, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the peer closes ``sock`` within ``seconds`` (what arrives meanwhile is dropped)."""
    sock.settimeout(0.25)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_tunnels_of_a_bind_a_reload_removes_are_cut(gateway):
    """A reload that removes a port (or reopens it: other client-certificate roots) closes its
    HTTP connections once their request is answered; a tunnel has no such moment. A WebSocket
    session and a TCP relay opened before the reload went on relaying for as long as their client
    kept them busy, through a port that no longer existed. Now they are cut (agentgateway aborts a
    removed bind's connections too)."""
    echo = TcpEchoServer()
    ws = WebSocketServer()
    try:
        tcp_port, ws_port, kept_port = free_port(), free_port(), free_port()
        kept = {
            "port": kept_port,
            "listeners": [{"protocol": "TCP", "tcpRoutes": [{"backends": [{"host": echo.address}]}]}],
        }
        first = {
            "binds": [
                {
                    "port": tcp_port,
                    "listeners": [{"protocol": "TCP", "tcpRoutes": [{"backends": [{"host": echo.address}]}]}],
                },
                {"port": ws_port, "listeners": [{"routes": [{"backends": [{"host": ws.address}]}]}]},
                kept,
            ]
        }
        gw = gateway(first)
        with (
            socket.create_connection(("127.0.0.1", tcp_port), timeout=5) as tcp,
            socket.create_connection(("127.0.0.1", ws_port), timeout=5) as session,
            socket.create_connection(("127.0.0.1", kept_port), timeout=5) as other,
        ):
            for sock in (tcp, other):
                sock.sendall(b"before")
                assert _recv_exactly(sock, 6) == b"before"
            session.sendall(_WS_HANDSHAKE)
            reader = ResponseReader(session)
            assert reader.read(head_only=True)[0] == 101
            session.sendall(_ws_text(b"before"))
            while len(reader.buf) < 8:
                reader._fill()
            assert reader.buf == b"\x81\x06before"
            gw.write_config({"binds": [kept]})
            wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="success") == 1, 10, "the reload")
            assert _closed_within(tcp, 5), "the TCP relay of the removed port still runs"
            assert _closed_within(session, 5), "the WebSocket session of the removed port still runs"
            # The port that stayed keeps its relay.
            other.sendall(b"after")
            assert _recv_exactly(other, 5) == b"after"
        lines = wait_for(
            lambda: [x for x in gw.output().splitlines() if "(removed or reopened) by a reload" in x], 10, "the log"
        )
        assert len(lines) == 2
    finally:
        ws.stop()
        echo.stop()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return out


@contextlib.contextmanager
def _raw_backend() -> Iterator[tuple[socket.socket, str]]:
    """A listening socket the test answers by hand: (listener, its host:port)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(10)
    try:
        yield listener, f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def _read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


# The accept value RFC 6455 §1.3 gives for the key of _WS_HANDSHAKE.
_GOOD_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        # Another protocol than the client asked for (RFC 9110 §7.8: a server MUST NOT).
        (b"Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + _GOOD_ACCEPT, "not asked"),
        (b"Upgrade: websocket, evil\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + _GOOD_ACCEPT, "not asked"),
        # A WebSocket switch that does not answer the client's key (RFC 6455 §4.1: fail it).
        (b"Upgrade: websocket\r\nConnection: Upgrade", "Sec-WebSocket-Accept"),
        (
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "Sec-WebSocket-Accept",
        ),
        (
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
            + _GOOD_ACCEPT
            + b"\r\nSec-WebSocket-Accept: "
            + _GOOD_ACCEPT,
            "Sec-WebSocket-Accept",
        ),
    ],
)
def test_a_101_that_does_not_answer_the_upgrade_opens_no_tunnel(gateway, answer, why):
    """A backend tricked into a 101 (a status it reflects from elsewhere, a handler that copies an
    upstream's headers) has not switched: it still reads HTTP. Relayed as a tunnel, the client's
    next bytes reached it as requests no route or policy saw (WebSocket smuggling). A 101 must
    name a protocol the client asked for and, for WebSocket, carry the accept value of the
    client's key; otherwise 502, and what the client wrote next is read as HTTP again, policed."""
    with _raw_backend() as (listener, address):
        port = free_port()
        routes = [
            {
                "matches": [{"path": {"pathPrefix": "/internal"}}],
                "backends": [{"host": address}],
                "policies": {"authorization": {"rules": ["false"]}},
            },
            {"backends": [{"host": address}]},
        ]
        gateway({"binds": [{"port": port, "listeners": [{"routes": routes}]}]})
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            smuggled = b"GET /internal/admin HTTP/1.1\r\nHost: gw.test\r\n\r\n"
            client.sendall(_WS_HANDSHAKE + smuggled)
            backend, _ = listener.accept()
            with backend:
                backend.settimeout(3)
                assert b"upgrade: websocket" in _read_head(backend)
                backend.sendall(b"HTTP/1.1 101 Switching Protocols\r\n" + answer + b"\r\n\r\n")
                reader = ResponseReader(client)
                status, _, body = reader.read()
                assert status == 502 and why.encode() in body, body
                # The bytes behind the upgrade are a request, refused by its route's policy.
                status, _, body = reader.read()
                assert status == 403, body
                with contextlib.suppress(TimeoutError, OSError):
                    assert backend.recv(4096) == b""


def test_a_101_that_answers_the_upgrade_is_relayed(gateway):
    """The checks keep what is right: the asked protocol in any case, and the accept value."""
    with _raw_backend() as (listener, address):
        port = free_port()
        gateway({"binds": [{"port": port, "listeners": [{"routes": [{"backends": [{"host": address}]}]}]}]})
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(_WS_HANDSHAKE)
            backend, _ = listener.accept()
            with backend:
                backend.settimeout(5)
                _read_head(backend)
                backend.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + _GOOD_ACCEPT + b"\r\n\r\n"
                )
                reader = ResponseReader(client)
                status, headers, _ = reader.read(head_only=True)
                assert status == 101 and headers["sec-websocket-accept"] == _GOOD_ACCEPT.decode()
                client.sendall(b"raw bytes")
                assert _recv_exactly(backend, 9) == b"raw bytes"


@pytest.mark.parametrize(
    "connect",
    [
        # The declared body is a smuggled request: the gateway read it as the next request, while
        # the CONNECT went upstream on a connection later pooled, declaring 60 bytes never sent.
        b"CONNECT /x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 60\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
        b"CONNECT http://127.0.0.1:22/ HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    ],
)
def test_connect_over_http1_opens_nothing(gateway, connect):
    """CONNECT on HTTP/1.1 is refused as over HTTP/2 (501) and the connection closes: no tunnel
    to a host the client names, and nothing reaches a backend. Served as a request before, its
    head went upstream declaring a body llhttp never reads (it stops at a CONNECT head), on a
    connection pooled after the answer: an upstream that reads a body it answered early took the
    next request on that connection (another client's, or the smuggled one behind the CONNECT) as
    that body, and read what followed as a request the gateway never saw."""
    with _raw_backend() as (listener, address):
        listener.settimeout(1)
        port = free_port()
        gateway({"binds": [{"port": port, "listeners": [{"routes": [{"backends": [{"host": address}]}]}]}]})
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(connect)
            reader = ResponseReader(client)
            status, headers, body = reader.read()
            assert status == 501 and headers.get("connection") == "close", body
            assert _closed_within(client, 5)
        with pytest.raises(TimeoutError):
            listener.accept()


# ------------------------------------------------------------------ held: what already stood


def test_upgrade_policies_read_the_normalized_path(gateway):
    """Held: an upgrade is routed and policed on the one normalized path, so a WebSocket handshake
    spelled around a guarded prefix is refused like any request; none reaches the server."""
    ws = WebSocketServer()
    try:
        port = free_port()
        routes = [
            {
                "matches": [{"path": {"pathPrefix": "/secure"}}],
                "backends": [{"host": ws.address}],
                "policies": {"authorization": {"rules": ["false"]}},
            },
            {"backends": [{"host": ws.address}]},
        ]
        gateway({"binds": [{"port": port, "listeners": [{"routes": routes}]}]})
        for path in (b"/%73ecure/echo", b"//secure/echo", b"/x/../secure/echo", b"/x/%2e%2e/secure/echo"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(_WS_HANDSHAKE.replace(b"/echo", path, 1))
                status, _, _ = ResponseReader(client).read()
                assert status == 403, path
        assert ws.connections == 0
    finally:
        ws.stop()


def test_an_http10_upgrade_is_not_relayed(gateway):
    """Held: HTTP/1.0 has no upgrades; the request goes without Upgrade, and a 101 to it is 502."""
    with _raw_backend() as (listener, address):
        port = free_port()
        gateway({"binds": [{"port": port, "listeners": [{"routes": [{"backends": [{"host": address}]}]}]}]})
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(_WS_HANDSHAKE.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
            backend, _ = listener.accept()
            with backend:
                backend.settimeout(5)
                head = _read_head(backend).lower()
                assert b"upgrade" not in head
                backend.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + _GOOD_ACCEPT + b"\r\n\r\n"
                )
                status, _, body = ResponseReader(client).read()
                assert status == 502 and b"unasked" in body


def _v2_header(source: str) -> bytes:
    return (
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
        + socket.inet_aton(source)
        + socket.inet_aton("127.0.0.1")
        + (4242).to_bytes(2, "big")
        + (443).to_bytes(2, "big")
    )


def test_proxy_headers_on_listeners_that_do_not_read_them(gateway):
    """Held: without frontendPolicies.proxyProtocol a PROXY header is the client's bytes, never an
    address: an HTTP listener answers 400, a TLS-passthrough listener closes (not a ClientHello),
    a TCP listener relays it to its backend as data while the log names the real peer."""
    echo = TcpEchoServer()
    try:
        http_port, tls_port, tcp_port = free_port(), free_port(), free_port()
        gw = gateway(
            {
                "binds": [
                    {"port": http_port, "listeners": [{"routes": [{"backends": [{"host": echo.address}]}]}]},
                    {
                        "port": tls_port,
                        "listeners": [{"protocol": "TLS", "tcpRoutes": [{"backends": [{"host": echo.address}]}]}],
                    },
                    {
                        "port": tcp_port,
                        "listeners": [{"protocol": "TCP", "tcpRoutes": [{"backends": [{"host": echo.address}]}]}],
                    },
                ]
            }
        )
        for prefix in (b"PROXY TCP4 6.6.6.6 127.0.0.1 4242 80\r\n", _v2_header("6.6.6.6")):
            with socket.create_connection(("127.0.0.1", http_port), timeout=10) as s:
                s.sendall(prefix + b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n")
                assert ResponseReader(s).read()[0] == 400
            with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as s:
                s.sendall(prefix)
                assert _closed_within(s, 5)
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as s:
            header = _v2_header("6.6.6.6")
            s.sendall(header)
            assert _recv_exactly(s, len(header)) == header
        lines = wait_for(
            lambda: [x for x in gw.output().splitlines() if "\tconnection\t" in x and "protocol=tcp" in x], 10, "log"
        )
        assert "src.addr=127.0.0.1:" in lines[0] and "6.6.6.6" not in gw.output()
    finally:
        echo.stop()


def test_odd_server_names_in_a_passed_through_hello(gateway):
    """Held: a trailing dot, a NUL, an empty name are malformed (closed, nothing relayed); an IP
    literal or another case is a name like any: the route of its hostname, or none."""
    echo = TcpEchoServer()
    try:
        port = free_port()
        routes = [{"name": "named", "hostnames": ["a.example.com"], "backends": [{"host": echo.address}]}]
        gw = gateway({"binds": [{"port": port, "listeners": [{"protocol": "TLS", "tcpRoutes": routes}]}]})
        for name in (b"a.example.com.", b"a.example.com\x00", b"", b"127.0.0.1", b"a.example.com:443"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(records(hello_body([sni_extension((0, name))])))
                assert _closed_within(s, 5), name
        hello = records(hello_body([sni_extension((0, b"A.EXAMPLE.COM"))]))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(hello)
            assert _recv_exactly(s, len(hello)) == hello  # relayed to the route's backend (echoed)
        assert echo.connections == 1
        lines = wait_for(lambda: [x for x in gw.output().splitlines() if "\tconnection\t" in x][5:] or None, 10, "log")
        assert "route=named" in lines[0] and "tls.sni=a.example.com" in lines[0]
    finally:
        echo.stop()
