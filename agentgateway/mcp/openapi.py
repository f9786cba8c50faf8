"""A REST API described by OpenAPI 3, as MCP tools (agentgateway's ``openapi`` target).

Every operation with an ``operationId`` becomes a tool of that name. Its input schema is an object
with up to four parts, ``path``, ``query``, ``header`` and ``body`` (the JSON request body), each
holding the operation's parameters with their schemas (``body``: an application/json or ``+json``
body, or an application/octet-stream one as a base64 string); ``$ref``s into the document are inlined.
The description is the operation's description, or its summary. The document's single
``servers[]`` URL supplies the path prefix (the target's ``host`` says where to connect).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import orjson

from agentgateway.mcp.protocol import shown

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_PARTS = ("path", "query", "header")
_MAX_REF_DEPTH = 32
# JSON values the inlined schemas of one document's tools may hold in all. Each $ref is copied
# where it is used, so a schema whose properties name another that does the same (or a YAML
# alias) doubles per level: ten levels of eight such properties are a billion values, built in
# the worker's loop (a fetched document hangs the worker). No model reads tool schemas this big.
_MAX_INLINED = 250_000
_OCTET_STREAM = "application/octet-stream"
_GATEWAY_HEADERS = frozenset(
    {"accept", "content-type", "authorization", "host", "content-length", "transfer-encoding", "connection"}
)


class OpenApiError(Exception):
    """The document cannot be turned into tools (the reason names the spot)."""


class Parameter:
    """One declared parameter: where it goes, and what its schema lets a value be."""

    __slots__ = ("name", "part", "required", "types", "enum", "items")

    def __init__(self, name: str, part: str, required: bool, schema: dict[str, Any]) -> None:
        self.name = name
        self.part = part  # path, query or header
        self.required = required
        self.types = _types(schema)  # JSON types allowed; None: any scalar (or an array of them)
        enum = schema.get("enum")
        self.enum = enum if isinstance(enum, list) else None
        items = schema.get("items")
        self.items = Parameter(name, part, False, items) if isinstance(items, dict) else None

    def serialize(self, value: Any) -> list[str]:
        """The value as the text(s) sent (a query array: one per item); ValueError when the
        schema does not allow it, or when it has no text form that keeps to its place (an
        object's keys would become parameters of their own)."""
        if isinstance(value, list):
            if self.types is not None and "array" not in self.types:
                raise ValueError(f"{self.part} parameter {self.name} must be {_kinds(self.types)}, not an array")
            texts = [(self.items or _ANY).text(item, f"an item of {self.part} parameter {self.name}") for item in value]
            if self.part == "query":
                return texts
            return [",".join(texts)]  # OpenAPI's "simple" style, for path and header arrays
        if self.types is not None and not self.types - {"array", "null"}:
            raise ValueError(f"{self.part} parameter {self.name} must be an array")
        return [self.text(value, f"{self.part} parameter {self.name}")]

    def text(self, value: Any, what: str) -> str:
        """A scalar value as text, checked against the schema's type and enum."""
        if isinstance(value, dict):
            raise ValueError(f"{what} cannot be an object (only strings, numbers and booleans are sent)")
        if isinstance(value, list) or value is None:
            raise ValueError(f"{what} must be {_kinds(self.types) if self.types else 'a string, number or boolean'}")
        types = self.types
        if types is not None and not any(_TYPE_CHECKS[t](value) for t in types if t in _TYPE_CHECKS):
            raise ValueError(f"{what} must be {_kinds(types)}, not {_json_type(value)}")
        if self.enum is not None and not any(type(value) is type(e) and value == e for e in self.enum):
            raise ValueError(f"{what} must be one of {shown(orjson.dumps(self.enum).decode())}")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer() and types is not None and "integer" in types:
            return str(int(value))
        return str(value)


class Operation:
    """One tool: how its arguments become an HTTP request."""

    __slots__ = ("name", "method", "path", "params", "body_media", "tool", "_declared")

    def __init__(
        self,
        name: str,
        method: str,
        path: str,
        params: list[Parameter],
        body_media: str | None,
        tool: dict[str, Any],
    ) -> None:
        self.name = name
        self.method = method.upper()
        self.path = path  # with {placeholders}
        self.params = params
        self.body_media = body_media  # the request body's media type (JSON, or bytes given as base64)
        self.tool = tool  # the MCP Tool object
        self._declared = {p.name for p in params if p.part == "path"}

    def request(self, prefix: str, arguments: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]], bytes | None]:
        """(method, path with query, headers, body bytes or None) for a call with ``arguments``;
        ValueError says which argument is wrong. Only declared parameters are read, each from
        its part (``path``, ``query``, ``header``) and checked against its schema."""
        given = {part: _part(arguments, part) for part in _PARTS}
        missing = [
            f"{p.part} parameter {p.name}"
            for p in self.params
            if (p.required or p.part == "path") and given[p.part].get(p.name) is None
        ]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        values: dict[str, str] = {}
        query: list[tuple[str, str]] = []
        headers: list[tuple[str, str]] = []
        for p in self.params:
            value = given[p.part].get(p.name)
            if value is None:
                continue  # absent (or null): not sent
            texts = p.serialize(value)
            if p.part == "path":
                problem = path_value_problem(texts[0])
                if problem:
                    raise ValueError(f"path parameter {p.name} {problem}")
                values[p.name] = texts[0]
            elif p.part == "query":
                query += [(p.name, text) for text in texts]
            else:
                headers.append((p.name, texts[0]))
        path = _PLACEHOLDER.sub(lambda m: self._segment(m.group(1), values), self.path)
        target = prefix.rstrip("/") + path
        if query:
            target += "?" + urlencode(query)
        body = None
        if self.body_media is not None and "body" in arguments:
            body = _encode_body(self.body_media, arguments["body"])
            headers.append(("content-type", self.body_media))
        return self.method, target, headers, body

    def _segment(self, name: str, values: dict[str, str]) -> str:
        if name not in self._declared:
            raise ValueError(f"the document uses path parameter {{{name}}} without declaring it")
        # Every byte but the unreserved ones escaped: '/', '?', '#', '%' (so "%2F" arrives as
        # "%252F", never as a '/') and the rest stay inside this one segment.
        return quote(values[name], safe="")


# JSON types a parameter's schema may name, and how a decoded JSON value is checked against each.
_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
_PLACEHOLDER = re.compile(r"\{([^}/]+)\}")
_MAX_DECODINGS = 4  # percent-decodings of a path value checked for dot segments


def _types(schema: dict[str, Any]) -> frozenset[str] | None:
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset((declared,))
    if isinstance(declared, list) and all(isinstance(t, str) for t in declared):
        return frozenset(declared)
    return None


def _kinds(types: frozenset[str]) -> str:
    names = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
             "array": "an array", "object": "an object", "null": "null"}  # fmt: skip
    return " or ".join(names.get(t, t) for t in sorted(types))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


_ANY = Parameter("", "", False, {})  # the items of an array whose schema says nothing of them


def path_value_problem(value: str) -> str | None:
    """Why a path parameter's value must not be sent, or None. Escaped whole, a value is one
    segment; but a service, or a proxy in front of it, may decode it (``%2E%2E`` and even
    ``%2F``) before it normalizes the path, and then ``..`` steps out of the operation's path
    (``/users/../files/admin`` is ``/files/admin``). So a value that would be read, after any
    number of decodings, as a dot segment (also Tomcat's ``..;x``), as nothing or as slashes
    only (``/users//files`` becomes ``/users/files``) is refused."""
    decoded = value
    for _ in range(_MAX_DECODINGS + 1):
        for piece in re.split(r"[/\\]", decoded):
            if piece.split(";", 1)[0] in (".", ".."):
                return "must not be or contain a '.' or '..' segment"
        if not decoded.strip("/\\"):
            return "must not be empty"
        if "%" not in decoded:
            return None
        decoded, before = unquote(decoded), decoded
        if decoded == before:
            return None
    return "is encoded too many times"


def _encode_body(media: str, value: Any) -> bytes:
    if media != _OCTET_STREAM:
        return orjson.dumps(value)
    if not isinstance(value, str):
        raise ValueError("body must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("body is not valid base64") from None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _part(arguments: dict[str, Any], part: str) -> dict[str, Any]:
    return _object(arguments.get(part))


class OpenApiTools:
    """The tools of one document and the server name/version it announces."""

    def __init__(self, document: Any) -> None:
        if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3"):
            raise OpenApiError("not an OpenAPI 3 document (no `openapi: 3.x` field)")
        self.document = document
        info = _object(document.get("info"))
        self.title = str(info.get("title") or "openapi")
        self.version = str(info.get("version") or "0")
        self.prefix = _server_prefix(document)
        self.operations: dict[str, Operation] = {}
        self._inlined = 0  # values built by ``inline`` so far (bounded by _MAX_INLINED)
        paths = document.get("paths")
        if not isinstance(paths, dict):
            raise OpenApiError("the document has no paths")
        for path, item in paths.items():
            if not isinstance(item, dict):
                continue
            shared = _list(item.get("parameters"))
            for method in _METHODS:
                op = item.get(method)
                if not isinstance(op, dict):
                    continue
                name = op.get("operationId")
                if not isinstance(name, str) or not name:
                    raise OpenApiError(f"{method.upper()} {path} has no operationId (every operation needs one)")
                if name in self.operations:
                    raise OpenApiError(f"operationId {name!r} is used twice")
                self.operations[name] = self._operation(name, method, str(path), shared, op)

    def _operation(self, name: str, method: str, path: str, shared: list[Any], op: dict[str, Any]) -> Operation:
        # Operation-level parameters override path-level ones of the same name and place.
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for param in [*shared, *_list(op.get("parameters"))]:
            param = self.resolve(param)
            if not (isinstance(param, dict) and param.get("in") in _PARTS and isinstance(param.get("name"), str)):
                continue
            if param["in"] == "header" and param["name"].lower() in _GATEWAY_HEADERS:
                continue  # OpenAPI ignores these as parameters; the gateway writes them itself
            merged[(param["in"], param["name"])] = param
        properties: dict[str, Any] = {}
        required_parts: list[str] = []
        declared: list[Parameter] = []
        for part in _PARTS:
            params = [p for (where, _), p in merged.items() if where == part]
            if not params:
                continue
            props = {}
            for p in params:
                schema = dict(self.inline(p.get("schema") or {"type": "string"}))
                declared.append(Parameter(p["name"], part, bool(p.get("required")) or part == "path", schema))
                if p.get("description") and "description" not in schema:
                    schema["description"] = p["description"]
                props[p["name"]] = schema
            required = [p["name"] for p in params if p.get("required") or part == "path"]
            properties[part] = {"type": "object", "properties": props, **({"required": required} if required else {})}
            if required:
                required_parts.append(part)
        body_media = None
        body = self.resolve(op.get("requestBody"))
        if isinstance(body, dict):
            content = _object(body.get("content"))
            body_media = next((m for m in content if m == "application/json" or m.endswith("+json")), None)
            if body_media is not None:
                body_schema = _object(content[body_media]).get("schema")
                properties["body"] = self.inline(body_schema or {"type": "object"})
            elif _OCTET_STREAM in content:
                body_media = _OCTET_STREAM
                properties["body"] = {"type": "string", "contentEncoding": "base64"}
            if body_media is not None and body.get("required"):
                required_parts.append("body")
        input_schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required_parts:
            input_schema["required"] = required_parts
        description = op.get("description") or op.get("summary") or f"{method.upper()} {path}"
        tool: dict[str, Any] = {"name": name, "description": str(description), "inputSchema": input_schema}
        if isinstance(op.get("summary"), str):
            tool["title"] = op["summary"][:64]
        return Operation(name, method, path, declared, body_media, tool)

    def resolve(self, node: Any, depth: int = 0) -> Any:
        """Follow a ``$ref`` (local to the document) to what it names."""
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            if depth > _MAX_REF_DEPTH:
                raise OpenApiError("$ref chain too deep")
            node = self._lookup(node["$ref"])
            depth += 1
        return node

    def inline(self, schema: Any, depth: int = 0) -> Any:
        """A schema with every local ``$ref`` replaced by what it names (recursive types are cut
        off at a depth, where they become a plain object)."""
        if depth > _MAX_REF_DEPTH:
            return {"type": "object"}
        self._inlined += 1
        if self._inlined > _MAX_INLINED:
            raise OpenApiError(
                f"the tools' schemas hold more than {_MAX_INLINED} values once their $refs are inlined "
                "(schemas that refer to others several times per level grow exponentially)"
            )
        if isinstance(schema, dict):
            if isinstance(schema.get("$ref"), str):
                return self.inline(self._lookup(schema["$ref"]), depth + 1)
            return {k: self.inline(v, depth + 1) for k, v in schema.items()}
        if isinstance(schema, list):
            return [self.inline(v, depth + 1) for v in schema]
        return schema

    def _lookup(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise OpenApiError(f"$ref {ref!r}: only references inside the document are supported")
        node: Any = self.document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise OpenApiError(f"$ref {ref!r} names nothing in the document")
            node = node[part]
        return node

    def tools(self) -> list[dict[str, Any]]:
        return [op.tool for op in self.operations.values()]


def _server_prefix(document: dict[str, Any]) -> str:
    servers = document.get("servers")
    if not servers:
        return ""
    if not isinstance(servers, list) or len(servers) != 1 or not isinstance(servers[0], dict):
        raise OpenApiError("the document must name exactly one server (servers[]) or none")
    url = str(servers[0].get("url") or "")
    return urlsplit(url).path if "://" in url else url
