"""Chat Completions → AWS Bedrock Converse and ConverseStream (protocols.md §3.7), and SigV4
signing of the final body with botocore's signer."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from agentgateway.llm.chat import (
    Json,
    append_turn,
    assistant_message,
    chunk,
    completion,
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
from agentgateway.llm.eventstream import EventStreamDecoder, EventStreamError
from agentgateway.llm.usage import Usage

if TYPE_CHECKING:  # botocore is imported when a Bedrock request is first signed (startup time)
    from botocore.credentials import Credentials

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_EXCEPTION_STATUS = {
    "validationException": 400,
    "accessDeniedException": 403,
    "resourceNotFoundException": 404,
    "modelTimeoutException": 408,
    "modelErrorException": 424,
    "throttlingException": 429,
    "internalServerException": 500,
    "modelStreamErrorException": 500,
    "serviceUnavailableException": 503,
    "modelNotReadyException": 503,
}


def _content(content: Any) -> list[Json]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[Json] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"text": part.get("text", "")})
        elif kind == "image_url":
            split = split_data_url((part.get("image_url") or {}).get("url", ""))
            if split is None:
                raise LlmError(400, "Bedrock takes images as data URLs only (no remote URLs)")
            fmt = _IMAGE_FORMATS.get(split[0])
            if fmt is None:
                raise LlmError(400, f"image type {split[0]!r} is not supported by Bedrock")
            blocks.append({"image": {"format": fmt, "source": {"bytes": split[1]}}})
        else:
            raise LlmError(400, f"content part type {kind!r} cannot be sent to Bedrock")
    return blocks


def _tool_result(text: str) -> list[Json]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [{"text": text}]
    return [{"json": value}] if isinstance(value, dict) else [{"text": text}]


def chat_request_to_converse(req: Json) -> Json:
    if (req.get("n") or 1) > 1:
        raise LlmError(400, "n > 1 is not supported by Bedrock Converse")
    system: list[Json] = []
    messages: list[Json] = []

    add = partial(append_turn, messages)

    for msg in req.get("messages") or []:
        role = msg.get("role")
        if role in ("system", "developer"):
            text = text_of(msg.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", _content(msg.get("content")))
        elif role == "assistant":
            blocks = _content(msg.get("content"))
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": call.get("id", ""),
                            "name": fn.get("name", ""),
                            "input": parse_arguments(fn.get("arguments")),
                        }
                    }
                )
            add("assistant", blocks)
        elif role == "tool":
            result = {
                "toolUseId": msg.get("tool_call_id", ""),
                "content": _tool_result(text_of(msg.get("content"))),
                "status": "success",
            }
            add("user", [{"toolResult": result}])
        else:
            raise LlmError(400, f"unknown message role {role!r}")
    out: Json = {"messages": messages}
    if system:
        out["system"] = system
    inference: Json = {}
    limit = max_output_tokens(req)
    if limit is not None:
        inference["maxTokens"] = limit
    if req.get("temperature") is not None:
        inference["temperature"] = min(1.0, max(0.0, float(req["temperature"])))  # Bedrock models take 0-1
    if req.get("top_p") is not None:
        inference["topP"] = req["top_p"]
    stops = stop_list(req.get("stop"))
    if stops:
        inference["stopSequences"] = stops
    if inference:
        out["inferenceConfig"] = inference
    tools = req.get("tools")
    choice = req.get("tool_choice")
    if tools and choice != "none":
        specs = []
        for t in tools:
            fn = t.get("function") or {}
            spec: Json = {
                "name": fn.get("name", ""),
                "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
            }
            if fn.get("description"):
                spec["description"] = fn["description"]
            specs.append({"toolSpec": spec})
        tool_config: Json = {"tools": specs}
        if choice == "auto":
            tool_config["toolChoice"] = {"auto": {}}
        elif choice == "required":
            tool_config["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict):
            tool_config["toolChoice"] = {"tool": {"name": (choice.get("function") or {}).get("name")}}
        out["toolConfig"] = tool_config
    elif any(b for m in messages for b in m["content"] if "toolUse" in b or "toolResult" in b):
        raise LlmError(400, "Bedrock needs the tool definitions when the conversation has tool calls")
    return out


def converse_response_to_chat(resp: Json, model: str) -> tuple[Json, Usage]:
    texts: list[str] = []
    calls: list[Json] = []
    for block in ((resp.get("output") or {}).get("message") or {}).get("content") or []:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(tool_call(use.get("toolUseId", ""), use.get("name", ""), dump_arguments(use.get("input"))))
    usage = Usage.from_bedrock(resp.get("usage") or {})
    finish = _FINISH.get(resp.get("stopReason") or "end_turn", "stop")
    out = completion(
        new_id("chatcmpl-"), model, assistant_message("".join(texts) or None, calls), finish, usage.to_openai()
    )
    return out, usage


class ConverseStreamDecoder:
    """ConverseStream event-stream frames → Chat chunks; usage arrives last, in ``metadata``."""

    __slots__ = ("_frames", "usage", "model", "error", "done", "_id", "_created", "_tools", "_next_tool", "_finish")

    def __init__(self, model: str) -> None:
        self._frames = EventStreamDecoder()
        self.usage = Usage()
        self.model = model
        self.error: LlmError | None = None
        self.done = False
        self._id = new_id("chatcmpl-")
        self._created = now()
        self._tools: dict[int, int] = {}
        self._next_tool = 0
        self._finish: str | None = None

    def feed(self, data: bytes) -> list[Json]:
        out: list[Json] = []
        try:
            frames = self._frames.feed(data)
        except EventStreamError as exc:
            self.error = LlmError(502, f"malformed event stream from Bedrock: {exc}")
            return out
        for frame in frames:
            kind = frame.header(":event-type")
            try:
                body = orjson.loads(frame.payload) if frame.payload else {}
            except orjson.JSONDecodeError:
                body = {}
            if frame.header(":message-type") != "event":
                name = frame.header(":exception-type") or kind
                self.error = LlmError(
                    _EXCEPTION_STATUS.get(name, 500), body.get("message") or name or "Bedrock stream error"
                )
                break
            if kind == "contentBlockDelta":
                delta = body.get("delta") or {}
                if "text" in delta:
                    out.append(chunk(self._id, self.model, self._created, {"content": delta["text"]}))
                elif "toolUse" in delta:
                    k = self._tools.get(body.get("contentBlockIndex", -1))
                    if k is not None:
                        call = {"index": k, "function": {"arguments": delta["toolUse"].get("input", "")}}
                        out.append(chunk(self._id, self.model, self._created, {"tool_calls": [call]}))
            elif kind == "contentBlockStart":
                use = (body.get("start") or {}).get("toolUse")
                if use:
                    k = self._next_tool
                    self._next_tool += 1
                    self._tools[body.get("contentBlockIndex", -1)] = k
                    call = {
                        "index": k,
                        "id": use.get("toolUseId", ""),
                        "type": "function",
                        "function": {"name": use.get("name", ""), "arguments": ""},
                    }
                    out.append(chunk(self._id, self.model, self._created, {"tool_calls": [call]}))
            elif kind == "messageStart":
                out.append(chunk(self._id, self.model, self._created, {"role": "assistant", "content": ""}))
            elif kind == "messageStop":
                self._finish = _FINISH.get(body.get("stopReason") or "end_turn", "stop")
            elif kind == "metadata":
                self.usage = Usage.from_bedrock(body.get("usage") or {})
                self.done = True
        return out

    def finish(self) -> list[Json]:
        if self._finish is None:
            return []
        self.done = True
        return [chunk(self._id, self.model, self._created, {}, self._finish)]

    @property
    def complete(self) -> bool:
        """``messageStop`` arrived (whole: a frame cut short never decodes): else it was cut."""
        return self._finish is not None


def sign_sigv4(
    credentials: Credentials, region: str, url: str, headers: list[tuple[str, str]], body: bytes
) -> list[tuple[bytes, bytes]]:
    """Headers to add to a request so Bedrock accepts it: SigV4 over the final body."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, "bedrock", region).add_auth(request)
    return [
        (name.lower().encode(), value.encode() if isinstance(value, str) else value)
        for name, value in request.headers.items()
        if name.lower() in ("authorization", "x-amz-date", "x-amz-security-token")
    ]
