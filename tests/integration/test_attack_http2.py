"""Attacks on the HTTP/2 frontend through the real daemon: a raw h2 client with its own header
validation off sends what a hostile client can (RFC 9113 §8.2/§8.3 violations, h2→h1 smuggling
attempts, authority confusion, floods), and every answer must be a refusal that reaches no
upstream, the same decision HTTP/1.1 gets, and a gateway that goes on serving other clients."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import httpx
from h2.errors import ErrorCodes

from tests.support.gateway import binds, free_port, raw_connection, read_response
from tests.support.http2 import PREFACE, RawH2Client, Response


def _hostile(port: int) -> RawH2Client:
    client = RawH2Client(port)
    client.conn.config.validate_outbound_headers = False
    client.conn.config.normalize_outbound_headers = False
    client.conn.config.validate_inbound_headers = False
    return client


def _send(client: RawH2Client, fields: list[tuple[bytes, bytes]], body: bytes | None = None) -> Response:
    """One request with exactly ``fields`` (pseudo-headers included, in this order)."""
    stream_id = client.conn.get_next_available_stream_id()
    client.conn.send_headers(stream_id, fields, end_stream=body is None)
    client.responses[stream_id] = Response()
    if body is not None:
        client.conn.send_data(stream_id, body, end_stream=True)
    client.flush()
    return client.response(stream_id)


def _get(path: bytes = b"/echo", authority: bytes | None = b"localhost") -> list[tuple[bytes, bytes]]:
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path)]
    if authority is not None:
        fields.insert(2, (b":authority", authority))
    return fields


def _refused(response: Response) -> bool:
    return response.status == 400 or response.reset == ErrorCodes.PROTOCOL_ERROR


def test_authority_and_host_that_disagree_are_refused(gateway, upstream):
    """RFC 9113 §8.3.1: a Host naming another entity than :authority is malformed. Routing and
    the upstream take :authority while CEL and header-based policies read ``host``: one request
    must not carry two hosts (HTTP/1.1 refuses two Host fields the same way)."""
    public, internal = upstream("public"), upstream("internal")
    port = free_port()
    gateway(
        binds(
            port,
            [
                {"name": "public", "hostnames": ["public.example"], "backends": [{"host": public.address}]},
                {
                    "name": "internal",
                    "hostnames": ["internal.example"],
                    "backends": [{"host": internal.address}],
                    "policies": {"authorization": {"rules": ['request.headers["host"] == "admin.example"']}},
                },
            ],
        )
    )
    with _hostile(port) as client:
        for authority, host in (
            (b"internal.example", b"admin.example"),
            (b"public.example", b"internal.example"),
            (b"public.example", b"PUBLIC.example.evil"),
            (b"public.example", b"public.example:81"),
        ):
            r = _send(client, [*_get(authority=authority), (b"host", host)])
            assert _refused(r), (authority, host, r)
        # The same host twice (any case of the name: hosts are case-insensitive) is fine, and so
        # is Host alone (RFC 9113 §8.3.1: a client translating HTTP/1.1 may send it).
        assert _send(client, [*_get(authority=b"public.example"), (b"host", b"public.example")]).status == 200
        assert _send(client, [*_get(authority=b"public.example"), (b"host", b"Public.Example")]).status == 200
        assert _send(client, [*_get(authority=None), (b"host", b"public.example")]).status == 200
        # Two Host fields (with or without :authority, equal or not): refused, as over HTTP/1.1.
        for hosts in ((b"public.example", b"internal.example"), (b"public.example", b"public.example")):
            for authority in (None, b"public.example"):
                fields = [*_get(authority=authority), *[(b"host", h) for h in hosts]]
                assert _refused(_send(client, fields)), (authority, hosts)
        # Without either: refused (no host to route by).
        assert _refused(_send(client, _get(authority=None)))
    assert internal.requests() == []
    assert len(public.requests()) == 3


def test_smuggling_fields_never_reach_an_http1_upstream(gateway, upstream):
    """h2→h1 downgrade: what HTTP/1.1 framing would read as a second request or another header
    (CR, LF, NUL in a value; a name with a space, a colon or upper case; framing and
    connection-specific fields; a content-length that DATA contradicts) is refused per stream."""
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    bad_fields: list[tuple[bytes, bytes]] = [
        (b"x-a", b"1\r\nx-injected: 1"),
        (b"x-a", b"1\nGET /smuggled HTTP/1.1"),
        (b"x-a", b"1\rx"),
        (b"x-a", b"1\x00x"),
        (b"x a", b"1"),
        (b"x-a:b", b"1"),
        (b"X-Upper", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"connection", b"keep-alive"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"upgrade", b"websocket"),
        (b"te", b"gzip"),
        (b"te", b"trailers, gzip"),
        (b"", b"empty name"),
    ]
    with _hostile(port) as client:
        for field in bad_fields:
            assert _refused(_send(client, [*_get(), field])), field
        post = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"/echo")]
        # Content-length that the DATA frames contradict, both ways.
        assert _refused(_send(client, [*post, (b"content-length", b"3")], b"0123456789"))
        assert _refused(_send(client, [*post, (b"content-length", b"30")], b"0123456789"))
        assert _refused(_send(client, [*post, (b"content-length", b"3"), (b"content-length", b"4")], b"0123"))
        assert _refused(_send(client, [*post, (b"content-length", b"+3")], b"012"))
        # Pseudo-headers: upper case, repeated, unknown, after a regular field, missing.
        for fields in (
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":PATH", b"/echo")],
            [*_get(), (b":path", b"/other")],
            [*_get(), (b":foo", b"1")],
            [(b":method", b"GET"), (b"x-a", b"1"), (b":authority", b"localhost"), (b":path", b"/echo")],
            [(b":method", b"GET"), (b":authority", b"localhost"), (b":path", b"/echo")],
            [(b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"/echo")],
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"")],
            [(b":method", b"GET /x HTTP/1.1"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"/")],
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"/a b")],
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"local\r\nhost"), (b":path", b"/")],
        ):
            assert _refused(_send(client, fields)), fields
        # The connection survived all of it.
        assert _send(client, _get()).status == 200
    # Only that last request reached the upstream, with nothing smuggled.
    reached = up.requests()
    assert [r["target"] for r in reached] == ["/echo"]
    assert "x-injected" not in dict(reached[0]["headers"])


def test_paths_normalize_and_police_the_same_as_http1(gateway, upstream):
    up = upstream()
    port = free_port()
    routes = [
        {"name": "public", "matches": [{"path": {"pathPrefix": "/public"}}], "backends": [{"host": up.address}]},
        {
            "name": "admin",
            "matches": [{"path": {"pathPrefix": "/admin"}}],
            "backends": [{"host": up.address}],
            "policies": {"authorization": {"rules": ['request.headers["x-role"] == "admin"']}},
        },
    ]
    gateway(binds(port, routes))
    paths = [
        b"/public/../admin",
        b"/public/%2e%2e/admin",
        b"/public/%2E%2e/admin/",
        b"/public/.%2e/admin",
        b"//admin",
        b"/./admin",
        b"/%61dmin",
        b"/public/..;/admin",
        b"/public%2f..%2fadmin",
        b"/public%5c..%5cadmin",
        b"/admin%00",
    ]
    with _hostile(port) as h2:
        h2_status = [(_send(h2, _get(path)).status or 400) for path in paths]
    h1_status = []
    for path in paths:
        with raw_connection(port) as sock:
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
            h1_status.append(read_response(sock)[0])
    assert h2_status == h1_status
    assert all(status in (400, 403) for status in h2_status), h2_status
    assert all(r["target"].startswith("/public") for r in up.requests())


def test_floods_are_bounded_and_others_still_served(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]))

    def closed(sock: socket.socket) -> bool:
        """The gateway ends the connection (a close, or a reset when our bytes were unread)."""
        sock.settimeout(5)
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    # Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, far past nghttp2's reset budget.
    with RawH2Client(port) as client:
        for _ in range(3000):
            stream_id = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream_id, [(k, v) for k, v in _get(b"/slow?delay=1")], end_stream=True)
            client.conn.reset_stream(stream_id, 8)
            try:
                client.flush()
            except (BrokenPipeError, ConnectionResetError):
                break
        with contextlib.suppress(ConnectionError):
            client.wait(lambda: client.goaway is not None, what="the GOAWAY")
    # CONTINUATION flood (CVE-2024-27316): one header block that never ends.
    with raw_connection(port) as sock:
        sock.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
        fragment = b"\x82\x86\x84\x41\x09localhost"  # GET http / localhost
        block = len(fragment).to_bytes(3, "big") + b"\x01\x00\x00\x00\x00\x01" + fragment  # no END_HEADERS
        field = b"\x00\x03x-a\x03aaa"  # a literal field, not indexed
        cont = len(field).to_bytes(3, "big") + b"\x09\x00\x00\x00\x00\x01" + field
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(block + cont * 5000)
        assert closed(sock)
    # SETTINGS and PING floods (CVE-2019-9512/9515): the acknowledgements a client never reads
    # are bounded. Empty DATA frames and WINDOW_UPDATEs on a closed stream: glitches, bounded.
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + bytes(8)
    empty_data = b"\x00\x00\x00\x00\x00\x00\x00\x00\x01"
    window = b"\x00\x00\x04\x08\x00\x00\x00\x00\x01\x00\x00\x00\x01"
    fragment = b"\x82\x86\x84\x41\x09localhost"
    open_stream = len(fragment).to_bytes(3, "big") + b"\x01\x04\x00\x00\x00\x01" + fragment  # END_HEADERS
    for opening, frame in ((b"", settings), (settings, ping), (settings + open_stream, empty_data), (settings, window)):
        with raw_connection(port) as sock:
            sock.sendall(PREFACE + opening)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(50):
                    sock.sendall(frame * 1000)
            assert closed(sock), frame
    # Header lists: over maxHeaderSize (64 KiB) 431 and the connection goes on; far over it (past
    # nghttp2's cap, which bounds what it decodes) the connection is cut, without a failure of
    # the gateway's own (an engine that gave up has nothing left to send).
    with _hostile(port) as client:
        assert _send(client, [*_get(), *[(b"x-h%d" % i, b"v" * 1000) for i in range(80)]]).status == 431
        assert _send(client, _get()).status == 200
    with _hostile(port) as client:
        fields = [*_get(), *[(b"x-h%d" % i, b"v" * 1000) for i in range(200)]]
        client.conn.send_headers(client.conn.get_next_available_stream_id(), fields, end_stream=True)
        try:
            client.flush()
            client.wait(lambda: False, timeout=5)
        except (ConnectionError, BrokenPipeError):
            pass
        else:
            raise AssertionError("the connection was not cut")
    assert "Fatal error" not in gw.output() and "Traceback" not in gw.output()
    # Others are served all along.
    with httpx.Client(http1=False, http2=True, timeout=10) as c:
        assert c.get(f"http://127.0.0.1:{port}/echo").status_code == 200
    assert json.loads(httpx.get(f"http://127.0.0.1:{port}/echo", timeout=10).text)["target"] == "/echo"


def test_methods_are_those_http1_accepts(gateway, upstream):
    """nghttp2 takes any token as :method, llhttp only the registered methods, in upper case: a
    rule about ``DELETE`` must not be passed by an h2 ``delete`` that an upstream framework
    upper-cases (Werkzeug does)."""
    up = upstream()
    port = free_port()
    rule = 'request.method != "DELETE"'
    gateway(binds(port, [{"backends": [{"host": up.address}], "policies": {"authorization": {"rules": [rule]}}}]))
    for method in (b"DELETE", b"delete", b"Delete", b"dElEtE", b"FOO", b"get", b"PRI"):
        with _hostile(port) as client:
            fields = [(b":method", method), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"/x")]
            h2 = _send(client, fields)
        with raw_connection(port) as sock:
            sock.sendall(method + b" /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
            h1 = read_response(sock)[0]
        assert (h2.status or 400) == h1 and h1 in (400, 403), (method, h2, h1)
    with _hostile(port) as client:
        for method in (b"GET", b"PATCH", b"PROPFIND", b"M-SEARCH"):
            fields = [(b":method", method), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"/x")]
            assert _send(client, fields).status == 200, method
    assert [r["method"] for r in up.requests()] == ["GET", "PATCH", "PROPFIND", "M-SEARCH"]


def test_clients_that_open_every_stream_and_read_none_are_bounded(gateway, upstream):
    """Data-dribble (CVE-2019-9517): each connection opens its 100 streams of large responses and
    never opens a window. A stream's upstream pauses at its share of a per-connection mark (2 MiB),
    not at 256 KiB each (25 MiB a connection); others are served meanwhile."""
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    baseline = gw.worker_rss()
    clients = [RawH2Client(port, auto_ack=False) for _ in range(3)]
    try:
        for client in clients:
            for i in range(100):
                client.request(f"/bytes?n={64 * 1024 * 1024}&i={i}")
        for client in clients:  # every stream has its first window of data
            client.wait(lambda c=client: sum(len(r.body) for r in c.responses.values()) >= 65_535, what="data")
        time.sleep(3)  # the upstreams would fill the gateway's memory now if nothing paused them
        assert gw.worker_rss() - baseline < 60 * 1024 * 1024
        with httpx.Client(http1=False, http2=True, timeout=10) as c:
            assert c.get(f"http://127.0.0.1:{port}/echo").status_code == 200
    finally:
        for client in clients:
            client.sock.close()
