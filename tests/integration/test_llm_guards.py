"""Prompt guards on every text a model or a client can carry, through the real daemon with the
OpenAI and Anthropic SDKs: secrets in tool-call arguments and names of answers (plain and
streamed, in 3-character pieces, OpenAI and Anthropic formats, translated both ways), written
with look-alike letters, fullwidth forms, zero-width characters or JSON escapes; secrets in the
tool-call history and tool results of requests (Chat, Messages, Responses); a reject guard that
stops a stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.llm import FakeProvider, LlmSetup
from tests.support.llm_fakes import API_KEY

SECRET = r"sk-live-[0-9a-z]{8}"  # masked in answers
HISTORY = r"tok-[0-9]{6}"  # masked in requests

# The same secret as a model could write it so a plain regex misses it.
VARIANTS = {
    "plain": "sk-live-abcd1234",
    "cyrillic": "\u0455k-l\u0456v\u0435-\u0430bcd1234",  # ѕ, і, е, а
    "fullwidth": "ｓｋ-ｌｉｖｅ-ａｂｃｄ１２３４",
    "zero-width": "sk-li\u200bve-ab\u200dcd\u20601234",
    "mixed": "\u0455k\u200b-ｌive-ab\ufeffcd１２34",
}


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmSetup]:
    tmp = tmp_path_factory.mktemp("guards")
    procs: list[Any] = []
    try:
        fakes = {k: FakeProvider(tmp, k) for k in ("openai", "anthropic")}
        procs += fakes.values()
        o, a = fakes["openai"].base, fakes["anthropic"].base
        port, route_port, unstreamed_port = free_port(), free_port(), free_port()

        def model(name: str, provider: str, upstream: str, base: str) -> dict[str, Any]:
            return {
                "name": name,
                "provider": provider,
                "params": {"apiKey": API_KEY, "baseUrl": base, "model": upstream},
            }

        config = {
            "llm": {
                "port": port,
                "models": [
                    model("oa-echo", "openAI", "gpt-toolecho", f"{o}/v1"),
                    model("an-echo", "anthropic", "claude-toolecho", f"{a}/v1"),
                    model("gpt-4o-mini", "openAI", "gpt-4o-mini", f"{o}/v1"),
                    model("claude-haiku", "anthropic", "claude-haiku", f"{a}/v1"),
                ],
                "policies": {
                    "ai": {
                        "promptGuard": {
                            "request": [{"regex": {"action": "mask", "rules": [{"pattern": HISTORY}]}}],
                            "response": [
                                {"regex": {"action": "mask", "rules": [{"pattern": SECRET}, {"builtin": "creditCard"}]}}
                            ],
                        }
                    }
                },
            },
            "binds": [
                {
                    "port": route_port,
                    "listeners": [
                        {
                            "routes": [
                                {
                                    "name": "strict",
                                    "backends": [
                                        {
                                            "ai": {
                                                "name": "openai",
                                                "provider": {"openAI": {"model": "gpt-toolecho"}},
                                                "hostOverride": f"127.0.0.1:{fakes['openai'].port}",
                                            },
                                            "policies": {"backendAuth": {"key": API_KEY}},
                                        }
                                    ],
                                    "policies": {
                                        "ai": {
                                            "promptGuard": {
                                                "response": [
                                                    {
                                                        "regex": {"action": "reject", "rules": [{"pattern": SECRET}]},
                                                        "rejection": {"status": 451, "body": "secret in the answer"},
                                                    }
                                                ]
                                            }
                                        }
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
        }
        # the same route with promptGuard.streaming: Disabled (agentgateway's switch for streams)
        same = json.loads(json.dumps(config["binds"][0]))  # type: ignore[index]
        same["port"] = unstreamed_port
        same["listeners"][0]["routes"][0]["policies"]["ai"]["promptGuard"]["streaming"] = "Disabled"
        config["binds"].append(same)  # type: ignore[attr-defined]
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, config)
        procs.append(gw)
        setup = LlmSetup(gw, port, fakes)
        setup.route_port = route_port
        setup.unstreamed_port = unstreamed_port  # type: ignore[attr-defined]
        yield setup
        setup.close()
    finally:
        for p in reversed(procs):
            p.stop()


def _openai_tool_call(client: openai.OpenAI, model: str, prompt: str, stream: bool, **kw: Any) -> tuple[str, str]:
    """(name, arguments) of the answer's tool call, read plain or from the stream's deltas."""
    messages: Any = [{"role": "user", "content": prompt}]
    if not stream:
        r = client.chat.completions.create(model=model, messages=messages, **kw)
        call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
        return call.function.name, call.function.arguments  # type: ignore[union-attr]
    name, args = "", ""
    for c in client.chat.completions.create(model=model, messages=messages, stream=True, **kw):
        for call in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            if call.function is not None:
                name += call.function.name or ""
                args += call.function.arguments or ""
    return name, args


def _anthropic_tool_use(
    client: anthropic.Anthropic, model: str, prompt: str, stream: bool, **kw: Any
) -> tuple[str, Any]:
    messages: Any = [{"role": "user", "content": prompt}]
    if stream:
        with client.messages.stream(model=model, max_tokens=64, messages=messages, **kw) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(model=model, max_tokens=64, messages=messages, **kw)
    block = next(b for b in message.content if b.type == "tool_use")
    return block.name, block.input


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["oa-echo", "an-echo"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_secrets_in_tool_call_arguments_are_masked(llm: LlmSetup, variant: str, model: str, stream: bool) -> None:
    prompt = f"please look up {VARIANTS[variant]} now"
    _, args = _openai_tool_call(llm.openai(), model, prompt, stream)
    assert json.loads(args) == {"query": "please look up <MASKED> now"}, args
    _, tool_input = _anthropic_tool_use(llm.anthropic(), model, prompt, stream)
    assert tool_input == {"query": "please look up <MASKED> now"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["oa-echo", "an-echo"])
def test_card_numbers_in_fullwidth_digits_are_masked(llm: LlmSetup, model: str, stream: bool) -> None:
    prompt = "card ４１１１ １１１１ １１１１ １１１１ thanks"
    _, args = _openai_tool_call(llm.openai(), model, prompt, stream)
    assert json.loads(args) == {"query": "card <CREDIT_CARD> thanks"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", ["oa-echo", "an-echo"])
def test_secrets_in_tool_call_names_are_masked(llm: LlmSetup, model: str, stream: bool) -> None:
    """Tool definitions are not guarded: a secret in a tool's name comes back in the model's call."""
    schema = {"type": "object", "properties": {}}
    name, _ = _openai_tool_call(
        llm.openai(),
        model,
        "hello",
        stream,
        tools=[{"type": "function", "function": {"name": "sk-live-abcd1234", "parameters": schema}}],
    )
    assert name == "<MASKED>"
    name, _ = _anthropic_tool_use(
        llm.anthropic(), model, "hello", stream, tools=[{"name": "sk-live-abcd1234", "input_schema": schema}]
    )
    assert name == "<MASKED>"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku"])
def test_secrets_in_the_tool_call_history_are_masked(llm: LlmSetup, model: str) -> None:
    kind = "openai" if model == "gpt-4o-mini" else "anthropic"
    leaked = ["tok-123456", "tok-\u0661\u0662\u0663\u0664\u0665\u0666", "t\u200bok-12３456", "\u0442ok-123456"]
    # OpenAI Chat: the assistant's tool calls (name, arguments) and the tool's result
    llm.openai().chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": "what is my token?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_token", "arguments": json.dumps({"t": leaked[0], "u": leaked[1]})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"the token is {leaked[2]} or {leaked[3]}"},
        ],
    )
    _assert_masked(llm.fakes[kind].last()["body"], leaked)
    # Anthropic Messages: tool_use input and tool_result content
    llm.anthropic().messages.create(
        model=model,
        max_tokens=32,
        messages=[
            {"role": "user", "content": "what is my token?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_token", "input": {"t": leaked[1]}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": leaked[3]}]}
                ],
            },
        ],
    )
    _assert_masked(llm.fakes[kind].last()["body"], leaked)


def _assert_masked(sent: str, leaked: list[str]) -> None:
    """The body the provider got holds none of the leaked forms (JSON escapes decoded)."""
    text = json.dumps(json.loads(sent), ensure_ascii=False)
    assert "<MASKED>" in text
    for form in leaked:
        assert form not in text and form.replace("\u200b", "") not in text, (form, text)
    assert "123456" not in text and "\u0661" not in text, text


def test_secrets_in_responses_items_are_masked(llm: LlmSetup) -> None:
    llm.openai().responses.create(
        model="gpt-4o-mini",
        input=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "token?"}]},
            {"type": "function_call", "call_id": "c1", "name": "get_token", "arguments": '{"t": "tok-654321"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "it is ｔｏｋ-６５４３２１"},
        ],
    )
    sent = llm.fakes["openai"].last()["body"]
    assert sent.count("<MASKED>") == 2 and "654321" not in sent and "６５４" not in sent, sent


def test_a_reject_guard_stops_the_answer(llm: LlmSetup) -> None:
    client = llm.openai(llm.route_port)
    prompt: Any = [{"role": "user", "content": "look up \u0455k-live-abcd1234"}]
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="any", messages=prompt)
    assert err.value.status_code == 451 and "secret in the answer" in str(err.value)
    with pytest.raises(openai.APIError) as serr:
        for _ in client.chat.completions.create(model="any", messages=prompt, stream=True):
            pass
    assert "secret in the answer" in str(serr.value)
    # nothing of the secret went out before the stream was stopped
    raw = httpx.post(
        f"http://127.0.0.1:{llm.route_port}/v1/chat/completions",
        json={"model": "any", "messages": prompt, "stream": True},
        timeout=10,
    )
    assert raw.status_code == 200 and "secret in the answer" in raw.text
    assert "abcd" not in raw.text and "1234" not in raw.text, raw.text


def test_streaming_disabled_leaves_streams_unguarded(llm: LlmSetup) -> None:
    """``promptGuard.streaming: Disabled``: the response guard still judges plain answers, not
    streamed ones (agentgateway's meaning)."""
    port = llm.unstreamed_port  # type: ignore[attr-defined]
    prompt: Any = [{"role": "user", "content": "look up \u0455k-live-abcd1234"}]
    with pytest.raises(openai.APIStatusError) as err:
        llm.openai(port).chat.completions.create(model="any", messages=prompt)
    assert err.value.status_code == 451
    _, args = _openai_tool_call(llm.openai(port), "any", "look up \u0455k-live-abcd1234", stream=True)
    assert "abcd1234" in args  # streamed as the provider sent it
