"""Trace context in MCP messages: the MCP convention carries ``traceparent`` (and ``tracestate``)
in ``params._meta`` of each request and notification, since one HTTP stream (or a stdio pipe)
carries many messages. The gateway puts the span of each call to a target there
(observe/tracing.py decides whether there is one)."""

from __future__ import annotations

from typing import Any

from agentgateway.core.trace import Span
from agentgateway.mcp.protocol import McpError, Message
from agentgateway.observe.tracing import CURRENT_TRACE, start_mcp_call

# The param that names what a method acts on (the tool, the prompt, the resource).
_NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


def with_traceparent(params: dict[str, Any] | None, traceparent: str) -> dict[str, Any]:
    """``params`` with ``_meta.traceparent`` set (a copy: the client's params are shared)."""
    params = params or {}
    meta = params.get("_meta")
    meta = {**meta, "traceparent": traceparent} if isinstance(meta, dict) else {"traceparent": traceparent}
    return {**params, "_meta": meta}


def meta_traceparent(msg: Message) -> str | None:
    params = msg.get("params")
    if isinstance(params, dict):
        meta = params.get("_meta")
        if isinstance(meta, dict):
            value = meta.get("traceparent")
            if isinstance(value, str):
                return value
    return None


def start_call(
    method: str, params: dict[str, Any] | None, target: str, request_id: int
) -> tuple[Span | None, dict[str, Any] | None]:
    """The span of a request to ``target`` (None when untraced) and the params to send."""
    if CURRENT_TRACE.get() is None:
        return None, params  # (untraced: the common case, decided before anything is read)
    name = ""
    if params and method in _NAMED:
        value = params.get(_NAMED[method])
        if isinstance(value, str):
            name = value[:256]
    span, traceparent = start_mcp_call(method, name, target, request_id)
    if traceparent is None:
        return None, params
    return span, with_traceparent(params, traceparent)


def end_call(span: Span, response: Message | None, error: BaseException | None) -> None:
    if isinstance(error, McpError):
        span.attributes["rpc.response.status_code"] = str(error.code)
        span.attributes["error.type"] = str(error.code)
        span.end(error.message[:200])
        return
    if error is not None:
        span.end(type(error).__name__)
        return
    result = response.get("result") if response is not None else None
    if isinstance(result, dict) and result.get("isError") is True:
        span.attributes["error.type"] = "tool_error"
        span.end("tool_error")
        return
    span.end()


def current_traceparent() -> str | None:
    """The request's context for a notification to a target (no span of its own)."""
    trace = CURRENT_TRACE.get()
    return trace.traceparent().decode() if trace is not None else None
