"""The HTTP edge against an attacker, on raw sockets through the real daemon: one normalized path
for routing, policies and the upstream; one valid Host; slow request bodies and silent upstreams
cut; forwarded headers believed only from trusted proxies."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import (
    Gateway,
    ResponseReader,
    UpstreamServer,
    binds,
    free_port,
    raw_connection,
    stdio_target,
    wait_for,
)

API_KEY = "sk-edge-test"


class _Stack:
    """One gateway and its upstreams for a whole module (each test sends its own requests)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Any] = []

    def upstream(self, name: str) -> UpstreamServer:
        up = UpstreamServer(self.tmp, name)
        self.procs.append(up)
        return up

    def gateway(self, config: dict[str, Any]) -> Gateway:
        gw_dir = self.tmp / f"gw{len(self.procs)}"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, config, wait=False)
        self.procs.append(gw)
        gw.wait_ready()
        return gw

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def _stack(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[_Stack]:
    stack = _Stack(tmp_path_factory.mktemp(name))
    try:
        yield stack
    finally:
        stack.stop()


def _exchange(port: int, raw: bytes, source: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a fresh connection (from ``source`` if given) and read one response."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        if source:
            sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(raw)
        return ResponseReader(sock).read()
    finally:
        sock.close()


def _get(port: int, target: str | bytes, headers: bytes = b"Host: gw.test\r\n") -> tuple[int, dict[str, str], bytes]:
    target_bytes = target.encode() if isinstance(target, str) else target
    return _exchange(port, b"GET " + target_bytes + b" HTTP/1.1\r\n" + headers + b"\r\n")


# ---------------------------------------------------------------------------------------- paths


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``/api`` (guarded by apiKey) to one upstream, everything else to another; the catch-all
    route denies ``/admin`` with CEL and a ``/rw`` route rewrites its prefix."""
    with _stack(tmp_path_factory, "paths") as stack:
        guarded = stack.upstream("guarded")
        open_ = stack.upstream("open")
        port = free_port()
        routes = [
            {
                "name": "api",
                "matches": [{"path": {"pathPrefix": "/api"}}],
                "policies": {"apiKey": {"mode": "strict", "keys": [{"key": API_KEY}]}},
                "backends": [{"host": guarded.address}],
            },
            {
                # A route path written with an escape in the file is normalized like requests.
                "name": "beta",
                "matches": [{"path": {"pathPrefix": "/%62eta/"}}],
                "policies": {"apiKey": {"mode": "strict", "keys": [{"key": API_KEY}]}},
                "backends": [{"host": guarded.address}],
            },
            {
                "name": "rw",
                "matches": [{"path": {"pathPrefix": "/rw"}}],
                "policies": {"urlRewrite": {"path": {"prefix": "/rewritten"}}},
                "backends": [{"host": open_.address}],
            },
            {
                "name": "open",
                "policies": {
                    "authorization": {"rules": [{"deny": 'request.path.startsWith("/admin")'}, "true"]},
                    "transformations": {"request": {"set": {"x-cel-path": "request.path"}}},
                },
                "backends": [{"host": open_.address}],
            },
        ]
        gw = stack.gateway(binds(port, routes))
        yield {"port": port, "guarded": guarded, "open": open_, "gateway": gw}


# (raw target, expected status, the path the open upstream sees when it is 200)
_PATH_CASES = [
    (b"/%61pi/x", 401, None),
    (b"/%61%70%69/x", 401, None),
    (b"/API/x", 200, "/API/x"),  # paths are case-sensitive: not the guarded route
    (b"/api%2fx", 400, None),
    (b"/api%2Fx", 400, None),
    (b"/api%5cx", 400, None),
    (b"/api%5Cx", 400, None),
    (b"/%2e%2e/api/x", 401, None),
    (b"/%2E%2E/api/x", 401, None),
    (b"/x/%2E%2E/api/x", 401, None),
    (b"/x/%2e./api/x", 401, None),
    (b"/x/..%2fapi", 400, None),
    (b"/x/..%2Fapi/x", 400, None),
    (b"//api/x", 401, None),
    (b"///api//x", 401, None),
    (b"/api/./x", 401, None),
    (b"/./api/x", 401, None),
    (b"/a/b/../../api/x", 401, None),
    (b"/a/b/../../../../api/x", 401, None),
    (b"/api\\x", 400, None),
    (b"/x\\..\\api\\x", 400, None),
    (b"\\api\\x", 400, None),
    (b"/api%252Fx", 200, "/api%252Fx"),  # decoded once, never twice
    (b"/%2561pi/x", 200, "/%2561pi/x"),
    (b"/%c0%afapi/x", 400, None),  # an overlong "/"
    (b"/x%c0%ae%c0%ae/api", 400, None),  # overlong dots
    (b"/api%00/x", 400, None),
    (b"/x/..;/api/x", 400, None),
    (b"/x/..%3b/api/x", 400, None),
    (b"/api%zz", 400, None),
    (b"/api%", 400, None),
    (b"/caf%c3%a9", 200, "/caf%C3%A9"),  # other escapes kept, hex upper-cased
    (b"/%7euser/%41", 200, "/~user/A"),
    (b"/x/%2e", 200, "/x/"),
    (b"http://gw.test/%61pi/x", 401, None),
    (b"http://gw.test//api/x", 401, None),
    (b"/%62eta/x", 401, None),
    (b"/beta/x", 401, None),
    (b"/bet%61", 401, None),
]


@pytest.mark.parametrize(("target", "status", "seen"), _PATH_CASES, ids=[c[0].decode() for c in _PATH_CASES])
def test_no_spelling_of_a_path_skips_the_guard(paths, target, status, seen):
    open_before = len(paths["open"].requests())
    got, _, body = _get(paths["port"], target)
    assert got == status, body
    assert paths["guarded"].requests() == [], "the guarded upstream was reached without credentials"
    sent = paths["open"].requests()[open_before:]
    if seen is None:
        assert sent == []
    else:
        assert [r["target"] for r in sent] == [seen]
        assert dict(sent[0]["headers"])["x-cel-path"] == seen  # CEL saw the same path


def test_the_guarded_upstream_sees_the_normalized_path(paths):
    key = f"Host: gw.test\r\nAuthorization: Bearer {API_KEY}\r\n".encode()
    for target, seen in (
        (b"/%61pi/x", "/api/x"),
        (b"/a/b/../../api//x/./y?q=%2F..", "/api/x/y?q=%2F.."),  # the query is not touched
        (b"/%62eta/%7e", "/beta/~"),
    ):
        before = len(paths["guarded"].requests())
        status, _, body = _get(paths["port"], target, key)
        assert status == 200, body
        assert json.loads(body)["target"] == seen
        assert [r["target"] for r in paths["guarded"].requests()[before:]] == [seen]


def test_cel_and_rewrites_see_the_normalized_path(paths):
    for target in (b"/%61dmin/x", b"/x/../admin", b"//admin", b"/%2e/admin"):
        status, _, body = _get(paths["port"], target)
        assert status == 403, (target, body)
    status, _, body = _get(paths["port"], b"/%72w/../rw//x")
    assert status == 200, body
    assert json.loads(body)["target"] == "/rewritten/x"


def test_a_config_path_no_request_can_match_is_refused(tmp_path):
    port = free_port()
    config = binds(port, [{"matches": [{"path": {"pathPrefix": "/a%2Fb"}}], "backends": [{"host": "127.0.0.1:1"}]}])
    gw = Gateway(tmp_path, config, wait=False)
    try:
        wait_for(lambda: not gw.alive(), 30, "the gateway to refuse the config")
        assert "pathPrefix" in gw.output() and "encoded slash" in gw.output()
    finally:
        gw.stop()


def test_escaped_slashes_can_be_decoded_instead(gateway, upstream):
    guarded, open_ = upstream("guarded"), upstream("open")
    port = free_port()
    config = binds(
        port,
        [
            {
                "matches": [{"path": {"pathPrefix": "/api"}}],
                "policies": {"apiKey": {"mode": "strict", "keys": [{"key": API_KEY}]}},
                "backends": [{"host": guarded.address}],
            },
            {"backends": [{"host": open_.address}]},
        ],
    )
    config["frontendPolicies"] = {"http": {"escapedSlashes": "decode"}}
    gateway(config)
    for target in (b"/api%2fx", b"/x/..%2Fapi/x", b"/x%5C..%5Capi", b"/api\\x"):
        status, _, body = _get(port, target)
        assert status == 401, (target, body)  # decoded into "/": routed under /api
    status, _, body = _get(port, b"/api%2fx", f"Host: gw.test\r\nAuthorization: Bearer {API_KEY}\r\n".encode())
    assert status == 200 and json.loads(body)["target"] == "/api/x"
    assert all(r["target"] == "/api/x" for r in guarded.requests())
    assert open_.requests() == []


# ----------------------------------------------------------------------------------------- Host


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /echo HTTP/1.1\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost:\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"GET /echo HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET http://a/echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a:80x\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a\xff\r\n\r\n", 400),
        (b"GET http://user@a/echo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http:///echo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http://a b/echo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        # Framing (llhttp's strict mode), as the README states it.
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GET /echo HTTP/1.1\nHost: a\n\n", 400),
        (b"GET /echo HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n", 400),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ],
)
def test_host_and_framing_must_be_valid(paths, head, status):
    got, headers, body = _exchange(paths["port"], head)
    assert got == status, body
    assert headers.get("connection") == "close" and body.strip()


def test_valid_hosts_and_the_authority_of_an_absolute_target(paths):
    open_ = paths["open"]
    for head, host in (
        (b"GET /echo HTTP/1.1\r\nHost: gw.test:8080\t\r\n\r\n", "gw.test:8080"),
        (b"GET /echo HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "[::1]:80"),
        # RFC 9112 §3.2.2: the target's authority wins over Host, which is replaced upstream.
        (b"GET http://target.test:81/echo HTTP/1.1\r\nHost: other.test\r\n\r\n", "target.test:81"),
    ):
        status, _, body = _exchange(paths["port"], head)
        assert status == 200, body
        sent = dict(json.loads(body)["headers"])
        assert sent["host"] == host
        assert sent["x-forwarded-host"] == host
    # HTTP/1.0 may omit Host: the backend's own authority is sent (never an empty Host).
    status, _, body = _exchange(paths["port"], b"GET /echo HTTP/1.0\r\n\r\n")
    assert status == 200, body
    assert dict(json.loads(body)["headers"])["host"] == open_.address
    assert len([r for r in open_.requests() if dict(r["headers"]).get("host") == ""]) == 0


@pytest.mark.parametrize(
    "bad",
    [
        b"GET /x HTTP/1.1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /api%2fx HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
@pytest.mark.parametrize("upgrade", [b"", b"Upgrade: websocket\r\nConnection: upgrade\r\n"])
def test_a_bad_head_pipelined_behind_a_request_does_not_cut_it_short(paths, bad, upgrade):
    """Found by the fuzz (test_edge_fuzz.py): a bad head pipelined after an Upgrade request was
    answered 500 (its error was chained to the upgrade's); and any head refused after the head
    was parsed (Host, path) stopped the request before it and took its place in the answer.
    Now the first request is answered, then the connection closes."""
    with raw_connection(paths["port"]) as s:
        s.sendall(b"GET /slow?delay=0.2 HTTP/1.1\r\nHost: gw.test\r\n" + upgrade + b"\r\n" + bad)
        reader = ResponseReader(s)
        status, _, body = reader.read()
        assert status == 200 and body == b"slow done\n"
        if upgrade:
            # The upgrade was refused (the upstream answered 200 without switching): what the
            # client sent behind it is read only then, as the next request, and a bad one gets
            # its own 400 before the connection closes.
            status, headers, _ = reader.read()
            assert status == 400 and headers["connection"] == "close"
        assert reader.buf == b"" and s.recv(100) == b""


def test_options_asterisk_is_forwarded(paths):
    status, _, body = _exchange(paths["port"], b"OPTIONS * HTTP/1.1\r\nHost: gw.test\r\n\r\n")
    assert status == 200 and json.loads(body)["target"] == "*"


# ------------------------------------------------------------------------ slow bodies, silent upstreams


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with _stack(tmp_path_factory, "slow") as stack:
        up = stack.upstream("up")
        port = free_port()
        routes = [
            {
                "name": "patient",
                "matches": [{"headers": [{"name": "x-patient", "value": {"exact": "1"}}]}],
                "policies": {"timeout": {"requestTimeout": "10s"}},
                "backends": [{"host": up.address}],
            },
            {"backends": [{"host": up.address}]},
        ]
        config = binds(port, routes)
        config["config"] = {"backend": {"responseHeaderTimeout": "1s"}}
        config["frontendPolicies"] = {
            "http": {
                "requestBodyIdleTimeout": "1s",
                "requestBodyMinRate": 100,
                "requestBodyMinRateGrace": "1s",
            }
        }
        gw = stack.gateway(config)
        yield {"port": port, "up": up, "gateway": gw}


def _no_upstream_connections(up: UpstreamServer) -> None:
    wait_for(lambda: up.open_connections() == 0, 10, "the upstream connection to be closed")


def _post_head(length: int | None, path: str = "/echo") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: gw.test\r\n{framing}\r\n\r\n".encode()


def test_the_effective_settings_are_in_the_config_dump(slow, proxies):
    limits = httpx.get(slow["gateway"].admin_url + "/config_dump", timeout=5).json()["effective"]
    assert limits["backend"]["responseHeaderTimeout"] == 1.0
    assert limits["limits"]["requestBodyIdleTimeout"] == 1.0
    assert limits["limits"]["requestBodyMinRate"] == 100
    assert limits["limits"]["escapedSlashes"] == "reject"
    dump = httpx.get(proxies["gateway"].admin_url + "/config_dump", timeout=5).json()["effective"]
    assert dump["limits"]["trustedProxies"] == ["127.0.0.2/32", "10.0.0.0/8"]


def test_a_stalled_body_gets_408_and_frees_the_upstream(slow):
    up = slow["up"]
    before = len(up.requests())
    with raw_connection(slow["port"], timeout=10) as s:
        start = time.monotonic()
        s.sendall(_post_head(100) + b"x" * 10)
        status, headers, body = ResponseReader(s).read()
        assert status == 408 and b"request body" in body
        assert headers.get("connection") == "close"
        assert time.monotonic() - start < 5
        assert s.recv(10) == b""
    _no_upstream_connections(up)
    assert len(up.requests()) == before  # the truncated request never completed upstream


def test_a_client_half_closing_mid_body_gets_400_at_once(slow):
    up = slow["up"]
    with raw_connection(slow["port"], timeout=10) as s:
        s.sendall(_post_head(100) + b"x" * 10)
        s.shutdown(socket.SHUT_WR)
        start = time.monotonic()
        status, _, body = ResponseReader(s).read()
        assert status == 400 and b"before the request body was complete" in body
        assert time.monotonic() - start < 0.9  # not the 1s body timeout
    _no_upstream_connections(up)


def test_a_trickled_body_is_cut_by_the_minimum_rate(slow):
    """One byte every 0.3s never pauses a whole second: the average rate cuts it."""
    up = slow["up"]
    with raw_connection(slow["port"], timeout=10) as s:
        s.sendall(_post_head(None))
        start = time.monotonic()
        status = None
        reader = ResponseReader(s)
        s.settimeout(0.3)
        for _ in range(40):
            try:
                s.sendall(b"1\r\nx\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                status, _, body = reader.read()
                break
            except TimeoutError:
                continue
        assert status == 408 and b"too slow" in body
        assert time.monotonic() - start < 6
    _no_upstream_connections(up)


def test_uploads_at_a_reasonable_rate_still_work(slow):
    with raw_connection(slow["port"], timeout=10) as s:
        reader = ResponseReader(s)
        # 200 bytes/s for 3s (above the 100 bytes/s floor, pausing less than the idle timeout),
        s.sendall(_post_head(600))
        for _ in range(12):
            s.sendall(b"y" * 50)
            time.sleep(0.25)
        status, _, body = reader.read()
        assert status == 200 and json.loads(body)["body_length"] == 600
        # then a fast chunked one on the same connection.
        s.sendall(_post_head(None) + b"".join(b"1000\r\n" + b"z" * 4096 + b"\r\n" for _ in range(64)) + b"0\r\n\r\n")
        status, _, body = reader.read()
        assert status == 200 and json.loads(body)["body_length"] == 64 * 4096


def test_waiting_for_100_continue_is_not_counted(slow):
    with raw_connection(slow["port"], timeout=10) as s:
        reader = ResponseReader(s)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        status, _, _ = reader.read()
        assert status == 100
        time.sleep(0.3)
        s.sendall(b"data")
        status, _, body = reader.read()
        assert status == 200 and json.loads(body)["body_length"] == 4


def test_a_silent_upstream_gets_504_after_the_default(slow):
    up = slow["up"]
    start = time.monotonic()
    status, _, body = _get(slow["port"], "/hang")
    assert status == 504 and b"no response within 1s" in body
    assert time.monotonic() - start < 5
    _no_upstream_connections(up)
    # A route timeout policy replaces the default: a 2s answer is waited for.
    status, _, body = _get(slow["port"], "/slow?delay=2", b"Host: gw.test\r\nX-Patient: 1\r\n")
    assert status == 200 and body == b"slow done\n"


def test_the_default_counts_from_the_end_of_the_request_and_spares_streams(slow):
    # The upload takes ~2s, twice the default: the clock starts once the upstream has it all.
    with raw_connection(slow["port"], timeout=10) as s:
        s.sendall(_post_head(2000))
        for _ in range(8):
            s.sendall(b"u" * 250)
            time.sleep(0.25)
        status, _, body = ResponseReader(s).read()
        assert status == 200 and json.loads(body)["body_length"] == 2000
    # An event stream whose events are further apart than every timeout: the head came at once.
    with raw_connection(slow["port"], timeout=10) as s:
        s.sendall(b"GET /sse?n=3&delay=1.3 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        status, headers, body = ResponseReader(s).read()
        assert status == 200 and headers["content-type"] == "text/event-stream"
        assert body.count(b"data: ") == 3


class _LateReader:
    """An upstream that accepts, reads nothing for ``delay`` seconds (the gateway must stop
    reading its client meanwhile), then reads one request with a Content-Length body and
    answers 200."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            time.sleep(self.delay)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(65536)
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            self.received = len(rest)
            while self.received < length:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                self.received += len(chunk)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            time.sleep(0.5)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_time_the_gateway_is_not_reading_is_not_the_clients(gateway):
    """A slow upstream pauses reading from the client: that pause is not a stalled body."""
    late = _LateReader(delay=3.0)
    try:
        port = free_port()
        config = binds(port, [{"backends": [{"host": f"127.0.0.1:{late.port}"}]}])
        config["frontendPolicies"] = {"http": {"requestBodyIdleTimeout": "1s", "requestBodyMinRateGrace": "1s"}}
        gateway(config)
        size = 48 * 1024 * 1024
        with raw_connection(port, timeout=20) as s:
            s.sendall(_post_head(size))
            piece = b"p" * (1 << 20)
            for _ in range(size // len(piece)):
                s.sendall(piece)
            status, _, body = ResponseReader(s).read()
            assert status == 200 and body == b"ok"
        assert late.received == size
    finally:
        late.close()


# ------------------------------------------------------------------------------ forwarded headers

_SPOOFED = (
    b"X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\n"
    b"X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"
)


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Trusted: 127.0.0.2 and 10.0.0.0/8. CEL's source.address is echoed to the upstream; an
    MCP route checks browser origins."""
    with _stack(tmp_path_factory, "proxies") as stack:
        up = stack.upstream("up")
        port = free_port()
        routes = [
            {
                "name": "mcp",
                "matches": [{"path": {"pathPrefix": "/mcp"}}],
                "backends": [{"mcp": {"targets": [stdio_target("t")]}}],
            },
            {
                "policies": {"transformations": {"request": {"set": {"x-source": "source.address"}}}},
                "backends": [{"host": up.address}],
            },
        ]
        config = binds(port, routes)
        config["frontendPolicies"] = {"http": {"trustedProxies": ["127.0.0.2", "10.0.0.0/8"]}}
        gw = stack.gateway(config)
        yield {"port": port, "up": up, "gateway": gw}


def _sent_headers(body: bytes) -> dict[str, str]:
    return dict(json.loads(body)["headers"])


def test_forwarded_headers_of_an_untrusted_client_are_dropped(proxies):
    status, _, body = _exchange(proxies["port"], b"GET /echo HTTP/1.1\r\nHost: gw.test\r\n" + _SPOOFED + b"\r\n")
    assert status == 200, body
    sent = _sent_headers(body)
    assert sent["x-source"] == "127.0.0.1"  # CEL source.address: the real peer
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == "gw.test"
    assert "x-real-ip" not in sent and "forwarded" not in sent
    # Upper-case names, several fields: dropped all the same.
    status, _, body = _exchange(
        proxies["port"],
        b"GET /echo HTTP/1.1\r\nHost: gw.test\r\nX-FORWARDED-FOR: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7\r\n\r\n",
    )
    assert _sent_headers(body)["x-forwarded-for"] == "127.0.0.1"


def test_forwarded_headers_of_a_trusted_proxy_are_honored(proxies):
    raw = b"GET /echo HTTP/1.1\r\nHost: gw.test\r\n" + _SPOOFED + b"\r\n"
    status, _, body = _exchange(proxies["port"], raw, source="127.0.0.2")
    assert status == 200, body
    sent = _sent_headers(body)
    assert sent["x-source"] == "6.6.6.6"
    assert sent["x-forwarded-for"] == "6.6.6.6, 127.0.0.2"
    assert sent["x-forwarded-proto"] == "https"
    assert sent["x-forwarded-host"] == "evil.example"
    assert sent["x-real-ip"] == "6.6.6.6" and sent["forwarded"] == "for=6.6.6.6;proto=https"


@pytest.mark.parametrize(
    ("chain", "client"),
    [
        (b"6.6.6.6, 10.1.2.3", "6.6.6.6"),  # the trusted hops are skipped
        (b"6.6.6.6, 7.7.7.7, 10.1.2.3", "7.7.7.7"),  # the rightmost untrusted address is the client
        (b"10.9.9.9, 10.1.2.3", "10.9.9.9"),  # all trusted: the leftmost
        (b"6.6.6.6, garbage, 10.1.2.3", "10.1.2.3"),  # garbage below a trusted hop stops the walk
        (b"garbage", "127.0.0.2"),
        (b"[::ffff:6.6.6.6]:1234", "6.6.6.6"),
    ],
)
def test_the_client_is_found_in_a_trusted_chain(proxies, chain, client):
    raw = b"GET /echo HTTP/1.1\r\nHost: gw.test\r\nX-Forwarded-For: " + chain + b"\r\n\r\n"
    status, _, body = _exchange(proxies["port"], raw, source="127.0.0.2")
    assert status == 200, body
    sent = _sent_headers(body)
    assert sent["x-source"] == client
    assert sent["x-forwarded-for"] == chain.decode() + ", 127.0.0.2"


def test_mcp_origin_check_believes_x_forwarded_host_only_from_a_trusted_proxy(proxies):
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
    ).encode()
    raw = (
        b"POST /mcp HTTP/1.1\r\nHost: gw.internal\r\nOrigin: https://app.example\r\n"
        b"X-Forwarded-Host: app.example\r\nContent-Type: application/json\r\n"
        b"Accept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    # From an untrusted peer X-Forwarded-Host is dropped: the Origin is not this endpoint's. (The
    # peer is on this machine, so the DNS-rebinding check refuses its foreign Host first.)
    status, _, answer = _exchange(proxies["port"], raw)
    assert status == 403 and b"gw.internal is not localhost" in answer
    # From the trusted proxy: the client is the one its X-Forwarded-For names (none here: the
    # proxy itself, a loopback address, so the rebinding check applies too) ...
    status, _, answer = _exchange(proxies["port"], raw, source="127.0.0.2")
    assert status == 403 and b"gw.internal is not localhost" in answer
    # ... and a remote client of that proxy is not on this machine: X-Forwarded-Host is believed
    # and the Origin is the endpoint's own.
    remote = raw.replace(b"X-Forwarded-Host", b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host")
    status, _, answer = _exchange(proxies["port"], remote, source="127.0.0.2")
    assert status == 200, answer
    status, _, answer = _exchange(proxies["port"], remote)  # the same headers from anyone else
    assert status == 403, answer


def test_without_trusted_proxies_nobody_is_believed(paths):
    status, _, body = _exchange(
        paths["port"], b"GET /echo HTTP/1.1\r\nHost: gw.test\r\n" + _SPOOFED + b"\r\n", "127.0.0.2"
    )
    sent = _sent_headers(body)
    assert status == 200
    assert sent["x-forwarded-for"] == "127.0.0.2" and sent["x-forwarded-host"] == "gw.test"
    assert "x-real-ip" not in sent and "forwarded" not in sent


def test_still_serving(paths):
    r = httpx.get(f"http://127.0.0.1:{paths['port']}/echo", timeout=5)
    assert r.status_code == 200


def test_oauth_challenge_urls_believe_x_forwarded_proto_only_from_a_trusted_proxy(gateway, idp):
    """mcpAuthentication builds its resource URL from X-Forwarded-Proto: a client cannot pick it."""
    port = free_port()
    policy = {"issuer": idp.issuer, "audiences": [f"http://127.0.0.1:{port}/mcp"], "jwks": {"url": idp.jwks_url}}
    config = {"mcp": {"port": port, "targets": [stdio_target("t")], "policies": {"mcpAuthentication": policy}}}
    config["frontendPolicies"] = {"http": {"trustedProxies": ["127.0.0.2"]}}
    gateway(config)
    raw = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Forwarded-Proto: https\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    status, headers, _ = _exchange(port, raw)
    assert status == 401
    assert f'resource_metadata="http://127.0.0.1:{port}/' in headers["www-authenticate"]
    status, headers, _ = _exchange(port, raw, source="127.0.0.2")
    assert status == 401
    assert f'resource_metadata="https://127.0.0.1:{port}/' in headers["www-authenticate"]
