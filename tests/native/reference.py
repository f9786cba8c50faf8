"""Small pure-Python references for the native JSON-RPC scanner and SSE decoder.

They are written for clarity, straight from the rules (JSON-RPC 2.0 + our documented MCP choices,
and the WHATWG event-stream algorithm), and built on the standard `json` module; the differential
tests check that the native code agrees with them on generated input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
MAX_DEPTH = 128


class Absent:
    """Marks a member that is not in the message (unlike a member whose value is null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = Absent()


class RefJsonRpcError(Exception):
    def __init__(self, code: int, reason: str, id: Any = ABSENT) -> None:
        super().__init__(reason)
        self.code = code
        self.id = id  # the readable id (str or int), or ABSENT


@dataclass(frozen=True)
class RefEnvelope:
    kind: str
    id: Any  # str | int | None (null) | ABSENT
    method: str | None
    params: Any  # decoded params, or ABSENT
    error_code: int | None


class _Object(dict[str, Any]):
    """A decoded object that remembers which member names were repeated."""

    duplicates: frozenset[str]


_MEMBERS = frozenset(("jsonrpc", "id", "method", "params", "result", "error", "code", "message", "data"))


def _go_folded(name: str) -> str:
    """``name`` as Go's encoding/json compares names (ASCII case, ``ſ`` as s, ``K`` as k), and
    without trailing NULs, as segmentio/encoding before 0.5.4 (the Go SDK's first fix) read it."""
    return "".join({"\u017f": "s", "\u212a": "k"}.get(c, c.lower() if c.isascii() else c) for c in name.rstrip("\0"))


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)  # last value wins, as in `json.loads` of a nested payload
    seen: set[str] = set()
    repeated = set()
    for key, _ in pairs:
        if key in seen:
            repeated.add(key)
        seen.add(key)
        folded = _go_folded(key)
        if folded != key and folded in _MEMBERS:
            repeated.add(folded)  # another spelling of a member, to a case-insensitive peer
    obj.duplicates = frozenset(repeated)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


class _Pairs(list[tuple[str, Any]]):
    """An object with every member kept, repeats included."""


def _check_tree(value: Any) -> None:
    """Rejects what `json` accepts but we do not: lone surrogate escapes and deep nesting,
    anywhere, including in the values of repeated members that a dict would drop."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _has_surrogate(node):
                raise ValueError("lone surrogate")
        elif isinstance(node, list):
            if depth > MAX_DEPTH:
                raise ValueError("too deep")
            if isinstance(node, _Pairs):
                for key, item in node:
                    if _has_surrogate(key):
                        raise ValueError("lone surrogate")
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)


def loads(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
        _check_tree(json.loads(text, object_pairs_hook=_Pairs, parse_constant=_reject_constant))
        value = json.loads(text, object_pairs_hook=_object)
    except (ValueError, RecursionError) as e:
        raise RefJsonRpcError(PARSE_ERROR, f"parse error: {e}") from None
    return value


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_id(value: Any) -> bool:
    return type(value) is str or _is_int(value)


def envelope(message: Any) -> RefEnvelope:
    """Validates one decoded message."""
    if not isinstance(message, dict):
        raise RefJsonRpcError(INVALID_REQUEST, "not an object")
    assert isinstance(message, _Object)
    id_value = message.get("id", ABSENT)
    readable = id_value if _is_id(id_value) and "id" not in message.duplicates else ABSENT

    def invalid(reason: str) -> RefJsonRpcError:
        return RefJsonRpcError(INVALID_REQUEST, reason, readable)

    members = ("jsonrpc", "id", "method", "params", "result", "error")
    if any(m in message.duplicates for m in members):
        raise invalid("duplicate member")
    version = message.get("jsonrpc", ABSENT)
    if version is ABSENT:
        raise invalid("missing jsonrpc")
    if not (type(version) is str and version == "2.0"):
        raise invalid("wrong jsonrpc")
    if id_value is not ABSENT and id_value is not None and not _is_id(id_value):
        raise invalid("id type")

    method = message.get("method", ABSENT)
    result = message.get("result", ABSENT)
    error = message.get("error", ABSENT)
    if method is not ABSENT:
        if result is not ABSENT or error is not ABSENT:
            raise invalid("method with result/error")
        if type(method) is not str:
            raise invalid("method type")
        params = message.get("params", ABSENT)
        if params is not ABSENT and not isinstance(params, (dict, list)):
            raise invalid("params type")
        if id_value is ABSENT:
            return RefEnvelope("notification", ABSENT, method, params, None)
        if id_value is None:
            raise invalid("null id")
        return RefEnvelope("request", id_value, method, params, None)
    if result is not ABSENT and error is not ABSENT:
        raise invalid("result and error")
    if result is ABSENT and error is ABSENT:
        raise invalid("neither method nor response")
    if result is not ABSENT:
        if id_value is ABSENT:
            raise invalid("result without id")
        if id_value is None:
            raise invalid("null id")
        return RefEnvelope("result", id_value, None, ABSENT, None)
    if not isinstance(error, dict):
        raise invalid("error type")
    assert isinstance(error, _Object)
    if any(m in error.duplicates for m in ("code", "message", "data")):
        raise invalid("duplicate error member")
    code = error.get("code", ABSENT)
    if not (_is_int(code) and -(2**63) <= code < 2**63):
        raise invalid("error code")
    if type(error.get("message", ABSENT)) is not str:
        raise invalid("error message")
    return RefEnvelope("error", id_value, None, ABSENT, code)


def scan(data: bytes) -> RefEnvelope | list[Any]:
    """One message, or for a batch the list of its decoded elements."""
    value = loads(data)
    if isinstance(value, list):
        if not value:
            raise RefJsonRpcError(INVALID_REQUEST, "empty batch")
        return value
    return envelope(value)


# --- Server-sent events ------------------------------------------------------------------------


@dataclass(frozen=True)
class RefEvent:
    data: bytes
    event: str
    id: str | None


@dataclass(frozen=True)
class RefComment:
    text: bytes


@dataclass
class RefSseResult:
    items: list[RefEvent | RefComment]
    too_large: bool
    discarded: bool  # whether end of file dropped an unfinished line or event
    last_event_id: str | None
    retry: int | None


_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def decode_sse(stream: bytes, max_event_size: int = 1 << 24) -> RefSseResult:
    """Decodes a whole stream, then discards the unfinished tail as at end of file."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    *lines, tail = _LINE_BREAK.split(stream)
    items: list[RefEvent | RefComment] = []
    data = b""
    event_type = ""
    id_buffer = ""
    last_event_id = ""
    retry: int | None = None
    in_event = False

    def result(too_large: bool) -> RefSseResult:
        discarded = in_event or bool(tail)
        return RefSseResult(items, too_large, discarded, last_event_id or None, retry)

    for line in lines:
        if len(data) + len(line) > max_event_size:
            return result(True)
        if not line:
            in_event = False
            last_event_id = id_buffer
            if data:
                items.append(RefEvent(data[:-1], event_type or "message", last_event_id or None))
            data, event_type = b"", ""
            continue
        field, colon, value = line.partition(b":")
        if colon and value.startswith(b" "):
            value = value[1:]
        if not field and colon:
            items.append(RefComment(value))
            continue
        in_event = True
        if field == b"data":
            data += value + b"\n"
        elif field == b"event":
            event_type = value.decode("utf-8", "replace")
        elif field == b"id":
            if b"\0" not in value:
                id_buffer = value.decode("utf-8", "replace")
        elif field == b"retry" and value and all(0x30 <= b <= 0x39 for b in value) and int(value) < 2**64:
            retry = int(value)
    if len(data) + len(tail) > max_event_size:
        return result(True)
    return result(False)


def _field(name: bytes, value: bytes) -> bytes:
    return name + b":" + (b" " + value if value else b"") + b"\n"


def encode_sse(data: bytes, event: str | None = None, id: str | None = None, retry: int | None = None) -> bytes:
    out = []
    if event is not None:
        out.append(_field(b"event", event.encode()))
    if id is not None:
        out.append(_field(b"id", id.encode()))
    if retry is not None:
        out.append(_field(b"retry", str(retry).encode()))
    out.extend(_field(b"data", line) for line in _LINE_BREAK.split(data))
    return b"".join(out) + b"\n"
