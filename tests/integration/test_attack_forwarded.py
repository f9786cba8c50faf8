"""Attacks on who the client is, through the daemon: forwarded headers (and their look-alikes)
from peers that are not trusted proxies, on HTTP/1.1 and HTTP/2; PROXY protocol headers where
none is configured, and malformed or oversized ones where one is."""

from __future__ import annotations

import contextlib
import json
import socket
import struct

from tests.support.gateway import ResponseReader, binds, free_port, raw_connection
from tests.support.http2 import PREFACE, RawH2Client

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
SPOOFS = [
    (b"X-Forwarded-For", b"10.9.9.9"),
    (b"x-forwarded-host", b"admin.internal"),
    (b"X_Forwarded_For", b"10.9.9.9"),  # CGI/WSGI servers read _ as -: HTTP_X_FORWARDED_FOR
    (b"x_forwarded_host", b"admin.internal"),
    (b"X_Forwarded_Proto", b"https"),
    (b"X_Real_IP", b"10.9.9.9"),
    (b"x-real-ip", b"10.9.9.9"),
    (b"Forwarded", b"for=10.9.9.9;host=admin.internal"),
]


def _v1(src: str) -> bytes:
    return f"PROXY TCP4 {src} 127.0.0.1 5555 80\r\n".encode()


def _routes(address: str) -> list[dict]:
    # The IP policy a spoofed address would pass.
    rule = 'source.address == "10.9.9.9" || request.path == "/echo"'
    return [{"backends": [{"host": address}], "policies": {"authorization": {"rules": [rule]}}}]


def _h1(port: int, path: bytes, fields: list[tuple[bytes, bytes]], prefix: bytes = b"") -> tuple[int, dict]:
    with raw_connection(port) as sock:
        head = b"".join(name + b": " + value + b"\r\n" for name, value in fields)
        sock.sendall(prefix + b"GET " + path + b" HTTP/1.1\r\nHost: gw.test\r\n" + head + b"\r\n")
        status, _, body = ResponseReader(sock).read()
    return status, dict(json.loads(body)["headers"]) if status == 200 else {}


def _h2(port: int, path: str, fields: list[tuple[bytes, bytes]]) -> tuple[int, dict]:
    with RawH2Client(port) as client:
        lower = [(name.decode().lower(), value.decode()) for name, value in fields]
        r = client.fetch(path, headers=lower)
    return r.status, dict(json.loads(r.body)["headers"]) if r.status == 200 else {}


def _h2_behind(port: int, prefix: bytes, path: str, fields: list[tuple[bytes, bytes]]) -> tuple[int, dict]:
    """One HTTP/2 (prior knowledge) GET on a connection that starts with ``prefix``."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, ResponseReceived, StreamEnded

    conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    head = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"gw.test"), (b":path", path.encode())]
    conn.send_headers(1, head + [(n.lower(), v) for n, v in fields], end_stream=True)
    status, body = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(prefix + conn.data_to_send())
        for _ in range(1000):  # bounded: a few frames are expected
            data = sock.recv(65536)
            assert data, "the gateway closed the connection"
            ended = False
            for event in conn.receive_data(data):
                if isinstance(event, ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                ended = ended or isinstance(event, StreamEnded)
            sock.sendall(conn.data_to_send())
            if ended:
                break
    return status, dict(json.loads(body)["headers"]) if status == 200 else {}


def _no_spoof(sent: dict) -> None:
    names = {k.lower() for k in sent}
    for name in ("x_forwarded_for", "x_forwarded_host", "x_forwarded_proto", "x_real_ip", "x-real-ip", "forwarded"):
        assert name not in names, (name, sent)
    assert sent["x-forwarded-for"] == "127.0.0.1" and sent["x-forwarded-host"] in ("gw.test", "localhost")


def test_untrusted_peer_cannot_spoof_forwarded_headers_or_look_alikes(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, _routes(up.address)))
    status, sent = _h1(port, b"/echo", SPOOFS)
    assert status == 200
    _no_spoof(sent)
    status, sent = _h2(port, "/echo", SPOOFS)
    assert status == 200
    _no_spoof(sent)
    # The IP policy sees the real peer.
    assert _h1(port, b"/private", SPOOFS)[0] == 403
    assert _h2(port, "/private", SPOOFS)[0] == 403


def test_proxy_header_where_none_is_configured_is_not_an_address(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, _routes(up.address)))
    for prefix in (_v1("10.9.9.9"), V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([10, 9, 9, 9]) + bytes(8)):
        with raw_connection(port) as sock:
            sock.sendall(prefix + b"GET /private HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert ResponseReader(sock).read()[0] == 400
    with raw_connection(port) as sock:  # before an HTTP/2 preface
        sock.sendall(_v1("10.9.9.9") + PREFACE)
        with contextlib.suppress(ConnectionResetError):
            assert b" 400 " in sock.recv(4096)[:16]
    assert up.requests() == []


def test_trusted_proxies_behind_a_proxy_header_on_both_protocols(gateway, upstream):
    """The PROXY header names the peer; only a peer inside trustedProxies is believed."""
    up = upstream()
    port = free_port()
    config = binds(port, _routes(up.address))
    config["frontendPolicies"] = {
        "proxyProtocol": {"version": "v1"},
        "http": {"trustedProxies": ["10.0.0.0/8"]},
    }
    gateway(config)
    # An untrusted client (6.6.6.6) spoofing on HTTP/1.1 and HTTP/2: dropped, the policy refuses.
    assert _h1(port, b"/private", SPOOFS, _v1("6.6.6.6"))[0] == 403
    status, sent = _h1(port, b"/echo", SPOOFS, _v1("6.6.6.6"))
    assert status == 200 and sent["x-forwarded-for"] == "6.6.6.6"
    assert not {"x_forwarded_for", "x_real_ip", "forwarded"} & {k.lower() for k in sent}
    status, sent = _h2_behind(port, _v1("6.6.6.6"), "/echo", SPOOFS)
    assert status == 200 and sent["x-forwarded-for"] == "6.6.6.6"
    assert not {"x_forwarded_for", "x_real_ip", "forwarded", "x-real-ip"} & set(sent)
    assert _h2_behind(port, _v1("6.6.6.6"), "/private", SPOOFS)[0] == 403
    assert _h2_behind(port, _v1("10.1.1.1"), "/private", [(b"x-forwarded-for", b"10.9.9.9")])[0] == 200
    # A trusted proxy (10.1.1.1) is believed: its chain's client passes the policy.
    assert _h1(port, b"/private", [(b"x-forwarded-for", b"10.9.9.9")], _v1("10.1.1.1"))[0] == 200


def test_malformed_proxy_headers_are_refused_and_others_served(gateway, upstream):
    up = upstream()
    port = free_port()
    config = binds(port, [{"backends": [{"host": up.address}]}])
    config["frontendPolicies"] = {"proxyProtocol": {"version": "all"}}
    gateway(config)
    bad = [
        b"PROXY TCP4 6.6.6.6 127.0.0.1 99999 80\r\n",
        b"PROXY TCP4 6.6.6.6 127.0.0.1 +80 80\r\n",
        b"PROXY TCP4 06.6.6.6 127.0.0.1 80 80\r\n",
        b"PROXY TCP4 6.6.6.6  127.0.0.1 80 80\r\n",
        b"PROXY TCP4 ::1 127.0.0.1 80 80\r\n",
        b"PROXY TCP4 6.6.6.6 127.0.0.1 80 80\n",
        b"PROXY TCP4 6.6.6.6\x00 127.0.0.1 80 80\r\n",
        b"PROXY " + b"A" * 200 + b"\r\n",
        V2_SIGNATURE + b"\x21\x11\xff\xff" + bytes(100),  # longer than 528
        V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),  # truncated addresses
        V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),  # version 3
        V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),  # command 2
        V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12),  # datagram
        V2_SIGNATURE + b"\x21\x51\x00\x0c" + bytes(12),  # family 5
    ]
    for header in bad:
        with raw_connection(port) as sock:
            sock.sendall(header + b"GET /echo HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(100) == b"", header
    assert up.requests() == []
    # A good one still works, in two pieces.
    with raw_connection(port) as sock:
        header = V2_SIGNATURE + b"\x21\x11\x00\x0c" + bytes([7, 7, 7, 7, 127, 0, 0, 1]) + struct.pack(">HH", 1, 80)
        sock.sendall(header[:10])
        sock.sendall(header[10:] + b"GET /echo HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        status, _, body = ResponseReader(sock).read()
    assert status == 200 and dict(json.loads(body)["headers"])["x-forwarded-for"] == "7.7.7.7"


def test_an_ipv4_mapped_proxy_source_is_the_ipv4_client(gateway, upstream):
    """A dual-stack balancer names an IPv4 client as ``::ffff:a.b.c.d``: the gateway takes it as
    ``a.b.c.d`` (as it reads X-Forwarded-For), so an IP rule written for the IPv4 client holds;
    a v1 address with a zone (``fe80::1%eth0``) is not an address."""
    up = upstream()
    port = free_port()
    config = binds(port, _routes(up.address))
    config["frontendPolicies"] = {"proxyProtocol": {"version": "all"}}
    gateway(config)
    mapped_v1 = b"PROXY TCP6 ::ffff:10.9.9.9 ::1 5555 80\r\n"
    mapped_v2 = (
        V2_SIGNATURE
        + b"\x21\x21\x00\x24"
        + bytes(10)
        + b"\xff\xff"
        + bytes([10, 9, 9, 9])
        + bytes(15)
        + b"\x01"
        + struct.pack(">HH", 5555, 80)
    )
    for prefix in (mapped_v1, mapped_v2):
        status, sent = _h1(port, b"/private", [], prefix)
        assert status == 200 and sent["x-forwarded-for"] == "10.9.9.9"
    with raw_connection(port) as sock:
        sock.sendall(b"PROXY TCP6 fe80::1%eth0 ::1 5555 80\r\nGET /echo HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""
