"""The ClientHello parser of TLS-passthrough listeners (server/tls_hello.py): real hellos made by
Python's ssl module, hellos built field by field and cut into records at random (hypothesis), and
random damage, which must give HelloError (never another exception, never a wrong name)."""

from __future__ import annotations

import ssl
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentgateway.server.tls_hello import MAX_HELLO, HelloError, parse_client_hello
from tests.support.client_hello import hello_body, other_extension, records, sni_extension


def real_hello(server_name: str | None, *, tls13_only: bool = False) -> bytes:
    """The first flight of a real client: OpenSSL's ClientHello as Python's ssl sends it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls13_only:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(_label, min_size=1, max_size=5).map(".".join).filter(lambda n: len(n) <= 255)


# ------------------------------------------------------------------ real clients


@pytest.mark.parametrize("name", ["a.example.com", "B.Example.COM", "xn--bcher-kva.example", "localhost"])
@pytest.mark.parametrize("tls13_only", [False, True])
def test_real_client_hellos(name: str, tls13_only: bool) -> None:
    data = real_hello(name, tls13_only=tls13_only)
    hello = parse_client_hello(data)
    assert hello is not None
    assert hello.server_name == name.lower().encode()
    assert hello.length == len(data)
    # Every strict prefix is incomplete, never an error or a name.
    for cut in range(len(data)):
        assert parse_client_hello(data[:cut]) is None


def test_real_client_hello_without_a_name() -> None:
    for name in (None, "127.0.0.1"):  # Python sends no SNI for an IP address
        hello = parse_client_hello(real_hello(name))
        assert hello is not None and hello.server_name is None


def test_bytes_after_the_hello_are_not_part_of_it() -> None:
    data = real_hello("a.example.com")
    hello = parse_client_hello(data + b"\x17\x03\x03\x00\x05early")
    assert hello is not None and hello.length == len(data)


# ------------------------------------------------------------------ built hellos


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=hostnames,
    before=st.lists(st.tuples(st.integers(1, 0xFFFF), st.binary(max_size=64)), max_size=4, unique_by=lambda e: e[0]),
    after=st.lists(st.tuples(st.integers(1, 0xFFFF), st.binary(max_size=64)), max_size=4, unique_by=lambda e: e[0]),
    session_id=st.binary(max_size=32),
    cuts=st.lists(st.integers(1, 600), max_size=6),
)
def test_built_hellos_in_random_records(name, before, after, session_id, cuts) -> None:
    kinds = {k for k, _ in before} | {k for k, _ in after}
    if len(kinds) != len(before) + len(after):
        return  # an extension type twice is a different test
    exts = [other_extension(k, d) for k, d in before]
    exts.append(sni_extension((0, name.encode())))
    exts += [other_extension(k, d) for k, d in after]
    data = records(hello_body(exts, session_id), cuts)
    hello = parse_client_hello(data)
    assert hello is not None and hello.server_name == name.encode() and hello.length == len(data)
    for cut in range(0, len(data), 7):
        assert parse_client_hello(data[:cut]) is None


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        hello = parse_client_hello(data)
    except HelloError:
        return
    if hello is not None:
        assert hello.length <= len(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=hostnames,
    position=st.integers(0, 10_000),
    value=st.integers(0, 255),
    cuts=st.lists(st.integers(1, 300), max_size=3),
)
def test_damaged_hellos_give_an_error_or_a_valid_parse(name, position, value, cuts) -> None:
    data = bytearray(records(hello_body([sni_extension((0, name.encode()))]), cuts))
    position %= len(data)
    data[position] = value
    try:
        hello = parse_client_hello(bytes(data))
    except HelloError:
        return
    if hello is not None and hello.server_name is not None:
        # A damaged byte may still leave a valid hello: then its name is a valid host name.
        assert hello.server_name == hello.server_name.lower()
        assert all(c in b"abcdefghijklmnopqrstuvwxyz0123456789.-_" for c in hello.server_name)


# ------------------------------------------------------------------ what is refused


@pytest.mark.parametrize(
    "data, why",
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "not a TLS handshake"),
        (b"\x80\x2e\x01\x03\x01", "SSLv2"),
        (b"\x15\x03\x03\x00\x02\x02\x28", "not a TLS handshake"),
        (b"\x16\x02\x00\x00\x05", "record version"),
        (b"\x16\x03\x01\x00\x00", "record length"),
        (b"\x16\x03\x01\x40\x01", "record length"),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "not ClientHello"),
        (b"\x16\x03\x01\x01\x00\x01\x01\x00\x00", "exceeds the limit"),
    ],
)
def test_refused_at_once(data: bytes, why: str) -> None:
    with pytest.raises(HelloError, match=why):
        parse_client_hello(data)


def test_oversized_hello_is_refused_from_its_header() -> None:
    header = b"\x16\x03\x01\x40\x00\x01" + (MAX_HELLO + 1).to_bytes(3, "big")
    with pytest.raises(HelloError, match="exceeds"):
        parse_client_hello(header)
    # At the limit it is waited for (and parsed once whole).
    assert parse_client_hello(b"\x16\x03\x01\x40\x00\x01" + MAX_HELLO.to_bytes(3, "big")) is None


@pytest.mark.parametrize(
    "body, why",
    [
        (hello_body([sni_extension((0, b"a.test")), sni_extension((0, b"b.test"))]), "appears twice"),
        (hello_body([sni_extension((0, b"a.test"), (0, b"b.test"))]), "two host names"),
        (hello_body([sni_extension((0, b""))]), "invalid host name"),
        (hello_body([sni_extension((0, b"a..test"))]), "invalid host name"),
        (hello_body([sni_extension((0, b"a.test."))]), "invalid host name"),
        (hello_body([sni_extension((0, b"bad name.test"))]), "invalid host name"),
        (hello_body([sni_extension((0, b"a.test\x00.evil"))]), "invalid host name"),
        (hello_body([sni_extension((0, b"x" * 64 + b".test"))]), "invalid host name"),
        (hello_body([sni_extension()]), "empty server name list"),
        (hello_body([struct.pack(">HH", 0, 9) + b"\x00\x05\x00\x00\x02ab"]), "truncated"),
        (hello_body(None, suites=b"\x13"), "cipher suite"),
        (hello_body(None, session_id=bytes(33)), "session id"),
        (hello_body([sni_extension((0, b"a.test"))]) + b"junk", "after the extensions"),
    ],
)
def test_malformed_hellos(body: bytes, why: str) -> None:
    with pytest.raises(HelloError, match=why):
        parse_client_hello(records(body))


def test_no_extensions_and_unknown_name_types() -> None:
    hello = parse_client_hello(records(hello_body(None)))
    assert hello is not None and hello.server_name is None
    hello = parse_client_hello(records(hello_body([sni_extension((7, b"opaque"))])))
    assert hello is not None and hello.server_name is None


def test_a_record_of_another_type_inside_the_hello() -> None:
    data = records(hello_body([sni_extension((0, b"a.test"))]), [10])
    first_len = int.from_bytes(data[3:5], "big")
    damaged = data[: 5 + first_len] + b"\x17" + data[5 + first_len + 1 :]
    with pytest.raises(HelloError, match="non-handshake record"):
        parse_client_hello(damaged)
