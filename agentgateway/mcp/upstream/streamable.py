"""Streamable HTTP MCP servers (legacy shape, 2025-03-26 … 2025-11-25): one POST per message,
answers as JSON or as an SSE stream, ``Mcp-Session-Id`` after initialize, an optional GET stream
for messages not tied to a request, DELETE to end the session.

An upstream that answers 404 for our session id has expired it: the session is initialized
again with the client's original parameters and the message sent once more, so the client never
sees the upstream's restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from agentgateway._native import SseDecoder
from agentgateway.mcp import protocol
from agentgateway.mcp.config import McpTargetSpec
from agentgateway.mcp.protocol import McpError, Message
from agentgateway.mcp.upstream.base import PendingCall, RelatedSink, UpstreamSession
from agentgateway.upstream.client import ClientResponse, HttpClient, HttpClientError

log = logging.getLogger("agentgateway.mcp.http")

_ACCEPT = (b"accept", b"application/json, text/event-stream")
_JSON = (b"content-type", b"application/json")
_MAX_EVENT = 64 * 1024 * 1024
_CALL_TIMEOUT = 300.0


class StreamableHttpSession(UpstreamSession):
    def __init__(
        self,
        spec: McpTargetSpec,
        on_session_message: RelatedSink,
        client: HttpClient,
        session_id: bytes | None = None,
    ) -> None:
        super().__init__(spec, on_session_message)
        assert spec.http is not None
        self.client = client
        self.target = spec.http
        self.session_id = session_id
        self._streams: set[asyncio.Task[None]] = set()
        self._get_stream: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ transport hooks

    async def _connect(self) -> None:
        pass  # nothing to open: every message is its own POST

    async def _reset(self) -> None:
        self.session_id = None
        self._stop_get_stream()

    async def _close(self) -> None:
        self._stop_get_stream()
        for task in list(self._streams):
            task.cancel()
        if self.session_id is not None:
            with contextlib.suppress(HttpClientError, OSError):
                response = await self.client.request(
                    self.target, b"DELETE", self.spec.path, self._headers(), None, timeout=5.0
                )
                response.close()

    async def _send(self, msg: Message, call: PendingCall | None, retried: bool = False) -> None:
        body = orjson.dumps(msg)
        try:
            response = await self.client.request(
                self.target,
                b"POST",
                self.spec.path,
                [_JSON, _ACCEPT, *self._headers()],
                body,
                timeout=_CALL_TIMEOUT,
            )
        except HttpClientError as exc:
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name}: {exc.message}") from None
        status = response.status
        if msg.get("method") == "initialize" and status == 200:
            sid = response.header(b"mcp-session-id")
            if sid:
                self.session_id = sid
        if status == 404 and self.session_id is not None and not retried and msg.get("method") != "initialize":
            # The upstream forgot our session (restart, expiry): start a new one and resend.
            response.close()
            log.info("MCP target %s expired its session; initializing a new one", self.name)
            await self.reinitialize()
            await self._send(msg, call, retried=True)
            return
        if status == 202:
            response.close()
            return
        kind = response.content_type
        if status == 200 and kind == b"text/event-stream":
            task = asyncio.get_running_loop().create_task(self._read_events(response, call))
            self._streams.add(task)
            task.add_done_callback(self._streams.discard)
            return
        try:
            raw = await response.read()
        except HttpClientError as exc:
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name}: {exc.message}") from None
        if kind == b"application/json" and raw:
            try:
                decoded = orjson.loads(raw)
            except orjson.JSONDecodeError:
                decoded = None
            if isinstance(decoded, dict) and "jsonrpc" in decoded:
                await self._incoming(decoded, call, raw)
            elif isinstance(decoded, list):  # a batch (2025-03-26)
                for item in decoded:
                    if isinstance(item, dict) and "jsonrpc" in item:
                        await self._incoming(item, call)
            if status == 200 or (call is not None and call.future.done()):
                return
        if call is not None and not call.future.done():
            text = raw[:300].decode("utf-8", "replace")
            self._fail_call(call, f"MCP target {self.name} answered HTTP {status}: {text}")

    async def _read_events(self, response: ClientResponse, call: PendingCall | None) -> None:
        decoder = SseDecoder(_MAX_EVENT)
        try:
            async for chunk in response.chunks():
                for event in decoder.feed(chunk):
                    if event.event != "message" or not event.data:
                        continue
                    try:
                        msg = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        log.warning("MCP target %s sent a non-JSON event: %r", self.name, event.data[:200])
                        continue
                    if isinstance(msg, dict):
                        await self._incoming(msg, call, event.data)
        except (HttpClientError, ValueError) as exc:
            log.info("MCP target %s: event stream ended: %s", self.name, exc)
        finally:
            response.close()
            if call is not None and not call.future.done():
                self._fail_call(call, f"MCP target {self.name} closed the stream before answering")

    # ------------------------------------------------------------------ session stream (GET)

    def open_session_stream(self) -> None:
        """Listen for messages not tied to a request (list changes, server requests)."""
        if self._get_stream is None or self._get_stream.done():
            self._get_stream = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        try:
            response = await self.client.request(
                self.target,
                b"GET",
                self.spec.path,
                [(b"accept", b"text/event-stream"), *self._headers()],
                None,
            )
        except HttpClientError as exc:
            log.info("MCP target %s: no session stream: %s", self.name, exc.message)
            return
        if response.status != 200 or response.content_type != b"text/event-stream":
            response.close()  # 405: the server has no such stream, which is allowed
            return
        await self._read_events(response, None)

    def _stop_get_stream(self) -> None:
        if self._get_stream is not None:
            self._get_stream.cancel()
            self._get_stream = None

    # ------------------------------------------------------------------ helpers

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        if self.session_id is not None:
            headers.append((b"mcp-session-id", self.session_id))
        if self.init_result is not None and self.protocol_version >= "2025-06-18":
            headers.append((b"mcp-protocol-version", self.protocol_version.encode()))
        return headers

    def state(self) -> dict[str, Any]:
        """What a session token carries to rebuild this session in another worker or replica."""
        return {"s": self.session_id.decode() if self.session_id else None, "v": self.protocol_version}
