"""Attacks by what an upstream sends back, and by clients through retries, through the daemon.

The upstreams are real sockets in threads: HTTP/1.1 on raw sockets, HTTP/2 built on the ``h2``
state machine with its own checks turned off, so it can send what a hostile server would
(header values with CR/LF, upper-case names, connection-specific fields, a 101, a
content-length the DATA disagrees with, a request taken and then the connection dropped).

- A request the upstream may have acted on is never sent a second time by the gateway's own
  stale-connection retry unless it is idempotent: a POST an upstream took on a pooled connection
  and then dropped the connection (HTTP/1.1 or HTTP/2, with or without a GOAWAY naming it) is a
  502, not a second POST. A stream the upstream refused (REFUSED_STREAM) was not processed and is
  sent again.
- Response heads from an HTTP/2 upstream that HTTP/2 forbids (what would split or desynchronize
  the HTTP/1.1 answer to the client) are a 502, never relayed; a DATA length that disagrees with
  content-length cuts the client's connection rather than leaving it out of step; 1xx heads
  (HTTP/1.1 and HTTP/2) are dropped with their headers; an HPACK bomb stops at the header cap.
- An upstream that takes no request body meets the response deadline (504), not never.
- A mirror that never answers holds at most 512 copies per worker, not one per request.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived, RequestReceived, StreamEnded
from h2.exceptions import ProtocolError

from tests.support.gateway import binds, free_port, raw_connection, read_response

_H2 = {"http": {"version": "2"}}


class _Threads:
    """Accepts on a free port until ``close``; each connection is served in a thread."""

    def __init__(self) -> None:
        self.port = free_port()
        # A deep accept queue: a full one drops connection attempts, which the kernel repeats
        # only after a second or more, and a count taken meanwhile would be short.
        self.sock = socket.create_server(("127.0.0.1", self.port), backlog=1024)
        self.connections = 0
        self.log: list[tuple[int, str, str, bytes]] = []  # (connection, method, path, body)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(10)
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn, self.connections), daemon=True).start()

    def _handle(self, conn: socket.socket, number: int) -> None:
        with conn, contextlib.suppress(OSError, ValueError, ProtocolError):
            self.serve(conn, number)

    def serve(self, conn: socket.socket, number: int) -> None:
        raise NotImplementedError

    def seen(self, path: str) -> list[tuple[int, str, str, bytes]]:
        return [entry for entry in self.log if entry[2] == path]


class StalledBackend(_Threads):
    """HTTP/1.1 that reads a request head and never a byte of its body (nor answers)."""

    def serve(self, conn: socket.socket, number: int) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
        self.log.append((number, "", buf.split(b" ", 2)[1].decode(), b""))
        self._stop.wait(30)


class Http1Backend(_Threads):
    """Keep-alive HTTP/1.1: ``/act-then-drop`` is logged (acted on) and, on the first
    connection, answered by closing it; every other request gets ``200 ok``."""

    def serve(self, conn: socket.socket, number: int) -> None:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            method, path, _ = head.split(b"\r\n")[0].decode().split(" ", 2)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:length], buf[length:]
            self.log.append((number, method, path, body))
            if path == "/act-then-drop" and number == 1:
                return  # acted on, then gone without a word
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


Answer = Callable[[H2Connection, int, int, str], bool]


class Http2Backend(_Threads):
    """An HTTP/2 server (h2c) whose answer to each complete request is ``answer(h2, stream,
    connection, path)``; it returns False to drop the connection right after. Outbound header
    checks are off: it may send what HTTP/2 forbids."""

    def __init__(self, answer: Answer, acknowledge: bool = True) -> None:
        self.answer = answer
        self.acknowledge = acknowledge  # False: request DATA is never acknowledged (window stays 0)
        super().__init__()

    def serve(self, conn: socket.socket, number: int) -> None:
        h2 = H2Connection(
            H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        h2.initiate_connection()
        conn.sendall(h2.data_to_send())
        requests: dict[int, tuple[str, str, bytearray]] = {}
        while True:
            data = conn.recv(65536)
            if not data:
                return
            keep = True
            for event in h2.receive_data(data):
                if isinstance(event, RequestReceived):
                    fields = dict(event.headers)
                    requests[event.stream_id] = (fields[b":method"].decode(), fields[b":path"].decode(), bytearray())
                elif isinstance(event, DataReceived):
                    requests[event.stream_id][2].extend(event.data)
                    if self.acknowledge:
                        h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    method, path, body = requests.pop(event.stream_id)
                    self.log.append((number, method, path, bytes(body)))
                    keep = self.answer(h2, event.stream_id, number, path) and keep
            conn.sendall(h2.data_to_send())
            if not keep:
                return


def _ok(h2: H2Connection, stream: int) -> None:
    h2.send_headers(stream, [(b":status", b"200"), (b"content-length", b"2")])
    h2.send_data(stream, b"ok", end_stream=True)


_REFUSED: list[int] = []


def _retry_answers(h2: H2Connection, stream: int, number: int, path: str) -> bool:
    """First connection: ``/act-then-drop`` is taken and the connection dropped,
    ``/act-then-goaway`` taken, named in a GOAWAY as processed, and dropped. The first
    ``/refused`` is refused (not processed). Everything else: ``200 ok``."""
    if number == 1:
        if path == "/act-then-drop":
            return False
        if path == "/act-then-goaway":
            h2.close_connection(last_stream_id=stream)
            return False
    if path == "/refused" and not _REFUSED:
        _REFUSED.append(stream)
        h2.reset_stream(stream, ErrorCodes.REFUSED_STREAM)
        return True
    _ok(h2, stream)
    return True


@pytest.fixture
def backends() -> Iterator[list[_Threads]]:
    started: list[_Threads] = []
    yield started
    for backend in started:
        backend.close()


def _send(port: int, request: bytes) -> int:
    with raw_connection(port, timeout=15) as sock:
        sock.sendall(request)
        return read_response(sock)[0]


def _post(path: str) -> bytes:
    return f"POST {path} HTTP/1.1\r\nhost: app.example\r\ncontent-length: 5\r\n\r\nhello".encode()


_WARM = b"GET /warm HTTP/1.1\r\nhost: app.example\r\n\r\n"


# ------------------------------------------------------------------ stale-connection retries


def test_post_taken_then_dropped_on_a_pooled_http1_connection_is_not_sent_again(
    gateway: Any, backends: list[_Threads]
) -> None:
    """An upstream that took a POST on a pooled keep-alive connection and closed it without
    answering may have acted on it: the gateway answers 502 rather than sending it again on a
    fresh connection (before, the POST reached the upstream twice: a double charge, a second
    order). No retry policy is set: this was the gateway's own stale-connection retry."""
    backend = Http1Backend()
    backends.append(backend)
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": backend.address}]}]))
    assert _send(port, _WARM) == 200  # the connection is pooled
    assert _send(port, _post("/act-then-drop")) == 502
    time.sleep(0.3)
    assert [entry[1:] for entry in backend.seen("/act-then-drop")] == [("POST", "/act-then-drop", b"hello")]
    # An idempotent request on a connection that went the same way is sent again (it is safe).
    assert _send(port, _WARM) == 200


@pytest.mark.parametrize("path", ["/act-then-drop", "/act-then-goaway"])
def test_post_on_a_stream_the_http2_upstream_took_is_not_sent_again(
    gateway: Any, backends: list[_Threads], path: str
) -> None:
    """The same over HTTP/2: a POST on a stream of a connection that served before, taken by
    the upstream (its GOAWAY names it as processed, or it just dropped the connection), is a 502,
    not a second POST on a new connection."""
    backend = Http2Backend(_retry_answers)
    backends.append(backend)
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": backend.address, "policies": _H2}]}]))
    assert _send(port, _WARM) == 200
    assert _send(port, _post(path)) == 502
    time.sleep(0.3)
    assert len(backend.seen(path)) == 1, backend.log


def test_post_on_a_stream_the_http2_upstream_refused_is_sent_again(gateway: Any, backends: list[_Threads]) -> None:
    """Held: REFUSED_STREAM says the request was not processed (RFC 9113 §8.7), so even a POST
    goes again and the client gets the answer."""
    _REFUSED.clear()
    backend = Http2Backend(_retry_answers)
    backends.append(backend)
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": backend.address, "policies": _H2}]}]))
    assert _send(port, _WARM) == 200
    assert _send(port, _post("/refused")) == 200
    assert len(backend.seen("/refused")) == 2 and len(_REFUSED) == 1


# ------------------------------------------------------------------ an upstream that takes no body


def _upload_against(port: int) -> tuple[bytes, float]:
    """A 32 MiB upload (far more than the socket buffers and the gateway's marks hold) to a
    backend that takes none of it; the answer's status line and when it came."""
    total = 32 * 1024 * 1024
    with raw_connection(port, timeout=20) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nhost: app.example\r\ncontent-length: %d\r\n\r\n" % total)

        def feed() -> None:
            chunk = b"u" * 65536
            with contextlib.suppress(OSError):
                for _ in range(total // len(chunk)):
                    sock.sendall(chunk)

        threading.Thread(target=feed, daemon=True).start()
        start = time.monotonic()
        try:
            line = sock.recv(65536).split(b"\r\n", 1)[0]
        except TimeoutError:
            line = b"(no answer)"
        return line, time.monotonic() - start


@pytest.mark.parametrize("version", ["1.1", "2"])
def test_upstream_that_takes_no_request_body_gets_the_response_deadline(
    gateway: Any, backends: list[_Threads], version: str
) -> None:
    """An upstream that stops taking a request body (HTTP/1.1: never reads its socket; HTTP/2:
    never opens its flow-control window) pauses the client, and time paused is not charged to the
    client's body clocks. Before, nothing else ran on a route without a timeout policy: the
    request hung for as long as the upstream liked. Now the response deadline
    (``responseHeaderTimeout``) runs while the upstream takes nothing: 504, both connections
    closed."""
    backend: _Threads = StalledBackend() if version == "1.1" else Http2Backend(_retry_answers, acknowledge=False)
    backends.append(backend)
    port = free_port()
    route = {"backends": [{"host": backend.address, "policies": {"http": {"version": version}}}]}
    gateway({**binds(port, [route]), "config": {"backend": {"responseHeaderTimeout": "1s"}}})
    line, elapsed = _upload_against(port)
    assert line.startswith(b"HTTP/1.1 504"), line
    assert elapsed < 8, elapsed


# ------------------------------------------------------------------ response heads an HTTP/2 upstream sends

# What a hostile HTTP/2 upstream puts in a response head, by path: each is forbidden by RFC 9113
# §8.2-8.3, and relayed to an HTTP/1.1 client it would split the answer, add framing of its own,
# or end the connection's keep-alive on the upstream's word.
_BAD_HEADS: dict[str, list[tuple[bytes, bytes]]] = {
    "/crlf": [(b":status", b"200"), (b"x-a", b"v\r\nx-injected: 1")],
    "/lf": [(b":status", b"200"), (b"x-a", b"v\nx-injected: 1")],
    "/nul": [(b":status", b"200"), (b"x-a", b"v\x00x-injected: 1")],
    "/blank": [(b":status", b"200"), (b"x-a", b" x-injected")],
    "/upper": [(b":status", b"200"), (b"X-Injected", b"1")],
    "/connection": [(b":status", b"200"), (b"connection", b"x-injected")],
    "/transfer-encoding": [(b":status", b"200"), (b"transfer-encoding", b"chunked"), (b"x-injected", b"1")],
    "/keep-alive": [(b":status", b"200"), (b"keep-alive", b"timeout=1"), (b"x-injected", b"1")],
    "/upgrade": [(b":status", b"200"), (b"upgrade", b"websocket"), (b"x-injected", b"1")],
    "/proxy-connection": [(b":status", b"200"), (b"proxy-connection", b"close"), (b"x-injected", b"1")],
    "/two-status": [(b":status", b"200"), (b":status", b"204"), (b"x-injected", b"1")],
    "/late-pseudo": [(b"x-injected", b"1"), (b":status", b"200")],
    "/request-pseudo": [(b":status", b"200"), (b":path", b"/x"), (b"x-injected", b"1")],
    "/switching": [(b":status", b"101"), (b"upgrade", b"websocket"), (b"x-injected", b"1")],
    "/two-lengths": [(b":status", b"200"), (b"content-length", b"2"), (b"content-length", b"3")],
    "/bad-length": [(b":status", b"200"), (b"content-length", b"+2"), (b"x-injected", b"1")],
}


def _head_answers(h2: H2Connection, stream: int, number: int, path: str) -> bool:
    if path in _BAD_HEADS:
        h2.send_headers(stream, _BAD_HEADS[path])
        h2.send_data(stream, b"ok", end_stream=True)
    elif path == "/short":  # promises 10 bytes, sends 2 and ends the stream
        h2.send_headers(stream, [(b":status", b"200"), (b"content-length", b"10")])
        h2.send_data(stream, b"ok", end_stream=True)
    elif path == "/long":  # promises 2, sends 10
        h2.send_headers(stream, [(b":status", b"200"), (b"content-length", b"2")])
        h2.send_data(stream, b"0123456789", end_stream=True)
    elif path == "/hpack-bomb":  # one 4000-byte table entry, referenced 400 times: 1.6 MB decoded
        h2.send_headers(stream, [(b":status", b"200")] + [(b"x-big", b"b" * 4000)] * 400)
        h2.send_data(stream, b"ok", end_stream=True)
    elif path == "/early-hints":  # many 103s with headers, then the answer
        for i in range(200):
            h2.send_headers(stream, [(b":status", b"103"), (b"link", b"</hint%d>; rel=preload" % i)])
        h2.send_headers(stream, [(b":status", b"200"), (b"content-length", b"2")])
        h2.send_data(stream, b"ok", end_stream=True)
    else:
        _ok(h2, stream)
    return True


@pytest.fixture(scope="module")
def h2_heads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    from tests.support.gateway import Gateway

    backend = Http2Backend(_head_answers)
    port = free_port()
    gw = Gateway(
        tmp_path_factory.mktemp("h2_heads"), binds(port, [{"backends": [{"host": backend.address, "policies": _H2}]}])
    )
    try:
        yield port
    finally:
        gw.stop()
        backend.close()


def _exchange(port: int, path: str) -> bytes:
    """Everything the client gets on a keep-alive connection for ``path`` followed by a
    second request: a desynchronized answer would show as extra or missing bytes."""
    with raw_connection(port, timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: app.example\r\n\r\n".encode())
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and (data.endswith(b"ok") or data.endswith(b"\n")):
                break
        return data


@pytest.mark.parametrize("path", sorted(_BAD_HEADS))
def test_forbidden_http2_response_heads_are_a_502_never_relayed(h2_heads: int, path: str) -> None:
    """Held: every head HTTP/2 forbids is refused by the upstream's HTTP/2 engine (libnghttp2):
    the client gets a 502 of the gateway's own, nothing of the upstream's head."""
    data = _exchange(h2_heads, path)
    assert data.startswith(b"HTTP/1.1 502"), data
    assert b"injected" not in data.lower(), data


@pytest.mark.parametrize("path", ["/short", "/long"])
def test_http2_data_that_disagrees_with_content_length_never_desynchronizes(h2_heads: int, path: str) -> None:
    """Held: a content-length the DATA frames do not match is a stream error. Too many bytes:
    none past the declared length reaches the client; too few: the client's connection is cut
    (never kept alive with the answer short, which would make the next answer part of this one)."""
    with raw_connection(h2_heads, timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: app.example\r\n\r\n".encode())
        data, closed = b"", False
        with contextlib.suppress(TimeoutError):
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    closed = True
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"23456789" not in data, data
    if head.startswith(b"HTTP/1.1 200"):
        declared = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        assert len(body) < declared and closed, (data, closed)  # cut short, and the connection ended
    else:
        assert head.startswith(b"HTTP/1.1 502"), data


def test_http2_early_hints_are_not_relayed(h2_heads: int) -> None:
    """Held: 1xx heads from an HTTP/2 upstream (here 200 Early Hints with a header each) are
    dropped; the client gets the final answer alone, none of their headers."""
    data = _exchange(h2_heads, "/early-hints")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok"), data[:300]
    assert b"hint" not in data and data.count(b"HTTP/1.1") == 1, data[:300]


def test_hpack_bomb_from_an_http2_upstream_is_bounded(h2_heads: int) -> None:
    """Held: a response head whose few bytes decode to megabytes (one dynamic-table entry
    referenced over and over) is cut at the upstream header-list cap (1 MiB): 502, and the
    gateway goes on serving."""
    data = _exchange(h2_heads, "/hpack-bomb")
    assert data.startswith(b"HTTP/1.1 502"), data[:300]
    assert _exchange(h2_heads, "/fine").startswith(b"HTTP/1.1 200")


class InterimFlood(_Threads):
    """HTTP/1.1: 2000 interim answers (100 and 103 with a header each) before the answer."""

    def serve(self, conn: socket.socket, number: int) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </hint>; rel=preload\r\n\r\n"
        conn.sendall(interim * 1000 + b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")


def test_interim_answers_from_an_http1_upstream_are_not_relayed(gateway: Any, backends: list[_Threads]) -> None:
    """Held: 1xx answers from an HTTP/1.1 upstream, however many, are dropped with their headers;
    the client gets the final answer alone."""
    backend = InterimFlood()
    backends.append(backend)
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": backend.address}]}]))
    data = _exchange(port, "/")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok"), data[:300]
    assert b"hint" not in data and data.count(b"HTTP/1.1") == 1, data[:300]


# ------------------------------------------------------------------ request mirror


class SilentMirror(_Threads):
    """Accepts and holds each connection, reading nothing and answering nothing."""

    def serve(self, conn: socket.socket, number: int) -> None:
        self._stop.wait(60)


def test_copies_to_a_silent_mirror_are_bounded_per_worker(gateway: Any, backends: list[_Threads]) -> None:
    """A mirror that accepts and never answers holds each copy for the mirror deadline (30 s).
    Before, every request opened another connection to it: a client sending requests fast ran
    the worker out of file descriptors (its own and every other client's). Now a worker keeps at
    most 512 copies open; past that requests are served without one."""
    primary, mirror = Http1Backend(), SilentMirror()
    backends += [primary, mirror]
    port = free_port()
    route = {
        "backends": [{"host": primary.address}],
        "policies": {"requestMirror": {"backend": {"host": mirror.address}, "percentage": 1.0}},
    }
    gateway(binds(port, [route]))
    with raw_connection(port, timeout=10) as sock:
        for _ in range(700):
            sock.sendall(_WARM)
            assert read_response(sock)[0] == 200
    # Every copy the gateway opened is counted once the count stops moving (the accept thread
    # starts a thread per connection, slowly on a loaded machine).
    seen, deadline = -1, time.monotonic() + 20
    while mirror.connections != seen and time.monotonic() < deadline:
        seen = mirror.connections
        time.sleep(1.0)
    assert 400 <= mirror.connections <= 512, mirror.connections
