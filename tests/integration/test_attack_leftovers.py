"""Attacks earlier audits found and left, through the daemon.

- The gateway's own HTTP client (MCP streamable/SSE targets, webhooks, card fetches) sends a
  request again on a fresh connection, when a pooled one turns out dead, only if it is
  idempotent: a ``tools/call`` a target took and then dropped the connection on runs once.
- A stdio MCP server that closes its stdout but stays alive fails the calls waiting on it at once
  (and is stopped); what it writes on stderr reaches the log cut per line and per second.
- An OpenAPI document given by URL: one fetch shared by concurrent sessions, none again for a
  few seconds after a failure, the size bounded, the YAML parsed off the worker's event loop.
- A client whose request body is slow enough to trip ``backendRequestTimeout`` does not count
  against the backend's ``health``: a client cannot get healthy backends evicted.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_attack_upstreams import _INIT, HostileMcp, _post, _session
from tests.support.gateway import Gateway, binds, free_port, mcp_config, read_response, wait_for


class _DroppingMcp(HostileMcp):
    """Takes every ``tools/call``, counts it, and drops the connection without answering (as a
    target that acted on the call and then crashed or restarted would)."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        super().__init__()

    def _answer(self, conn: socket.socket, method: str, body: bytes) -> bool:
        if method == "POST" and json.loads(body).get("method") == "tools/call":
            with self.lock:
                self.calls += 1
            return False  # closed, no answer
        return super()._answer(conn, method, body)


def test_a_tool_call_a_target_dropped_the_connection_on_runs_once(tmp_path: Path, gateway: Any) -> None:
    """The call goes out on the connection the handshake left in the pool; the target takes it
    and closes. Before, the gateway's client took that for a stale connection and sent the call
    again on a fresh one: the tool ran twice."""
    target = _DroppingMcp()
    port = free_port()
    try:
        gw: Gateway = gateway(mcp_config(port, [{"name": "t", "mcp": {"host": target.url}}]))
        sid = _session(port)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "flood", "arguments": {}}}
        status, _, raw = _post(port, call, sid)
        assert status == 200, raw
        assert b'"error"' in raw or b'"isError":true' in raw, raw
        assert target.calls == 1, f"the target received the tools/call {target.calls} times"
        assert gw.alive()
    finally:
        target.close()


def _post_within(port: int, msg: dict[str, Any], sid: str, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """``_post`` with its own bound (a raise, not a hang, when the gateway does not answer)."""
    body = json.dumps(msg).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: application/json, text/event-stream\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n"
        f"mcp-session-id: {sid}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        return read_response(sock)


# A stdio MCP server of a few lines: answers the handshake and tools/list; ``tools/call`` makes it
# misbehave as ``MODE`` says. Its pid goes to ``PID_FILE``.
_STDIO_SERVER = r"""
import json, os, sys, time
MODE, PID_FILE = sys.argv[1], sys.argv[2]
open(PID_FILE, "w").write(str(os.getpid()))
def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n"); sys.stdout.flush()
for line in sys.stdin:
    msg = json.loads(line)
    method, id_ = msg.get("method"), msg.get("id")
    if id_ is None:
        continue
    if method == "initialize":
        if MODE == "stderr":
            # A flood on stderr: long lines, many lines, one line that never ends; then stderr closes.
            for i in range(400):
                os.write(2, b"L%d " % i + b"x" * 65536 + b"\n")
            os.write(2, b"endless " + b"y" * (8 << 20))
            os.close(2)
        send({"jsonrpc": "2.0", "id": id_, "result": {"protocolVersion": "2025-06-18",
              "capabilities": {"tools": {}}, "serverInfo": {"name": "odd", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": id_, "result": {"tools": [{"name": "act", "inputSchema": {"type": "object"}}]}})
    elif method == "tools/call":
        if MODE == "close-stdout":
            sys.stdout.close(); os.close(1)
            time.sleep(60)  # alive, silent (the gateway stops it long before)
            sys.exit(0)
        send({"jsonrpc": "2.0", "id": id_, "result": {"content": [{"type": "text", "text": "ok"}]}})
    else:
        send({"jsonrpc": "2.0", "id": id_, "result": {}})
"""


def _stdio_gateway(tmp_path: Path, gateway: Any, mode: str) -> tuple[Gateway, int, Path]:
    script = tmp_path / "odd_server.py"
    script.write_text(_STDIO_SERVER)
    pid_file = tmp_path / f"odd-{mode}.pid"
    port = free_port()
    target = {"name": "odd", "stdio": {"cmd": sys.executable, "args": [str(script), mode, str(pid_file)]}}
    return gateway(mcp_config(port, [target])), port, pid_file


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


def test_a_stdio_server_that_closes_stdout_fails_its_calls_at_once(tmp_path: Path, gateway: Any) -> None:
    """The server closes its stdout on tools/call and lives on. Before, the call waited for the
    process to exit (the MCP call timeout, 300 s); now it fails at once and the process is stopped."""
    gw, port, pid_file = _stdio_gateway(tmp_path, gateway, "close-stdout")
    sid = _session(port)
    pid = int(pid_file.read_text())
    started = time.monotonic()
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "act", "arguments": {}}}
    status, _, raw = _post_within(port, call, sid, 15.0)
    assert time.monotonic() - started < 10.0
    assert status == 200 and b"closed its stdout" in raw, raw
    wait_for(lambda: _gone(pid), 10, "the server to be stopped")
    # The next call starts the server again.
    status, _, raw = _post_within(port, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, sid, 15.0)
    assert status == 200 and b'"act"' in raw, raw
    assert gw.alive()


def test_a_stdio_server_cannot_flood_the_gateway_log_from_stderr(tmp_path: Path, gateway: Any) -> None:
    """400 lines of 64 KiB and an 8 MiB line without an end, at once: the log gets each line cut
    to 2 KiB, at most 50 lines a second, and a count of what was dropped. Before, all 34 MB."""
    gw, port, _ = _stdio_gateway(tmp_path, gateway, "stderr")
    sid = _session(port)
    status, _, raw = _post_within(port, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid, 15.0)
    assert status == 200 and b'"act"' in raw, raw
    wait_for(lambda: "stderr lines dropped" in gw.output(), 15, "the count of dropped stderr lines")
    lines = [line for line in gw.output().splitlines() if "mcp odd: " in line]
    assert lines and len(lines) <= 2 * 50 + 2, len(lines)
    assert max(len(line) for line in lines) < 4096
    assert any("more bytes dropped" in line for line in lines)
    assert len(gw.output()) < 1 << 20


class _DocumentServer:
    """Serves an OpenAPI document (``body``, after ``delay`` seconds) or, with ``status`` not 200,
    an error; counts the fetches."""

    def __init__(self, body: bytes = b"", status: int = 200, delay: float = 0.0) -> None:
        self.body, self.status, self.delay = body, status, delay
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                server.fetches += 1
                time.sleep(server.delay)
                body = server.body if server.status == 200 else b"no"
                self.send_response(server.status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/openapi"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _openapi_document(paths: int) -> dict[str, Any]:
    def operation(n: int) -> dict[str, Any]:  # (objects of their own: YAML would share them by anchors)
        parameters = [
            {"name": f"p{i}", "in": "query", "description": "a parameter " * 4, "schema": {"type": "string"}}
            for i in range(6)
        ]
        return {"operationId": f"op{n}", "parameters": parameters, "responses": {"200": {"description": "ok"}}}

    return {
        "openapi": "3.0.0",
        "info": {"title": "big", "version": "1"},
        "paths": {f"/r{n}": {"get": operation(n)} for n in range(paths)},
    }


def _openapi_gateway(gateway: Any, document: _DocumentServer) -> tuple[Gateway, int]:
    port = free_port()
    api = f"http://127.0.0.1:{document.port}"
    target = {"name": "api", "openapi": {"host": api, "schema": {"url": document.url}}}
    routes = [
        {
            "name": "ping",
            "matches": [{"path": {"exact": "/ping"}}],
            "policies": {"directResponse": {"status": 200, "body": "pong"}},
        },
        {"name": "mcp", "backends": [{"mcp": {"targets": [target]}}]},
    ]
    return gateway(binds(port, routes)), port


def _initialize(port: int) -> tuple[int, bytes]:
    body = json.dumps(_INIT).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: application/json, text/event-stream\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.encode() + body)
        status, _, raw = read_response(sock)
    return status, raw


def test_openapi_document_sessions_share_one_fetch(tmp_path: Path, gateway: Any) -> None:
    """Eight sessions start while a slow document server answers: one fetch, not eight."""
    document = _DocumentServer(json.dumps(_openapi_document(3)).encode(), delay=1.0)
    try:
        _, port = _openapi_gateway(gateway, document)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: _initialize(port), range(8)))
        assert all(status == 200 and b"REST API big" in raw for status, raw in results), results
        assert document.fetches == 1
    finally:
        document.close()


def test_a_failing_openapi_document_server_is_not_asked_for_every_session(tmp_path: Path, gateway: Any) -> None:
    """A document server answering 500: ten sessions in a row cost it one fetch (the next
    only after a few seconds), each session failing with the same clear error."""
    document = _DocumentServer(status=500)
    try:
        _, port = _openapi_gateway(gateway, document)
        for _ in range(10):
            status, raw = _initialize(port)
            assert b"OpenAPI document of api" in raw and b"answered 500" in raw, (status, raw)
        assert document.fetches == 1
    finally:
        document.close()


def test_a_large_yaml_openapi_document_is_parsed_off_the_event_loop(tmp_path: Path, gateway: Any) -> None:
    """A 2.5 MB YAML document takes seconds to parse. Before, the worker's event loop did it
    and every other request of the worker waited; now a thread does, and a request to another
    route is answered meanwhile."""
    body = yaml.safe_dump(_openapi_document(2600)).encode()
    assert 2_000_000 < len(body) < 4 << 20
    document = _DocumentServer(body)
    try:
        _, port = _openapi_gateway(gateway, document)
        with ThreadPoolExecutor(1) as pool:
            init = pool.submit(_initialize, port)
            wait_for(lambda: document.fetches == 1, 10, "the document fetch")
            waits = []  # a request to the other route every 50 ms until initialize is answered
            deadline = time.monotonic() + 60
            while not init.done() and time.monotonic() < deadline:
                started = time.monotonic()
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    sock.sendall(f"GET /ping HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n".encode())
                    ping, _, raw = read_response(sock)
                assert ping == 200 and raw == b"pong"
                waits.append(time.monotonic() - started)
                time.sleep(0.05)
            status, raw = init.result(timeout=60)
        assert status == 200 and b"REST API big" in raw, raw[:300]
        assert waits and max(waits) < 0.5, waits
    finally:
        document.close()


def test_an_openapi_yaml_document_over_the_bound_is_refused(tmp_path: Path, gateway: Any) -> None:
    """YAML over 4 MiB is not parsed (JSON, parsed far faster, may be up to 16 MiB)."""
    document = _DocumentServer(b"openapi: 3.0.0\n" + b"# padding\n" * (450 * 1024))
    try:
        _, port = _openapi_gateway(gateway, document)
        status, raw = _initialize(port)
        assert b"larger than" in raw, (status, raw)
    finally:
        document.close()


def _slow_upload(port: int, path: str, pauses: list[float]) -> int:
    """A POST whose 40-byte body comes in ``len(pauses)`` pieces, each after its pause."""
    piece = 10
    total = piece * len(pauses)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {total}\r\n\r\n".encode())
        for pause in pauses:
            time.sleep(pause)
            try:
                sock.sendall(b"z" * piece)
            except OSError:
                break  # the gateway answered (504) and closed
        status, _, _ = read_response(sock)
    return status


def test_a_slow_client_upload_does_not_get_backends_evicted(gateway: Any, upstream: Any) -> None:
    """Two healthy backends, evicted for 30 s on one failure, under backendRequestTimeout 1s. A
    client that sends its body slower than that gets its 504, and then one that completes its
    body just before the deadline (a backend answering in 0.5 s cannot make it); neither is the
    backend's failure: both backends still serve. Before, each such request evicted the backend
    it went to."""
    a, b = upstream("a"), upstream("b")
    port = free_port()
    health = {"eviction": {"duration": "30s"}}
    route = {
        "policies": {"timeout": {"backendRequestTimeout": "1s"}},
        "backends": [
            {"host": a.address, "policies": {"health": health}},
            {"host": b.address, "policies": {"health": health}},
        ],
    }
    gateway(binds(port, [route]))

    def both_serve() -> None:
        seen = set()
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                status, headers, _ = read_response(sock)
            assert status == 200
            seen.add(headers["x-upstream"])
        assert seen == {"a", "b"}, f"only {seen} served: the other backend was evicted"

    assert _slow_upload(port, "/echo", [0.0, 0.2, 1.5, 0.1]) == 504
    both_serve()
    assert _slow_upload(port, "/slow?delay=0.5", [0.0, 0.3, 0.3, 0.2]) == 504
    both_serve()
    # A backend that is slow itself (the body came at once) is still evicted.
    assert _slow_upload(port, "/slow?delay=1.5", [0.0, 0.0, 0.0, 0.0]) == 504
    with pytest.raises(AssertionError, match="was evicted"):
        both_serve()
