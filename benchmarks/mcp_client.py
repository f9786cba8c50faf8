"""A minimal synchronous MCP client over streamable HTTP, for the harness's own requests.

The harness opens the sessions the load generator then uses, checks that every target answers a
``tools/call`` correctly before and after it is measured, and times ``tools/list``. It needs no SDK:
one keep-alive ``http.client`` connection, JSON or SSE answers.
"""

from __future__ import annotations

import http.client
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchmarks.procs import BenchmarkError

PROTOCOL_VERSION = "2025-06-18"
# What the MCP spec asks a client to send; `JSON_ONLY` is what a client that cannot read SSE sends.
ACCEPT_BOTH = "application/json, text/event-stream"
JSON_ONLY = "application/json"
CLIENT_INFO = {"name": "agentgateway-benchmarks", "version": "1.0"}


@dataclass
class McpSession:
    """One MCP session on one keep-alive connection."""

    host: str
    port: int
    path: str
    accept: str = ACCEPT_BOTH
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    session_id: str | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _conn: http.client.HTTPConnection | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": self.accept, **self.extra_headers}
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    def _post(self, message: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._conn.request("POST", self.path, orjson.dumps(message), self.headers())
            response = self._conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise BenchmarkError(f"{self.url}: {message.get('method')} failed: {exc!r}") from exc
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, body

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request; return its result object, or raise with the error or HTTP status."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            message["params"] = params
        status, headers, body = self._post(message)
        if method == "initialize" and "mcp-session-id" in headers:
            self.session_id = headers["mcp-session-id"]
        answer = _answer(body, headers.get("content-type", ""), message["id"])
        if status != 200 or answer is None:
            raise BenchmarkError(f"{self.url}: {method} answered HTTP {status}: {body[:300]!r}")
        if "error" in answer:
            raise BenchmarkError(f"{self.url}: {method} failed: {answer['error']}")
        result = answer.get("result")
        if not isinstance(result, dict):
            raise BenchmarkError(f"{self.url}: {method} answered without a result: {body[:300]!r}")
        return result

    def notify(self, method: str) -> None:
        status, _, body = self._post({"jsonrpc": "2.0", "method": method})
        if status not in (200, 202):
            raise BenchmarkError(f"{self.url}: {method} answered HTTP {status}: {body[:300]!r}")

    def open(self) -> McpSession:
        """initialize + notifications/initialized."""
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        self.request("initialize", params)
        self.notify("notifications/initialized")
        return self

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def list_tools(self) -> list[dict[str, Any]]:
        tools = self.request("tools/list", {}).get("tools")
        if not isinstance(tools, list):
            raise BenchmarkError(f"{self.url}: tools/list answered without a tools list")
        return tools

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> McpSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _answer(body: bytes, content_type: str, message_id: int) -> dict[str, Any] | None:
    """The JSON-RPC answer with ``message_id`` in a JSON body or in an SSE stream's events."""
    if content_type.startswith("application/json"):
        candidates: list[bytes] = [body]
    elif content_type.startswith("text/event-stream"):
        candidates = [
            line[5:].strip() for line in body.replace(b"\r\n", b"\n").split(b"\n") if line.startswith(b"data:")
        ]
    else:
        return None
    for candidate in candidates:
        try:
            decoded = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        if isinstance(decoded, dict) and decoded.get("id") == message_id:
            return decoded
    return None


def upstream_stats(host: str, port: int) -> dict[str, int]:
    """The counters of ``benchmarks.mcp_upstream`` (GET /stats)."""
    conn = http.client.HTTPConnection(host, port, timeout=5.0)
    try:
        conn.request("GET", "/stats")
        response = conn.getresponse()
        decoded = orjson.loads(response.read())
    finally:
        conn.close()
    return {str(key): int(value) for key, value in decoded.items()}
