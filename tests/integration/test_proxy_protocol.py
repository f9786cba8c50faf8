"""frontendPolicies.proxyProtocol through the real daemon: a PROXY header (v1 or v2) names the
client, on HTTP, HTTPS, TCP and TLS-passthrough listeners alike; the header is consumed byte
exactly, so TLS starts right behind it; strict refuses connections without one, optional serves
them."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import ssl
import struct
from pathlib import Path

import trustme

from tests.support.gateway import ResponseReader, binds, free_port, raw_connection, wait_for
from tests.support.tcp_echo import TcpEchoServer

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src: str, port: int) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    dst = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {src} {dst} {port} 443\r\n".encode()


def v2(src: str, port: int) -> bytes:
    address = ipaddress.ip_address(src)
    if address.version == 4:
        body = address.packed + bytes(4) + struct.pack(">HH", port, 443)
        family = 0x11
    else:
        body = address.packed + bytes(16) + struct.pack(">HH", port, 443)
        family = 0x21
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack(">H", len(body)) + body


def _get(port: int, prefix: bytes) -> dict[str, str]:
    with raw_connection(port) as s:
        s.sendall(prefix + b"GET /echo HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        status, _, body = ResponseReader(s).read()
        assert status == 200, body
        return dict(json.loads(body)["headers"])


def _refused(port: int, data: bytes) -> None:
    with raw_connection(port) as s:
        s.sendall(data)
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(100) == b""


def test_http_listener_takes_the_client_from_the_header(gateway, upstream):
    up = upstream()
    port = free_port()
    config = binds(port, [{"backends": [{"host": up.address}]}])
    config["frontendPolicies"] = {"proxyProtocol": {"version": "all"}}
    gw = gateway(config)
    assert _get(port, v1("198.51.100.7", 40001))["x-forwarded-for"] == "198.51.100.7"
    assert _get(port, v2("203.0.113.9", 40002))["x-forwarded-for"] == "203.0.113.9"
    assert _get(port, v2("2001:db8::5", 40003))["x-forwarded-for"] == "2001:db8::5"
    # A LOCAL header (the balancer's own check) keeps the real peer.
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert _get(port, local)["x-forwarded-for"] == "127.0.0.1"
    wait_for(lambda: any("src.addr=198.51.100.7:40001" in x for x in gw.access_lines()), 10, "the access log")
    # Strict (the default mode): no header, a malformed one, or one cut short: closed.
    _refused(port, b"GET /echo HTTP/1.1\r\nHost: gw.test\r\n\r\n")
    _refused(port, b"PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\nGET / HTTP/1.1\r\n\r\n")
    _refused(port, b"PROXY " + b"9" * 200)
    # The gateway keeps serving.
    assert _get(port, v1("198.51.100.8", 40004))["x-forwarded-for"] == "198.51.100.8"
    assert len(up.requests()) == 5


def test_version_and_optional_mode(gateway, upstream):
    up = upstream()
    port = free_port()
    config = binds(port, [{"backends": [{"host": up.address}]}])
    config["frontendPolicies"] = {"proxy": {"version": "v1", "mode": "optional"}}
    gateway(config)
    assert _get(port, v1("198.51.100.7", 1))["x-forwarded-for"] == "198.51.100.7"
    # Optional: a connection without a header is served with its real address; "P" of POST is
    # not mistaken for the start of a header.
    assert _get(port, b"")["x-forwarded-for"] == "127.0.0.1"
    with raw_connection(port) as s:
        s.sendall(b"P")
        s.sendall(b"OST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\n\r\n")
        assert ResponseReader(s).read()[0] == 200
    # v1 only: a v2 header is refused.
    _refused(port, v2("203.0.113.9", 2) + b"GET /echo HTTP/1.1\r\nHost: gw.test\r\n\r\n")


def _cert(ca: trustme.CA, tmp_path: Path, name: str) -> tuple[str, str]:
    cert = ca.issue_cert(name)
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


def test_https_listener_behind_a_proxy_header(gateway, upstream, tmp_path):
    """The header is read byte-exact: the TLS handshake right behind it is the gateway's."""
    ca = trustme.CA()
    cert, key = _cert(ca, tmp_path, "gw.example.com")
    up = upstream()
    port = free_port()
    config = binds(port, [{"backends": [{"host": up.address}]}], protocol="HTTPS", tls={"cert": cert, "key": key})
    config["frontendPolicies"] = {"proxyProtocol": {}}
    gateway(config)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(v2("192.0.2.44", 5555))
    with ctx.wrap_socket(raw, server_hostname="gw.example.com") as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: gw.example.com\r\n\r\n")
        status, _, body = ResponseReader(s).read()
    assert status == 200 and dict(json.loads(body)["headers"])["x-forwarded-for"] == "192.0.2.44"


def test_tcp_and_tls_passthrough_behind_a_proxy_header(gateway, upstream, tmp_path):
    ca = trustme.CA()
    cert, key = _cert(ca, tmp_path, "a.example.com")
    up = upstream("a", tls=(cert, key))
    echo = TcpEchoServer()
    tcp_port, tls_port = free_port(), free_port()
    try:
        gw = gateway(
            {
                "frontendPolicies": {"proxyProtocol": {"version": "all"}},
                "binds": [
                    {
                        "port": tcp_port,
                        "listeners": [{"protocol": "TCP", "tcpRoutes": [{"backends": [{"host": echo.address}]}]}],
                    },
                    {
                        "port": tls_port,
                        "listeners": [
                            {
                                "protocol": "TLS",
                                "tcpRoutes": [{"hostnames": ["a.example.com"], "backends": [{"host": up.address}]}],
                            }
                        ],
                    },
                ],
            }
        )
        with raw_connection(tcp_port) as s:
            s.sendall(v1("198.51.100.20", 6000) + b"echo me")
            got = b""
            while len(got) < 7:
                got += s.recv(100)
            assert got == b"echo me"  # the header was not relayed
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
        raw.sendall(v2("198.51.100.21", 6001))
        with ctx.wrap_socket(raw, server_hostname="a.example.com") as s:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
            assert ResponseReader(s).read()[1]["x-upstream"] == "a"
        lines = wait_for(
            lambda: (
                len([x for x in gw.output().splitlines() if "\tconnection\t" in x]) >= 2
                and [x for x in gw.output().splitlines() if "\tconnection\t" in x]
            ),
            10,
            "the connection lines",
        )
        assert any("src.addr=198.51.100.20:6000" in x and "protocol=tcp" in x for x in lines)
        assert any("src.addr=198.51.100.21:6001" in x and "tls.sni=a.example.com" in x for x in lines)
    finally:
        echo.stop()
