"""An ``openapi`` target: the gateway itself plays the MCP server. ``initialize``, ``tools/list``
and ``tools/call`` are answered here; a call becomes one HTTP request to the REST service and its
answer the tool result (2xx: the body as text, and as ``structuredContent`` when it is a JSON
object; any other status: a tool error carrying the status and body, so the model sees why).

A document given by URL is fetched at first use, once for all the sessions that need it, parsed
in a thread, and kept for the life of the configuration (a reload fetches it again); after a
failure it is not fetched again for a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from agentgateway import __version__
from agentgateway.mcp import protocol
from agentgateway.mcp.config import McpTargetSpec
from agentgateway.mcp.openapi import OpenApiError, OpenApiTools, Operation
from agentgateway.mcp.protocol import McpError, Message
from agentgateway.mcp.upstream.base import PendingCall, RelatedSink, Response, UpstreamSession
from agentgateway.upstream.client import HttpClient, HttpClientError

log = logging.getLogger("agentgateway.mcp.openapi")

_CALL_TIMEOUT = 300.0
_FETCH_TIMEOUT = 30.0
_MAX_DOCUMENT = 16 * 1024 * 1024
# YAML parses at under 1 MB a second (a thread's worth of the worker's interpreter): bounded lower.
_MAX_YAML = 4 * 1024 * 1024
# After a failed fetch of a document, the time before it is fetched again: a dead or hostile
# document server is asked at most once in this long, not once for every new session.
_FETCH_BACKOFF = 5.0
_MAX_ANSWER = 16 * 1024 * 1024
_ACCEPT = (b"accept", b"application/json, */*;q=0.5")


class OpenApiSession(UpstreamSession):
    def __init__(self, spec: McpTargetSpec, on_session_message: RelatedSink, client: HttpClient) -> None:
        super().__init__(spec, on_session_message)
        assert spec.http is not None
        self.client = client
        self.target = spec.http

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        sink: RelatedSink | None,
        timeout: float | None = None,
        track: Callable[[int], None] | None = None,
    ) -> Response:
        id_ = self._request_id(track)
        params = params or {}
        if method == "initialize":
            result = await self._initialize(params)
        elif method == "tools/list":
            result = {"tools": (await self._document()).tools()}
        elif method == "tools/call":
            try:
                async with asyncio.timeout(timeout or _CALL_TIMEOUT):
                    result = await self._call(params)
            except TimeoutError:
                raise McpError(
                    protocol.INTERNAL_ERROR, f"MCP target {self.name} did not answer tools/call in time"
                ) from None
        elif method == "ping":
            result = {}
        else:
            raise McpError(protocol.METHOD_NOT_FOUND, f"Method not found: {protocol.shown(method)}")
        return protocol.result(id_, result), None

    async def notify(self, method: str, params: dict[str, Any] | None) -> None:
        pass  # initialized, cancelled (a cancelled call's task is cancelled by its caller)

    async def respond(self, id_: Any, value: dict[str, Any] | None = None, err: McpError | None = None) -> None:
        pass  # this server never asks the client anything

    async def cancel(self, upstream_id: int, reason: str) -> None:
        pass

    # ------------------------------------------------------------------ the server's side

    async def _initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        document = await self._document()
        asked = params.get("protocolVersion")
        version = asked if asked in protocol.LEGACY_VERSIONS else protocol.LATEST_LEGACY
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": document.title, "version": document.version},
            "instructions": f"Tools of the REST API {document.title} (served by agentgateway {__version__}).",
        }

    async def _document(self) -> OpenApiTools:
        """The target's document. One fetch serves every session waiting for it (of this worker and
        configuration); after a failure none is made again for ``_FETCH_BACKOFF`` seconds, the
        sessions meanwhile failing with the same error."""
        spec = self.spec
        if spec.openapi is not None:
            return spec.openapi
        loop = asyncio.get_running_loop()
        failed = spec.openapi_failed
        if failed is not None and loop.time() < failed[0]:
            raise McpError(protocol.INTERNAL_ERROR, failed[1])
        fetch = spec.openapi_fetch
        if fetch is None:
            fetch = spec.openapi_fetch = loop.create_task(self._fetch_document())
            fetch.add_done_callback(_fetched)
        return await asyncio.shield(fetch)  # (one session giving up does not end it for the rest)

    async def _fetch_document(self) -> OpenApiTools:
        spec = self.spec
        assert spec.openapi_url is not None
        target, path = spec.openapi_url
        try:
            try:
                response = await self.client.request(target, b"GET", path, [_ACCEPT], timeout=_FETCH_TIMEOUT)
                body = await response.read(_MAX_DOCUMENT)
            except HttpClientError as exc:
                raise OpenApiError(exc.message) from None
            if not 200 <= response.status < 300:
                raise OpenApiError(f"{target.label} answered {response.status}")
            # Parsed in a thread: a large YAML document took seconds of the worker's event loop.
            tools = await asyncio.to_thread(_parse_document, body)
        except OpenApiError as exc:
            message = f"OpenAPI document of {self.name}: {exc}"
            spec.openapi_failed = (asyncio.get_running_loop().time() + _FETCH_BACKOFF, message)
            log.warning("%s (not fetched again for %gs)", message, _FETCH_BACKOFF)
            raise McpError(protocol.INTERNAL_ERROR, message) from None
        finally:
            spec.openapi_fetch = None
        # Kept on the compiled target: every session of this configuration shares it.
        spec.openapi = tools
        spec.openapi_failed = None
        return tools

    async def _call(self, params: dict[str, Any]) -> dict[str, Any]:
        document = await self._document()
        name = params.get("name")
        operation = document.operations.get(name) if isinstance(name, str) else None
        if operation is None:
            raise McpError(protocol.INVALID_PARAMS, f"Unknown tool: {protocol.shown(name)}")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise McpError(protocol.INVALID_PARAMS, "tools/call arguments must be an object")
        try:
            http_method, path, arg_headers, body = operation.request(self._path_prefix() + document.prefix, arguments)
        except ValueError as exc:
            return _tool_error(f"invalid arguments for {operation.name}: {exc}")
        headers = [_ACCEPT]
        for header, value in arg_headers:
            if not _header_safe(header, value):
                return _tool_error(f"invalid arguments for {operation.name}: header {header!r} cannot be sent")
            headers.append((header.encode(), value.encode()))
        return await self._exchange(operation, http_method.encode(), path.encode(), headers, body)

    def _path_prefix(self) -> str:
        # The target's own path (host: http://api:8080/v2) comes before the document's server path.
        return self.spec.path.decode().rstrip("/")

    async def _exchange(
        self, operation: Operation, method: bytes, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes | None
    ) -> dict[str, Any]:
        try:
            response = await self.client.request(self.target, method, path, headers, body)
            answer = await response.read(_MAX_ANSWER)
        except HttpClientError as exc:
            # The service is down or slow: a tool error (the model may try again), logged here.
            log.warning("OpenAPI target %s: %s %s failed: %s", self.name, method.decode(), path.decode(), exc.message)
            return _tool_error(f"{operation.name}: the service could not be reached ({exc.message})")
        text = answer.decode("utf-8", "replace")
        if not 200 <= response.status < 300:
            return _tool_error(f"{operation.name}: HTTP {response.status}" + (f": {text}" if text else ""))
        result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": False}
        if b"json" in response.content_type:
            try:
                value = orjson.loads(answer)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, dict):
                result["structuredContent"] = value
        return result

    # ------------------------------------------------------------------ transport hooks (unused)

    async def _connect(self) -> None:
        pass

    async def _send(self, msg: Message, call: PendingCall | None) -> None:
        raise AssertionError("an openapi target answers every request itself")

    async def _close(self) -> None:
        pass

    async def _reset(self) -> None:
        pass


def _parse_document(body: bytes) -> OpenApiTools:
    """JSON (most documents served by URL) by orjson; YAML, far slower, only up to ``_MAX_YAML``."""
    stripped = body.lstrip()
    try:
        if stripped[:1] in (b"{", b"["):
            try:
                return OpenApiTools(orjson.loads(body))
            except orjson.JSONDecodeError:
                pass  # YAML that starts like JSON (a flow mapping)
        if len(body) > _MAX_YAML:
            raise OpenApiError(f"a YAML document larger than {_MAX_YAML} bytes is not parsed (JSON may be larger)")
        return OpenApiTools(msgspec.yaml.decode(body))
    except msgspec.DecodeError as exc:
        raise OpenApiError(str(exc)) from None


def _fetched(task: asyncio.Future[OpenApiTools]) -> None:
    if not task.cancelled():
        task.exception()  # (retrieved: the waiting sessions got it, or none was left waiting)


def _tool_error(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _header_safe(name: str, value: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_" for c in name) and not any(c in value for c in "\r\n\0")
