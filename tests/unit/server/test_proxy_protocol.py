"""PROXY protocol headers (server/proxy_protocol.py): how many bytes are the header (so that
nothing after it is consumed), and the client address it names; bounded and strict."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentgateway.server.proxy_protocol import (
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeaderError,
    header_length,
    parse_header,
)


def v2(command: int, family: int, transport: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family << 4 | transport]) + struct.pack(">H", len(body)) + body


def v2_inet(src: str, sport: int, tlvs: bytes = b"") -> bytes:
    return v2(1, 1, 1, ipaddress.IPv4Address(src).packed + bytes(4) + struct.pack(">HH", sport, 443) + tlvs)


def v2_inet6(src: str, sport: int) -> bytes:
    return v2(1, 2, 1, ipaddress.IPv6Address(src).packed + bytes(16) + struct.pack(">HH", sport, 443))


@pytest.mark.parametrize(
    "header, client",
    [
        (b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 443\r\n", ("192.0.2.7", 51234)),
        (b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n", ("2001:db8::7", 51234)),
        (b"PROXY UNKNOWN\r\n", None),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
        (v2_inet("192.0.2.9", 40000), ("192.0.2.9", 40000)),
        (v2_inet("192.0.2.9", 40000, tlvs=b"\x04\x00\x03abc"), ("192.0.2.9", 40000)),
        (v2_inet6("2001:db8::9", 1), ("2001:db8::9", 1)),
        (v2(0, 0, 0, b""), None),  # LOCAL: the balancer's health check
        (v2(1, 0, 0, b""), None),  # UNSPEC
        (v2(1, 3, 1, bytes(216)), None),  # a Unix socket
    ],
)
def test_valid_headers(header: bytes, client: tuple[str, int] | None) -> None:
    trailing = b"GET / HTTP/1.1\r\n\r\n"
    assert header_length(header + trailing, True, True) == len(header)
    assert parse_header(header) == client
    # A strict prefix asks for more bytes, or (v2, once its fixed part is there) tells the whole
    # length: never a shorter header, never "not a header".
    for cut in range(1, len(header)):
        assert header_length(header[:cut], True, True) in (None, len(header))


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00", b"POST", b"\r\n\r\nX", b"PROXZ"])
def test_not_a_header(data: bytes) -> None:
    assert header_length(data, True, True) == 0


@pytest.mark.parametrize(
    "data, allow_v1, allow_v2, why",
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", False, True, "accepts v2 only"),
        (v2_inet("1.2.3.4", 1), True, False, "accepts v1 only"),
        (b"PROXY " + b"x" * V1_MAX, True, True, "longer than"),
        (V2_SIGNATURE + b"\x31\x11\x00\x00", True, True, "version 3"),
        (V2_SIGNATURE + b"\x22\x11\x00\x00", True, True, "command 2"),
        (V2_SIGNATURE + b"\x21\x11\x02\x01", True, True, "exceeds"),
    ],
)
def test_refused_lengths(data: bytes, allow_v1: bool, allow_v2: bool, why: str) -> None:
    with pytest.raises(ProxyHeaderError, match=why):
        header_length(data, allow_v1, allow_v2)


@pytest.mark.parametrize(
    "header, why",
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed"),
        (b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "invalid address"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "invalid address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "invalid address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "invalid port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "invalid port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "invalid port"),
        (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xff\r\n", "not ASCII"),
        (v2(1, 1, 1, bytes(11)), "truncated"),
        (v2(1, 2, 1, bytes(35)), "truncated"),
        (v2(1, 1, 2, bytes(12)), "other than a stream"),
        (v2(1, 7, 1, b""), "address family 7"),
    ],
)
def test_malformed_headers(header: bytes, why: str) -> None:
    length = header_length(header, True, True)
    assert length == len(header)
    with pytest.raises(ProxyHeaderError, match=why):
        parse_header(header)


@given(st.binary(max_size=700))
def test_arbitrary_bytes(data: bytes) -> None:
    try:
        length = header_length(data, True, True)
        if length:
            assert length <= len(data) and length <= 16 + 512
            parse_header(data[:length])
    except ProxyHeaderError:
        pass
