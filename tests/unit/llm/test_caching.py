"""``promptCaching`` markers at agentgateway's boundaries: the system prompt (when big enough),
the message before the current turn (``cacheMessageOffset`` further back), the last tool; at most
four markers with the client's own, which are never replaced."""

from __future__ import annotations

from agentgateway.config.schema import PromptCaching
from agentgateway.llm.caching import CachePlan, mark_converse, mark_messages

EPHEMERAL = {"type": "ephemeral"}
BIG = "word " * 1000  # 1300 estimated tokens


def conversation(n: int) -> list[dict[str, object]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(n)]


def test_boundaries() -> None:
    req = {"system": BIG, "messages": conversation(5), "tools": [{"name": "a"}, {"name": "b"}]}
    mark_messages(req, CachePlan(PromptCaching(cache_tools=True)))
    assert req["system"] == [{"type": "text", "text": BIG, "cache_control": EPHEMERAL}]
    assert req["messages"][3]["content"] == [{"type": "text", "text": "turn 3", "cache_control": EPHEMERAL}]  # type: ignore[index]
    assert req["messages"][4]["content"] == "turn 4"  # type: ignore[index]
    assert req["tools"] == [{"name": "a"}, {"name": "b", "cache_control": EPHEMERAL}]


def test_offset_min_tokens_and_defaults() -> None:
    req = {"system": "short", "messages": conversation(5), "tools": [{"name": "a"}]}
    mark_messages(req, CachePlan(PromptCaching(cache_message_offset=2)))
    assert req["system"] == "short"  # under minTokens (1024 by default)
    assert isinstance(req["messages"][1]["content"], list)  # type: ignore[index]
    assert "cache_control" not in str(req["tools"])  # cacheTools is off by default
    offset_past_start = {"messages": conversation(3)}
    mark_messages(offset_past_start, CachePlan(PromptCaching(cache_message_offset=9)))
    assert isinstance(offset_past_start["messages"][0]["content"], list)  # clamped to the first
    single = {"messages": conversation(1)}
    mark_messages(single, CachePlan(PromptCaching()))
    assert single["messages"][0]["content"] == "turn 0"  # no history to cache


def test_client_markers_count_and_stay() -> None:
    marked = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    messages = [{"role": "user", "content": [dict(marked)]} for _ in range(3)] + [{"role": "user", "content": "now"}]
    req = {"system": [dict(marked)], "messages": messages}
    mark_messages(req, CachePlan(PromptCaching(min_tokens=None)))
    # four markers already: nothing added, the client's TTL kept
    assert str(req).count("cache_control") == 4 and "'ttl': '1h'" in str(req["system"])


def test_bedrock_cache_points() -> None:
    point = {"cachePoint": {"type": "default"}}
    req = {
        "system": [{"text": BIG}],
        "messages": [{"role": r, "content": [{"text": "t"}]} for r in ("user", "assistant", "user")],
        "toolConfig": {"tools": [{"toolSpec": {"name": "a"}}]},
    }
    mark_converse(req, CachePlan(PromptCaching(cache_tools=True)), "anthropic.claude-3-haiku-20240307-v1:0")
    assert req["system"][-1] == point  # type: ignore[index]
    assert req["messages"][1]["content"][-1] == point  # type: ignore[index]
    assert req["toolConfig"]["tools"][-1] == point  # type: ignore[index]
    other = {"system": [{"text": BIG}], "messages": []}
    mark_converse(other, CachePlan(PromptCaching()), "meta.llama3-70b-instruct-v1:0")
    assert other["system"] == [{"text": BIG}]  # models without prompt caching get none
