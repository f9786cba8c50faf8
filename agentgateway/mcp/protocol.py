"""MCP and JSON-RPC vocabulary shared by the gateway's MCP modules: versions, error codes, message
builders. Messages are handled as dicts decoded with orjson; this module keeps their shape in one
place."""

from __future__ import annotations

from typing import Any, Literal

import orjson

# Protocol revisions, oldest first. Legacy revisions use the initialize handshake and sessions;
# modern revisions are stateless with a per-request _meta envelope.
LEGACY_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS = ("2026-07-28",)
LATEST_LEGACY = LEGACY_VERSIONS[-1]
LATEST_MODERN = MODERN_VERSIONS[-1]

# JSON-RPC and MCP error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RESOURCE_NOT_FOUND = -32002
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022

# HTTP status for JSON-RPC errors on the modern transport (the spec's table).
ERROR_HTTP_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

# Keys of the modern per-request envelope in params._meta.
META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

# Methods whose target is named in params: the parameter holding the (prefixed) name.
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
ListKind = Literal["tools", "prompts", "resources", "resourceTemplates"]
LIST_METHODS: dict[str, ListKind] = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
}

Message = dict[str, Any]

# The methods of both MCP eras a client may send, and the notifications: what a metrics label may
# name (any other method is counted as "unknown", so a client cannot mint label values).
KNOWN_METHODS = frozenset(
    (
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "subscriptions/listen",
        "completion/complete",
        "logging/setLevel",
        "roots/list",
        "sampling/createMessage",
        "elicitation/create",
        "tasks/get",
        "tasks/list",
        "tasks/result",
        "tasks/cancel",
        "tasks/update",
        "tasks/resubscribe",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/message",
        "notifications/roots/list_changed",
        "notifications/resources/updated",
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
        "notifications/elicitation/complete",
        "notifications/subscriptions/acknowledged",
        "notifications/tasks/status",
    )
)

# Characters of client input (a method, a tool name, a URI) quoted in an error message at most.
SHOWN_MAX = 200


def shown(value: object) -> str:
    """``value`` as text for an error message, cut to ``SHOWN_MAX`` characters: an answer must not
    echo a client's 100 KB name back."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= SHOWN_MAX else f"{text[:SHOWN_MAX]}… ({len(text)} characters)"


class RawJson:
    """A result object already serialized (a merged list): embedded in the answer as it is."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


class McpError(Exception):
    """A JSON-RPC error to answer with (code, message, optional data)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def error_object(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def request(id_: Any, method: str, params: dict[str, Any] | None = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: dict[str, Any] | None = None) -> Message:
    msg: Message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def result(id_: Any, value: dict[str, Any] | RawJson) -> Message:
    return {"jsonrpc": "2.0", "id": id_, "result": orjson.Fragment(value.raw) if isinstance(value, RawJson) else value}


def error(id_: Any, err: McpError) -> Message:
    msg: Message = {"jsonrpc": "2.0", "id": id_, "error": err.error_object()}
    return msg


def error_from_message(msg: Message) -> McpError:
    """The error a server answered. JSON-RPC's is an object with an integer code and a string
    message; what a server sends in their place (a string code, ``1e400``, a list) is told as an
    internal error, not raised while reading it."""
    err = msg.get("error")
    if not isinstance(err, dict):
        return McpError(INTERNAL_ERROR, "error")
    code = err.get("code", INTERNAL_ERROR)
    message = err.get("message", "error")
    return McpError(
        code if type(code) is int else INTERNAL_ERROR,
        message if isinstance(message, str) else "error",
        err.get("data"),
    )


def dumps(msg: Message) -> bytes:
    return orjson.dumps(msg)


def is_request(msg: Message) -> bool:
    return "method" in msg and "id" in msg


def is_notification(msg: Message) -> bool:
    return "method" in msg and "id" not in msg


def is_response(msg: Message) -> bool:
    return "method" not in msg and ("result" in msg or "error" in msg)


def version_key(version: str) -> str:
    """Versions are dates: string order is time order."""
    return version


class Interned:
    """Equal JSON objects kept once: what every session of a kind holds the same (a client's
    ``initialize`` params, a target's handshake answer) is one shared object, not one copy per
    session. Holds at most ``limit`` distinct values (the oldest is forgotten first). What it
    returns is shared: it must never be modified."""

    __slots__ = ("_values", "_limit")

    def __init__(self, limit: int = 1024) -> None:
        self._values: dict[bytes, dict[str, Any]] = {}
        self._limit = limit

    def __call__(self, value: dict[str, Any]) -> dict[str, Any]:
        try:
            key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return value
        found = self._values.get(key)
        if found is not None:
            return found
        if len(self._values) >= self._limit:
            del self._values[next(iter(self._values))]
        self._values[key] = value
        return value
