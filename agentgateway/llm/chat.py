"""The canonical form translations meet in: OpenAI Chat Completions requests, responses and
stream chunks (as decoded dicts). Helpers shared by every translation module."""

from __future__ import annotations

import base64
import itertools
import os
import time
from typing import Any

import orjson

from agentgateway.llm.errors import LlmError

Json = dict[str, Any]

# The model's reasoning in a Chat message or delta, as OpenAI-compatible providers add it
# (DeepSeek and vLLM: ``reasoning_content``; OpenRouter, Groq, Ollama: ``reasoning``).
CHAT_REASONING = ("reasoning_content", "reasoning")

_ids = itertools.count(1)
_PREFIX = os.urandom(6).hex()


def new_id(prefix: str) -> str:
    """Unique enough for response ids: a per-process random prefix and a counter."""
    return f"{prefix}{_PREFIX}{next(_ids):08x}"


def now() -> int:
    return int(time.time())


def text_of(content: Any) -> str:
    """The text of a Chat message ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")
        )
    return ""


def append_turn(turns: list[Json], role: str, items: list[Json], key: str = "content") -> None:
    """Add ``items`` as a turn of ``role``, merged into the last turn when it has the same role
    (providers that want strictly alternating turns: Anthropic, Bedrock, Gemini)."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


def parse_arguments(arguments: Any) -> Any:
    """Tool-call arguments (a JSON string in Chat) as an object; '' means no arguments."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise LlmError(400, "tool call arguments are not valid JSON") from None
    return value if isinstance(value, dict) else {"value": value}


def dump_arguments(value: Any) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def split_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` → (mime, data); None for other URLs."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        raise LlmError(400, "image data URLs must be base64 encoded")
    return head[: -len(";base64")] or "application/octet-stream", data


def data_url(mime: str, data: str) -> str:
    return f"data:{mime};base64,{data}"


def b64_valid(data: str) -> bool:
    try:
        base64.b64decode(data, validate=True)
    except ValueError:
        return False
    return True


def max_output_tokens(req: Json) -> int | None:
    value = req.get("max_completion_tokens")
    if value is None:
        value = req.get("max_tokens")
    return value if isinstance(value, int) else None


def stop_list(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str)]
    return None


def chunk(cid: str, model: str, created: int, delta: Json, finish: str | None = None) -> Json:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def completion(cid: str, model: str, message: Json, finish: str, usage: Json | None) -> Json:
    out: Json = {
        "id": cid,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def assistant_message(text: str | None, tool_calls: list[Json]) -> Json:
    message: Json = {"role": "assistant", "content": text if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if message["content"] is None and not tool_calls:
        message["content"] = ""
    return message


def tool_call(call_id: str, name: str, arguments: str) -> Json:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
