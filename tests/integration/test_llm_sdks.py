"""The official openai and anthropic SDKs through the real daemon against every provider kind
(strict fake providers on 127.0.0.1): Chat Completions, Messages and Responses, stream and not,
with tool calls; usage mapped exactly; the client's credential never reaches a provider."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.llm import AWS_ENV, KINDS, MODELS, FakeProvider, LlmSetup, model_entries
from tests.support.llm_fakes import API_KEY

CLIENT_KEY = "sk-client-must-not-leak"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": TOOL["function"]["parameters"],
}  # type: ignore[index]


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmSetup]:
    tmp = tmp_path_factory.mktemp("llm")
    procs = []
    try:
        fakes = {}
        for kind in KINDS:
            fakes[kind] = FakeProvider(tmp, kind)
            procs.append(fakes[kind])
        port = free_port()
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        slow = [
            {
                "name": "openai-slowstream",
                "provider": "openAI",
                "params": {"apiKey": API_KEY, "baseUrl": f"{fakes['openai'].base}/v1", "model": "slowstream"},
            },
            {
                "name": "anthropic-slowstream",
                "provider": "anthropic",
                "params": {"apiKey": API_KEY, "baseUrl": f"{fakes['anthropic'].base}/v1", "model": "slowstream"},
            },
        ]
        bedrock_base = fakes["bedrock"].base
        embed = [
            {
                "name": "titan-embed",
                "provider": "bedrock",
                "params": {"awsRegion": "us-east-1", "baseUrl": bedrock_base, "model": "amazon.titan-embed-text-v2:0"},
            },
            {
                "name": "cohere-embed",
                "provider": "bedrock",
                "params": {"awsRegion": "us-east-1", "baseUrl": bedrock_base, "model": "cohere.embed-english-v3"},
            },
        ]
        config = {"llm": {"port": port, "models": model_entries(fakes) + slow + embed}}
        gw = Gateway(gw_dir, config, env=AWS_ENV)
        procs.append(gw)
        setup = LlmSetup(gw, port, fakes)
        yield setup
        setup.close()
    finally:
        for p in reversed(procs):
            p.stop()


def oa(llm: LlmSetup) -> openai.OpenAI:
    return llm.openai(key=CLIENT_KEY)  # type: ignore[no-any-return]


def an(llm: LlmSetup) -> anthropic.Anthropic:
    return llm.anthropic(key=CLIENT_KEY)  # type: ignore[no-any-return]


def assert_no_client_credential(llm: LlmSetup, model: str) -> None:
    last = llm.fakes[MODELS[model]].last()
    assert CLIENT_KEY not in json.dumps(last["headers"]), last["headers"]


ALL = list(MODELS)


@pytest.mark.parametrize("model", ALL)
def test_openai_chat(llm: LlmSetup, model: str) -> None:
    r = oa(llm).chat.completions.create(
        model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"}]
    )
    choice = r.choices[0]
    assert choice.message.content is not None and choice.message.content.endswith("You said: hi there")
    assert choice.finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (16, 7, 23)
    assert r.usage.prompt_tokens_details is not None and r.usage.prompt_tokens_details.cached_tokens == 5
    assert_no_client_credential(llm, model)


@pytest.mark.parametrize("model", ALL)
def test_openai_chat_stream(llm: LlmSetup, model: str) -> None:
    stream = oa(llm).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text.endswith("You said: stream me")
    assert finish == "stop"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (16, 7)


@pytest.mark.parametrize("model", ALL)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_tool_round_trip(llm: LlmSetup, model: str, stream: bool) -> None:
    client = oa(llm)
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        calls: dict[int, dict] = {}
        finish = None
        for chunk in client.chat.completions.create(model=model, messages=messages, tools=[TOOL], stream=True):
            # the gateway asks providers for usage; a client that did not ask never sees it
            assert chunk.usage is None and chunk.choices
            for c in chunk.choices:
                finish = c.finish_reason or finish
                for tc in c.delta.tool_calls or []:
                    entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] = tc.id or entry["id"]
                    if tc.function:
                        entry["name"] = tc.function.name or entry["name"]
                        entry["arguments"] += tc.function.arguments or ""
        assert finish == "tool_calls"
        assert list(calls) == [0]
        call = calls[0]
    else:
        r = client.chat.completions.create(model=model, messages=messages, tools=[TOOL], tool_choice="auto")
        assert r.choices[0].finish_reason == "tool_calls"
        tc = r.choices[0].message.tool_calls[0]  # type: ignore[index]
        call = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}  # type: ignore[union-attr]
    assert call["name"] == "get_weather" and call["id"]
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": call["id"], "content": "22C and sunny"})
    r2 = client.chat.completions.create(model=model, messages=messages, tools=[TOOL])
    assert r2.choices[0].message.content == "The tool said: 22C and sunny"


@pytest.mark.parametrize("model", ALL)
def test_anthropic_messages(llm: LlmSetup, model: str) -> None:
    m = an(llm).messages.create(
        model=model, max_tokens=256, system="Be brief.", messages=[{"role": "user", "content": "hello claude"}]
    )
    assert m.content[0].type == "text" and m.content[0].text.endswith("You said: hello claude")
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens, m.usage.cache_read_input_tokens) == (11, 7, 5)
    assert_no_client_credential(llm, model)


@pytest.mark.parametrize("model", ALL)
def test_anthropic_stream(llm: LlmSetup, model: str) -> None:
    with an(llm).messages.stream(model=model, max_tokens=256, messages=[{"role": "user", "content": "stream it"}]) as s:
        deltas = [t for t in s.text_stream]
        final = s.get_final_message()
    assert len(deltas) > 1
    assert "".join(deltas).endswith("You said: stream it")
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 7)


@pytest.mark.parametrize("model", ALL)
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_round_trip(llm: LlmSetup, model: str, stream: bool) -> None:
    client = an(llm)
    messages: list[dict] = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.messages.stream(model=model, max_tokens=256, messages=messages, tools=[ANTHROPIC_TOOL]) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model=model, max_tokens=256, messages=messages, tools=[ANTHROPIC_TOOL])
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "22C and sunny"}]}
    )
    second = client.messages.create(model=model, max_tokens=256, messages=messages, tools=[ANTHROPIC_TOOL])
    assert second.content[0].type == "text" and second.content[0].text == "The tool said: 22C and sunny"


@pytest.mark.parametrize(
    "model", ["gpt-4o-mini", "azure-gpt", "azure-dated", "claude-haiku", "gemini-2.5-flash", "bedrock-claude"]
)
def test_openai_responses(llm: LlmSetup, model: str) -> None:
    client = oa(llm)
    r = client.responses.create(model=model, input="hello responses", instructions="Be brief.")
    assert "hello responses" in r.output_text or r.output_text.startswith("Hello from openai responses")
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (16, 7)
    with client.responses.stream(model=model, input="stream responses") as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert text == final.output_text and text
    assert final.usage is not None and final.usage.output_tokens == 7


@pytest.mark.parametrize("model", ["claude-haiku", "gemini-2.5-flash", "bedrock-claude"])
def test_openai_responses_tools(llm: LlmSetup, model: str) -> None:
    client = oa(llm)
    tool = {"type": "function", "name": "get_weather", "parameters": TOOL["function"]["parameters"], "strict": False}  # type: ignore[index]
    r = client.responses.create(model=model, input="Weather in Paris?", tools=[tool])  # type: ignore[list-item]
    call = next(o for o in r.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    follow = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "22C and sunny"},
    ]
    r2 = client.responses.create(model=model, input=follow, tools=[tool])  # type: ignore[arg-type, list-item]
    assert r2.output_text == "The tool said: 22C and sunny"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "azure-gpt", "gemini-2.5-flash", "vertex-gemini", "cohere-embed"])
def test_embeddings(llm: LlmSetup, model: str) -> None:
    r = oa(llm).embeddings.create(model=model, input=["a", "b"])
    assert [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) >= 2
    assert r.usage.prompt_tokens > 0


def test_embeddings_titan_one_input(llm: LlmSetup) -> None:
    r = oa(llm).embeddings.create(model="titan-embed", input="hello")
    assert r.data[0].embedding == [0.125, 0.5] and r.usage.prompt_tokens == 4
    with pytest.raises(openai.BadRequestError):
        oa(llm).embeddings.create(model="titan-embed", input=["a", "b"])
    with pytest.raises(openai.BadRequestError):
        oa(llm).embeddings.create(model="claude-haiku", input="x")


def test_models_and_count_tokens(llm: LlmSetup) -> None:
    ids = [m.id for m in oa(llm).models.list()]
    assert ids == [*MODELS, "openai-slowstream", "anthropic-slowstream", "titan-embed", "cohere-embed"]
    assert [m.id for m in an(llm).models.list()] == ids
    count = an(llm).messages.count_tokens(model="claude-haiku", messages=[{"role": "user", "content": "hi"}])
    assert count.input_tokens == 42  # the provider's count
    local = an(llm).messages.count_tokens(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello world"}])
    assert 0 < local.input_tokens < 10  # estimated by the gateway


def test_errors_in_client_format(llm: LlmSetup) -> None:
    with pytest.raises(openai.NotFoundError) as oerr:
        oa(llm).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert "no-such-model" in str(oerr.value)
    with pytest.raises(anthropic.NotFoundError) as aerr:
        an(llm).messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert aerr.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    # A provider's own validation error comes back in the client's format, whatever the provider.
    with pytest.raises(anthropic.BadRequestError) as bad:
        an(llm).messages.create(
            model="gemini-2.5-flash",
            max_tokens=5,
            messages=[{"role": "assistant", "content": "x"}] * 0 + [{"role": "user", "content": []}],
        )
    assert bad.value.status_code == 400
    with pytest.raises(openai.BadRequestError):
        oa(llm).chat.completions.create(model="claude-haiku", messages=[{"role": "user", "content": "x"}], n=2)


def test_metrics_and_access_log(llm: LlmSetup) -> None:
    oa(llm).chat.completions.create(model="claude-haiku", messages=[{"role": "user", "content": "count me"}])
    gw = llm.gateway
    assert (
        gw.metric(
            "agentgateway_gen_ai_client_token_usage_sum", gen_ai_provider_name="anthropic", gen_ai_token_type="input"
        )
        >= 16
    )
    assert gw.metric("agentgateway_gen_ai_server_request_duration_count", gen_ai_request_model="claude-haiku") >= 1
    assert gw.metric("agentgateway_gen_ai_server_time_to_first_token_count", gen_ai_provider_name="anthropic") >= 1
    line = llm.access_line("gen_ai.request.model=claude-haiku")
    assert "gen_ai.provider.name=anthropic" in line and "gen_ai.usage.input_tokens=16" in line


@pytest.mark.parametrize("model", ["openai-slowstream", "anthropic-slowstream"])
def test_first_token_is_forwarded_at_once(llm: LlmSetup, model: str) -> None:
    """The provider pauses 250 ms between events: each reaches the client on its own, relayed
    (OpenAI → Chat) or translated (Anthropic → Chat, OpenAI → Messages) chunk by chunk."""
    start = time.monotonic()
    arrivals = []
    for chunk in oa(llm).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "one two three"}], stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) >= 5
    assert arrivals[0] < arrivals[-1] - 0.75  # the first token came long before the last
    start = time.monotonic()
    with an(llm).messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "one two"}]) as s:
        times = [time.monotonic() - start for _ in s.text_stream]
    assert len(times) >= 5 and times[0] < times[-1] - 0.75
