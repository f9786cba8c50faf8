"""Chat Completions → Gemini ``generateContent`` (also Vertex AI), responses and SSE streams back
(protocols.md §3.6)."""

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
from agentgateway.llm.errors import LlmError, error_status
from agentgateway.llm.usage import Usage

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_CHOICE_MODE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# The image types Gemini and Vertex take inline (an SVG is text; so is text/plain).
_IMAGE_TYPES = frozenset(
    ("image/png", "image/jpeg", "image/jpg", "image/webp", "image/heic", "image/heif", "image/gif")
)


def _parts(content: Any) -> list[Json]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[Json] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            split = split_data_url(url)
            # Gemini reads inlineData and fileData of any type (a text/plain "image" is text the
            # guards never saw) and Vertex reads gs:// URIs with the gateway's credential: an
            # image_url is an image, inline or on the web.
            if split is None:
                if not url.lower().startswith(("https://", "http://")):
                    raise LlmError(400, "image_url must be an http(s) URL or a data URL of an image")
                parts.append({"fileData": {"mimeType": _guess_mime(url), "fileUri": url}})
            else:
                if split[0].lower() not in _IMAGE_TYPES:
                    raise LlmError(400, f"image_url data of type {split[0][:100]!r} is not an image Gemini reads")
                parts.append({"inlineData": {"mimeType": split[0], "data": split[1]}})
        else:
            raise LlmError(400, f"content part type {kind!r} cannot be sent to Gemini")
    return parts


def _guess_mime(url: str) -> str:
    lower = url.lower().split("?", 1)[0]
    for ext, mime in ((".png", "image/png"), (".gif", "image/gif"), (".webp", "image/webp")):
        if lower.endswith(ext):
            return mime
    return "image/jpeg"


def _response_value(text: str) -> Json:
    """A tool result as the object ``functionResponse.response`` must be."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": value}


def chat_request_to_gemini(req: Json) -> Json:
    if req.get("n") not in (None, 1) and req.get("stream"):
        raise LlmError(400, "n > 1 cannot be streamed from Gemini")
    system: list[Json] = []
    contents: list[Json] = []
    call_names: dict[str, str] = {}

    add = partial(append_turn, contents, key="parts")

    for msg in req.get("messages") or []:
        role = msg.get("role")
        if role in ("system", "developer"):
            text = text_of(msg.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", _parts(msg.get("content")))
        elif role == "assistant":
            parts = _parts(msg.get("content"))
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                call_names[call.get("id", "")] = fn.get("name", "")
                parts.append(
                    {"functionCall": {"name": fn.get("name", ""), "args": parse_arguments(fn.get("arguments"))}}
                )
            add("model", parts)
        elif role == "tool":
            call_id = msg.get("tool_call_id", "")
            name = call_names.get(call_id)
            if name is None:
                raise LlmError(400, f"tool message answers unknown tool_call_id {call_id!r}")
            add(
                "user", [{"functionResponse": {"name": name, "response": _response_value(text_of(msg.get("content")))}}]
            )
        else:
            raise LlmError(400, f"unknown message role {role!r}")
    out: Json = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config: Json = {}
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    ):
        if req.get(src) is not None:
            config[dst] = req[src]
    limit = max_output_tokens(req)
    if limit is not None:
        config["maxOutputTokens"] = limit
    stops = stop_list(req.get("stop"))
    if stops:
        config["stopSequences"] = stops
    fmt = req.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    if config:
        out["generationConfig"] = config
    tools = req.get("tools")
    if tools:
        decls = []
        for t in tools:
            fn = t.get("function") or {}
            decl: Json = {"name": fn.get("name", "")}
            if fn.get("description"):
                decl["description"] = fn["description"]
            if fn.get("parameters"):
                decl["parametersJsonSchema"] = fn["parameters"]
            decls.append(decl)
        out["tools"] = [{"functionDeclarations": decls}]
    choice = req.get("tool_choice")
    if isinstance(choice, str) and choice in _CHOICE_MODE:
        out["toolConfig"] = {"functionCallingConfig": {"mode": _CHOICE_MODE[choice]}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        out["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return out


def _candidate_parts(candidate: Json, call_base: int) -> tuple[str, list[Json]]:
    texts: list[str] = []
    calls: list[Json] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "text" in part and not part.get("thought"):
            texts.append(part["text"])
        elif "functionCall" in part:
            fc = part["functionCall"]
            call_id = fc.get("id") or f"call_{call_base + len(calls)}_{new_id('')}"
            calls.append(tool_call(call_id, fc.get("name", ""), dump_arguments(fc.get("args"))))
    return "".join(texts), calls


def _finish(candidate: Json, has_calls: bool) -> str:
    reason = _FINISH.get(candidate.get("finishReason") or "STOP", "stop")
    return "tool_calls" if has_calls and reason == "stop" else reason


def gemini_response_to_chat(resp: Json) -> tuple[Json, Usage]:
    usage = Usage.from_gemini(resp.get("usageMetadata") or {})
    candidates = resp.get("candidates") or []
    if not candidates:
        reason = (resp.get("promptFeedback") or {}).get("blockReason")
        if reason:
            out = completion(
                resp.get("responseId") or new_id("chatcmpl-"),
                resp.get("modelVersion", ""),
                assistant_message("", []),
                "content_filter",
                usage.to_openai(),
            )
            return out, usage
        raise LlmError(502, "Gemini returned no candidates")
    choices = []
    for i, cand in enumerate(candidates):
        text, calls = _candidate_parts(cand, 0)
        choices.append(
            {
                "index": cand.get("index", i),
                "message": assistant_message(text or None, calls),
                "finish_reason": _finish(cand, bool(calls)),
                "logprobs": None,
            }
        )
    out = completion(
        resp.get("responseId") or new_id("chatcmpl-"), resp.get("modelVersion", ""), {}, "stop", usage.to_openai()
    )
    out["choices"] = choices
    return out, usage


class GeminiStreamDecoder:
    """``alt=sse`` events (each a partial GenerateContentResponse) → Chat chunks. A function
    call arrives whole in one part and becomes one tool-call delta."""

    __slots__ = ("_sse", "usage", "model", "error", "done", "_id", "_created", "_started", "_calls", "_finish")

    def __init__(self) -> None:
        self._sse = SseDecoder()
        self.usage = Usage()
        self.model = ""
        self.error: LlmError | None = None
        self.done = False
        self._id = ""
        self._created = now()
        self._started = False
        self._calls = 0
        self._finish: str | None = None

    def feed(self, data: bytes) -> list[Json]:
        out: list[Json] = []
        for event in self._sse.feed(data):
            try:
                msg = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if "error" in msg:
                err = msg["error"] or {}
                self.error = LlmError(error_status(err.get("code")), err.get("message") or "provider stream error")
                break
            if not self._started:
                self._started = True
                self._id = msg.get("responseId") or new_id("chatcmpl-")
                self.model = msg.get("modelVersion", "")
                out.append(chunk(self._id, self.model, self._created, {"role": "assistant", "content": ""}))
            if msg.get("usageMetadata"):
                self.usage = Usage.from_gemini(msg["usageMetadata"])
            for cand in (msg.get("candidates") or [])[:1]:
                text, calls = _candidate_parts(cand, self._calls)
                if text:
                    out.append(chunk(self._id, self.model, self._created, {"content": text}))
                if calls:
                    deltas = []
                    for call in calls:
                        deltas.append({"index": self._calls, **call})
                        self._calls += 1
                    out.append(chunk(self._id, self.model, self._created, {"tool_calls": deltas}))
                if cand.get("finishReason"):
                    self._finish = _finish(cand, self._calls > 0)
        return out

    def finish(self) -> list[Json]:
        self.done = self._finish is not None
        if self._finish is None:
            return []
        return [chunk(self._id, self.model, self._created, {}, self._finish)]

    @property
    def complete(self) -> bool:
        """A candidate gave its ``finishReason``: else the stream was cut."""
        return self._finish is not None
