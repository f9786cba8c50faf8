"""Legacy HTTP+SSE MCP servers (2024-11-05): a GET opens an event stream whose first event names
the URL to POST messages to; every server message, answers included, arrives on that stream.
The session lives as long as the stream: if it ends, the next call opens a new stream and
initializes again."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urljoin, urlsplit

import orjson

from agentgateway._native import SseDecoder
from agentgateway.mcp import protocol
from agentgateway.mcp.config import McpTargetSpec
from agentgateway.mcp.protocol import McpError, Message
from agentgateway.mcp.upstream.base import PendingCall, RelatedSink, UpstreamSession
from agentgateway.upstream.client import ClientResponse, HttpClient, HttpClientError

log = logging.getLogger("agentgateway.mcp.sse")

_MAX_EVENT = 64 * 1024 * 1024
_ENDPOINT_TIMEOUT = 30.0


class LegacySseSession(UpstreamSession):
    def __init__(self, spec: McpTargetSpec, on_session_message: RelatedSink, client: HttpClient) -> None:
        super().__init__(spec, on_session_message)
        assert spec.http is not None
        self.client = client
        self.target = spec.http
        self._post_path: bytes | None = None
        self._reader: asyncio.Task[None] | None = None

    async def _connect(self) -> None:
        if self._reader is not None and not self._reader.done() and self._post_path is not None:
            return
        try:
            response = await self.client.request(
                self.target,
                b"GET",
                self.spec.path,
                [(b"accept", b"text/event-stream")],
                None,
                timeout=_ENDPOINT_TIMEOUT,
            )
        except HttpClientError as exc:
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name}: {exc.message}") from None
        if response.status != 200 or response.content_type != b"text/event-stream":
            response.close()
            raise McpError(
                protocol.INTERNAL_ERROR,
                f"MCP target {self.name}: GET {self.spec.path.decode()} answered {response.status}, no event stream",
            )
        endpoint: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read(response, endpoint))
        try:
            self._post_path = await asyncio.wait_for(endpoint, _ENDPOINT_TIMEOUT)
        except TimeoutError:
            self._reader.cancel()
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name} named no endpoint") from None

    async def _read(self, response: ClientResponse, endpoint: asyncio.Future[bytes]) -> None:
        decoder = SseDecoder(_MAX_EVENT)
        try:
            async for chunk in response.chunks():
                for event in decoder.feed(chunk):
                    if event.event == "endpoint":
                        if not endpoint.done():
                            endpoint.set_result(self._resolve(event.data.decode("utf-8", "replace").strip()))
                        continue
                    if event.event != "message" or not event.data:
                        continue
                    try:
                        msg = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(msg, dict):
                        await self._incoming(msg, None, event.data)
        except (HttpClientError, ValueError) as exc:
            log.info("MCP target %s: event stream ended: %s", self.name, exc)
        finally:
            response.close()
            if not endpoint.done():
                endpoint.set_exception(
                    McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name} closed its event stream")
                )
            self._post_path = None
            if not self.closed:
                self._fail_pending(McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name} closed its event stream"))

    def _resolve(self, uri: str) -> bytes:
        """The endpoint URI is opaque and usually relative to the SSE URL; it must stay on the
        same server (the gateway only knows how to reach that one)."""
        base = f"http://{self.target.host_header.decode()}{self.spec.path.decode()}"
        url = urlsplit(urljoin(base, uri))
        path = url.path or "/"
        return (path + ("?" + url.query if url.query else "")).encode()

    async def _send(self, msg: Message, call: PendingCall | None) -> None:
        if self._post_path is None or self._reader is None or self._reader.done():
            if self.init_params is not None and msg.get("method") != "initialize":
                await self.reinitialize()
            else:
                await self._connect()
        assert self._post_path is not None
        try:
            response = await self.client.request(
                self.target,
                b"POST",
                self._post_path,
                [(b"content-type", b"application/json")],
                orjson.dumps(msg),
                timeout=60.0,
            )
            await response.read()
        except HttpClientError as exc:
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name}: {exc.message}") from None
        if response.status >= 300:
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name} refused a message: HTTP {response.status}")

    async def _reset(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self._reader = None
        self._post_path = None

    async def _close(self) -> None:
        await self._reset()
