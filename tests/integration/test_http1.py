"""HTTP/1.1 semantics and bad input, on raw sockets against the real daemon."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.support.gateway import ResponseReader, binds, free_port, raw_connection


@pytest.fixture
def proxied(gateway, upstream):
    """A gateway with one catch-all route to one upstream, tight limits for the limit tests."""
    up = upstream("u")
    port = free_port()
    config = binds(port, [{"backends": [{"host": up.address}]}])
    config["frontendPolicies"] = {
        "http": {
            "maxHeaderSize": 8192,
            "http1MaxHeaders": 50,
            "maxRequestBodySize": 1_000_000,
            "headerReadTimeout": "1s",
            "http1IdleTimeout": "2s",
        }
    }
    gw = gateway(config)
    gw.port = port
    return gw


def _still_serving(port):
    r = httpx.get(f"http://127.0.0.1:{port}/echo", timeout=5)
    assert r.status_code == 200


def test_keep_alive_reuses_client_and_upstream_connections(proxied):
    with raw_connection(proxied.port) as s:
        reader = ResponseReader(s)
        conns = set()
        for i in range(5):
            s.sendall(f"GET /echo?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, headers, body = reader.read()
            assert status == 200
            assert json.loads(body)["target"] == f"/echo?i={i}"
            conns.add(headers["x-conn"])
    assert len(conns) == 1, "the upstream connection should be pooled and reused"


def test_pipelined_requests_are_answered_in_order(proxied):
    with raw_connection(proxied.port) as s:
        requests = b"".join(
            f"GET /slow?delay={0.3 if i == 0 else 0} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            if i % 2 == 0
            else f"POST /echo?i={i} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".encode()
            for i in range(6)
        )
        s.sendall(requests)
        reader = ResponseReader(s)
        for i in range(6):
            status, _, body = reader.read()
            assert status == 200
            if i % 2 == 0:
                assert body == b"slow done\n"
            else:
                data = json.loads(body)
                assert data["target"] == f"/echo?i={i}" and data["body_length"] == 5


def test_chunked_request_and_response_bodies(proxied):
    with raw_connection(proxied.port) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        reader = ResponseReader(s)
        status, _, body = reader.read()
        data = json.loads(body)
        assert status == 200 and data["body_length"] == 11 and data["chunked"] is True
        s.sendall(b"GET /bytes?n=100000&chunk=7000&chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = reader.read()
        assert headers.get("transfer-encoding") == "chunked"
        assert len(body) == 100000


def test_expect_100_continue(proxied):
    with raw_connection(proxied.port) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        reader = ResponseReader(s)
        status, _, _ = reader.read()
        assert status == 100
        s.sendall(b"data")
        status, _, body = reader.read()
        data = json.loads(body)
        assert status == 200 and data["body_length"] == 4
        assert "expect" not in dict(data["headers"])


def test_expect_100_continue_rejected_without_reading_the_body(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"matches": [{"path": {"exact": "/only"}}], "backends": [{"host": up.address}]}]))
    with raw_connection(port) as s:
        s.sendall(b"PUT /other HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\nExpect: 100-continue\r\n\r\n")
        status, headers, _ = ResponseReader(s).read()
        assert status == 404
        assert headers.get("connection") == "close"


def test_head_requests(proxied):
    with raw_connection(proxied.port) as s:
        reader = ResponseReader(s)
        s.sendall(b"HEAD /head-length?n=12345 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = reader.read(head_only=True)
        assert status == 200 and headers["content-length"] == "12345"
        # The connection (and the pooled upstream connection) stay usable after a HEAD.
        s.sendall(b"GET /head-length?n=10 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = reader.read()
        assert status == 200 and len(body) == 10


def test_hop_by_hop_headers_are_removed(proxied):
    with raw_connection(proxied.port) as s:
        s.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
            b"Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n"
        )
        reader = ResponseReader(s)
        _, _, body = reader.read()
        sent = dict(json.loads(body)["headers"])
        for name in ("connection", "x-secret", "keep-alive", "te", "proxy-connection"):
            assert name not in sent, name
        # The client is not a trusted proxy: its X-Forwarded-For is dropped, the peer is sent.
        assert sent["x-forwarded-for"] == "127.0.0.1"
        s.sendall(b"GET /hop HTTP/1.1\r\nHost: x\r\n\r\n")
        _, headers, _ = reader.read()
        assert "x-private" not in headers and "keep-alive" not in headers
        assert headers["x-public"] == "ok"


def test_http10_client(proxied):
    with raw_connection(proxied.port) as s:
        s.sendall(b"GET /bytes?n=5000&chunked=1 HTTP/1.0\r\n\r\n")
        status, headers, body = ResponseReader(s).read()
        # An HTTP/1.0 client cannot read chunked: the body ends with the connection.
        assert status == 200 and len(body) == 5000
        assert "transfer-encoding" not in headers


@pytest.mark.parametrize(
    "raw,status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 requires Host
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(60)) + b"\r\n", 431),
        (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413),
    ],
    ids=[
        "garbage",
        "cl-and-te",
        "bad-header",
        "no-host",
        "header-size",
        "header-count",
        "long-url",
        "body-length",
    ],
)
def test_bad_requests_get_clear_errors_and_the_gateway_keeps_serving(proxied, raw, status):
    with raw_connection(proxied.port) as s:
        s.sendall(raw)
        got, headers, body = ResponseReader(s).read()
        assert got == status, body
        assert headers.get("connection") == "close"
        assert body.strip(), "error responses carry a reason"
    _still_serving(proxied.port)


def test_chunked_body_over_the_limit_is_413(proxied):
    with raw_connection(proxied.port) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (200_000, b"z" * 200_000)
        try:
            for _ in range(10):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = ResponseReader(s).read()
        assert status == 413 and b"limit" in body
    _still_serving(proxied.port)


def test_slowloris_head_times_out(proxied):
    start = time.monotonic()
    with raw_connection(proxied.port, timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        status, _, _ = ResponseReader(s).read()
        assert status == 408
    assert time.monotonic() - start < 3.5
    _still_serving(proxied.port)


def test_silent_connection_is_closed(proxied):
    with raw_connection(proxied.port, timeout=10) as s:
        start = time.monotonic()
        assert s.recv(100) == b""  # closed by the gateway (header-read timeout)
        assert time.monotonic() - start < 3.5


def test_idle_keep_alive_connection_is_closed(proxied):
    with raw_connection(proxied.port, timeout=10) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        ResponseReader(s).read()
        start = time.monotonic()
        assert s.recv(100) == b""
        assert 1.5 < time.monotonic() - start < 4.5


def test_max_connection_duration_closes_an_old_connection_between_requests(gateway, upstream):
    """``frontendPolicies.http.maxConnectionDuration``: requests on a young connection keep it
    alive; once it is older, it closes when idle (well before the idle timeout), never mid-answer."""
    up = upstream()
    port = free_port()
    config = binds(port, [{"backends": [{"host": up.address}]}])
    config["frontendPolicies"] = {"http": {"maxConnectionDuration": "1s", "http1IdleTimeout": "60s"}}
    gateway(config)
    with raw_connection(port, timeout=20) as s:
        for _ in range(2):
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _ = ResponseReader(s).read()
            assert status == 200 and headers.get("connection") != "close"
        assert s.recv(100) == b""  # closed by the gateway, not at the 60s idle timeout
    # a slow answer that outlives the limit is still delivered whole
    with raw_connection(port, timeout=20) as s:
        s.sendall(b"GET /slow?delay=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = ResponseReader(s).read()
        assert status == 200
        assert s.recv(100) == b""


def test_client_disconnect_mid_response_does_not_hurt(proxied):
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", proxied.port))
        s.sendall(b"GET /bytes?n=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1000)
        s.close()
    _still_serving(proxied.port)
