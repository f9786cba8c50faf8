"""Attacks on MCP session ids through the daemon: an ended session brought back, a session used by
another identity, tampered ids, and the lifetime of a session served by several workers. The
session's one target is an OpenAPI document served by the gateway itself (a session costs no
upstream handshake, so thousands are cheap, as they would be for an attacker)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gateway import ResponseReader, free_port, mcp_config, wait_for

_DOCUMENT = {
    "openapi": "3.0.0",
    "info": {"title": "T", "version": "1"},
    "paths": {"/x": {"get": {"operationId": "getX"}}},
}
_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
_NOT_FOUND = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Session not found"}}


def _config(port: int, **mcp: Any) -> dict[str, Any]:
    # (The target's host is never called: tools/list is answered from the document.)
    config = mcp_config(port, [{"name": "api", "openapi": {"host": "127.0.0.1:9", "schema": {"inline": _DOCUMENT}}}])
    config["config"] = {"mcp": mcp}
    return config


class Conn:
    """One keep-alive HTTP/1.1 connection to the MCP endpoint, from ``source``."""

    def __init__(self, port: int, source: str = "127.0.0.1", key: str | None = None) -> None:
        self.port = port
        self.key = key
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
        self.reader = ResponseReader(self.sock)

    def send(
        self, method: str, token: str | None = None, msg: dict[str, Any] | None = None, key: str | None = None
    ) -> tuple[int, dict[str, str], Any]:
        body = json.dumps(msg).encode() if msg is not None else b""
        head = [f"{method} /mcp HTTP/1.1", f"host: 127.0.0.1:{self.port}", f"content-length: {len(body)}"]
        head.append("accept: application/json, text/event-stream" if method == "POST" else "accept: application/json")
        if msg is not None:
            head.append("content-type: application/json")
        key = key if key is not None else self.key
        if key:
            head.append(f"authorization: Bearer {key}")
        if token is not None:
            head.append(f"mcp-session-id: {token}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        status, headers, raw = self.reader.read()
        if headers.get("content-type") != "application/json":
            return status, headers, raw
        return status, headers, json.loads(raw)

    def initialize(self, key: str | None = None) -> str:
        status, headers, body = self.send("POST", msg=_INIT, key=key)
        assert status == 200, body
        return headers["mcp-session-id"]

    def lists(self, token: str, key: str | None = None) -> int:
        """The status of a tools/list in the session (200, or 404 for an unknown session)."""
        status, _, body = self.send("POST", token, _LIST, key)
        if status == 200:
            assert [t["name"] for t in body["result"]["tools"]] == ["getX"], body
        else:
            assert body == _NOT_FOUND, body
        return status

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def connection(port: int, source: str = "127.0.0.1", key: str | None = None) -> Iterator[Conn]:
    conn = Conn(port, source, key)
    try:
        yield conn
    finally:
        conn.close()


def test_an_ended_session_stays_ended_after_ten_thousand_more_end(gateway):
    """The worker remembered the last 10,000 ended sessions; the 10,001st ended made it forget
    the first, whose token then opened again: a client could bring back a session it (or the
    gateway) had ended by opening 10,001 sessions of its own (about 6 s here). Now a worker that
    forgot an ended session takes up no session as old from its token; sessions it serves go on."""
    port = free_port()
    # One session per client: each initialize ends the client's previous session (a revocation).
    gateway(_config(port, maxSessionsPerIdentity=1), workers=1)
    with connection(port) as attacker, connection(port, source="127.0.0.2") as other:
        deleted = attacker.initialize()
        assert attacker.lists(deleted) == 200
        status, _, _ = attacker.send("DELETE", deleted)
        assert status == 200
        assert attacker.lists(deleted) == 404
        live = other.initialize()  # another client's session, in use all along
        evicted = attacker.initialize()  # ended by the quota at the next initialize
        for _ in range(10_001):
            attacker.initialize()
        assert attacker.lists(deleted) == 404
        assert attacker.lists(evicted) == 404
        assert other.lists(live) == 200
        # New sessions are not affected.
        fresh = other.initialize()
        assert other.lists(fresh) == 200 and other.lists(live) == 404  # (quota 1: live ended)


def test_session_ids_open_only_for_their_identity(gateway):
    """A session id presented by another API key, without a key, or with a key for an anonymous
    session is unknown (404): for POST, GET and DELETE alike, and the DELETE of another identity
    ends nothing."""
    port = free_port()
    config = _config(port)
    config["binds"][0]["listeners"][0]["routes"][0]["policies"] = {
        "apiKey": {"mode": "optional", "keys": [{"key": "key-a"}, {"key": "key-b"}]}
    }
    gateway(config, workers=1)
    with connection(port) as conn:
        mine = conn.initialize(key="key-a")
        anonymous = conn.initialize(key="")
        for token, key in ((mine, "key-b"), (mine, ""), (anonymous, "key-a")):
            assert conn.lists(token, key=key) == 404
            status, _, body = conn.send("GET", token, key=key)
            assert (status, body) == (404, _NOT_FOUND)
            status, _, body = conn.send("DELETE", token, key=key)
            assert (status, body) == (404, _NOT_FOUND)
        assert conn.lists(mine, key="key-a") == 200
        assert conn.lists(anonymous, key="") == 200


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_tampered_session_ids_are_unknown(gateway):
    """Truncated, bit-flipped, padded, standard-alphabet, doubled and huge ids, and ids with
    control characters: each is an unknown session (404 with the same short answer) or a bad
    request, never a 500 or an answer naming the cause; the real session goes on."""
    port = free_port()
    gateway(_config(port), workers=1)
    with connection(port) as conn:
        token = conn.initialize()
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        flipped = [_b64(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :]) for i in (0, 12, len(raw) // 2, len(raw) - 1)]
        standard = base64.b64encode(raw).decode().rstrip("=")
        variants = [
            token[:-1],
            token[:16],
            token + "=" * (-len(token) % 4 or 4),
            token + "A",
            token + token,
            token.lower(),
            *flipped,
            "A" * 7000,
            "",
        ]
        if standard != token:
            variants.append(standard)
        for variant in variants:
            status, _, body = conn.send("POST", variant, _LIST)
            assert (status, body) == (404, _NOT_FOUND), variant
        for bad in (token[:10] + "\x01" + token[10:], token + "\x7f", token[:10] + "\xe9" + token[10:]):
            with connection(port) as other:
                status, _, body = other.send("POST", bad, _LIST)
            assert (status, body) == (404, _NOT_FOUND) or (status == 400 and b"session" not in body.lower()), bad
        assert conn.lists(token) == 200


def test_an_active_session_outlives_idle_copies_in_other_workers(gateway):
    """A session continued in another worker lives there as a copy. When the client's
    connections then went to one worker only, the copy in the other one idled out after
    sessionTtl and ended the session everywhere: an active session died (404) after sessionTtl
    on any gateway with more than one worker. Workers now tell each other which sessions they
    served, so a session ends only once idle in all of them (and then in all of them)."""
    port = free_port()
    gw = gateway(_config(port, sessionTtl="10s"), workers=2)
    with connection(port) as first:
        token = first.initialize()
    for _ in range(20):  # fresh connections: both workers serve (and hold) the session
        with connection(port) as conn:
            assert conn.lists(token) == 200
    deadline = time.monotonic() + 22  # over twice sessionTtl, and four of the workers' 5 s sweeps
    with connection(port) as keep:
        while time.monotonic() < deadline:
            assert keep.lists(token) == 200
            time.sleep(0.5)

    # Idle everywhere: it ends (the workers' notes of use do not keep each other's copies alive),
    # in every worker.
    wait_for(lambda: " idle for " in gw.output(), 30, "the idle session to end", interval=0.5)
    time.sleep(0.5)
    for _ in range(10):
        with connection(port) as conn:
            assert conn.lists(token) == 404


@pytest.mark.parametrize("same_key", [True, False])
def test_sessions_across_a_restart_follow_the_key(gateway, same_key):
    """With a configured SESSION_KEY a session continues after a restart (its token is
    self-contained); with another key it is unknown, like any forged id."""
    port = free_port()
    key = "11" * 32
    gw = gateway(_config(port), workers=1, env={"SESSION_KEY": key})
    with connection(port) as conn:
        token = conn.initialize()
        assert conn.lists(token) == 200
    gw.stop()
    gateway(_config(port), workers=1, env={"SESSION_KEY": key if same_key else "22" * 32})
    with connection(port) as conn:
        assert conn.lists(token) == (200 if same_key else 404)
