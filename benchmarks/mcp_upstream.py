"""A fast streamable-HTTP MCP server for the ``mcp`` scenario: uvloop + httptools, answers as JSON.

    python -m benchmarks.mcp_upstream PORT [--fanout N] [--fanout-tools M]

Every target of the scenario talks to this one server, so that it never is what limits a
measurement. It speaks the 2025-03-26 … 2025-11-25 transport plainly: ``initialize`` opens a session
(``Mcp-Session-Id``), other POSTs must carry a known session id (400 without, 404 for an unknown one),
notifications get 202, GET gets 405 (no server-initiated stream), DELETE ends the session. Requests
are answered with ``application/json``, never SSE.

Paths:

- ``/mcp``: the call target. ``tools/list`` offers ``echo`` (and two more); ``tools/call echo``
  returns the ``text`` argument as text content, which lets the load generator check every answer.
- ``/t<i>/mcp`` for i < N: fan-out targets, each with M realistic tools (name, description, a
  JSON-schema input of a few properties), different names per target.
- ``GET /stats``: what the server has seen (JSON): requests by method, sessions opened, TCP
  connections accepted. It tells whether a proxy keeps its upstream connections and sessions alive.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
from collections import Counter
from typing import Any, cast

import httptools
import orjson
import uvloop

HOST = "127.0.0.1"
CALL_PATH = b"/mcp"
SERVER_NAME = "bench-upstream"
VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST = VERSIONS[-1]

# --- the tools --------------------------------------------------------------------------------------

CALL_TOOLS: list[dict[str, Any]] = [
    {
        "name": "echo",
        "description": "Return the given text unchanged.",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "Text to return"}},
            "required": ["text"],
        },
    },
    {
        "name": "add",
        "description": "Add two numbers.",
        "inputSchema": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
    {
        "name": "now",
        "description": "The server's clock, in seconds since the epoch.",
        "inputSchema": {"type": "object", "properties": {}},
    },
]

_VERBS = ("get", "list", "create", "update", "delete", "search", "archive", "export", "sync", "describe")
_NOUNS = ("issue", "ticket", "invoice", "document", "repository", "calendar_event", "customer", "report")
_PROPERTIES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("id", {"type": "string", "description": "Identifier of the {noun}, as returned by list_{noun}"}),
    ("query", {"type": "string", "description": "Free-text filter; supports quoted phrases and -exclusions"}),
    ("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20, "description": "Page size"}),
    ("include_archived", {"type": "boolean", "default": False, "description": "Also match archived items"}),
    ("fields", {"type": "array", "items": {"type": "string"}, "description": "Fields to return"}),
    ("since", {"type": "string", "format": "date-time", "description": "Only items changed after this"}),
)


def fanout_tools(target: int, count: int) -> list[dict[str, Any]]:
    """``count`` tools shaped like a real server's (about 600 bytes each), named differently per target."""
    tools: list[dict[str, Any]] = []
    names = itertools.islice(itertools.cycle(itertools.product(_NOUNS, _VERBS)), count)
    for index, (noun, verb) in enumerate(names):
        picked = [_PROPERTIES[(index + k) % len(_PROPERTIES)] for k in range(2 + index % 3)]
        properties = {
            name: {k: (v.format(noun=noun) if isinstance(v, str) else v) for k, v in schema.items()}
            for name, schema in picked
        }
        tools.append(
            {
                "name": f"{verb}_{noun}_{index // len(_VERBS) // len(_NOUNS)}_{target}",
                "title": f"{verb.capitalize()} {noun.replace('_', ' ')}",
                "description": (
                    f"{verb.capitalize()} a {noun.replace('_', ' ')} in the workspace of service {target}. "
                    "Respects the caller's permissions; returns the affected items as JSON."
                ),
                "inputSchema": {
                    "type": "object",
                    "properties": properties,
                    "required": [picked[0][0]],
                    "additionalProperties": False,
                },
                "annotations": {"readOnlyHint": verb in ("get", "list", "search", "describe", "export")},
            }
        )
    return tools


# --- the protocol -----------------------------------------------------------------------------------


def _response(status: bytes, body: bytes = b"", extra: bytes = b"", close: bool = False) -> bytes:
    head = b"HTTP/1.1 %s\r\nContent-Length: %d\r\n" % (status, len(body))
    if body:
        head += b"Content-Type: application/json\r\n"
    return head + extra + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body


def _error(message_id: Any, code: int, message: str) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": message_id, "error": {"code": code, "message": message}})


class Server:
    """State shared by every connection: the tool lists (already encoded), sessions, counters."""

    def __init__(self, fanout: int, fanout_tools_per_target: int) -> None:
        self.tools_json: dict[bytes, bytes] = {CALL_PATH: orjson.dumps({"tools": CALL_TOOLS})}
        for target in range(fanout):
            tools = fanout_tools(target, fanout_tools_per_target)
            self.tools_json[b"/t%d/mcp" % target] = orjson.dumps({"tools": tools})
        self.sessions: set[bytes] = set()
        self.counts: Counter[str] = Counter()

    def initialize(self, message_id: Any, params: dict[str, Any]) -> tuple[bytes, bytes]:
        requested = params.get("protocolVersion")
        version = requested if requested in VERSIONS else LATEST
        session = os.urandom(16).hex().encode()
        self.sessions.add(session)
        self.counts["sessions"] += 1
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": SERVER_NAME, "version": "1.0.0"},
        }
        body = orjson.dumps({"jsonrpc": "2.0", "id": message_id, "result": result})
        return body, session

    def handle_post(self, path: bytes, session: bytes | None, body: bytes) -> bytes:
        """The whole HTTP response to one POST."""
        tools_json = self.tools_json.get(path)
        if tools_json is None:
            return _response(b"404 Not Found")
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _response(b"400 Bad Request", _error(None, -32700, "Parse error"))
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _response(b"400 Bad Request", _error(None, -32600, "Invalid request"))
        method = message.get("method")
        self.counts[str(method) if method is not None else "(response)"] += 1
        message_id = message.get("id")
        if method == "initialize":
            answer, new_session = self.initialize(message_id, message.get("params") or {})
            return _response(b"200 OK", answer, b"Mcp-Session-Id: %s\r\n" % new_session)
        if session is None:
            return _response(b"400 Bad Request", _error(message_id, -32600, "Mcp-Session-Id required"))
        if session not in self.sessions:
            return _response(b"404 Not Found", _error(message_id, -32001, "Session not found"))
        if "id" not in message or method is None:  # a notification, or an answer to us
            return _response(b"202 Accepted")
        if method == "tools/call":
            return self.call(message_id, message.get("params") or {})
        if method == "tools/list":
            head = b'{"jsonrpc":"2.0","id":%s,"result":' % orjson.dumps(message_id)
            return _response(b"200 OK", head + tools_json + b"}")
        if method == "ping":
            return _response(b"200 OK", orjson.dumps({"jsonrpc": "2.0", "id": message_id, "result": {}}))
        return _response(b"200 OK", _error(message_id, -32601, f"Method not found: {method}"))

    def call(self, message_id: Any, params: dict[str, Any]) -> bytes:
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if name == "echo" and isinstance(arguments.get("text"), str):
            result: dict[str, Any] = {"content": [{"type": "text", "text": arguments["text"]}]}
        elif name == "add":
            total = float(arguments.get("a", 0)) + float(arguments.get("b", 0))
            result = {"content": [{"type": "text", "text": repr(total)}]}
        elif name == "now":
            result = {"content": [{"type": "text", "text": repr(asyncio.get_running_loop().time())}]}
        else:
            return _response(b"200 OK", _error(message_id, -32602, f"Unknown tool: {name}"))
        return _response(b"200 OK", orjson.dumps({"jsonrpc": "2.0", "id": message_id, "result": result}))

    def stats(self) -> bytes:
        return _response(b"200 OK", orjson.dumps(dict(self.counts)))


class Connection(asyncio.Protocol):
    """One client connection: keep-alive, requests answered in order."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.session: bytes | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.server.counts["connections"] += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_response(b"400 Bad Request", close=True))
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.session = None
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 14 and name.lower() == b"mcp-session-id":
            self.session = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        if method == b"POST":
            answer = self.server.handle_post(path, self.session, b"".join(self.body))
        elif method == b"GET" and path == b"/stats":
            answer = self.server.stats()
        elif method == b"GET":
            answer = _response(b"405 Method Not Allowed", extra=b"Allow: POST, DELETE\r\n")
        elif method == b"DELETE" and self.session is not None:
            self.server.sessions.discard(self.session)
            answer = _response(b"200 OK")
        else:
            answer = _response(b"405 Method Not Allowed", extra=b"Allow: POST, DELETE\r\n")
        if self.parser.should_keep_alive():
            transport.write(answer)
        else:
            transport.write(answer.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, fanout: int, tools_per_target: int) -> None:
    state = Server(fanout, tools_per_target)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(state), HOST, port, backlog=4096, reuse_address=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mcp_upstream", description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--fanout", type=int, default=0, metavar="N", help="fan-out targets /t0/mcp … (0)")
    parser.add_argument("--fanout-tools", type=int, default=50, metavar="M", help="tools per fan-out target (50)")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.fanout, args.fanout_tools))


if __name__ == "__main__":
    main()
