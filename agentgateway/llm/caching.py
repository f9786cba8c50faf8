"""``promptCaching``: cache markers the gateway adds for providers that cache prompts on request
(Anthropic's ``cache_control`` blocks, Bedrock's ``cachePoint`` blocks), at the boundaries
agentgateway uses:

- the system prompt (when ``cacheSystem`` and its estimated size reaches ``minTokens``: words
  × 1.3, as agentgateway estimates it);
- the conversation history (``cacheMessages``): the last block of the second-to-last message,
  ``cacheMessageOffset`` messages further back (the current turn is not cached);
- the tool definitions (``cacheTools``): the last tool.

Markers the client sent count against Anthropic's limit of four and are never replaced; a
request with no room left, or no boundary, goes as it is.
"""

from __future__ import annotations

from typing import Any

from agentgateway.config.schema import PromptCaching

Json = dict[str, Any]

MAX_BREAKPOINTS = 4
_CACHEABLE = frozenset(
    (
        "text",
        "image",
        "document",
        "search_result",
        "tool_use",
        "tool_result",
        "server_tool_use",
        "web_search_tool_result",
    )
)
_EPHEMERAL = {"type": "ephemeral"}


class CachePlan:
    """Where markers go, read from ``promptCaching`` once at load."""

    __slots__ = ("cache_system", "cache_messages", "cache_tools", "min_tokens", "cache_message_offset")

    def __init__(self, cfg: PromptCaching) -> None:
        self.cache_system = cfg.cache_system
        self.cache_messages = cfg.cache_messages
        self.cache_tools = cfg.cache_tools
        self.min_tokens = cfg.min_tokens
        self.cache_message_offset = cfg.cache_message_offset


_CACHE_POINT = {"cachePoint": {"type": "default"}}


def _estimate_tokens(system: Any) -> int:
    if isinstance(system, str):
        words = len(system.split())
    elif isinstance(system, list):
        words = sum(len(b.get("text", "").split()) for b in system if isinstance(b, dict))
    else:
        words = 0
    return words * 13 // 10


def _marked(block: Any) -> bool:
    return isinstance(block, dict) and block.get("cache_control") is not None


def _count(value: Any) -> int:
    return sum(1 for b in value if _marked(b)) if isinstance(value, list) else 0


def _as_blocks(holder: Json, key: str) -> list[Any] | None:
    value = holder.get(key)
    if isinstance(value, str):
        value = holder[key] = [{"type": "text", "text": value}]
    return value if isinstance(value, list) else None


def _mark_last(blocks: list[Any], cacheable_only: bool = True) -> bool:
    for block in reversed(blocks):
        if not isinstance(block, dict) or (cacheable_only and block.get("type") not in _CACHEABLE):
            continue
        if block.get("cache_control") is not None:
            return False  # the client's own marker (and TTL) stays
        block["cache_control"] = dict(_EPHEMERAL)
        return True
    return False


def mark_messages(req: Json, caching: CachePlan) -> None:
    """Anthropic Messages (the native API, or Chat translated to it)."""
    value = req.get("messages")
    messages: list[Any] = value if isinstance(value, list) else []
    used = _count(req.get("system")) + _count(req.get("tools"))
    used += sum(_count(m.get("content")) for m in messages if isinstance(m, dict))
    if caching.cache_system and used < MAX_BREAKPOINTS and req.get("system"):
        min_tokens = caching.min_tokens
        if min_tokens is None or _estimate_tokens(req["system"]) >= min_tokens:
            blocks = _as_blocks(req, "system")
            if blocks is not None and _mark_last(blocks):
                used += 1
    if caching.cache_messages and used < MAX_BREAKPOINTS and len(messages) >= 2:
        target = max(len(messages) - 2 - caching.cache_message_offset, 0)
        message = messages[target]
        if isinstance(message, dict):
            blocks = _as_blocks(message, "content")
            if blocks is not None and _mark_last(blocks):
                used += 1
    if caching.cache_tools and used < MAX_BREAKPOINTS:
        tools = req.get("tools")
        if isinstance(tools, list) and tools:
            _mark_last(tools, cacheable_only=False)


def _bedrock_caches(model: str) -> bool:
    """Bedrock models that take cache points (Claude, Nova)."""
    m = model.lower()
    return "anthropic.claude" in m or "amazon.nova" in m


def mark_converse(req: Json, caching: CachePlan, model: str) -> None:
    """Bedrock Converse: ``cachePoint`` blocks after the system prompt, in the history message
    and after the tools."""
    if not _bedrock_caches(model):
        return
    used = 0
    system = req.get("system")
    if caching.cache_system and isinstance(system, list) and system:
        min_tokens = caching.min_tokens
        if min_tokens is None or _estimate_tokens(system) >= min_tokens:
            system.append(dict(_CACHE_POINT))
            used += 1
    messages = req.get("messages")
    if caching.cache_messages and used < MAX_BREAKPOINTS and isinstance(messages, list) and len(messages) >= 2:
        target = max(len(messages) - 2 - caching.cache_message_offset, 0)
        content = messages[target].get("content") if isinstance(messages[target], dict) else None
        if isinstance(content, list) and content:
            content.append(dict(_CACHE_POINT))
            used += 1
    tool_config = req.get("toolConfig")
    if caching.cache_tools and used < MAX_BREAKPOINTS and isinstance(tool_config, dict):
        tools = tool_config.get("tools")
        if isinstance(tools, list) and tools:
            tools.append(dict(_CACHE_POINT))
