"""Anthropic Messages ⇄ Chat Completions: requests, responses and streams (protocols.md §3.4-3.5)."""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson

from agentgateway._native import SseDecoder
from agentgateway.llm.chat import (
    Json,
    append_turn,
    assistant_message,
    chunk,
    completion,
    data_url,
    dump_arguments,
    max_output_tokens,
    new_id,
    now,
    parse_arguments,
    split_data_url,
    stop_list,
    text_of,
    tool_call,
)
from agentgateway.llm.errors import LlmError
from agentgateway.llm.usage import Usage

DEFAULT_MAX_TOKENS = 4096

TO_CHAT_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
FROM_CHAT_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# ---------------------------------------------------------------- requests


def _image_part(source: Json) -> Json:
    if source.get("type") == "base64":
        return {
            "type": "image_url",
            "image_url": {"url": data_url(source.get("media_type", ""), source.get("data", ""))},
        }
    if source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": source.get("url", "")}}
    raise LlmError(400, f"image source type {source.get('type')!r} cannot be translated")


def _tool_result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def messages_request_to_chat(req: Json) -> Json:
    """A Messages request as a Chat Completions request (for providers that speak Chat)."""
    messages: list[Json] = []
    system = req.get("system")
    if system:
        messages.append({"role": "system", "content": system if isinstance(system, str) else _tool_result_text(system)})
    for msg in req.get("messages") or []:
        role = msg.get("role")
        content = msg.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise LlmError(400, "messages[].content must be a string or a list of blocks")
        if role == "assistant":
            texts: list[str] = []
            calls: list[Json] = []
            for block in content:
                kind = block.get("type")
                if kind == "text":
                    texts.append(block.get("text", ""))
                elif kind == "tool_use":
                    calls.append(
                        tool_call(block.get("id", ""), block.get("name", ""), dump_arguments(block.get("input")))
                    )
                # thinking blocks have no Chat equivalent and are dropped
            messages.append(assistant_message("".join(texts) or None, calls))
            continue
        parts: list[Json] = []
        for block in content:
            kind = block.get("type")
            if kind == "tool_result":
                text = _tool_result_text(block.get("content"))
                if block.get("is_error"):
                    text = text or "error"
                messages.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": text})
            elif kind == "text":
                parts.append({"type": "text", "text": block.get("text", "")})
            elif kind == "image":
                parts.append(_image_part(block.get("source") or {}))
            elif kind == "document":
                raise LlmError(400, "document blocks cannot be sent to this provider")
        if parts:
            if all(p["type"] == "text" for p in parts):
                messages.append({"role": role, "content": "".join(p["text"] for p in parts)})
            else:
                messages.append({"role": role, "content": parts})
    out: Json = {"model": req.get("model"), "messages": messages}
    if "max_tokens" in req:
        out["max_completion_tokens"] = req["max_tokens"]
    for key in ("temperature", "top_p", "stream"):
        if key in req:
            out[key] = req[key]
    if req.get("stop_sequences"):
        out["stop"] = req["stop_sequences"]
    user = (req.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = user
    tools = req.get("tools")
    if tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    **({"description": t["description"]} if t.get("description") else {}),
                    "parameters": t.get("input_schema") or {"type": "object", "properties": {}},
                },
            }
            for t in tools
            if t.get("type") in (None, "custom")
        ]
    choice = req.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "auto":
            out["tool_choice"] = "auto"
        elif kind == "any":
            out["tool_choice"] = "required"
        elif kind == "none":
            out["tool_choice"] = "none"
        elif kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        if choice.get("disable_parallel_tool_use") and tools:
            out["parallel_tool_calls"] = False
    if req.get("stream"):
        out["stream_options"] = {"include_usage": True}
    return out


def _anthropic_image(part: Json) -> Json:
    url = (part.get("image_url") or {}).get("url", "")
    split = split_data_url(url)
    if split is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    mime, data = split
    return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}


def _blocks(content: Any) -> list[Json]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append(_anthropic_image(part))
        else:
            raise LlmError(400, f"content part type {kind!r} cannot be sent to Anthropic")
    return blocks


def chat_request_to_messages(req: Json, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> Json:
    """A Chat Completions request as a Messages request: system messages lifted to ``system``,
    tool results grouped in one user turn (results first), same-role turns merged."""
    if (req.get("n") or 1) > 1:
        raise LlmError(400, "n > 1 is not supported by this model's provider (Anthropic)")
    system: list[str] = []
    turns: list[Json] = []

    add = partial(append_turn, turns)

    for msg in req.get("messages") or []:
        role = msg.get("role")
        if role in ("system", "developer"):
            system.append(text_of(msg.get("content")))
        elif role == "user":
            add("user", _blocks(msg.get("content")))
        elif role == "assistant":
            blocks = _blocks(msg.get("content"))
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id", ""),
                        "name": fn.get("name", ""),
                        "input": parse_arguments(fn.get("arguments")),
                    }
                )
            add("assistant", blocks)
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": msg.get("tool_call_id", ""),
                "content": text_of(msg.get("content")),
            }
            if turns and turns[-1]["role"] == "user":
                content = turns[-1]["content"]
                # results go before any other content of the same user turn
                at = next((i for i, b in enumerate(content) if b.get("type") != "tool_result"), len(content))
                content.insert(at, result)
            else:
                turns.append({"role": "user", "content": [result]})
        else:
            raise LlmError(400, f"unknown message role {role!r}")
    out: Json = {"model": req.get("model"), "messages": turns}
    limit = max_output_tokens(req)
    out["max_tokens"] = limit if limit is not None else default_max_tokens
    if system:
        out["system"] = "\n\n".join(s for s in system if s)
    if "temperature" in req and req["temperature"] is not None:
        out["temperature"] = min(1.0, max(0.0, float(req["temperature"])))  # Chat 0-2 → Messages 0-1: clamped
    if req.get("top_p") is not None:
        out["top_p"] = req["top_p"]
    stops = stop_list(req.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    if req.get("stream"):
        out["stream"] = True
    if req.get("user"):
        out["metadata"] = {"user_id": req["user"]}
    tools = req.get("tools")
    if tools:
        out["tools"] = [
            {
                "name": fn.get("name"),
                **({"description": fn["description"]} if fn.get("description") else {}),
                "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
            }
            for fn in (t.get("function") or {} for t in tools if t.get("type") == "function")
        ]
    choice = req.get("tool_choice")
    tc: Json | None = None
    if choice == "auto":
        tc = {"type": "auto"}
    elif choice == "required":
        tc = {"type": "any"}
    elif choice == "none":
        tc = {"type": "none"}
    elif isinstance(choice, dict):
        tc = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    if req.get("parallel_tool_calls") is False and tools:
        tc = tc or {"type": "auto"}
        tc["disable_parallel_tool_use"] = True
    if tc is not None:
        out["tool_choice"] = tc
    fmt = req.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    return out


# ---------------------------------------------------------------- responses


def messages_response_to_chat(resp: Json) -> tuple[Json, Usage]:
    texts: list[str] = []
    calls: list[Json] = []
    for block in resp.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            calls.append(tool_call(block.get("id", ""), block.get("name", ""), dump_arguments(block.get("input"))))
    usage = Usage.from_anthropic(resp.get("usage") or {})
    finish = TO_CHAT_FINISH.get(resp.get("stop_reason") or "end_turn", "stop")
    out = completion(
        resp.get("id") or new_id("chatcmpl-"),
        resp.get("model", ""),
        assistant_message("".join(texts) or None, calls),
        finish,
        usage.to_openai(),
    )
    return out, usage


def chat_response_to_messages(resp: Json, usage: Usage) -> Json:
    choice = (resp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[Json] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": fn.get("name", ""),
                "input": parse_arguments(fn.get("arguments")),
            }
        )
    return {
        "id": resp.get("id") or new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": resp.get("model", ""),
        "content": content,
        "stop_reason": FROM_CHAT_FINISH.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage.to_anthropic(),
    }


# ---------------------------------------------------------------- streams


class MessagesStreamDecoder:
    """Anthropic's named SSE events → Chat chunks (protocols.md §3.5 steps 1-6)."""

    __slots__ = ("_sse", "usage", "model", "error", "_id", "_created", "_tools", "_next_tool", "done")

    def __init__(self) -> None:
        self._sse = SseDecoder()
        self.usage = Usage()
        self.model = ""
        self.error: LlmError | None = None
        self._id = ""
        self._created = now()
        self._tools: dict[int, int] = {}  # Anthropic block index → Chat tool-call index
        self._next_tool = 0
        self.done = False

    def feed(self, data: bytes) -> list[Json]:
        out: list[Json] = []
        for event in self._sse.feed(data):
            if self.error is not None:
                break
            try:
                msg = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            kind = msg.get("type") or event.event
            if kind == "content_block_delta":
                delta = msg.get("delta") or {}
                dkind = delta.get("type")
                if dkind == "text_delta":
                    out.append(chunk(self._id, self.model, self._created, {"content": delta.get("text", "")}))
                elif dkind == "input_json_delta":
                    k = self._tools.get(msg.get("index", -1))
                    if k is not None:
                        call = {"index": k, "function": {"arguments": delta.get("partial_json", "")}}
                        out.append(chunk(self._id, self.model, self._created, {"tool_calls": [call]}))
            elif kind == "content_block_start":
                block = msg.get("content_block") or {}
                if block.get("type") == "tool_use":
                    k = self._next_tool
                    self._next_tool += 1
                    self._tools[msg.get("index", -1)] = k
                    call = {
                        "index": k,
                        "id": block.get("id", ""),
                        "type": "function",
                        "function": {"name": block.get("name", ""), "arguments": ""},
                    }
                    out.append(chunk(self._id, self.model, self._created, {"tool_calls": [call]}))
                elif block.get("type") == "text" and block.get("text"):
                    out.append(chunk(self._id, self.model, self._created, {"content": block["text"]}))
            elif kind == "message_start":
                message = msg.get("message") or {}
                self._id = message.get("id") or new_id("chatcmpl-")
                self.model = message.get("model", "")
                self.usage.update_anthropic(message.get("usage") or {})
                out.append(chunk(self._id, self.model, self._created, {"role": "assistant", "content": ""}))
            elif kind == "message_delta":
                delta = msg.get("delta") or {}
                self.usage.update_anthropic(msg.get("usage") or {})
                finish = TO_CHAT_FINISH.get(delta.get("stop_reason") or "end_turn", "stop")
                out.append(chunk(self._id, self.model, self._created, {}, finish))
            elif kind == "message_stop":
                self.done = True
            elif kind == "error":
                err = msg.get("error") or {}
                status = _ERROR_STATUS.get(err.get("type", ""), 500)
                self.error = LlmError(status, err.get("message") or "provider stream error")
        return out

    def finish(self) -> list[Json]:
        return []

    @property
    def complete(self) -> bool:
        """``message_stop`` arrived: else the stream was cut."""
        return self.done


class MessagesStreamEncoder:
    """Chat chunks → Anthropic's named SSE events, for Messages clients of other providers."""

    __slots__ = ("_started", "_block", "_block_kind", "_tool_blocks", "_stop", "_id", "_model")

    def __init__(self, model: str) -> None:
        self._started = False
        self._block = -1  # index of the open content block, -1 when none is open
        self._block_kind = ""
        self._tool_blocks: dict[int, int] = {}
        self._stop = "end_turn"
        self._id = new_id("msg_")
        self._model = model

    @staticmethod
    def _event(kind: str, data: Json) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _start(self, model: str) -> bytes:
        self._started = True
        message: Json = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": model or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return self._event("message_start", {"type": "message_start", "message": message})

    def _close(self) -> bytes:
        if self._block < 0 or not self._block_kind:
            return b""
        self._block_kind = ""
        return self._event("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def feed(self, data: Json) -> bytes:
        parts: list[bytes] = []
        if not self._started:
            parts.append(self._start(data.get("model", "")))
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._block_kind != "text":
                    parts.append(self._close())
                    self._block += 1
                    self._block_kind = "text"
                    start = {
                        "type": "content_block_start",
                        "index": self._block,
                        "content_block": {"type": "text", "text": ""},
                    }
                    parts.append(self._event("content_block_start", start))
                delta_event = {
                    "type": "content_block_delta",
                    "index": self._block,
                    "delta": {"type": "text_delta", "text": text},
                }
                parts.append(self._event("content_block_delta", delta_event))
            for call in delta.get("tool_calls") or ():
                k = call.get("index", 0)
                fn = call.get("function") or {}
                if call.get("id") or k not in self._tool_blocks:
                    parts.append(self._close())
                    self._block += 1
                    self._block_kind = "tool_use"
                    self._tool_blocks[k] = self._block
                    block = {
                        "type": "tool_use",
                        "id": call.get("id") or new_id("toolu_"),
                        "name": fn.get("name", ""),
                        "input": {},
                    }
                    start = {"type": "content_block_start", "index": self._block, "content_block": block}
                    parts.append(self._event("content_block_start", start))
                args = fn.get("arguments")
                if args:
                    index = self._tool_blocks[k]
                    ev = {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": args},
                    }
                    parts.append(self._event("content_block_delta", ev))
            if choice.get("finish_reason"):
                self._stop = FROM_CHAT_FINISH.get(choice["finish_reason"], "end_turn")
        return b"".join(parts)

    def finish(self, usage: Usage) -> bytes:
        parts = [] if self._started else [self._start("")]
        parts.append(self._close())
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop, "stop_sequence": None},
            "usage": usage.to_anthropic(),
        }
        parts.append(self._event("message_delta", delta))
        parts.append(self._event("message_stop", {"type": "message_stop"}))
        return b"".join(parts)


class MessagesPassthrough:
    """Relays an Anthropic stream to a Messages client as is (every block type, thinking and
    signatures included); only ``message_start``, ``message_delta`` and ``error`` are parsed."""

    __slots__ = ("_sse", "usage", "model", "error", "done", "first")

    def __init__(self) -> None:
        self._sse = SseDecoder()
        self.usage = Usage()
        self.model = ""
        self.error: LlmError | None = None
        self.done = False
        self.first = True

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._sse.feed(data):
            kind = event.event
            if kind in ("message_start", "message_delta", "error"):
                try:
                    msg = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    msg = {}
                if kind == "message_start":
                    message = msg.get("message") or {}
                    self.model = message.get("model", "")
                    self.usage.update_anthropic(message.get("usage") or {})
                elif kind == "message_delta":
                    self.usage.update_anthropic(msg.get("usage") or {})
                else:
                    err = msg.get("error") or {}
                    self.error = LlmError(
                        _ERROR_STATUS.get(err.get("type", ""), 500), err.get("message") or "provider stream error"
                    )
                    break
            elif kind == "message_stop":
                self.done = True
            elif kind == "content_block_delta":
                self.first = False
            out.append(b"event: " + kind.encode() + b"\ndata: " + event.data + b"\n\n")
        return b"".join(out)
