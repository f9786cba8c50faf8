"""OpenAI Responses ⇄ Chat Completions (protocols.md §3.2), for Responses clients of providers
that do not speak it; and the passthrough relay for providers that do."""

from __future__ import annotations

from typing import Any

import orjson

from agentgateway._native import SseDecoder
from agentgateway.llm.chat import Json, new_id, now, text_of
from agentgateway.llm.errors import LlmError
from agentgateway.llm.redact import NO_SECRETS, Redactor
from agentgateway.llm.usage import Usage

# ---------------------------------------------------------------- requests


def _parts(content: Any) -> str | list[Json]:
    if isinstance(content, str):
        return content
    parts: list[Json] = []
    for part in content or []:
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not url:
                raise LlmError(400, "input_image needs image_url (file ids cannot be translated)")
            parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": url, **({"detail": part["detail"]} if "detail" in part else {})},
                }
            )
        else:
            raise LlmError(400, f"input content type {kind!r} cannot be sent to this provider")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def responses_request_to_chat(req: Json) -> Json:
    for key in ("previous_response_id", "conversation", "background"):
        if req.get(key):
            raise LlmError(400, f"{key} needs server-side state, which this provider does not keep")
    messages: list[Json] = []
    if req.get("instructions"):
        messages.append({"role": "system", "content": req["instructions"]})
    items = req.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
        items = []
    for item in items or []:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            content = _parts(item.get("content"))
            if role == "assistant":
                messages.append(
                    {"role": "assistant", "content": content if isinstance(content, str) else text_of(content)}
                )
            else:
                messages.append({"role": role, "content": content})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id", ""),
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
                last["tool_calls"] = [call]
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output", "")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id", ""),
                    "content": output if isinstance(output, str) else text_of(output),
                }
            )
        elif kind == "reasoning":
            continue
        else:
            raise LlmError(400, f"input item type {kind!r} cannot be sent to this provider")
    out: Json = {"model": req.get("model"), "messages": messages}
    if req.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = req["max_output_tokens"]
    for key in ("temperature", "top_p", "stream", "parallel_tool_calls", "user", "metadata", "store"):
        if key in req and key != "store":
            out[key] = req[key]
    tools = [t for t in req.get("tools") or [] if t.get("type") == "function"]
    if len(tools) != len(req.get("tools") or []):
        raise LlmError(400, "built-in Responses tools cannot be sent to this provider; only function tools")
    if tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    **({"description": t["description"]} if t.get("description") else {}),
                    "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                    **({"strict": t["strict"]} if t.get("strict") is not None else {}),
                },
            }
            for t in tools
        ]
    choice = req.get("tool_choice")
    if isinstance(choice, str):
        out["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    fmt = (req.get("text") or {}).get("format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
            out["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif fmt.get("type") == "json_object":
            out["response_format"] = {"type": "json_object"}
    effort = (req.get("reasoning") or {}).get("effort")
    if effort:
        out["reasoning_effort"] = effort
    if req.get("stream"):
        out["stream_options"] = {"include_usage": True}
    return out


# ---------------------------------------------------------------- responses


def _base(req: Json, rid: str, model: str, status: str) -> Json:
    return {
        "id": rid,
        "object": "response",
        "created_at": now(),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "temperature": req.get("temperature"),
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": req.get("tools") or [],
        "top_p": req.get("top_p"),
        "metadata": req.get("metadata") or {},
        "usage": None,
    }


def _message_item(item_id: str, text: str, status: str) -> Json:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Json:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def chat_response_to_responses(req: Json, resp: Json, usage: Usage) -> Json:
    choice = (resp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    finish = choice.get("finish_reason") or "stop"
    status = "incomplete" if finish == "length" else "completed"
    out = _base(req, new_id("resp_"), resp.get("model", ""), status)
    if finish == "length":
        out["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish == "content_filter":
        out["status"] = "incomplete"
        out["incomplete_details"] = {"reason": "content_filter"}
    text = message.get("content")
    if isinstance(text, str) and text:
        out["output"].append(_message_item(new_id("msg_"), text, "completed"))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        out["output"].append(
            _call_item(new_id("fc_"), call.get("id", ""), fn.get("name", ""), fn.get("arguments", ""), "completed")
        )
    out["usage"] = usage.to_responses()
    return out


# ---------------------------------------------------------------- streams


class ResponsesStreamEncoder:
    """Chat chunks → typed Responses events (``event: <type>`` + ``data``), in the order the
    OpenAI SDK's stream accumulator expects."""

    __slots__ = (
        "_req",
        "_seq",
        "_resp",
        "_started",
        "_text_item",
        "_text",
        "_calls",
        "_open_call",
        "_finish",
        "_output",
    )

    def __init__(self, req: Json, model: str) -> None:
        self._req = req
        self._seq = 0
        self._resp = _base(req, new_id("resp_"), model, "in_progress")
        self._started = False
        self._text_item: Json | None = None
        self._text: list[str] = []
        self._calls: dict[int, Json] = {}
        self._open_call: Json | None = None
        self._finish = "stop"
        self._output: list[Json] = []

    @property
    def sequence(self) -> int:
        return self._seq

    def _event(self, kind: str, data: Json) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **data}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _start(self, model: str) -> bytes:
        self._started = True
        if model:
            self._resp["model"] = model
        return self._event("response.created", {"response": self._resp}) + self._event(
            "response.in_progress", {"response": self._resp}
        )

    def _close_text(self) -> bytes:
        item = self._text_item
        if item is None:
            return b""
        self._text_item = None
        text = "".join(self._text)
        self._text = []
        index = item["_index"]
        done_item = _message_item(item["id"], text, "completed")
        self._output.append(done_item)
        part = {"type": "output_text", "text": text, "annotations": []}
        return b"".join(
            (
                self._event(
                    "response.output_text.done",
                    {"item_id": item["id"], "output_index": index, "content_index": 0, "text": text},
                ),
                self._event(
                    "response.content_part.done",
                    {"item_id": item["id"], "output_index": index, "content_index": 0, "part": part},
                ),
                self._event("response.output_item.done", {"output_index": index, "item": done_item}),
            )
        )

    def _close_call(self) -> bytes:
        call = self._open_call
        if call is None:
            return b""
        self._open_call = None
        index = call["_index"]
        done_item = _call_item(call["id"], call["call_id"], call["name"], "".join(call["_args"]), "completed")
        self._output.append(done_item)
        return self._event(
            "response.function_call_arguments.done",
            {"item_id": call["id"], "output_index": index, "arguments": done_item["arguments"]},
        ) + self._event("response.output_item.done", {"output_index": index, "item": done_item})

    def feed(self, data: Json) -> bytes:
        parts: list[bytes] = []
        if not self._started:
            parts.append(self._start(data.get("model", "")))
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._text_item is None:
                    parts.append(self._close_call())
                    index = len(self._output)
                    item = self._text_item = {"id": new_id("msg_"), "_index": index}
                    added = _message_item(item["id"], "", "in_progress")
                    added["content"] = []
                    parts.append(self._event("response.output_item.added", {"output_index": index, "item": added}))
                    part = {"type": "output_text", "text": "", "annotations": []}
                    parts.append(
                        self._event(
                            "response.content_part.added",
                            {"item_id": item["id"], "output_index": index, "content_index": 0, "part": part},
                        )
                    )
                item = self._text_item
                self._text.append(text)
                parts.append(
                    self._event(
                        "response.output_text.delta",
                        {"item_id": item["id"], "output_index": item["_index"], "content_index": 0, "delta": text},
                    )
                )
            for tc in delta.get("tool_calls") or ():
                k = tc.get("index", 0)
                fn = tc.get("function") or {}
                call = self._calls.get(k)
                if call is None:
                    parts.append(self._close_text())
                    parts.append(self._close_call())
                    index = len(self._output)
                    call = self._calls[k] = self._open_call = {
                        "id": new_id("fc_"),
                        "call_id": tc.get("id") or new_id("call_"),
                        "name": fn.get("name", ""),
                        "_args": [],
                        "_index": index,
                    }
                    added = _call_item(call["id"], call["call_id"], call["name"], "", "in_progress")
                    parts.append(self._event("response.output_item.added", {"output_index": index, "item": added}))
                args = fn.get("arguments")
                if args:
                    call["_args"].append(args)
                    parts.append(
                        self._event(
                            "response.function_call_arguments.delta",
                            {"item_id": call["id"], "output_index": call["_index"], "delta": args},
                        )
                    )
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return b"".join(parts)

    def finish(self, usage: Usage) -> bytes:
        parts = [] if self._started else [self._start("")]
        parts.append(self._close_text())
        parts.append(self._close_call())
        resp = self._resp
        resp["output"] = self._output
        resp["usage"] = usage.to_responses()
        kind = "response.completed"
        resp["status"] = "completed"
        if self._finish in ("length", "content_filter"):
            kind = "response.incomplete"
            resp["status"] = "incomplete"
            resp["incomplete_details"] = {
                "reason": "max_output_tokens" if self._finish == "length" else "content_filter"
            }
        parts.append(self._event(kind, {"response": resp}))
        return b"".join(parts)


class ResponsesPassthrough:
    """Relays a Responses stream from an OpenAI provider as is; reads usage from the final event.
    Error events (``error``, ``response.failed``) are relayed without the gateway's credentials."""

    __slots__ = ("_sse", "usage", "model", "error", "done", "first", "_redactor")

    def __init__(self, redactor: Redactor = NO_SECRETS) -> None:
        self._redactor = redactor
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
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                self.done = True
                try:
                    resp = orjson.loads(event.data).get("response") or {}
                except orjson.JSONDecodeError:
                    resp = {}
                if resp.get("usage"):
                    self.usage = Usage.from_openai(resp["usage"])
                self.model = resp.get("model", self.model)
            elif kind == "response.output_text.delta":
                self.first = False
            data = event.data
            if kind in ("error", "response.failed"):
                data = self._redactor.body(data)
            head = b"event: " + kind.encode() + b"\n" if kind and kind != "message" else b""
            out.append(head + b"data: " + data + b"\n\n")
        return b"".join(out)
