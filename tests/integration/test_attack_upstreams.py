"""Attacks from the upstream side, through the daemon: the attacker runs one of the servers a
route federates or calls (here a hostile MCP target written on raw sockets) and wants to reach
the gateway's memory, another client, or another upstream.

A hostile target that floods a call's event stream (or the session stream) with notifications
while the client reads slowly, or not at all, must not make the gateway buffer without bound:
the gateway stops reading from the target (TCP back-pressure) until the client catches up, and
other clients are served meanwhile."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import Gateway, binds, free_port, mcp_config, raw_connection, read_response, wait_for
from tests.support.http2 import H2UpstreamServer
from tests.support.raw_server import RawServer

# What the hostile target is willing to send on one stream: far more than the socket buffers
# between it and a client that does not read (a few MB on loopback).
_FLOOD_CAP = 64 * 1024 * 1024
_EVENT_DATA = "x" * 16_000


class HostileMcp(RawServer):
    """A streamable-HTTP MCP target on raw sockets. ``tools/call`` of ``flood`` answers with an
    event stream of logging notifications, as fast as the gateway takes them, up to
    ``_FLOOD_CAP`` bytes; a GET session stream does the same; ``sent`` counts what went out."""

    threaded = True
    timeout = 30.0

    def __init__(self) -> None:
        self.sent = 0
        self.flood_get = False
        self.session_id = b"hostile-1"  # what initialize answers in Mcp-Session-Id
        self.version: Any = "2025-06-18"  # and as its protocolVersion
        self.init_error: str | None = None  # when set: initialize fails with this message
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        while not self.stop.is_set():
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ")[0]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:length], buf[length:]
            if not self._answer(conn, method, body):
                return

    def _answer(self, conn: socket.socket, method: str, body: bytes) -> bool:
        """One request answered; False when the connection is done."""
        if method == "DELETE":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            return True
        if method == "GET":
            if not self.flood_get:
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                return True
            self._flood(conn, None)
            return False
        msg = json.loads(body)
        if "id" not in msg or "method" not in msg:
            conn.sendall(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            return True
        name = msg["method"]
        if name == "initialize" and self.init_error is not None:
            error = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32603, "message": self.init_error}}
            data = json.dumps(error).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(data)}\r\n\r\n".encode()
                + data
            )
            return True
        if name == "initialize":
            result: dict[str, Any] = {
                "protocolVersion": self.version,
                "capabilities": {"tools": {}, "logging": {}},
                "serverInfo": {"name": "hostile", "version": "1"},
            }
            self._json(conn, msg["id"], result, b"mcp-session-id: " + self.session_id + b"\r\n")
            return True
        if name == "tools/list":
            self._json(conn, msg["id"], {"tools": [{"name": "flood", "inputSchema": {"type": "object"}}]})
            return True
        if name == "tools/call":
            self._flood(conn, msg["id"])
            return False
        self._json(conn, msg["id"], {})
        return True

    def _json(self, conn: socket.socket, id_: Any, result: dict[str, Any], extra: bytes = b"") -> None:
        data = json.dumps({"jsonrpc": "2.0", "id": id_, "result": result}).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + extra
            + f"content-length: {len(data)}\r\n\r\n".encode()
            + data
        )

    def _flood(self, conn: socket.socket, id_: Any) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": _EVENT_DATA}}
        event = b"event: message\ndata: " + json.dumps(note).encode() + b"\n\n"
        while self.sent < _FLOOD_CAP and not self.stop.is_set():
            conn.sendall(event)
            self.sent += len(event)
        if id_ is not None:
            answer = {"jsonrpc": "2.0", "id": id_, "result": {"content": [{"type": "text", "text": "done"}]}}
            conn.sendall(b"event: message\ndata: " + json.dumps(answer).encode() + b"\n\n")


@pytest.fixture(scope="module")
def hostile_mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, HostileMcp, int]]:
    hostile = HostileMcp()
    port = free_port()
    gw = Gateway(
        tmp_path_factory.mktemp("hostile_mcp"), mcp_config(port, [{"name": "evil", "mcp": {"host": hostile.url}}])
    )
    try:
        yield gw, hostile, port
    finally:
        gw.stop()
        hostile.close()


def _post(port: int, msg: dict[str, Any], sid: str | None = None) -> tuple[int, dict[str, str], Any]:
    body = json.dumps(msg).encode()
    head = f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: application/json, text/event-stream\r\n"
    head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n"
    if sid:
        head += f"mcp-session-id: {sid}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        status, headers, raw = read_response(sock)
    return status, headers, raw


_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


def _session(port: int) -> str:
    status, headers, raw = _post(port, _INIT)
    assert status == 200, raw
    sid = headers["mcp-session-id"]
    status, _, _ = _post(port, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    assert status == 202
    return sid


def _stalled(hostile: HostileMcp) -> bool:
    """The target can send no more (or sent all it would): sampled over a second."""
    before = hostile.sent
    time.sleep(1.0)
    return hostile.sent == before or hostile.sent >= _FLOOD_CAP


def _silent_client(port: int, request: bytes) -> socket.socket:
    """A connection that sends a request and then never reads (small receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def _other_client_served(port: int) -> None:
    sid = _session(port)
    status, _, raw = _post(port, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid)
    assert status == 200 and b'"flood"' in raw, raw


def test_flooded_call_stream_is_back_pressured(hostile_mcp: tuple[Gateway, HostileMcp, int]) -> None:
    """A tool call the target answers with an endless flood of notifications, for a client that
    does not read: the gateway stops reading the target once the client's buffers are full."""
    _, hostile, port = hostile_mcp
    hostile.sent = 0
    sid = _session(port)
    call = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "flood"}}).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: application/json, text/event-stream\r\n"
        f"content-type: application/json\r\ncontent-length: {len(call)}\r\nmcp-session-id: {sid}\r\n\r\n"
    )
    with contextlib.closing(_silent_client(port, head.encode() + call)):
        wait_for(lambda: hostile.sent > 0, 10, "the flood to start")
        wait_for(lambda: _stalled(hostile), 30, "the flood to stall or end")
        assert hostile.sent < _FLOOD_CAP // 2, f"the gateway took {hostile.sent} bytes for a client that reads nothing"
        _other_client_served(port)


def test_flooded_session_stream_is_bounded(hostile_mcp: tuple[Gateway, HostileMcp, int]) -> None:
    """The same flood on the session stream (GET), for a listening client that does not read."""
    _, hostile, port = hostile_mcp
    hostile.sent = 0
    hostile.flood_get = True
    try:
        sid = _session(port)
        head = (
            f"GET /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\n\r\n"
        )
        with contextlib.closing(_silent_client(port, head.encode())):
            wait_for(lambda: hostile.sent > 0, 10, "the flood to start")
            wait_for(lambda: _stalled(hostile), 30, "the flood to stall or end")
            assert hostile.sent < _FLOOD_CAP // 2, (
                f"the gateway took {hostile.sent} bytes for a client that reads nothing"
            )
            _other_client_served(port)
    finally:
        hostile.flood_get = False


def test_flooded_stateless_call_is_bounded(hostile_mcp: tuple[Gateway, HostileMcp, int]) -> None:
    """A modern (stateless) client's call, flooded the same way: its upstream session may be
    shared with other stateless clients, so the gateway does not hold the target still for it;
    what the client is too slow for is dropped, and the gateway's memory does not grow with
    the flood."""
    gw, hostile, port = hostile_mcp
    hostile.sent = 0
    modern = "2026-07-28"
    meta = {
        "io.modelcontextprotocol/protocolVersion": modern,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    call = json.dumps(
        {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "flood", "_meta": meta}}
    ).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: application/json, text/event-stream\r\n"
        f"content-type: application/json\r\ncontent-length: {len(call)}\r\nmcp-protocol-version: {modern}\r\n"
        "mcp-method: tools/call\r\nmcp-name: flood\r\n\r\n"
    )
    before = gw.worker_rss()
    with contextlib.closing(_silent_client(port, head.encode() + call)):
        wait_for(lambda: hostile.sent > 0, 10, "the flood to start")
        wait_for(lambda: _stalled(hostile), 30, "the flood to stall or end")
        grown = gw.worker_rss() - before
        assert grown < _FLOOD_CAP // 2, f"the gateway grew by {grown} bytes for a client that reads nothing"
        _other_client_served(port)


@pytest.mark.parametrize("sid", [b"\xff\xfe", b"a b"])
def test_target_session_id_outside_visible_ascii_costs_only_that_target(
    tmp_path: Path, gateway: Any, sid: bytes
) -> None:
    """MCP session ids are visible ASCII (0x21-0x7E). A target that answers initialize with any
    other bytes fails its own initialize (a clear error, or left out with failOpen), never the
    whole federated session with an internal error."""
    bad, good = HostileMcp(), HostileMcp()
    bad.session_id = sid
    try:
        port = free_port()
        targets = [{"name": "bad", "mcp": {"host": bad.url}}, {"name": "good", "mcp": {"host": good.url}}]
        gateway(mcp_config(port, targets, failureMode="failOpen"))
        sid_ = _session(port)
        status, _, raw = _post(port, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid_)
        assert status == 200 and b"good_flood" in raw and b"bad_flood" not in raw, raw
    finally:
        bad.close()
        good.close()


@pytest.mark.parametrize("version", ["1999-01-01", "", "2025-06-18x", 20250618])
def test_target_unknown_protocol_version_costs_only_that_target(tmp_path: Path, gateway: Any, version: Any) -> None:
    """The session's version is the lowest its targets answered. A target answering a version
    MCP does not define (older than any, empty, not a string) must not become the session's
    version (a client would refuse the whole gateway): that target's handshake fails."""
    bad, good = HostileMcp(), HostileMcp()
    bad.version = version
    try:
        port = free_port()
        targets = [{"name": "bad", "mcp": {"host": bad.url}}, {"name": "good", "mcp": {"host": good.url}}]
        gateway(mcp_config(port, targets, failureMode="failOpen"))
        status, headers, raw = _post(port, _INIT)
        assert status == 200 and json.loads(raw)["result"]["protocolVersion"] == "2025-06-18", raw
        sid = headers["mcp-session-id"]
        status, _, raw = _post(port, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid)
        assert status == 200 and b"good_flood" in raw and b"bad_flood" not in raw, raw
    finally:
        bad.close()
        good.close()


def test_target_text_cannot_forge_log_lines(tmp_path: Path, gateway: Any) -> None:
    """What a target says reaches the gateway's log (why it failed); line breaks, tabs (the text
    format's field separator) and other control characters in it are escaped, so it cannot
    start a line of its own that reads like the gateway's."""
    bad, good = HostileMcp(), HostileMcp()
    bad.init_error = "no\n2026-01-01T00:00:00.000Z\terror\tworker0\tFORGED\rFORGED2\x1b[2Kx"
    try:
        port = free_port()
        targets = [{"name": "bad", "mcp": {"host": bad.url}}, {"name": "good", "mcp": {"host": good.url}}]
        gw = gateway(mcp_config(port, targets, failureMode="failOpen"))
        _session(port)
        wait_for(lambda: "failed to initialize" in gw.output(), 10, "the failure to be logged")
        for line in gw.output().splitlines():
            assert not line.startswith("2026-01-01"), line
            if "failed to initialize" in line:
                assert "\t" not in line.split("failed to initialize", 1)[1] and "\x1b" not in line, repr(line)
                assert "FORGED" in line and "\r" not in line, repr(line)
    finally:
        bad.close()
        good.close()


# ---------------------------------------------------------------------------------------- LLM


class HostileProvider(RawServer):
    """An OpenAI-compatible provider on raw sockets that reports whatever usage it is told to
    (``usage``: the next answers' prompt and completion tokens)."""

    def __init__(self) -> None:
        self.usage: tuple[int, int] = (1, 1)
        # When set: the next answers are this event stream (then the connection closes).
        self.stream: bytes | None = None
        self.body: bytes | None = None  # when set: the next answers' JSON body
        self.error: str | None = None  # when set: the next answers are a 400 with this message
        super().__init__()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        if self.error is not None:
            data = json.dumps({"error": {"message": self.error, "type": "invalid_request_error"}}).encode()
            conn.sendall(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
                + f"content-length: {len(data)}\r\n\r\n".encode()
                + data
            )
            return
        if self.stream is not None:
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
            conn.sendall(self.stream)
            return
        prompt, completion = self.usage
        answer = {
            "id": "chatcmpl-hostile",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }
        data = self.body if self.body is not None else json.dumps(answer).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
            + f"content-length: {len(data)}\r\n\r\n".encode()
            + data
        )


_BUDGET = 50


@pytest.fixture(scope="module")
def hostile_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostileProvider, int]]:
    provider = HostileProvider()
    port = free_port()
    keys = [{"key": f"key-{team}", "metadata": {"team": team}} for team in ("neg", "huge", "streams")]
    config = {
        "llm": {
            "port": port,
            "models": [
                {"name": "gpt-4o-mini", "provider": "openAI", "params": {"apiKey": "sk-up", "baseUrl": provider.base}},
                {"name": "claude", "provider": "anthropic", "params": {"apiKey": "sk-up", "baseUrl": provider.base}},
                {"name": "gemini", "provider": "gemini", "params": {"apiKey": "sk-up", "baseUrl": provider.base[:-3]}},
            ],
            "policies": {
                "apiKey": {"mode": "strict", "keys": keys},
                "localRateLimit": [
                    {
                        "type": "tokens",
                        "maxTokens": _BUDGET,
                        "tokensPerFill": 1,
                        "fillInterval": "1h",
                        "key": "apiKey.team",
                    }
                ],
            },
        }
    }
    gw = Gateway(tmp_path_factory.mktemp("hostile_llm"), config)
    try:
        yield provider, port, gw
    finally:
        gw.stop()
        provider.close()


def _chat(port: int, key: str, model: str = "gpt-4o-mini", stream: bool = False) -> tuple[int, bytes]:
    chat: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    if stream:
        chat["stream"] = True
    body = json.dumps(chat)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode() + body.encode())
        status, _, raw = read_response(sock)
    return status, raw


def test_negative_usage_gives_no_budget_back(hostile_llm: tuple[HostileProvider, int, Gateway]) -> None:
    """A provider that claims negative usage must not refill the budget it is charged to (for
    this caller, or anyone sharing its key): it is charged nothing, never less."""
    provider, port, _ = hostile_llm
    provider.usage = (20, 20)
    assert _chat(port, "key-neg")[0] == 200  # 40 of 50 spent
    provider.usage = (-1_000_000, -5)
    assert _chat(port, "key-neg")[0] == 200
    provider.usage = (20, 20)
    assert _chat(port, "key-neg")[0] == 200  # 10 left, admitted, charged 40: none left
    status, raw = _chat(port, "key-neg")
    assert status == 429, (status, raw)


def test_huge_usage_empties_the_budget(hostile_llm: tuple[HostileProvider, int, Gateway]) -> None:
    """Usage beyond any integer the budgets hold (10^30 tokens): the answer still reaches the
    client, and the budget is emptied (not skipped because the number did not fit)."""
    provider, port, _ = hostile_llm
    provider.usage = (10**30, 10**30)
    status, raw = _chat(port, "key-huge")
    assert status == 200, raw
    provider.usage = (1, 1)
    status, raw = _chat(port, "key-huge")
    assert status == 429, (status, raw)


def _anthropic_events(*events: tuple[str, str]) -> bytes:
    return b"".join(f"event: {name}\ndata: {data}\n\n".encode() for name, data in events)


_MESSAGE_START = (
    "message_start",
    '{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"claude",'
    '"content":[],"usage":{"input_tokens":5,"output_tokens":0}}}',
)
_TEXT_START = (
    "content_block_start",
    '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
)

# Provider streams of the right content type whose events are not what the provider's API
# defines: JSON of the wrong shape where the translation reads objects, or one event beyond
# the event size bound (16 MiB).
_MALFORMED_STREAMS = {
    "anthropic-start-not-object": ("claude", _anthropic_events(("message_start", "[]"))),
    "anthropic-delta-string": (
        "claude",
        _anthropic_events(
            _MESSAGE_START, _TEXT_START, ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":"x"}')
        ),
    ),
    "anthropic-block-number": (
        "claude",
        _anthropic_events(
            _MESSAGE_START, ("content_block_start", '{"type":"content_block_start","index":"a","content_block":5}')
        ),
    ),
    "openai-usage-list": ("gpt-4o-mini", b'data: [{"usage":{"prompt_tokens":1}}]\n\n'),
    "oversized-event": ("gpt-4o-mini", b"data: " + b"x" * (17 * 1024 * 1024) + b"\n\n"),
}


@pytest.mark.parametrize("case", list(_MALFORMED_STREAMS))
def test_malformed_provider_stream_is_a_provider_error(
    hostile_llm: tuple[HostileProvider, int, Gateway], case: str
) -> None:
    """Each is the provider's fault: the client's stream ends with a provider error (502), not
    an internal error of the gateway, no traceback is logged, and the next call is served."""
    provider, port, gw = hostile_llm
    model, stream = _MALFORMED_STREAMS[case]
    provider.stream = stream
    try:
        status, raw = _chat(port, "key-streams", model, stream=True)
    finally:
        provider.stream = None
    assert status in (200, 502), (status, raw[:300])
    assert b"internal error" not in raw, raw[:300]
    assert b"502" in raw or b"provider" in raw, raw[:300]
    assert "Traceback" not in gw.output(), gw.output()[-3000:]
    provider.usage = (1, 1)
    assert _chat(port, "key-streams")[0] == 200


_MALFORMED_BODIES = {
    "openai-list": ("gpt-4o-mini", b"[]"),
    "anthropic-content-string": ("claude", b'{"id":"m","type":"message","content":"x","usage":{}}'),
    "anthropic-list": ("claude", b"[1]"),
}


@pytest.mark.parametrize("case", list(_MALFORMED_BODIES))
def test_malformed_provider_answer_is_a_provider_error(
    hostile_llm: tuple[HostileProvider, int, Gateway], case: str
) -> None:
    """The same for a whole (not streamed) answer: 502 from the provider, no traceback."""
    provider, port, gw = hostile_llm
    model, body = _MALFORMED_BODIES[case]
    provider.body = body
    try:
        status, raw = _chat(port, "key-streams", model)
    finally:
        provider.body = None
    assert status == 502, (status, raw[:300])
    assert b"internal error" not in raw, raw[:300]
    assert "Traceback" not in gw.output(), gw.output()[-3000:]


# ------------------------------------------------------------------------ HTTP response heads

# Set-Cookie lines a backend answers with: the gateway's own cookies (agw_oidc_: the browser
# login's session and transactions) in every spelling a browser would take as that name, and
# cookies of the backend's own.
_PLANTED = [
    b"agw_oidc_s_route1=attacker-session; Path=/; HttpOnly",
    b"agw_oidc_t_route1.abc=x; Path=/",
    b" \tagw_oidc_s_route1=leading-blanks; Path=/",
    b"AGW_OIDC_s_route1=upper; Path=/",
    b"agw_oidc_s_route1; Path=/",
]
_OWN = [b"theme=dark; Path=/", b"xagw_oidc_s=fine; Path=/"]


class CookieBackend(RawServer):
    """An HTTP/1.1 backend on raw sockets answering every request with ``_PLANTED`` and
    ``_OWN`` cookies (with ``Connection: x-extra`` at ``/listed``, the other relay branch)."""

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n"
        if buf.startswith(b"GET /listed "):
            head += b"connection: x-extra\r\nx-extra: 1\r\n"
        for cookie in _PLANTED + _OWN:
            head += b"set-cookie: " + cookie + b"\r\n"
        conn.sendall(head + b"\r\nok")


def _read_head(sock: socket.socket) -> bytes:
    """A response's head as it arrived (every header line kept), in lower case."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.partition(b"\r\n\r\n")[0].lower()


@pytest.fixture(scope="module")
def cookie_route(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    backend = CookieBackend()
    port = free_port()
    config = binds(port, [{"backends": [{"host": f"127.0.0.1:{backend.port}"}]}])
    gw = Gateway(tmp_path_factory.mktemp("cookie_route"), config)
    try:
        yield port
    finally:
        gw.stop()
        backend.close()


@pytest.mark.parametrize("path", ["/page", "/listed"])
def test_backend_cannot_set_the_gateways_cookies(cookie_route: int, path: str) -> None:
    """A backend's Set-Cookie for the gateway's login cookies is dropped (it could plant its own
    session for another route's login in a victim's browser, or log the victim out); its own
    cookies pass."""
    with raw_connection(cookie_route) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: app.example\r\n\r\n".encode())
        head = _read_head(sock)
    assert head.startswith(b"http/1.1 200"), head
    cookies = [line[len(b"set-cookie:") :].strip() for line in head.split(b"\r\n") if line.startswith(b"set-cookie:")]
    assert cookies == [c.lower() for c in _OWN], cookies


def test_http2_backend_cannot_set_the_gateways_cookies(tmp_path: Path, gateway: Any) -> None:
    """The same over an HTTP/2 upstream."""
    h2up = H2UpstreamServer(tmp_path)
    try:
        port = free_port()
        gateway(binds(port, [{"backends": [{"host": h2up.address, "policies": {"http": {"version": "2"}}}]}]))
        with raw_connection(port) as sock:
            sock.sendall(b"GET /cookies HTTP/1.1\r\nhost: app.example\r\n\r\n")
            head = _read_head(sock)
        assert head.startswith(b"http/1.1 200"), head
        assert b"set-cookie: theme=dark" in head and b"agw_oidc" not in head, head
    finally:
        h2up.stop()


def test_provider_error_cannot_forge_access_log_lines(hostile_llm: tuple[HostileProvider, int, Gateway]) -> None:
    """A provider's error message is the access log's ``reason``: its control characters are
    escaped inside the quoted value (a CR or tab passed raw would let it rewrite the line)."""
    provider, port, gw = hostile_llm
    provider.error = "bad\rFORGED-REASON\tx\x1b[2K\ny"
    try:
        status, _ = _chat(port, "key-streams")
    finally:
        provider.error = None
    assert status == 400
    wait_for(lambda: "FORGED-REASON" in gw.output(), 10, "the access log line")
    lines = [line for line in gw.output().split("\n") if "FORGED-REASON" in line]
    assert len(lines) == 1 and "\r" not in lines[0] and "\x1b" not in lines[0], [repr(x) for x in lines]
    assert lines[0].count("\t") == 3, repr(lines[0])  # time, level, scope, then the fields
