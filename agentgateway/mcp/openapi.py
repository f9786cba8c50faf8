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
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_PARTS = ("path", "query", "header")
_MAX_REF_DEPTH = 32
_OCTET_STREAM = "application/octet-stream"
_GATEWAY_HEADERS = frozenset(
    {"accept", "content-type", "authorization", "host", "content-length", "transfer-encoding", "connection"}
)


class OpenApiError(Exception):
    """The document cannot be turned into tools (the reason names the spot)."""


class Operation:
    """One tool: how its arguments become an HTTP request."""

    __slots__ = ("name", "method", "path", "params", "body_media", "tool")

    def __init__(
        self,
        name: str,
        method: str,
        path: str,
        params: dict[str, list[str]],
        body_media: str | None,
        tool: dict[str, Any],
    ) -> None:
        self.name = name
        self.method = method.upper()
        self.path = path  # with {placeholders}
        self.params = params  # part ("path", "query", "header") → parameter names
        self.body_media = body_media  # the request body's media type (JSON, or bytes given as base64)
        self.tool = tool  # the MCP Tool object

    def request(self, prefix: str, arguments: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]], bytes | None]:
        """(method, path with query, headers, body bytes or None) for a call with ``arguments``;
        ValueError says which argument is wrong."""
        path_args = _part(arguments, "path")
        missing = [name for name in self.params.get("path", []) if name not in path_args]
        if missing:
            raise ValueError(f"missing path parameter(s): {', '.join(missing)}")
        path = re.sub(r"\{([^}/]+)\}", lambda m: quote(_scalar(path_args[m.group(1)]), safe=""), self.path)
        query_args = _part(arguments, "query")
        query = [
            (name, _scalar(item))
            for name in self.params.get("query", [])
            if name in query_args and query_args[name] is not None
            for item in (query_args[name] if isinstance(query_args[name], list) else [query_args[name]])
        ]
        target = prefix.rstrip("/") + path
        if query:
            target += "?" + urlencode(query)
        header_args = _part(arguments, "header")
        headers = [(name, _scalar(header_args[name])) for name in self.params.get("header", []) if name in header_args]
        body = None
        if self.body_media is not None and "body" in arguments:
            body = _encode_body(self.body_media, arguments["body"])
            headers.append(("content-type", self.body_media))
        return self.method, target, headers, body


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


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
        names: dict[str, list[str]] = {}
        for part in _PARTS:
            params = [p for (where, _), p in merged.items() if where == part]
            if not params:
                continue
            names[part] = [p["name"] for p in params]
            props = {}
            for p in params:
                schema = dict(self.inline(p.get("schema") or {"type": "string"}))
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
        return Operation(name, method, path, names, body_media, tool)

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
