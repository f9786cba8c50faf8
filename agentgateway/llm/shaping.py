"""``policies.ai`` applied to a request in the client's own format (so a request that passes
through untranslated keeps every field): defaults, overrides, prompt enrichment, and the walk
over its texts that guards and token estimates use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentgateway.llm.config import LlmPolicy
from agentgateway.llm.errors import CHAT, COUNT_TOKENS, EMBEDDINGS, MESSAGES, RESPONSES

Json = dict[str, Any]


def apply_defaults(policy: LlmPolicy, body: Json) -> None:
    for key, value in policy.defaults.items():
        if key not in body:
            body[key] = value
    for key, value in policy.overrides.items():
        body[key] = value


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "".join(b.get("text", "") for b in system if isinstance(b, dict))
    return ""


def apply_prompts(policy: LlmPolicy, api: str, body: Json) -> None:
    """Prepend / append the configured messages. System prompts go where each API keeps them."""
    if not policy.prepend and not policy.append:
        return
    if api == CHAT:
        body["messages"] = [
            *(dict(m) for m in policy.prepend),
            *(body.get("messages") or []),
            *(dict(m) for m in policy.append),
        ]
    elif api in (MESSAGES, COUNT_TOKENS):
        system_before = [m["content"] for m in policy.prepend if m["role"] in ("system", "developer")]
        system_after = [m["content"] for m in policy.append if m["role"] in ("system", "developer")]
        if system_before or system_after:
            parts = [*system_before, _system_text(body.get("system")), *system_after]
            body["system"] = "\n\n".join(p for p in parts if p)
        before = [dict(m) for m in policy.prepend if m["role"] not in ("system", "developer")]
        after = [dict(m) for m in policy.append if m["role"] not in ("system", "developer")]
        body["messages"] = [*before, *(body.get("messages") or []), *after]
    elif api == RESPONSES:
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        body["input"] = [*(dict(m) for m in policy.prepend), *(items or []), *(dict(m) for m in policy.append)]


def _walk_content(content: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(content, str):
        return fn(content)
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                part["text"] = fn(part["text"])
            if part.get("type") == "tool_result":
                part["content"] = _walk_content(part.get("content"), fn)
            elif part.get("type") == "function_call_output" and isinstance(part.get("output"), str):
                part["output"] = fn(part["output"])
    return content


def walk_request_texts(api: str, body: Json, fn: Callable[[str], str]) -> None:
    """Calls ``fn`` on every prompt text of the request and stores what it returns."""
    if api == CHAT:
        for msg in body.get("messages") or []:
            if isinstance(msg, dict):
                msg["content"] = _walk_content(msg.get("content"), fn)
    elif api in (MESSAGES, COUNT_TOKENS):
        if "system" in body:
            body["system"] = _walk_content(body["system"], fn)
        for msg in body.get("messages") or []:
            if isinstance(msg, dict):
                msg["content"] = _walk_content(msg.get("content"), fn)
    elif api == RESPONSES:
        if isinstance(body.get("instructions"), str):
            body["instructions"] = fn(body["instructions"])
        items = body.get("input")
        if isinstance(items, str):
            body["input"] = fn(items)
        elif isinstance(items, list):
            for item in items:
                if isinstance(item, dict):
                    if "content" in item:
                        item["content"] = _walk_content(item["content"], fn)
                    if isinstance(item.get("output"), str):
                        item["output"] = fn(item["output"])
    elif api == EMBEDDINGS:
        value = body.get("input")
        if isinstance(value, str):
            body["input"] = fn(value)
        elif isinstance(value, list):
            body["input"] = [fn(v) if isinstance(v, str) else v for v in value]


def walk_response_texts(api: str, body: Json, fn: Callable[[str], str]) -> None:
    """The completion texts of a response in a client format (for response guards)."""
    if api == CHAT:
        for choice in body.get("choices") or []:
            message = choice.get("message") or {}
            if isinstance(message.get("content"), str):
                message["content"] = fn(message["content"])
    elif api == MESSAGES:
        for block in body.get("content") or []:
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                block["text"] = fn(block["text"])
    elif api == RESPONSES:
        for item in body.get("output") or []:
            for part in item.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = fn(part["text"])


def collect_texts(api: str, body: Json) -> list[str]:
    texts: list[str] = []

    def keep(text: str) -> str:
        texts.append(text)
        return text

    walk_request_texts(api, body, keep)
    return texts
