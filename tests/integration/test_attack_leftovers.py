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
import socket
import threading
from pathlib import Path
from typing import Any

from tests.integration.test_attack_upstreams import HostileMcp, _post, _session
from tests.support.gateway import Gateway, free_port, mcp_config


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
