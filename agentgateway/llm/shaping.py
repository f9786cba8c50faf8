"""``policies.ai`` applied to a request in the client's own format (so a request that passes
through untranslated keeps every field): defaults, overrides, prompt enrichment, and the walk
over its texts that guards and token estimates use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentgateway.llm.chat import CHAT_REASONING
from agentgateway.llm.config import LlmPolicy
from agentgateway.llm.errors import CHAT, COUNT_TOKENS, EMBEDDINGS, MESSAGES, RESPONSES, LlmError

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
        return "".join(b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


# What each API's conversation is, by key: the kinds of JSON value it may be. The gateway
# iterates these (prompts, guards, token counts), so another kind is the client's error (400),
# never one the gateway trips on.
_CONTAINERS: dict[str, tuple[tuple[str, tuple[type, ...], str], ...]] = {
    CHAT: (("messages", (list,), "a list of messages"),),
    MESSAGES: (("messages", (list,), "a list of messages"), ("system", (str, list), "a string or a list of blocks")),
    COUNT_TOKENS: (
        ("messages", (list,), "a list of messages"),
        ("system", (str, list), "a string or a list of blocks"),
    ),
    RESPONSES: (("input", (str, list), "a string or a list of items"),),
}


def invalid_container(api: str, body: Json) -> str | None:
    """Why the request's conversation is not of a shape its API defines, or None."""
    for key, kinds, what in _CONTAINERS.get(api, ()):
        value = body.get(key)
        if value is not None and not isinstance(value, kinds):
            return f"{key} must be {what}"
    return None


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


def _walk_json(value: Any, fn: Callable[[str], str]) -> Any:
    """Every string of a JSON value (object keys too; numbers as their text, since a card
    number is a number in a tool's input): what ``fn`` returns, a masked number as a string."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new_key = fn(key) if isinstance(key, str) else key
            out[new_key] = _walk_json(item, fn)
        return out
    if isinstance(value, list):
        return [_walk_json(item, fn) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
        new = fn(text)
        return value if new == text else new
    return value


def _walk_call(call: Any, fn: Callable[[str], str]) -> None:
    """A Chat tool call (or the legacy ``function_call``): its name and its arguments."""
    if not isinstance(call, dict):
        return
    fn_part = call.get("function") if "function" in call else call
    if not isinstance(fn_part, dict):
        return
    if isinstance(fn_part.get("name"), str):
        fn_part["name"] = fn(fn_part["name"])
    if isinstance(fn_part.get("arguments"), str):
        fn_part["arguments"] = fn(fn_part["arguments"])


def _walk_content(content: Any, fn: Callable[[str], str]) -> Any:
    """A message's content in any API: a string, or parts/blocks (text, refusal, Anthropic
    ``tool_use`` / ``tool_result`` / ``thinking``, Responses function-call items)."""
    if isinstance(content, str):
        return fn(content)
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                _walk_block(part, fn)
    return content


def _walk_block(part: dict[str, Any], fn: Callable[[str], str], depth: int = 0) -> None:
    kind = part.get("type")
    for key in ("text", "refusal", "thinking"):
        if isinstance(part.get(key), str):
            part[key] = fn(part[key])
    if kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
        if isinstance(part.get("name"), str):
            part["name"] = fn(part["name"])
        if "input" in part:
            part["input"] = _walk_json(part["input"], fn)
        _walk_rest(part, fn, ("text", "refusal", "thinking", "name", "input"), depth)
    elif kind in ("tool_result", "mcp_tool_result"):
        part["content"] = _walk_content(part.get("content"), fn)
        _walk_rest(part, fn, ("text", "refusal", "thinking", "content"), depth)
    elif kind in ("document", "search_result"):
        _walk_document(part, fn)
    else:
        _walk_rest(part, fn, ("text", "refusal", "thinking"), depth)


def _walk_document(part: dict[str, Any], fn: Callable[[str], str]) -> None:
    """An Anthropic ``document`` (a plain-text source, or a source of content blocks; its title
    and context) or ``search_result`` (source, title, text blocks): all text the model reads."""
    for key in ("title", "context"):
        if isinstance(part.get(key), str):
            part[key] = fn(part[key])
    source = part.get("source")
    if isinstance(source, str):  # search_result: where it came from
        part["source"] = fn(source)
    elif isinstance(source, dict) and source.get("type") in ("text", "content"):
        if isinstance(source.get("data"), str):
            source["data"] = fn(source["data"])
        if "content" in source:
            source["content"] = _walk_content(source["content"], fn)
    if "content" in part:
        part["content"] = _walk_content(part["content"], fn)
    _walk_rest(part, fn, ("text", "refusal", "thinking", "title", "context", "source", "content"), 0)


# Members that carry no text a model reads as such: kinds, ids, states, and opaque or binary
# data (base64 images, files and audio, encrypted reasoning, signatures). Every other string of
# a part or item is text the provider reads (an MCP call's output, a shell call's output, a
# file search's results, a citation's quote, a prompt variable, ...), so the guards read it.
_NOT_TEXT = frozenset(
    (
        "type",
        "id",
        "call_id",
        "tool_call_id",
        "tool_use_id",
        "approval_request_id",
        "status",
        "role",
        "signature",
        "encrypted_content",
        "data",
        "file_data",
        "file_id",
        "file_url",
        "image_url",
        "url",
        "result",
        "media_type",
        "mime_type",
        "detail",
        "cache_control",
        "container_id",
    )
)
# Parts inside parts: deeper than this, a request is refused rather than read in part.
_MAX_DEPTH = 64


def _walk_rest(part: dict[str, Any], fn: Callable[[str], str], done: tuple[str, ...], depth: int) -> None:
    """The strings of ``part`` the walk above did not read (``done``), nested ones too."""
    for key, value in part.items():
        if key not in _NOT_TEXT and key not in done:
            part[key] = _walk_value(value, fn, depth + 1)


def _walk_value(value: Any, fn: Callable[[str], str], depth: int) -> Any:
    if isinstance(value, str):
        return fn(value)
    if depth > _MAX_DEPTH:
        if isinstance(value, (dict, list)):
            raise LlmError(400, "request content nests too deep")
        return value
    if isinstance(value, list):
        return [_walk_value(item, fn, depth + 1) for item in value]
    if isinstance(value, dict):
        if isinstance(value.get("type"), str):  # a part or block of its own
            _walk_block(value, fn, depth)
        else:
            _walk_rest(value, fn, (), depth)
    return value


def _walk_item(item: dict[str, Any], fn: Callable[[str], str], done: tuple[str, ...] = ()) -> None:
    """A Responses item: every string a model reads (function, custom, MCP, shell, patch,
    computer, code interpreter, search calls and their outputs, reasoning summaries, ...);
    ``done``: members the caller already read."""
    _walk_rest(item, fn, done, 0)


def _walk_chat_message(msg: dict[str, Any], fn: Callable[[str], str]) -> None:
    if "content" in msg:
        msg["content"] = _walk_content(msg["content"], fn)
    for key in ("refusal", *CHAT_REASONING):
        if isinstance(msg.get(key), str):
            msg[key] = fn(msg[key])
    calls = msg.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        _walk_call(call, fn)
    if isinstance(msg.get("function_call"), dict):
        _walk_call(msg["function_call"], fn)


def walk_request_texts(api: str, body: Json, fn: Callable[[str], str]) -> None:
    """Calls ``fn`` on every text of the request a client wrote or carries back (message content
    of every role, tool calls' names and arguments, tool results, reasoning) and stores what it
    returns. Tool definitions are not walked."""
    if api == CHAT:
        for msg in body.get("messages") or []:
            if isinstance(msg, dict):
                if isinstance(msg.get("name"), str):  # OpenAI shows a participant's name to the model
                    msg["name"] = fn(msg["name"])
                _walk_chat_message(msg, fn)
        prediction = body.get("prediction")  # predicted output: text the model is given
        if isinstance(prediction, dict) and "content" in prediction:
            prediction["content"] = _walk_content(prediction["content"], fn)
    elif api in (MESSAGES, COUNT_TOKENS):
        if "system" in body:
            body["system"] = _walk_content(body["system"], fn)
        for msg in body.get("messages") or []:
            if isinstance(msg, dict):
                msg["content"] = _walk_content(msg.get("content"), fn)
    elif api == RESPONSES:
        # instructions: a string, or (as the translation takes them too) parts or input items
        for key in ("instructions", "input"):
            items = body.get(key)
            if isinstance(items, str):
                body[key] = fn(items)
            elif isinstance(items, list):
                for item in items:
                    if isinstance(item, dict):
                        if "content" in item:
                            item["content"] = _walk_value(item["content"], fn, 0)
                        if isinstance(item.get("text"), str):  # a content part in the list
                            item["text"] = fn(item["text"])
                        _walk_item(item, fn, ("content", "text"))
        # a stored prompt's variables: strings, or input parts, put into the prompt by the provider
        prompt = body.get("prompt")
        variables = prompt.get("variables") if isinstance(prompt, dict) else None
        if isinstance(variables, dict):
            for name, value in variables.items():
                variables[name] = _walk_value(value, fn, 0)
    elif api == EMBEDDINGS:
        value = body.get("input")
        if isinstance(value, str):
            body["input"] = fn(value)
        elif isinstance(value, list):
            body["input"] = [fn(v) if isinstance(v, str) else v for v in value]


def walk_response_texts(api: str, body: Json, fn: Callable[[str], str]) -> None:
    """Every text of a response in a client format a model wrote (for response guards): the
    message, its refusal, tool calls' names and arguments, Anthropic ``tool_use`` input and
    ``thinking``, Responses output items."""
    if api == CHAT:
        choices = body.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                _walk_chat_message(message, fn)
    elif api == MESSAGES:
        _walk_content(body.get("content"), fn)
    elif api == RESPONSES:
        output = body.get("output")
        for item in output if isinstance(output, list) else ():
            if isinstance(item, dict):
                if isinstance(item.get("content"), list):
                    _walk_content(item["content"], fn)
                _walk_item(item, fn, ("content",))


def collect_texts(api: str, body: Json) -> list[str]:
    texts: list[str] = []

    def keep(text: str) -> str:
        texts.append(text)
        return text

    walk_request_texts(api, body, keep)
    return texts
