"""The playgrounds' requests, made by the admin plane to a route of the running config on this host
and streamed back to the page (the page's origin is the admin plane: calling a data-plane
listener itself would be cross-origin, and an MCP endpoint refuses foreign Origins).

No address comes from the page. It names a route by its id (``topology.py``) and a path under the
route's base; the port, the Host and the headers the route's matches need come from the running
config. Only MCP, A2A and LLM routes can be called, only with the headers a playground needs
(``_PASSED``), a path of plain characters (no dot segments, no encoded bytes) and the admin
plane's body limit. The answer's content type travels in ``x-upstream-content-type``; the
response itself is ``text/plain`` with ``Content-Security-Policy: sandbox`` so that no answer of
a route can run as a page of the admin origin.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from agentgateway.admin import loopback
from agentgateway.admin.http import AdminResponse
from agentgateway.admin.topology import HTTP, find_route

# Request headers a playground may set (an MCP session, its protocol version and method, a
# bearer token for a route that asks for one, an A2A version, SSE resumption).
_PASSED = frozenset(
    (
        "accept",
        "content-type",
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
        "a2a-version",
        "a2a-extensions",
    )
)
# Response headers the page sees (prefixed with x-upstream-).
_SHOWN = ("content-type", "mcp-session-id", "mcp-protocol-version", "www-authenticate", "retry-after")
_PATH = re.compile(r"^(/[A-Za-z0-9._~:@!$&'()*+,;=-]*)*$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")


def _error(status: int, message: str) -> AdminResponse:
    return AdminResponse(status, orjson.dumps({"error": message}), "application/json")


def _suffix_ok(suffix: str) -> bool:
    if not _PATH.match(suffix) or "//" in suffix:
        return False
    return all(segment not in (".", "..") for segment in suffix.split("/"))


async def call(picture: dict[str, Any], body: dict[str, Any]) -> AdminResponse:
    route = find_route(picture, str(body.get("route", "")))
    if route is None:
        return _error(404, "no such route in the running config")
    target = route.get("call")
    if route["kind"] == HTTP or target is None:
        return _error(400, "this route has no playground (only MCP, A2A and LLM routes whose matches can be built)")
    method = str(body.get("method", "POST")).upper()
    if method not in ("GET", "POST", "DELETE"):
        return _error(400, "method: GET, POST or DELETE")
    suffix = str(body.get("path", ""))
    if not _suffix_ok(suffix):
        return _error(400, "path: a plain path under the route (no dot segments, no escapes)")
    headers: list[tuple[str, str]] = [("host", str(target["host"]))]
    names = {"host"}
    for name, value in target["headers"]:
        headers.append((name, value))
        names.add(name)
    given = body.get("headers") or {}
    if not isinstance(given, dict):
        return _error(400, "headers: an object")
    for name, value in given.items():
        name = str(name).lower()
        if name not in _PASSED or name in names:
            return _error(400, f"header {name!r} cannot be set from the playground")
        text = str(value)
        if not _HEADER_VALUE.match(text) or len(text) > 8192:
            return _error(400, f"header {name!r}: invalid value")
        headers.append((name, text))
    payload = body.get("body")
    data = (
        b"" if payload is None else (payload if isinstance(payload, str) else orjson.dumps(payload).decode()).encode()
    )
    path = (target["base"] + suffix) or "/"
    if target["query"]:
        path += "?" + target["query"]
    try:
        answer = await loopback.request(
            int(target["port"]),
            method,
            path,
            headers,
            data,
            tls_server_name=str(target["host"]).split(":")[0] if target["tls"] else None,
        )
    except loopback.LoopbackError as exc:
        return _error(502, str(exc))
    if answer.status < 200:  # an interim or upgrade answer is nothing a playground can use
        await answer.close()
        return _error(502, f"the route answered {answer.status}")
    shown = [(f"x-upstream-{name}", value) for name in _SHOWN if (value := answer.header(name)) is not None]
    return AdminResponse(
        answer.status,
        b"",
        "text/plain; charset=utf-8",
        headers=(*shown, ("content-security-policy", "sandbox"), ("x-upstream-status", str(answer.status))),
        stream=answer.body(),
    )
