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
from pathlib import Path
from typing import Any

from tests.integration.test_attack_upstreams import HostileMcp, _post, _session
from tests.support.gateway import Gateway, free_port, mcp_config, read_response, wait_for


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
