"""Fake LLM providers that validate requests strictly and answer in each provider's wire format.

Run as ``python -m tests.support.llm_fakes --kind KIND --port P`` (prints ``ready``). KIND is
openai, azure, anthropic, gemini, vertex, bedrock or compat (an OpenAI-compatible vendor, as the
provider presets and custom providers are: Chat Completions, Anthropic Messages, Responses,
embeddings and rerank under any path prefix, with a bearer key). Gemini serves its native API
(``x-goog-api-key``) and its OpenAI-compatible one under ``/v1beta/openai`` (a bearer key); Azure
its OpenAI resource paths and Foundry's project and Anthropic paths. Each fake:

- checks the path, the method, the auth header (the expected key, or a SigV4 signature verified
  with botocore for bedrock), the required headers, and the body against the provider's
  documented request schema (required fields, allowed top-level fields, roles, block shapes);
  a violation is a 400 in the provider's error format naming it, so a bad translation fails tests;
- answers deterministically: a tool call to the first tool when tools are offered and the last
  turn is not a tool result, otherwise a text that echoes the last user text; streams in the
  provider's exact framing (SSE ``data:`` chunks and ``[DONE]``, Anthropic's named events, Gemini's
  ``alt=sse``, Bedrock's binary event stream);
- misbehaves on request: a model name containing ``fail429`` / ``fail500`` answers that error,
  ``slow`` waits 3 s, ``midstream`` sends an error event after the first streamed chunk
  (``leakkey``: one that quotes the provider key), ``slowstream`` waits 250 ms between streamed
  events, ``toolecho`` answers a tool call whose arguments carry the user's text (OpenAI and
  Anthropic);
- answers a wrong key with a 401 quoting it as the provider does (OpenAI: first 8 and last 4
  characters); a key containing ``-echo-`` is quoted whole, in the body and in ``x-request-id``;
- records the last request: ``GET /_last`` returns {path, headers, body}; ``GET /_count`` the
  number of requests served.

Written with uvloop and httptools so the LLM benchmark measures the gateway, not the fake.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import struct
import sys
import time
import zlib
from typing import Any
from urllib.parse import unquote

import httptools
import orjson
import uvloop

Json = dict[str, Any]

USAGE_IN, USAGE_OUT, CACHED, REASONING = 16, 7, 5, 2
API_KEY = "sk-provider-secret"
AWS_KEY, AWS_SECRET = "AKIDFAKEPROVIDER", "fake-aws-secret-key"


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers or []


def need(cond: object, message: str) -> None:
    if not cond:
        raise Invalid(message)


def only_keys(obj: Json, allowed: frozenset[str], where: str) -> None:
    extra = set(obj) - allowed
    need(not extra, f"{where}: unknown field(s) {sorted(extra)}")


# ---------------------------------------------------------------- request validation

OPENAI_CHAT_KEYS = frozenset(
    [
        "model",
        "messages",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "max_completion_tokens",
        "max_tokens",
        "reasoning_effort",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "modalities",
        "audio",
        "prediction",
        "verbosity",
        "web_search_options",
    ]
)
RESPONSES_KEYS = frozenset(
    [
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "temperature",
        "top_p",
        "reasoning",
        "text",
        "stream",
        "previous_response_id",
        "conversation",
        "store",
        "background",
        "truncation",
        "include",
        "metadata",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "service_tier",
        "prompt_cache_key",
        "prompt",
    ]
)
ANTHROPIC_KEYS = frozenset(
    [
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
    ]
)
GEMINI_KEYS = frozenset(
    [
        "contents",
        "systemInstruction",
        "generationConfig",
        "tools",
        "toolConfig",
        "safetySettings",
        "cachedContent",
        "labels",
    ]
)
GEMINI_GEN_KEYS = frozenset(
    [
        "temperature",
        "topP",
        "topK",
        "maxOutputTokens",
        "stopSequences",
        "candidateCount",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "thinkingConfig",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
    ]
)
BEDROCK_KEYS = frozenset(
    [
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
    ]
)


def validate_openai_chat(body: Json) -> None:
    only_keys(body, OPENAI_CHAT_KEYS, "request")
    need(isinstance(body.get("model"), str) and body["model"], "model is required")
    messages = body.get("messages")
    need(isinstance(messages, list) and messages, "messages must be a non-empty array")
    tool_ids: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        need(role in ("developer", "system", "user", "assistant", "tool"), f"messages[{i}].role invalid: {role!r}")
        content = m.get("content")
        if role == "assistant":
            need(content is not None or m.get("tool_calls"), f"messages[{i}]: assistant needs content or tool_calls")
            for call in m.get("tool_calls") or []:
                need(
                    call.get("type") == "function" and call.get("id"),
                    f"messages[{i}].tool_calls: id and type function required",
                )
                fn = call.get("function") or {}
                need(
                    isinstance(fn.get("name"), str) and isinstance(fn.get("arguments"), str),
                    "tool_calls[].function needs name and arguments (string)",
                )
                tool_ids.add(call["id"])
        elif role == "tool":
            need(m.get("tool_call_id") in tool_ids, f"messages[{i}].tool_call_id does not answer an earlier tool call")
        else:
            need(isinstance(content, (str, list)), f"messages[{i}].content must be a string or an array")
        if isinstance(content, list):
            for part in content:
                need(
                    part.get("type") in ("text", "image_url", "input_audio", "file", "refusal"),
                    f"messages[{i}] part type invalid",
                )
    t = body.get("temperature")
    need(t is None or 0 <= t <= 2, "temperature must be between 0 and 2")
    for tool in body.get("tools") or []:
        need(
            tool.get("type") == "function" and (tool.get("function") or {}).get("name"),
            "tools[] must be function tools with a name",
        )
    so = body.get("stream_options")
    need(so is None or body.get("stream"), "stream_options is only allowed with stream")


def validate_responses(body: Json) -> None:
    only_keys(body, RESPONSES_KEYS, "request")
    need(isinstance(body.get("model"), str), "model is required")
    need("input" in body, "input is required")
    for tool in body.get("tools") or []:
        need("function" not in tool, "Responses tools are flat (no nested function object)")


def _anthropic_blocks(content: Any, role: str, where: str, tool_ids: set[str]) -> set[str]:
    new_ids: set[str] = set()
    if isinstance(content, str):
        return new_ids
    need(isinstance(content, list) and content, f"{where}.content must be a string or non-empty array")
    seen_other = False
    for j, block in enumerate(content):
        kind = block.get("type")
        need(
            kind
            in (
                "text",
                "image",
                "document",
                "search_result",
                "tool_use",
                "tool_result",
                "thinking",
                "redacted_thinking",
            ),
            f"{where}.content[{j}].type invalid: {kind!r}",
        )
        if kind == "search_result":
            need(
                isinstance(block.get("source"), str)
                and isinstance(block.get("title"), str)
                and isinstance(block.get("content"), list)
                and all(isinstance(b, dict) and b.get("type") == "text" for b in block["content"]),
                f"{where}.content[{j}]: search_result needs source, title and text blocks",
            )
        if kind == "tool_result":
            need(role == "user", f"{where}: tool_result only in user turns")
            need(not seen_other, f"{where}: tool_result blocks must come first in the user turn")
            need(block.get("tool_use_id") in tool_ids, f"{where}.content[{j}].tool_use_id does not match a tool_use")
        else:
            seen_other = True
        if kind == "tool_use":
            need(role == "assistant", f"{where}: tool_use only in assistant turns")
            need(
                isinstance(block.get("input"), dict) and block.get("id") and block.get("name"),
                f"{where}.content[{j}]: tool_use needs id, name and input object",
            )
            new_ids.add(block["id"])
        if kind == "image":
            src = block.get("source") or {}
            need(src.get("type") in ("base64", "url"), f"{where}.content[{j}].source.type invalid")
            if src.get("type") == "base64":
                need(src.get("media_type") and src.get("data"), "image source needs media_type and data")
        if kind == "text":
            need(isinstance(block.get("text"), str), f"{where}.content[{j}].text required")
        if "cache_control" in block:
            need(block["cache_control"].get("type") == "ephemeral", f"{where}.content[{j}].cache_control.type invalid")
    return new_ids


def validate_anthropic(body: Json, headers: dict[bytes, bytes]) -> None:
    version = headers.get(b"anthropic-version", b"")
    need(re.fullmatch(rb"20\d\d-\d\d-\d\d", version), "anthropic-version header is required (a dated API version)")
    only_keys(body, ANTHROPIC_KEYS, "request")
    need(isinstance(body.get("model"), str), "model: Field required")
    need(isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0, "max_tokens: Field required")
    messages = body.get("messages")
    need(isinstance(messages, list) and messages, "messages: Field required")
    tool_ids: set[str] = set()
    for i, m in enumerate(messages):
        need(m.get("role") in ("user", "assistant"), f"messages[{i}].role must be user or assistant")
        tool_ids |= _anthropic_blocks(m.get("content"), m["role"], f"messages[{i}]", tool_ids)
    t = body.get("temperature")
    need(t is None or 0 <= t <= 1, "temperature: must be between 0 and 1")
    system = body.get("system")
    need(system is None or isinstance(system, (str, list)), "system must be a string or text blocks")
    for tool in body.get("tools") or []:
        need(tool.get("name") and isinstance(tool.get("input_schema"), dict), "tools[] need name and input_schema")
    tc = body.get("tool_choice")
    need(tc is None or tc.get("type") in ("auto", "any", "tool", "none"), "tool_choice.type invalid")


def validate_gemini(body: Json) -> None:
    only_keys(body, GEMINI_KEYS, "GenerateContentRequest")
    contents = body.get("contents")
    need(isinstance(contents, list) and contents, "contents is required")
    for i, c in enumerate(contents):
        need(c.get("role") in ("user", "model"), f"contents[{i}].role must be user or model")
        parts = c.get("parts")
        need(isinstance(parts, list) and parts, f"contents[{i}].parts must not be empty")
        for j, p in enumerate(parts):
            data_keys = {
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
                "executableCode",
                "codeExecutionResult",
            } & set(p)
            need(len(data_keys) == 1, f"contents[{i}].parts[{j}] must have exactly one data field")
            if "functionResponse" in p:
                fr = p["functionResponse"]
                need(
                    fr.get("name") and isinstance(fr.get("response"), dict),
                    "functionResponse needs name and a response object",
                )
            if "functionCall" in p:
                need(p["functionCall"].get("name"), "functionCall needs a name")
            if "inlineData" in p:
                need(
                    p["inlineData"].get("mimeType") and p["inlineData"].get("data"),
                    "inlineData needs mimeType and data",
                )
    gc = body.get("generationConfig")
    if gc is not None:
        only_keys(gc, GEMINI_GEN_KEYS, "generationConfig")
    si = body.get("systemInstruction")
    need(si is None or (isinstance(si.get("parts"), list) and si["parts"]), "systemInstruction needs parts")
    for tool in body.get("tools") or []:
        for decl in tool.get("functionDeclarations") or []:
            need(decl.get("name"), "functionDeclarations[] need a name")
            need(
                not ("parameters" in decl and "parametersJsonSchema" in decl),
                "only one of parameters or parametersJsonSchema",
            )


def validate_bedrock(body: Json) -> None:
    only_keys(body, BEDROCK_KEYS, "ConverseRequest")
    messages = body.get("messages")
    need(isinstance(messages, list) and messages, "messages is required")
    need(messages[0].get("role") == "user", "A conversation must start with a user message")
    has_tools = False
    for i, m in enumerate(messages):
        need(m.get("role") in ("user", "assistant"), f"messages[{i}].role must be user or assistant")
        need(i == 0 or messages[i - 1]["role"] != m["role"], "roles must alternate between user and assistant")
        content = m.get("content")
        need(isinstance(content, list) and content, f"messages[{i}].content must be a non-empty list")
        for j, block in enumerate(content):
            keys = {
                "text",
                "image",
                "document",
                "video",
                "toolUse",
                "toolResult",
                "guardContent",
                "reasoningContent",
                "cachePoint",
            } & set(block)
            need(
                len(keys) == 1 and len(block) == 1,
                f"messages[{i}].content[{j}] must be exactly one member of ContentBlock",
            )
            if "toolUse" in block:
                tu = block["toolUse"]
                need(
                    tu.get("toolUseId") and tu.get("name") and isinstance(tu.get("input"), dict),
                    "toolUse needs toolUseId, name and input",
                )
                has_tools = True
            if "toolResult" in block:
                tr = block["toolResult"]
                need(
                    tr.get("toolUseId") and isinstance(tr.get("content"), list),
                    "toolResult needs toolUseId and content",
                )
                has_tools = True
            if "image" in block:
                img = block["image"]
                need(
                    img.get("format") in ("png", "jpeg", "gif", "webp") and "bytes" in (img.get("source") or {}),
                    "image needs format and source.bytes",
                )
    if has_tools:
        need(body.get("toolConfig"), "toolConfig is required when the conversation has tool use")
    ic = body.get("inferenceConfig")
    if ic is not None:
        only_keys(ic, frozenset(("maxTokens", "temperature", "topP", "stopSequences")), "inferenceConfig")
    tc = body.get("toolConfig")
    if tc is not None:
        for tool in tc.get("tools") or []:
            need(len(tool) == 1 and set(tool) <= {"toolSpec", "cachePoint"}, "a Tool is a toolSpec or a cachePoint")
            if "cachePoint" in tool:
                need(tool["cachePoint"] == {"type": "default"}, "cachePoint.type must be default")
                continue
            spec = tool.get("toolSpec") or {}
            need(
                spec.get("name") and "json" in (spec.get("inputSchema") or {}),
                "toolSpec needs name and inputSchema.json",
            )
    for i, block in enumerate(body.get("system") or []):
        keys = {"text", "guardContent", "cachePoint"} & set(block)
        need(len(keys) == 1 and len(block) == 1, f"system[{i}] must be exactly one member of SystemContentBlock")
        if "cachePoint" in block:
            need(block["cachePoint"] == {"type": "default"}, "cachePoint.type must be default")


def verify_sigv4(method: str, url: str, headers: dict[bytes, bytes], body: bytes) -> None:
    """Recompute the signature with botocore from the request as received and compare."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = headers.get(b"authorization", b"").decode()
    need(auth.startswith("AWS4-HMAC-SHA256 "), "missing SigV4 Authorization header")
    fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
    scope = fields["Credential"].split("/")
    need(scope[0] == AWS_KEY, "unknown access key")
    need(scope[3] == "bedrock" and scope[4] == "aws4_request", "credential scope must be for service bedrock")
    amz_date = headers.get(b"x-amz-date", b"").decode()
    need(amz_date, "missing X-Amz-Date")
    signed = fields["SignedHeaders"].split(";")
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={h: headers.get(h.encode(), b"").decode() for h in signed if h != "host"},
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(AWS_KEY, AWS_SECRET), "bedrock", scope[2])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    need(
        expected == fields["Signature"], "The request signature we calculated does not match the signature you provided"
    )


# ---------------------------------------------------------------- answers


def _last_user_text(texts: list[tuple[str, str]]) -> str:
    for role, text in reversed(texts):
        if role == "user" and text:
            return text
    return ""


class Answer:
    """What to answer: text, or one tool call; plus the tool result when answering after one."""

    def __init__(self, kind: str, text: str, tool: str | None, tool_result: str | None) -> None:
        if tool_result is not None:
            self.text = f"The tool said: {tool_result}"
            self.tool = None
        elif tool is not None:
            self.text = ""
            self.tool = tool
        else:
            self.text = f"Hello from {kind}! You said: {text[:60]}"
            self.tool = None
        self.args: Json = {"city": "Paris"}
        self.user_text = text
        self.echo = False

    def echo_into_tool_call(self, tool: str | None) -> None:
        """``toolecho`` mode: a model that copies the user's text into a tool call's arguments
        (what a prompt-injected model leaking a secret does), streamed in 3-character pieces."""
        if self.tool is None and self.text.startswith("The tool said"):
            return  # the answer after a tool result stays text
        self.tool = tool or "lookup"
        self.text = ""
        self.args = {"query": self.user_text}
        self.echo = True

    def arguments(self) -> str:
        """The arguments as JSON text; echoed ones as the OpenAI Python SDK writes them (non-ASCII
        escaped as \\uXXXX), so guards meet JSON escapes."""
        return json.dumps(self.args) if self.echo else orjson.dumps(self.args).decode()

    def fragments(self, first: tuple[str, ...] = ()) -> list[str]:
        args = self.arguments()
        if self.echo:
            return [*first, *(args[i : i + 3] for i in range(0, len(args), 3))]
        return [*first, args[:5], args[5:]]

    def words(self) -> list[str]:
        words = self.text.split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _openai_answer(kind: str, body: Json) -> Answer:
    messages = body["messages"]
    texts = []
    for m in messages:
        c = m.get("content")
        texts.append(
            (m["role"], c if isinstance(c, str) else "".join(p.get("text", "") for p in c or [] if isinstance(p, dict)))
        )
    last = messages[-1]
    tools = body.get("tools") or []
    tool_result = (
        (last.get("content") if isinstance(last.get("content"), str) else "") if last["role"] == "tool" else None
    )
    tool = (
        tools[0]["function"]["name"] if tools and last["role"] != "tool" and body.get("tool_choice") != "none" else None
    )
    return Answer(kind, _last_user_text(texts), tool, tool_result)


def _anthropic_answer(body: Json) -> Answer:
    texts = []
    tool_result = None
    for m in body["messages"]:
        c = m["content"]
        if isinstance(c, str):
            texts.append((m["role"], c))
            tool_result = None
            continue
        tool_result = None
        for b in c:
            if b["type"] == "text":
                texts.append((m["role"], b["text"]))
            elif b["type"] == "tool_result":
                r = b.get("content")
                tool_result = r if isinstance(r, str) else "".join(x.get("text", "") for x in r or [])
    tools = body.get("tools") or []
    tool = (
        tools[0]["name"]
        if tools and tool_result is None and (body.get("tool_choice") or {}).get("type") != "none"
        else None
    )
    return Answer("anthropic", _last_user_text(texts), tool, tool_result)


def _gemini_answer(kind: str, body: Json) -> Answer:
    texts = []
    tool_result = None
    for c in body["contents"]:
        tool_result = None
        for p in c["parts"]:
            if "text" in p:
                texts.append(("user" if c["role"] == "user" else "assistant", p["text"]))
            if "functionResponse" in p:
                r = p["functionResponse"]["response"]
                tool_result = r.get("content") if isinstance(r.get("content"), str) else orjson.dumps(r).decode()
    decls = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    tool = decls[0]["name"] if decls and tool_result is None and mode != "NONE" else None
    return Answer(kind, _last_user_text(texts), tool, tool_result)


def _bedrock_answer(body: Json) -> Answer:
    texts = []
    tool_result = None
    for m in body["messages"]:
        tool_result = None
        for b in m["content"]:
            if "text" in b:
                texts.append((m["role"], b["text"]))
            if "toolResult" in b:
                parts = b["toolResult"]["content"]
                tool_result = "".join(
                    p.get("text", "") if "text" in p else orjson.dumps(p["json"]).decode() for p in parts
                )
    tools = (body.get("toolConfig") or {}).get("tools") or []
    tool = tools[0]["toolSpec"]["name"] if tools and tool_result is None else None
    return Answer("bedrock", _last_user_text(texts), tool, tool_result)


def sse(data: Json | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else orjson.dumps(data).decode()
    return (f"event: {event}\n" if event else "").encode() + b"data: " + payload.encode() + b"\n\n"


def frame(event_type: str, payload: Json, message_type: str = "event") -> bytes:
    """One AWS event-stream frame (string headers), written here independently of the gateway."""
    headers = {
        ":event-type" if message_type == "event" else ":exception-type": event_type,
        ":content-type": "application/json",
        ":message-type": message_type,
    }
    head = b"".join(string_header(k, v) for k, v in headers.items())
    return raw_frame(head, orjson.dumps(payload))


def string_header(name: str, value: str) -> bytes:
    """One event-stream header of type string (7)."""
    kb, vb = name.encode(), value.encode()
    return struct.pack("B", len(kb)) + kb + b"\x07" + struct.pack(">H", len(vb)) + vb


def raw_frame(head: bytes, body: bytes) -> bytes:
    """An event-stream frame around header bytes as given (right or not), with correct CRCs."""
    total = 16 + len(head) + len(body)
    prelude = struct.pack(">II", total, len(head))
    msg = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + body
    return msg + struct.pack(">I", zlib.crc32(msg))


class Fake:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.last: Json = {}
        self.count = 0

    # Each handler returns (status, headers, body chunks (list or async generator)).
    def error(self, status: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
        kind = self.kind
        if kind == "anthropic":
            types = {
                400: "invalid_request_error",
                401: "authentication_error",
                404: "not_found_error",
                429: "rate_limit_error",
                500: "api_error",
            }
            body: Json = {
                "type": "error",
                "error": {"type": types.get(status, "api_error"), "message": message},
                "request_id": "req_fake",
            }
            return status, [("content-type", "application/json"), ("request-id", "req_fake")], orjson.dumps(body)
        if kind in ("gemini", "vertex"):
            statuses = {
                400: "INVALID_ARGUMENT",
                401: "UNAUTHENTICATED",
                403: "PERMISSION_DENIED",
                404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED",
                500: "INTERNAL",
            }
            return (
                status,
                [("content-type", "application/json")],
                orjson.dumps(
                    {"error": {"code": status, "message": message, "status": statuses.get(status, "INTERNAL")}}
                ),
            )
        if kind == "bedrock":
            names = {
                400: "ValidationException",
                403: "AccessDeniedException",
                404: "ResourceNotFoundException",
                429: "ThrottlingException",
                500: "InternalServerException",
            }
            return (
                status,
                [
                    ("content-type", "application/json"),
                    ("x-amzn-ErrorType", names.get(status, "InternalServerException")),
                    ("x-amzn-RequestId", "fake-req"),
                ],
                orjson.dumps({"message": message}),
            )
        types2 = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests", 500: "server_error"}
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return (
            status,
            [("content-type", "application/json"), ("x-request-id", "req_fake")],
            orjson.dumps(
                {"error": {"message": message, "type": types2.get(status, "server_error"), "param": None, "code": code}}
            ),
        )

    def check_auth(self, headers: dict[bytes, bytes], method: str, url: str, body: bytes) -> None:
        """A wrong key is a 401 that quotes it as the provider does: OpenAI shows its first 8 and
        last 4 characters with the middle starred; a key containing ``-echo-`` is quoted whole
        (as some OpenAI-compatible servers do), in the body and in ``x-request-id``."""
        kind = self.kind
        if kind == "bedrock":
            verify_sigv4(method, url, headers, body)
            return
        path = url.partition("://")[2].partition("/")[2].partition("?")[0]
        if kind == "gemini" and path.startswith("v1beta/openai/"):
            kind = "openai"  # Gemini's OpenAI-compatible endpoint takes the key as a bearer token
        name = {"anthropic": b"x-api-key", "gemini": b"x-goog-api-key", "azure": b"api-key"}.get(kind, b"authorization")
        sent = headers.get(name, b"").decode("latin-1")
        if name == b"authorization":
            sent = sent.removeprefix("Bearer ")
        if kind in ("anthropic", "azure"):
            need(b"authorization" not in headers, "unexpected Authorization header")
        if sent == API_KEY:
            return
        echo = "-echo-" in sent
        if kind == "anthropic":
            message = "invalid x-api-key"
        elif kind == "gemini":
            message = "API key not valid. Please pass a valid API key."
        elif kind == "azure":
            message = "Access denied due to invalid subscription key or wrong API endpoint."
        else:
            quoted = sent if echo or len(sent) <= 12 else sent[:8] + "*" * (len(sent) - 12) + sent[-4:]
            message = (
                f"Incorrect API key provided: {quoted}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        if echo and kind != "openai":
            message += f" (key {sent})"
        raise Invalid(message, 401, [("x-request-id", f"req_{sent}")] if echo else [])

    async def handle(
        self, method: str, target: str, headers: dict[bytes, bytes], body: bytes, host: str
    ) -> tuple[int, list[tuple[str, str]], Any]:
        path, _, query = target.partition("?")
        if method == "GET" and path == "/_last":
            return 200, [("content-type", "application/json")], orjson.dumps(self.last)
        if method == "GET" and path == "/_count":
            return 200, [("content-type", "application/json")], orjson.dumps({"count": self.count})
        self.count += 1
        self.last = {
            "path": target,
            "headers": {k.decode(): v.decode("latin-1") for k, v in headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        if method != "POST":
            return self.error(405, "method not allowed")
        try:
            need(
                headers.get(b"content-type", b"").startswith(b"application/json"),
                "content-type must be application/json",
            )
            try:
                self.check_auth(headers, method, f"http://{host}{target}", body)
            except Invalid as exc:
                raise Invalid(exc.message, 403 if self.kind == "bedrock" else 401, exc.headers) from None
            try:
                req = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise Invalid("request body is not valid JSON") from None
            need(isinstance(req, dict), "request body must be an object")
            return await self.route(path, query, req, headers)
        except Invalid as exc:
            status, resp_headers, payload = self.error(exc.status, exc.message)
            extra = {k for k, _ in exc.headers}
            return status, [*(h for h in resp_headers if h[0] not in extra), *exc.headers], payload
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            # A body of a shape the checks above did not foresee: a provider refuses it (400)
            # rather than leaving the connection without an answer.
            return self.error(400, f"malformed request: {type(exc).__name__}")

    async def misbehave(self, model: str) -> tuple[int, str] | None:
        if "fail429" in model:
            return 429, "Rate limit reached for requests"
        if "fail500" in model:
            return 500, "The server had an error while processing your request"
        if "slow" in model:
            await asyncio.sleep(3)
        return None

    async def route(
        self, path: str, query: str, req: Json, headers: dict[bytes, bytes]
    ) -> tuple[int, list[tuple[str, str]], Any]:
        kind = self.kind
        if kind == "compat":
            return await self.compat(path, req, headers)
        if kind == "gemini" and path.startswith("/v1beta/openai/"):
            return await self.compat(path, req, headers, "/v1beta/openai")
        if kind == "azure" and path.startswith("/anthropic/v1/messages"):
            return await self.compat(path, req, headers, "/anthropic/v1")
        if kind == "azure" and path.startswith("/api/projects/"):
            parts = path.split("/")
            need(len(parts) > 5 and parts[4:6] == ["openai", "v1"], f"unknown path {path}")
            return await self.compat(path, req, headers, "/".join(parts[:6]))
        if kind in ("openai", "azure"):
            if kind == "azure":
                if path.startswith("/openai/deployments/"):
                    need("api-version=" in query, "api-version query parameter is required")
                    model = path.split("/")[3]
                    sub = "/" + "/".join(path.split("/")[4:])
                else:
                    need(path.startswith("/openai/v1/"), f"unknown path {path}")
                    sub = path[len("/openai/v1") :]
                    model = req.get("model", "")
            else:
                need(path.startswith("/v1/"), f"unknown path {path}")
                sub = path[len("/v1") :]
                model = req.get("model", "")
            bad = await self.misbehave(model)
            if bad:
                return self.error(*bad)
            if sub == "/chat/completions":
                if kind == "azure" and path.startswith("/openai/deployments/"):
                    req.setdefault("model", model)
                validate_openai_chat(req)
                return self.openai_chat(req)
            if sub == "/responses" and not path.startswith("/openai/deployments/"):
                validate_responses(req)
                return self.openai_responses(req)
            if sub == "/embeddings":
                need(req.get("model") and "input" in req, "model and input are required")
                only_keys(req, frozenset(("model", "input", "encoding_format", "dimensions", "user")), "request")
                inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
                data = [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, float(i)]} for i in range(len(inputs))
                ]
                return (
                    200,
                    [("content-type", "application/json")],
                    orjson.dumps(
                        {
                            "object": "list",
                            "data": data,
                            "model": req["model"],
                            "usage": {"prompt_tokens": 4, "total_tokens": 4},
                        }
                    ),
                )
            raise Invalid(f"unknown path {path}", 404)
        if kind == "anthropic":
            if path == "/v1/messages/count_tokens":
                need(req.get("model") and req.get("messages"), "model and messages are required")
                return 200, [("content-type", "application/json")], orjson.dumps({"input_tokens": 42})
            need(path == "/v1/messages", f"unknown path {path}")
            bad = await self.misbehave(req.get("model", ""))
            if bad:
                return self.error(*bad)
            validate_anthropic(req, headers)
            return self.anthropic(req)
        if kind in ("gemini", "vertex"):
            prefix = (
                "/v1beta/models/"
                if kind == "gemini"
                else "/v1/projects/proj-1/locations/us-central1/publishers/google/models/"
            )
            need(path.startswith(prefix), f"unknown path {path}")
            model, _, method = unquote(path[len(prefix) :]).partition(":")
            if method == "batchEmbedContents":
                reqs = req.get("requests")
                need(isinstance(reqs, list) and reqs, "requests is required")
                for r in reqs:
                    need(
                        r.get("model") == f"models/{model}" and (r.get("content") or {}).get("parts"),
                        "each request needs model and content",
                    )
                return (
                    200,
                    [("content-type", "application/json")],
                    orjson.dumps({"embeddings": [{"values": [0.5, float(i)]} for i in range(len(reqs))]}),
                )
            if method == "predict" and kind == "vertex":
                instances = req.get("instances")
                need(isinstance(instances, list) and instances, "instances is required")
                need(all(isinstance(i.get("content"), str) for i in instances), "each instance needs content")
                only_keys(req, frozenset(("instances", "parameters")), "PredictRequest")
                preds = [
                    {"embeddings": {"values": [0.25, float(i)], "statistics": {"token_count": 3, "truncated": False}}}
                    for i in range(len(instances))
                ]
                return 200, [("content-type", "application/json")], orjson.dumps({"predictions": preds})
            need(method in ("generateContent", "streamGenerateContent"), f"unknown method {method}")
            if method == "streamGenerateContent":
                need(query == "alt=sse", "this fake streams with alt=sse only")
            bad = await self.misbehave(model)
            if bad:
                return self.error(*bad)
            validate_gemini(req)
            return self.gemini(req, model, method == "streamGenerateContent")
        # bedrock
        need(path.startswith("/model/"), f"unknown path {path}")
        model_id, _, action = path[len("/model/") :].rpartition("/")
        model_id = unquote(model_id)
        if action == "invoke":
            if model_id.startswith("cohere."):
                only_keys(req, frozenset(("texts", "input_type", "truncate", "embedding_types")), "Cohere embed")
                need(isinstance(req.get("texts"), list) and req.get("input_type"), "texts and input_type are required")
                vectors = [[0.5, float(i)] for i in range(len(req["texts"]))]
                return (
                    200,
                    [("content-type", "application/json")],
                    orjson.dumps(
                        {"id": "e1", "embeddings": vectors, "texts": req["texts"], "response_type": "embeddings_floats"}
                    ),
                )
            need("titan-embed" in model_id, f"model {model_id} cannot be invoked by this fake")
            only_keys(req, frozenset(("inputText", "dimensions", "normalize", "embeddingTypes")), "Titan embed")
            need(isinstance(req.get("inputText"), str), "inputText is required")
            return (
                200,
                [("content-type", "application/json")],
                orjson.dumps({"embedding": [0.125, 0.5], "inputTextTokenCount": 4}),
            )
        need(action in ("converse", "converse-stream"), f"unknown action {action}")
        bad = await self.misbehave(model_id)
        if bad:
            return self.error(*bad)
        validate_bedrock(req)
        return self.bedrock(req, model_id, action == "converse-stream")

    async def compat(
        self, path: str, req: Json, headers: dict[bytes, bytes], prefix: str | None = None
    ) -> tuple[int, list[tuple[str, str]], Any]:
        """An OpenAI-compatible vendor: the API by the end of the path (under ``prefix`` when the
        vendor has a fixed one)."""
        if prefix is not None:
            need(path.startswith(prefix + "/"), f"unknown path {path}")
        model = req.get("model", "")
        bad = await self.misbehave(model if isinstance(model, str) else "")
        if bad:
            return self.error(*bad)
        if path.endswith("/chat/completions"):
            validate_openai_chat(req)
            return self.openai_chat(req)
        if path.endswith("/messages/count_tokens"):
            need(req.get("model") and req.get("messages"), "model and messages are required")
            return 200, [("content-type", "application/json")], orjson.dumps({"input_tokens": 42})
        if path.endswith("/messages"):
            validate_anthropic(req, headers)
            return self.anthropic(req)
        if path.endswith("/responses"):
            validate_responses(req)
            return self.openai_responses(req)
        if path.endswith("/embeddings"):
            need(req.get("model") and "input" in req, "model and input are required")
            only_keys(req, frozenset(("model", "input", "encoding_format", "dimensions", "user")), "request")
            inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
            data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, float(i)]} for i in range(len(inputs))]
            usage = {"prompt_tokens": 4, "total_tokens": 4}
            body = {"object": "list", "data": data, "model": req["model"], "usage": usage}
            return 200, [("content-type", "application/json")], orjson.dumps(body)
        if path.endswith("/rerank"):
            return self.rerank(req)
        raise Invalid(f"unknown path {path}", 404)

    def rerank(self, req: Json) -> tuple[int, list[tuple[str, str]], Any]:
        """Cohere's v2 rerank (which Together, Fireworks and OpenRouter follow)."""
        only_keys(
            req,
            frozenset(
                ("model", "query", "documents", "top_n", "return_documents", "max_tokens_per_doc", "rank_fields")
            ),
            "rerank request",
        )
        need(isinstance(req.get("model"), str) and req["model"], "model is required")
        need(isinstance(req.get("query"), str) and req["query"], "query is required")
        docs = req.get("documents")
        need(isinstance(docs, list) and docs, "documents is required")
        texts = [d if isinstance(d, str) else (d.get("text") if isinstance(d, dict) else None) for d in docs]
        need(all(isinstance(t, str) for t in texts), "documents are strings or {text} objects")
        words = set(req["query"].lower().split())
        scored = [(i, len(words & set(str(t).lower().split())) / (len(words) or 1)) for i, t in enumerate(texts)]
        scored.sort(key=lambda x: -x[1])
        top = req.get("top_n")
        if isinstance(top, int):
            scored = scored[:top]
        results = [{"index": i, "relevance_score": round(score, 3)} for i, score in scored]
        body = {
            "id": "rerank-fake",
            "results": results,
            "meta": {"billed_units": {"search_units": 1}},
            "usage": {"prompt_tokens": USAGE_IN, "total_tokens": USAGE_IN},
        }
        return 200, [("content-type", "application/json")], orjson.dumps(body)

    # ------------------------------------------------------------------ OpenAI

    def openai_chat(self, req: Json) -> tuple[int, list[tuple[str, str]], Any]:
        ans = _openai_answer(self.kind, req)
        model = req["model"]
        if "toolecho" in model:
            tools = req.get("tools") or []
            ans.echo_into_tool_call(tools[0]["function"]["name"] if tools else None)
        usage = {
            "prompt_tokens": USAGE_IN,
            "completion_tokens": USAGE_OUT,
            "total_tokens": USAGE_IN + USAGE_OUT,
            "prompt_tokens_details": {"cached_tokens": CACHED, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": REASONING,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        finish = "tool_calls" if ans.tool else "stop"
        if not req.get("stream"):
            message: Json = {"role": "assistant", "content": ans.text or None, "refusal": None, "annotations": []}
            if ans.tool:
                message["tool_calls"] = [
                    {
                        "id": "call_fake1",
                        "type": "function",
                        "function": {"name": ans.tool, "arguments": ans.arguments()},
                    }
                ]
            body = {
                "id": "chatcmpl-fake1",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            }
            return 200, [("content-type", "application/json"), ("x-request-id", "req_fake")], orjson.dumps(body)
        include = (req.get("stream_options") or {}).get("include_usage")
        midstream = "midstream" in model or "leakkey" in model

        async def events() -> Any:
            base = {
                "id": "chatcmpl-fake1",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
            }

            def ch(delta: Json, finish_reason: str | None = None) -> bytes:
                out = {
                    **base,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                }
                if include:
                    out["usage"] = None
                return sse(out)

            yield ch({"role": "assistant", "content": "", "refusal": None})
            if ans.tool:
                yield ch(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_fake1",
                                "type": "function",
                                "function": {"name": ans.tool, "arguments": ""},
                            }
                        ]
                    }
                )
                for frag in ans.fragments():
                    yield ch({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]})
            else:
                for i, w in enumerate(ans.words()):
                    yield ch({"content": w})
                    if midstream and i == 0:
                        yield sse(
                            {
                                "error": {
                                    "message": "The server had an error mid-stream"
                                    + (f" for key {API_KEY}" if "leakkey" in model else ""),
                                    "type": "server_error",
                                    "param": None,
                                    "code": None,
                                }
                            }
                        )
                        return
            yield ch({}, finish)
            if include:
                yield sse({**base, "choices": [], "usage": usage})
            yield sse("[DONE]")

        return 200, [("content-type", "text/event-stream"), ("x-request-id", "req_fake")], events()

    def openai_responses(self, req: Json) -> tuple[int, list[tuple[str, str]], Any]:
        text = f"Hello from openai responses! You said: {req['input'] if isinstance(req['input'], str) else 'items'}"
        usage = {
            "input_tokens": USAGE_IN,
            "input_tokens_details": {"cached_tokens": CACHED},
            "output_tokens": USAGE_OUT,
            "output_tokens_details": {"reasoning_tokens": REASONING},
            "total_tokens": USAGE_IN + USAGE_OUT,
        }
        item = {
            "type": "message",
            "id": "msg_fake",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        resp = {
            "id": "resp_fake",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": req["model"],
            "output": [item],
            "usage": usage,
            "error": None,
            "incomplete_details": None,
            "tools": [],
            "tool_choice": "auto",
            "parallel_tool_calls": True,
        }
        if not req.get("stream"):
            return 200, [("content-type", "application/json")], orjson.dumps(resp)

        async def events() -> Any:
            seq = 0

            def ev(kind: str, data: Json) -> bytes:
                nonlocal seq
                seq += 1
                return sse({"type": kind, "sequence_number": seq - 1, **data}, kind)

            start = {**resp, "status": "in_progress", "output": [], "usage": None}
            yield ev("response.created", {"response": start})
            yield ev(
                "response.output_item.added",
                {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}},
            )
            yield ev(
                "response.content_part.added",
                {
                    "item_id": "msg_fake",
                    "output_index": 0,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []},
                },
            )
            yield ev(
                "response.output_text.delta",
                {"item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": text},
            )
            yield ev(
                "response.output_text.done",
                {"item_id": "msg_fake", "output_index": 0, "content_index": 0, "text": text},
            )
            yield ev(
                "response.content_part.done",
                {
                    "item_id": "msg_fake",
                    "output_index": 0,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": []},
                },
            )
            yield ev("response.output_item.done", {"output_index": 0, "item": item})
            yield ev("response.completed", {"response": resp})

        return 200, [("content-type", "text/event-stream")], events()

    # ------------------------------------------------------------------ Anthropic

    def anthropic(self, req: Json) -> tuple[int, list[tuple[str, str]], Any]:
        ans = _anthropic_answer(req)
        model = req["model"]
        if "toolecho" in model:
            tools = req.get("tools") or []
            ans.echo_into_tool_call(tools[0]["name"] if tools else None)
        usage = {
            "input_tokens": USAGE_IN - CACHED,
            "output_tokens": USAGE_OUT,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": CACHED,
            "service_tier": "standard",
        }
        stop = "tool_use" if ans.tool else "end_turn"
        content: list[Json] = (
            [{"type": "tool_use", "id": "toolu_fake1", "name": ans.tool, "input": ans.args}]
            if ans.tool
            else [{"type": "text", "text": ans.text}]
        )
        if not req.get("stream"):
            body = {
                "id": "msg_fake1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
            }
            return 200, [("content-type", "application/json"), ("request-id", "req_fake")], orjson.dumps(body)
        midstream = "midstream" in model or "leakkey" in model

        async def events() -> Any:
            start_usage = {**usage, "output_tokens": 1}
            message = {
                "id": "msg_fake1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            }
            yield sse({"type": "message_start", "message": message}, "message_start")
            yield sse({"type": "ping"}, "ping")
            if ans.tool:
                yield sse(
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "tool_use", "id": "toolu_fake1", "name": ans.tool, "input": {}},
                    },
                    "content_block_start",
                )
                for frag in ans.fragments(("",)):
                    yield sse(
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "input_json_delta", "partial_json": frag},
                        },
                        "content_block_delta",
                    )
            else:
                yield sse(
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    "content_block_start",
                )
                for i, w in enumerate(ans.words()):
                    yield sse(
                        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}},
                        "content_block_delta",
                    )
                    if midstream and i == 0:
                        yield sse(
                            {
                                "type": "error",
                                "error": {
                                    "type": "overloaded_error",
                                    "message": "Overloaded" + (f" (key {API_KEY})" if "leakkey" in model else ""),
                                },
                            },
                            "error",
                        )
                        return
            yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
            yield sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": USAGE_OUT},
                },
                "message_delta",
            )
            yield sse({"type": "message_stop"}, "message_stop")

        return 200, [("content-type", "text/event-stream"), ("request-id", "req_fake")], events()

    # ------------------------------------------------------------------ Gemini / Vertex

    def gemini(self, req: Json, model: str, stream: bool) -> tuple[int, list[tuple[str, str]], Any]:
        ans = _gemini_answer(self.kind, req)
        usage = {
            "promptTokenCount": USAGE_IN,
            "candidatesTokenCount": USAGE_OUT - REASONING,
            "totalTokenCount": USAGE_IN + USAGE_OUT,
            "cachedContentTokenCount": CACHED,
            "thoughtsTokenCount": REASONING,
        }
        parts: list[Json] = (
            [{"functionCall": {"name": ans.tool, "args": ans.args}}] if ans.tool else [{"text": ans.text}]
        )
        if not stream:
            body = {
                "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": usage,
                "modelVersion": model,
                "responseId": "gem-fake1",
            }
            return 200, [("content-type", "application/json")], orjson.dumps(body)
        midstream = "midstream" in model or "leakkey" in model

        async def events() -> Any:
            if ans.tool:
                yield sse(
                    {
                        "candidates": [
                            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
                        ],
                        "usageMetadata": usage,
                        "modelVersion": model,
                        "responseId": "gem-fake1",
                    }
                )
                return
            words = ans.words()
            for i, w in enumerate(words):
                cand: Json = {"content": {"role": "model", "parts": [{"text": w}]}, "index": 0}
                out: Json = {"candidates": [cand], "modelVersion": model, "responseId": "gem-fake1"}
                if i == len(words) - 1:
                    cand["finishReason"] = "STOP"
                    out["usageMetadata"] = usage
                else:
                    out["usageMetadata"] = {"promptTokenCount": USAGE_IN, "totalTokenCount": USAGE_IN}
                yield sse(out)
                if midstream and i == 0:
                    yield sse({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
                    return

        return 200, [("content-type", "text/event-stream")], events()

    # ------------------------------------------------------------------ Bedrock

    def bedrock(self, req: Json, model: str, stream: bool) -> tuple[int, list[tuple[str, str]], Any]:
        ans = _bedrock_answer(req)
        usage = {
            "inputTokens": USAGE_IN - CACHED,
            "outputTokens": USAGE_OUT,
            "totalTokens": USAGE_IN + USAGE_OUT,
            "cacheReadInputTokens": CACHED,
            "cacheWriteInputTokens": 0,
        }
        stop = "tool_use" if ans.tool else "end_turn"
        content: list[Json] = (
            [{"toolUse": {"toolUseId": "tooluse_fake1", "name": ans.tool, "input": ans.args}}]
            if ans.tool
            else [{"text": ans.text}]
        )
        if not stream:
            body = {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop,
                "usage": usage,
                "metrics": {"latencyMs": 12},
            }
            return 200, [("content-type", "application/json"), ("x-amzn-RequestId", "fake-req")], orjson.dumps(body)
        midstream = "midstream" in model or "leakkey" in model

        async def events() -> Any:
            yield frame("messageStart", {"role": "assistant", "p": "abc"})
            if ans.tool:
                yield frame(
                    "contentBlockStart",
                    {
                        "contentBlockIndex": 0,
                        "start": {"toolUse": {"toolUseId": "tooluse_fake1", "name": ans.tool}},
                        "p": "ab",
                    },
                )
                args = orjson.dumps(ans.args).decode()
                for frag in (args[:5], args[5:]):
                    yield frame(
                        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": frag}}, "p": "a"}
                    )
            else:
                for i, w in enumerate(ans.words()):
                    data = frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w}, "p": "abcd"})
                    # split frames across writes to exercise the decoder's buffering
                    yield data[:7]
                    yield data[7:]
                    if midstream and i == 0:
                        yield frame("modelStreamErrorException", {"message": "Model stream error"}, "exception")
                        return
            yield frame("contentBlockStop", {"contentBlockIndex": 0, "p": "ab"})
            yield frame("messageStop", {"stopReason": stop, "p": "abc"})
            yield frame("metadata", {"usage": usage, "metrics": {"latencyMs": 20}, "p": "abcdef"})

        return 200, [("content-type", "application/vnd.amazon.eventstream"), ("x-amzn-RequestId", "fake-req")], events()


# ---------------------------------------------------------------- HTTP server (httptools)


class FakeProtocol(asyncio.Protocol):
    def __init__(self, fake: Fake, loop: asyncio.AbstractEventLoop) -> None:
        self.fake = fake
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.queue: asyncio.Queue[tuple[str, str, dict[bytes, bytes], bytes, bool] | None] = asyncio.Queue()
        self.task = loop.create_task(self.serve())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        self.queue.put_nowait(
            (method, self.url.decode(), self.headers, b"".join(self.body), self.parser.should_keep_alive())
        )

    async def serve(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None or self.transport is None:
                return
            method, target, headers, body, keep = item
            host = headers.get(b"host", b"").decode()
            status, resp_headers, payload = await self.fake.handle(method, target, headers, body, host)
            head = [f"HTTP/1.1 {status} X\r\n".encode()]
            head += [f"{k}: {v}\r\n".encode() for k, v in resp_headers]
            if isinstance(payload, bytes):
                head.append(b"content-length: %d\r\n\r\n" % len(payload))
                self.transport.write(b"".join(head) + payload)
            else:
                head.append(b"transfer-encoding: chunked\r\n\r\n")
                self.transport.write(b"".join(head))
                pause = 0.25 if "slowstream" in target + body.decode("utf-8", "replace")[:300] else 0
                async for part in payload:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(part), part))
                    await asyncio.sleep(pause)
                self.transport.write(b"0\r\n\r\n")
            if not keep:
                self.transport.close()
                return


async def main_async(kind: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    fake = Fake(kind)
    server = await loop.create_server(lambda: FakeProtocol(fake, loop), "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--kind", required=True, choices=["openai", "azure", "anthropic", "gemini", "vertex", "bedrock", "compat"]
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        uvloop.run(main_async(args.kind, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
