"""Golden request/response fixtures for every translation direction, streams included.

Each file in ``golden/`` holds a direction, an input and the expected output. Ids and
timestamps the gateway generates are made deterministic for the comparison. To (re)write the
outputs after an intended change: ``UPDATE_GOLDEN=1 pytest tests/unit/llm/test_golden.py`` and
review the diff.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentgateway.llm import anthropic, bedrock, chat, gemini, openai, responses
from agentgateway.llm.eventstream import encode_frame
from agentgateway.llm.usage import Usage

GOLDEN = Path(__file__).parent / "golden"
FILES = sorted(GOLDEN.glob("*.json"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


@pytest.fixture(autouse=True)
def deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = itertools.count(1)

    def new_id(prefix: str) -> str:
        return f"{prefix}gen{next(counter)}"

    for module in (chat, anthropic, bedrock, gemini, openai, responses):
        if hasattr(module, "new_id"):
            monkeypatch.setattr(module, "new_id", new_id)
        if hasattr(module, "now"):
            monkeypatch.setattr(module, "now", lambda: 1700000000)


def _sse_text(data: bytes) -> list[str]:
    """A stream's events, one string per event (reads better in a fixture than one blob)."""
    return [e + "\n\n" for e in data.decode().split("\n\n") if e]


def _stream(decoder: Any, encoder: Any, pieces: list[bytes]) -> dict[str, Any]:
    out = b""
    for piece in pieces:
        for c in decoder.feed(piece):
            out += encoder.feed(c)
    for c in decoder.finish():
        out += encoder.feed(c)
    usage = decoder.usage
    out += encoder.finish(usage)
    return {"events": _sse_text(out), "usage": _usage(usage)}


def _usage(u: Usage) -> dict[str, Any]:
    return {k: getattr(u, k) for k in Usage.__slots__}


def run(direction: str, given: Any) -> Any:
    if direction == "request chat->anthropic":
        return anthropic.chat_request_to_messages(given)
    if direction == "request chat->gemini":
        return gemini.chat_request_to_gemini(given)
    if direction == "request chat->bedrock":
        return bedrock.chat_request_to_converse(given)
    if direction == "request messages->chat":
        return anthropic.messages_request_to_chat(given)
    if direction == "request responses->chat":
        return responses.responses_request_to_chat(given)
    # Composed directions: what the exchange does for a client API and a provider that differ
    # and are not Chat (the request goes through the canonical Chat form).
    if direction == "request messages->gemini":
        return gemini.chat_request_to_gemini(anthropic.messages_request_to_chat(given))
    if direction == "request messages->bedrock":
        return bedrock.chat_request_to_converse(anthropic.messages_request_to_chat(given))
    if direction == "request responses->anthropic":
        return anthropic.chat_request_to_messages(responses.responses_request_to_chat(given))
    if direction == "request responses->gemini":
        return gemini.chat_request_to_gemini(responses.responses_request_to_chat(given))
    if direction == "request responses->bedrock":
        return bedrock.chat_request_to_converse(responses.responses_request_to_chat(given))
    if direction == "response gemini->messages":
        out, usage = gemini.gemini_response_to_chat(given)
        return anthropic.chat_response_to_messages(out, usage)
    if direction == "response bedrock->messages":
        out, usage = bedrock.converse_response_to_chat(given, "anthropic.claude-3-haiku")
        return anthropic.chat_response_to_messages(out, usage)
    if direction == "response anthropic->responses":
        out, usage = anthropic.messages_response_to_chat(given)
        return responses.chat_response_to_responses({"model": "m"}, out, usage)
    if direction == "response anthropic->chat":
        out, usage = anthropic.messages_response_to_chat(given)
        return {"response": out, "usage": _usage(usage)}
    if direction == "response gemini->chat":
        out, usage = gemini.gemini_response_to_chat(given)
        return {"response": out, "usage": _usage(usage)}
    if direction == "response bedrock->chat":
        out, usage = bedrock.converse_response_to_chat(given, "anthropic.claude-3-haiku")
        return {"response": out, "usage": _usage(usage)}
    if direction == "response chat->messages":
        return anthropic.chat_response_to_messages(given, Usage.from_openai(given["usage"]))
    if direction == "response chat->responses":
        return responses.chat_response_to_responses(
            given["request"], given["response"], Usage.from_openai(given["response"]["usage"])
        )
    pieces = (
        [p.encode() for p in given]
        if not direction.startswith("stream bedrock->")
        else [
            encode_frame(
                {":event-type": e, ":content-type": "application/json", ":message-type": "event"}, orjson.dumps(p)
            )
            for e, p in given
        ]
    )
    if direction == "stream anthropic->chat":
        return _stream(anthropic.MessagesStreamDecoder(), openai.ChatStreamEncoder(True, "m"), pieces)
    if direction == "stream openai->messages":
        return _stream(openai.ChatStreamDecoder(), anthropic.MessagesStreamEncoder("m"), pieces)
    if direction == "stream openai->responses":
        return _stream(openai.ChatStreamDecoder(), responses.ResponsesStreamEncoder({"model": "m"}, "m"), pieces)
    if direction == "stream gemini->chat":
        return _stream(gemini.GeminiStreamDecoder(), openai.ChatStreamEncoder(True, "m"), pieces)
    if direction == "stream gemini->messages":
        return _stream(gemini.GeminiStreamDecoder(), anthropic.MessagesStreamEncoder("m"), pieces)
    if direction == "stream bedrock->chat":
        return _stream(
            bedrock.ConverseStreamDecoder("anthropic.claude-3-haiku"), openai.ChatStreamEncoder(False, "m"), pieces
        )
    if direction == "stream bedrock->messages":
        return _stream(
            bedrock.ConverseStreamDecoder("anthropic.claude-3-haiku"), anthropic.MessagesStreamEncoder("m"), pieces
        )
    if direction == "stream bedrock->responses":
        encoder = responses.ResponsesStreamEncoder({"model": "m"}, "m")
        return _stream(bedrock.ConverseStreamDecoder("anthropic.claude-3-haiku"), encoder, pieces)
    if direction == "stream gemini->responses":
        return _stream(gemini.GeminiStreamDecoder(), responses.ResponsesStreamEncoder({"model": "m"}, "m"), pieces)
    if direction == "stream anthropic->responses":
        return _stream(anthropic.MessagesStreamDecoder(), responses.ResponsesStreamEncoder({"model": "m"}, "m"), pieces)
    raise AssertionError(f"unknown direction {direction}")


def test_every_direction_has_fixtures() -> None:
    directions = {json.loads(f.read_text())["direction"] for f in FILES}
    assert len(directions) >= 28, sorted(directions)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    got = run(case["direction"], case["input"])
    got = json.loads(orjson.dumps(got))
    if UPDATE:
        case["output"] = got
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
        return
    assert got == case["output"]


@pytest.mark.parametrize(
    ("direction", "given", "message"),
    [
        (
            "request chat->bedrock",
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}
                ]
            },
            "data URLs only",
        ),
        ("request chat->anthropic", {"messages": [{"role": "user", "content": "x"}], "n": 3}, "n > 1"),
        (
            "request responses->chat",
            {"model": "m", "input": "x", "previous_response_id": "resp_1"},
            "server-side state",
        ),
        (
            "request responses->chat",
            {"model": "m", "input": "x", "tools": [{"type": "web_search"}]},
            "built-in Responses tools",
        ),
        (
            "request chat->gemini",
            {"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]},
            "unknown tool_call_id",
        ),
        (
            "request chat->bedrock",
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                    }
                ]
            },
            "tool definitions",
        ),
    ],
)
def test_untranslatable_requests_are_400s(direction: str, given: dict[str, Any], message: str) -> None:
    from agentgateway.llm.errors import LlmError

    with pytest.raises(LlmError) as err:
        run(direction, given)
    assert err.value.status == 400 and message in err.value.message
