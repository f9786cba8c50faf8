"""Attacks on HTTP framing between the client, the gateway and its pooled upstream connections:
upstream answers that do not end where they should (bytes after a response, trailers, a body on
a HEAD answer), client bodies and trailers the gateway could read as something else, and what
each leaves behind on a keep-alive connection for the next request. Through the daemon, with
raw sockets on both sides: the upstream here is a socket that writes exactly what a test says."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.gateway import ResponseReader, binds, free_port, raw_connection


@dataclass
class Seen:
    """One request as the raw upstream read it."""

    conn: int
    head: bytes
    body: bytes
    method: str = ""
    target: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


# What the raw upstream does for a request: bytes to write, or a list of bytes to write and
# pauses (seconds) between them; ``CLOSE`` as the last item closes the connection.
CLOSE = object()
Script = Callable[[Seen], "bytes | list[object]"]


class RawUpstream:
    """An HTTP/1.1 upstream on a raw socket: it reads each request (head, then a body by
    ``Content-Length`` or chunked) and writes what ``script`` returns for it, byte for byte."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._open: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stopped = True
        self.sock.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buf = b""

        def fill() -> None:
            nonlocal buf
            data = conn.recv(65536)
            if not data:
                raise ConnectionError
            buf += data

        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    fill()
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.append((name.strip().lower(), value.strip()))
                fields = dict(headers)
                body = b""
                if "chunked" in fields.get("transfer-encoding", ""):
                    while True:
                        while b"\r\n" not in buf:
                            fill()
                        size_line, _, buf = buf.partition(b"\r\n")
                        size = int(size_line.split(b";")[0], 16)
                        if size == 0:
                            while not buf.startswith(b"\r\n") and b"\r\n\r\n" not in buf:
                                fill()
                            end = 2 if buf.startswith(b"\r\n") else buf.index(b"\r\n\r\n") + 4
                            buf = buf[end:]
                            break
                        while len(buf) < size + 2:
                            fill()
                        body += buf[:size]
                        buf = buf[size + 2 :]
                elif "content-length" in fields:
                    n = int(fields["content-length"])
                    while len(buf) < n:
                        fill()
                    body, buf = buf[:n], buf[n:]
                seen = Seen(number, head, body, method, target, headers)
                self.seen.append(seen)
                answer = self.script(seen)
                for step in answer if isinstance(answer, list) else [answer]:
                    if step is CLOSE:
                        conn.close()
                        return
                    if isinstance(step, (int, float)):
                        time.sleep(step)
                    else:
                        conn.sendall(step)  # type: ignore[arg-type]
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            conn.close()


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


@pytest.fixture
def raw_upstream() -> Iterator[Callable[[Script], RawUpstream]]:
    made: list[RawUpstream] = []

    def start(script: Script) -> RawUpstream:
        up = RawUpstream(script)
        made.append(up)
        return up

    yield start
    for up in made:
        up.stop()


def _get(port: int, path: str, host: str = "gw.test") -> tuple[int, dict[str, str], bytes]:
    with raw_connection(port) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        return ResponseReader(s).read()


def _by_path(answers: dict[str, bytes | list[object]]) -> Script:
    """A script that answers by the request's path; any other path gets ``ok(path)``."""

    def script(seen: Seen) -> bytes | list[object]:
        return answers.get(seen.target, ok(seen.target.encode()))

    return script


# ------------------------------------------------------------------ upstream answers


def test_upstream_trailers_do_not_become_the_next_responses_headers(gateway, raw_upstream):
    """Trailer fields of a chunked answer belong to that answer: the next response on the same
    pooled connection (another client's) does not carry them as its own headers."""
    trailer = b"3\r\nabc\r\n0\r\nX-Secret: alice-session\r\nX-Other: 1\r\n\r\n"
    up = raw_upstream(_by_path({"/trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + trailer}))
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    status, _, body = _get(port, "/trailer")
    assert (status, body) == (200, b"abc")
    status, headers, body = _get(port, "/bob")
    assert (status, body) == (200, b"/bob")
    assert "x-secret" not in headers and "x-other" not in headers
    assert up.connections == 1  # the pooled connection was reused: trailers were harmless


def test_bytes_after_a_complete_answer_are_not_the_next_clients_answer(gateway, raw_upstream):
    """An upstream that writes more than the response (the start of another one, the answer to
    a request it thinks it got) is out of step: the connection is not pooled, and the next
    client gets the answer to its own request."""
    extra = b"HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\nContent-Length: 12\r\n\r\nEVIL"
    up = raw_upstream(_by_path({"/first": ok(b"first") + extra}))
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    assert _get(port, "/first")[::2] == (200, b"first")
    time.sleep(0.2)
    status, headers, body = _get(port, "/second")
    assert (status, body) == (200, b"/second") and "x-smuggled" not in headers


@pytest.mark.parametrize(
    ("first", "answer"),
    [
        (ok(b"first"), (200, b"first")),
        (b"HTTP/1.1 204 No Content\r\n\r\n", (204, b"")),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", (304, b"")),
    ],
    ids=["200", "204", "304"],
)
def test_a_whole_extra_answer_is_not_a_pipelined_requests_answer(gateway, raw_upstream, first, answer):
    """A complete second response written with the first (after a 204 or 304, which have no
    body, it looks like one) is not given to the request the client pipelined behind."""
    extra = ok(b"EVIL", b"X-Smuggled: 1\r\n")
    up = raw_upstream(_by_path({"/first": first + extra}))
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with raw_connection(port) as s:
        s.sendall(b"GET /first HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /second HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        reader = ResponseReader(s)
        assert reader.read()[::2] == answer
        status, headers, body = reader.read()
        assert (status, body) == (200, b"/second") and "x-smuggled" not in headers


def test_a_body_on_a_head_answer_is_not_the_next_requests_answer(gateway, raw_upstream):
    """An answer to HEAD has no body whatever its headers say; bytes that follow it anyway are
    not the answer to the request pipelined behind it."""
    inner = ok(b"EVIL", b"X-Smuggled: 1\r\n")
    up = raw_upstream(_by_path({"/head": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(inner) + inner}))
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with raw_connection(port) as s:
        s.sendall(b"HEAD /head HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /second HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        reader = ResponseReader(s)
        status, headers, _ = reader.read(head_only=True)
        assert status == 200 and headers["content-length"] == str(len(inner))
        status, headers, body = reader.read()
        assert (status, body) == (200, b"/second") and "x-smuggled" not in headers


def test_an_answer_on_an_idle_connection_is_not_the_next_clients(gateway, raw_upstream):
    """Bytes an upstream sends on a pooled connection while no request is on it: the connection
    is closed, and the next client's request goes out on a new one."""
    up = raw_upstream(_by_path({"/first": [ok(b"first"), 0.1, ok(b"EVIL", b"X-Smuggled: 1\r\n")]}))
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    assert _get(port, "/first")[::2] == (200, b"first")
    time.sleep(0.4)
    status, headers, body = _get(port, "/second")
    assert (status, body) == (200, b"/second") and "x-smuggled" not in headers
    assert [seen.conn for seen in up.seen] == [1, 2]


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nContent-Length: 9\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    ],
    ids=[
        "cl-and-te",
        "two-lengths",
        "two-equal-lengths",
        "chunk-overflow",
        "trailer-length",
        "bare-lf",
        "obs-fold",
        "space-before-colon",
    ],
)
def test_ambiguous_upstream_framing_is_502_and_the_connection_is_dropped(gateway, raw_upstream, answer):
    up = raw_upstream(_by_path({"/bad": answer}))
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with raw_connection(port) as s:
        s.sendall(b"GET /bad HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        try:
            status = ResponseReader(s).read()[0]
        except ConnectionError:
            status = 0  # refused in the body: the head was relayed, the response is cut short
    assert status in (502, 0)
    status, _, body = _get(port, "/next")
    assert (status, body) == (200, b"/next")
    assert [seen.conn for seen in up.seen] == [1, 2]


def test_interim_answers_are_not_relayed_and_the_connection_stays_in_step(gateway, raw_upstream):
    """100 Continue and 103 Early Hints before the final answer: the client gets the final one,
    and the connection serves the next request with its own answer."""
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x.css>\r\n\r\n"
    up = raw_upstream(_by_path({"/hints": [interim, 0.1, b"HTTP/1.1 103 Early Hints\r\n\r\n" + ok(b"final")]}))
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with raw_connection(port) as s:
        s.sendall(b"GET /hints HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        reader = ResponseReader(s)
        status, headers, body = reader.read()
        assert (status, body) == (200, b"final") and "link" not in headers
        s.sendall(b"GET /next HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        assert reader.read()[::2] == (200, b"/next")
    assert [seen.conn for seen in up.seen] == [1, 1]


# ------------------------------------------------------------------ client requests


def _xff_route(up: RawUpstream) -> dict[str, object]:
    return {"backends": [{"host": up.address}]}


def test_request_trailers_are_not_headers_of_a_pipelined_request(gateway, raw_upstream):
    """Trailer fields of a chunked request are not headers: they are not forwarded, and the
    checks made when the head was parsed (forwarded headers of an untrusted client dropped, one
    Host) are not passed by sending the fields as trailers."""
    up = raw_upstream(_by_path({}))
    port = free_port()
    gateway(binds(port, [_xff_route(up)]))
    trailers = b"X-Forwarded-For: 6.6.6.6\r\nHost: admin.example\r\nX-Trailer: 1\r\n"
    chunked = (
        b"POST /second HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
        + trailers
        + b"\r\n"
    )
    with raw_connection(port) as s:
        s.sendall(b"GET /first HTTP/1.1\r\nHost: gw.test\r\n\r\n" + chunked + chunked.replace(b"/second", b"/third"))
        reader = ResponseReader(s)
        for path in (b"/first", b"/second", b"/third"):
            assert reader.read()[::2] == (200, path)
    for seen in up.seen:
        assert seen.header("x-forwarded-for") == ["127.0.0.1"], seen.head
        assert seen.header("host") == ["gw.test"] and not seen.header("x-trailer"), seen.head
    assert [seen.body for seen in up.seen] == [b"", b"abc", b"abc"]


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: %d\r\n\r\n%b", b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%b\r\n0\r\n\r\n"],
    ids=["length", "chunked"],
)
def test_the_body_of_a_refused_request_is_never_read_as_a_request(gateway, raw_upstream, framing):
    """A policy answers before reading the body (403): the body, here a request for the guarded
    path, is not parsed as the next request, nor is anything pipelined after it."""
    up = raw_upstream(_by_path({}))
    port = free_port()
    routes = [
        {
            "matches": [{"path": {"pathPrefix": "/admin"}}],
            "backends": [{"host": up.address}],
            "policies": {"authorization": {"rules": ["false"]}},
        },
        {"backends": [{"host": up.address}]},
    ]
    gateway(binds(port, routes))
    smuggled = b"GET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n"
    body = framing % (len(smuggled), smuggled)
    with raw_connection(port) as s:
        s.sendall(
            b"POST /admin/x HTTP/1.1\r\nHost: gw.test\r\n" + body + b"GET /admin/y HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        )
        reader = ResponseReader(s)
        assert reader.read()[0] == 403
        try:
            answers = [reader.read()[0]]
        except ConnectionError:
            answers = []
    assert all(status == 403 for status in answers), answers
    assert up.seen == []


def _read_all(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes (or ``limit`` seconds pass), and when."""
    start = time.monotonic()
    sock.settimeout(limit)
    out = b""
    with contextlib.suppress(OSError):
        while data := sock.recv(65536):
            out += data
    return out, time.monotonic() - start


@pytest.mark.parametrize("framing", [b"Content-Length: 10", b"Transfer-Encoding: chunked"], ids=["length", "chunked"])
def test_a_refused_request_whose_body_never_comes_is_one_answer_then_closed(gateway, raw_upstream, framing):
    """A request answered before its body (a policy's 403): a client that then sends no body,
    having announced Expect: 100-continue (no 100 came) or not, is closed once the body
    timeout passes, with the one answer it got: no second response (408) written after it."""
    up = raw_upstream(_by_path({}))
    port = free_port()
    routes = [{"backends": [{"host": up.address}], "policies": {"authorization": {"rules": ["false"]}}}]
    gateway({**binds(port, routes), "frontendPolicies": {"http": {"requestBodyIdleTimeout": "1s"}}})
    for expect in (b"Expect: 100-continue\r\n", b""):
        with raw_connection(port) as s:
            s.sendall(b"POST /x HTTP/1.1\r\nHost: gw.test\r\n" + expect + framing + b"\r\n\r\n")
            out, took = _read_all(s, 8)
        assert took < 5, (expect, out)  # closed, not held open
        assert out.count(b"HTTP/1.1 ") == 1 and out.startswith(b"HTTP/1.1 403"), out
    # A body that turns out malformed after the answer is not answered either.
    with raw_connection(port) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.2)
        s.sendall(b"GET /x HTTP/1.1\r\n\r\n")
        out, _ = _read_all(s, 5)
    assert out.count(b"HTTP/1.1 ") == 1 and out.startswith(b"HTTP/1.1 403"), out
    assert up.seen == []
