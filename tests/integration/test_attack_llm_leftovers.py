"""Audit 24 through the daemon: what audit 13 left of the LLM guards and translations.

Request guards against every text a provider reads (Responses ``prompt.variables`` and the
rarer input items, Chat ``prediction``, Anthropic citations and server tool results), embeddings
given as token ids, translated streams a provider cuts before their last event (the official
SDKs must raise, not read a cut answer as a whole one), and a provider that interleaves tool
calls to split a match across the stream guard's flush."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port, wait_for
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY, frame
from tests.support.raw_server import ScriptedProvider

EMAIL = "alice@example.com"
MASK = "<EMAIL_ADDRESS>"
# a cut answer's text, longer than the stream guard holds back
PARTIAL = "The answer is " + "long " * 30


class Setup:
    def __init__(self, gw: Gateway, port: int, fakes: dict[str, FakeProvider], scripted: ScriptedProvider) -> None:
        self.gw = gw
        self.port = port
        self.fakes = fakes
        self.scripted = scripted
        # the official SDK clients (one each, closed with the module)
        self.oai = openai.OpenAI(base_url=f"{self.base}/v1", api_key="client", max_retries=0, timeout=30)
        self.ant = anthropic.Anthropic(base_url=self.base, api_key="client", max_retries=0, timeout=30)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"authorization": "Bearer client", "anthropic-version": "2023-06-01"}
        return httpx.post(f"{self.base}{path}", json=body, headers=headers, timeout=30)

    def close(self) -> None:
        self.oai.close()
        self.ant.close()

    def openai(self) -> openai.OpenAI:
        return self.oai

    def anthropic(self) -> anthropic.Anthropic:
        return self.ant


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp: Path = tmp_path_factory.mktemp("llm-leftovers")
    procs: list[Any] = []
    scripted = ScriptedProvider()
    try:
        fakes = {k: FakeProvider(tmp, k) for k in ("openai", "anthropic")}
        procs += fakes.values()
        f = {k: v.base for k, v in fakes.items()}
        s = f"http://127.0.0.1:{scripted.port}"
        port = free_port()
        config = {
            "llm": {
                "port": port,
                "models": [
                    {
                        "name": "gpt",
                        "provider": "openAI",
                        "params": {"apiKey": API_KEY, "baseUrl": f"{f['openai']}/v1"},
                    },
                    {
                        "name": "claude",
                        "provider": "anthropic",
                        "params": {"apiKey": API_KEY, "baseUrl": f"{f['anthropic']}/v1", "model": "claude-haiku"},
                    },
                    {"name": "s-openai", "provider": "openAI", "params": {"apiKey": "sk-up", "baseUrl": f"{s}/v1"}},
                    {
                        "name": "s-anthropic",
                        "provider": "anthropic",
                        "params": {"apiKey": "sk-up", "baseUrl": f"{s}/v1", "model": "claude-x"},
                    },
                    {
                        "name": "s-gemini",
                        "provider": "gemini",
                        "params": {"apiKey": "g-key", "baseUrl": s, "nativeApi": True, "model": "gemini-x"},
                    },
                    {
                        "name": "s-bedrock",
                        "provider": "bedrock",
                        "params": {"apiKey": "br-key", "awsRegion": "us-east-1", "baseUrl": s, "model": "m1"},
                    },
                ],
                "policies": {
                    "ai": {
                        "promptGuard": {
                            "request": [{"regex": {"action": "reject", "rules": [{"builtin": "email"}]}}],
                            "response": [{"regex": {"action": "mask", "rules": [{"builtin": "email"}]}}],
                        }
                    }
                },
            }
        }
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, config)
        procs.append(gw)
        setup = Setup(gw, port, fakes, scripted)
        yield setup
        setup.close()
    finally:
        for p in reversed(procs):
            p.stop()
        scripted.close()


def _last_body(env: Setup, kind: str) -> Any:
    body = env.fakes[kind].last()["body"]
    return json.loads(body) if isinstance(body, str) else body


def _refused_before_the_provider(env: Setup, kind: str, path: str, body: dict[str, Any]) -> None:
    before = env.fakes[kind].count()
    r = env.post(path, body)
    assert r.status_code == 403, (r.status_code, r.text)
    assert env.fakes[kind].count() == before


# ---------------------------------------------------------------- 1. every text a provider reads

_RESPONSES_ITEMS: dict[str, Any] = {
    "local_shell_call_output": {"type": "local_shell_call_output", "id": "ls_1", "output": f"mail {EMAIL}"},
    "local_shell_call": {
        "type": "local_shell_call",
        "id": "lsc_1",
        "call_id": "c1",
        "status": "completed",
        "action": {"type": "exec", "command": ["mail", EMAIL], "env": {}},
    },
    "shell_call_output": {
        "type": "shell_call_output",
        "call_id": "c2",
        "output": [{"stdout": EMAIL, "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}],
    },
    "code_interpreter_call": {
        "type": "code_interpreter_call",
        "id": "ci_1",
        "status": "completed",
        "container_id": "cntr_1",
        "code": "print(1)",
        "outputs": [{"type": "logs", "logs": f"wrote to {EMAIL}"}],
    },
    "computer_call_output": {
        "type": "computer_call_output",
        "call_id": "c3",
        "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AAAA"},
        "acknowledged_safety_checks": [{"id": "sc_1", "code": "x", "message": f"ask {EMAIL}"}],
    },
    "computer_call": {
        "type": "computer_call",
        "id": "cc_1",
        "call_id": "c4",
        "status": "completed",
        "pending_safety_checks": [],
        "action": {"type": "type", "text": EMAIL},
    },
    "file_search_call": {
        "type": "file_search_call",
        "id": "fs_1",
        "status": "completed",
        "queries": ["who"],
        "results": [{"file_id": "f1", "filename": "a.txt", "score": 0.5, "text": f"owner {EMAIL}"}],
    },
    "web_search_call": {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search", "query": EMAIL},
    },
    "mcp_call_output": {
        "type": "mcp_call",
        "id": "mcp_1",
        "server_label": "crm",
        "name": "lookup",
        "arguments": "{}",
        "output": f"found {EMAIL}",
    },
    "mcp_call_error": {
        "type": "mcp_call",
        "id": "mcp_2",
        "server_label": "crm",
        "name": "lookup",
        "arguments": "{}",
        "error": f"no such user {EMAIL}",
    },
    "mcp_approval_response": {
        "type": "mcp_approval_response",
        "approval_request_id": "apr_1",
        "approve": False,
        "reason": f"not {EMAIL}",
    },
    "mcp_list_tools": {
        "type": "mcp_list_tools",
        "id": "mcpl_1",
        "server_label": "crm",
        "tools": [{"name": "lookup", "description": f"ask {EMAIL}", "input_schema": {}}],
    },
    "apply_patch_call_output": {
        "type": "apply_patch_call_output",
        "call_id": "c5",
        "status": "completed",
        "output": f"patched {EMAIL}",
    },
    "output_text_annotation": {
        "type": "message",
        "role": "assistant",
        "content": [
            {
                "type": "output_text",
                "text": "see the link",
                "annotations": [{"type": "url_citation", "url": "https://x", "title": EMAIL, "start_index": 0}],
            }
        ],
    },
}


@pytest.mark.parametrize("case", list(_RESPONSES_ITEMS))
def test_responses_input_items_are_guarded(env: Setup, case: str) -> None:
    """Every Responses input item type carries text the model reads: an MCP call's output, a
    shell's output, a file search's results, a citation's title; none may pass unguarded."""
    body = {"model": "gpt", "input": [{"role": "user", "content": "hi"}, _RESPONSES_ITEMS[case]]}
    _refused_before_the_provider(env, "openai", "/v1/responses", body)


@pytest.mark.parametrize(
    "variable",
    [f"write to {EMAIL}", {"type": "input_text", "text": f"write to {EMAIL}"}],
    ids=["string", "input_text"],
)
def test_responses_prompt_variables_are_guarded(env: Setup, variable: Any) -> None:
    """A stored prompt's variables are put into the prompt by the provider."""
    body = {"model": "gpt", "input": "hi", "prompt": {"id": "pmpt_1", "variables": {"who": variable}}}
    _refused_before_the_provider(env, "openai", "/v1/responses", body)


def test_responses_prompt_variables_without_secrets_are_served(env: Setup) -> None:
    body = {"model": "gpt", "input": "hi", "prompt": {"id": "pmpt_1", "variables": {"who": "Bob"}}}
    r = env.post("/v1/responses", body)
    assert r.status_code == 200, r.text
    assert _last_body(env, "openai")["prompt"]["variables"] == {"who": "Bob"}


@pytest.mark.parametrize(
    "content",
    [f"Hi {EMAIL}", [{"type": "text", "text": f"Hi {EMAIL}"}]],
    ids=["string", "parts"],
)
def test_chat_prediction_is_guarded(env: Setup, content: Any) -> None:
    """Chat's predicted output is text the model is given."""
    body = {
        "model": "gpt",
        "messages": [{"role": "user", "content": "hi"}],
        "prediction": {"type": "content", "content": content},
    }
    _refused_before_the_provider(env, "openai", "/v1/chat/completions", body)


_ANTHROPIC_BLOCKS: dict[str, Any] = {
    "citation": {
        "type": "text",
        "text": "as the page says",
        "citations": [
            {
                "type": "web_search_result_location",
                "url": "https://x",
                "title": "t",
                "cited_text": f"mail {EMAIL}",
                "encrypted_index": "e",
            }
        ],
    },
    "web_search_tool_result": {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": [{"type": "web_search_result", "url": "https://x", "title": EMAIL, "encrypted_content": "e"}],
    },
    "web_fetch_tool_result": {
        "type": "web_fetch_tool_result",
        "tool_use_id": "srvtoolu_2",
        "content": {
            "type": "web_fetch_result",
            "url": "https://x",
            "content": {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": EMAIL}},
        },
    },
    "code_execution_tool_result": {
        "type": "code_execution_tool_result",
        "tool_use_id": "srvtoolu_3",
        "content": {"type": "code_execution_result", "stdout": EMAIL, "stderr": "", "return_code": 0, "content": []},
    },
    "bash_code_execution_tool_result": {
        "type": "bash_code_execution_tool_result",
        "tool_use_id": "srvtoolu_4",
        "content": {
            "type": "bash_code_execution_result",
            "stdout": "",
            "stderr": EMAIL,
            "return_code": 1,
            "content": [],
        },
    },
}


@pytest.mark.parametrize("case", list(_ANTHROPIC_BLOCKS))
def test_anthropic_citations_and_server_tool_results_are_guarded(env: Setup, case: str) -> None:
    body = {
        "model": "claude",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [_ANTHROPIC_BLOCKS[case]]},
            {"role": "user", "content": "go on"},
        ],
    }
    _refused_before_the_provider(env, "anthropic", "/v1/messages", body)


def test_anthropic_images_and_ids_are_not_read_as_text(env: Setup) -> None:
    """Opaque members (base64 data, ids, signatures) stay as they came: a guard that masked
    digits in an image would break it."""
    data = "MTIzNDU2Nzg5MDEyMzQ1Ng=="
    body = {
        "model": "claude",
        "max_tokens": 50,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
                    {"type": "text", "text": "what is it"},
                ],
            }
        ],
    }
    r = env.post("/v1/messages", body)
    assert r.status_code == 200, r.text
    sent = _last_body(env, "anthropic")
    assert sent["messages"][0]["content"][0]["source"]["data"] == data


# ---------------------------------------------------------------- 2. embeddings as token ids


@pytest.mark.parametrize("tokens", [[3923, 1234], [[3923, 1234], [55]]], ids=["ids", "lists-of-ids"])
def test_embeddings_token_ids_refused_under_a_request_guard(env: Setup, tokens: Any) -> None:
    """Token ids are text no regex reads: with a request guard they are refused, not passed."""
    before = env.fakes["openai"].count()
    with pytest.raises(openai.BadRequestError) as err:
        env.openai().embeddings.create(model="gpt", input=tokens)
    assert "token ids" in str(err.value)
    assert env.fakes["openai"].count() == before


def test_embeddings_text_still_served_and_guarded(env: Setup) -> None:
    out = env.openai().embeddings.create(model="gpt", input=["one", "two"])
    assert len(out.data) == 2
    with pytest.raises(openai.PermissionDeniedError):
        env.openai().embeddings.create(model="gpt", input=[f"write {EMAIL}"])


# ---------------------------------------------------------------- 3. streams cut before their end


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + b"\n\n"


def _anthropic_cut() -> bytes:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": []}
    message |= {"stop_reason": None, "usage": {"input_tokens": 3, "output_tokens": 0}}
    out = _sse({"type": "message_start", "message": message}, "message_start")
    out += _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    out += _sse(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": PARTIAL}},
        "content_block_delta",
    )
    return out  # no content_block_stop, message_delta, message_stop


def _gemini_cut() -> bytes:
    return _sse({"candidates": [{"content": {"role": "model", "parts": [{"text": PARTIAL}]}, "index": 0}]})


def _bedrock_cut() -> bytes:
    frames = frame("messageStart", {"role": "assistant"})
    frames += frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": PARTIAL}})
    stop = frame("messageStop", {"stopReason": "end_turn"})
    return frames + stop[: len(stop) // 2]  # the final frame cut short


def _openai_cut() -> bytes:
    c = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    c["choices"] = [{"index": 0, "delta": {"role": "assistant", "content": PARTIAL}, "finish_reason": None}]
    return _sse(c)


_CUT = {
    "s-anthropic": ("text/event-stream", _anthropic_cut),
    "s-gemini": ("text/event-stream", _gemini_cut),
    "s-bedrock": ("application/vnd.amazon.eventstream", _bedrock_cut),
    "s-openai": ("text/event-stream", _openai_cut),
}


@pytest.mark.parametrize("model", list(_CUT))
def test_cut_stream_raises_in_the_openai_sdk(env: Setup, model: str) -> None:
    """A stream the provider ends before its final event: the OpenAI SDK raises (an error
    chunk, no ``[DONE]``) instead of returning a cut answer as a whole one; the log says so."""
    content_type, make = _CUT[model]
    env.scripted.answer = (200, content_type, make())
    seen = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in env.openai().chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            for choice in chunk.choices:
                seen += choice.delta.content or ""
    assert "ended early" in str(err.value)
    assert "The answer" in seen  # what came is delivered, then the error
    wait_for(lambda: f"no final event from {model}" in env.gw.output(), 10, "the access log's reason")


@pytest.mark.parametrize("model", ["s-gemini", "s-bedrock", "s-openai"])
def test_cut_stream_raises_in_the_anthropic_sdk(env: Setup, model: str) -> None:
    content_type, make = _CUT[model]
    env.scripted.answer = (200, content_type, make())
    stream = env.anthropic().messages.stream(model=model, max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.APIStatusError) as err, stream as events:  # noqa: PT012 - raises while read
        for _ in events:
            pass
    assert "ended early" in str(err.value)


def test_cut_stream_is_an_error_event_for_responses_clients(env: Setup) -> None:
    content_type, make = _CUT["s-anthropic"]
    env.scripted.answer = (200, content_type, make())
    events = [e.type for e in env.openai().responses.create(model="s-anthropic", input="hi", stream=True)]
    assert events[-1] == "error", events
    assert "response.completed" not in events


def test_whole_streams_still_end_normally(env: Setup) -> None:
    for model in ("gpt", "claude"):
        text = ""
        for chunk in env.openai().chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            for choice in chunk.choices:
                text += choice.delta.content or ""
        assert text


# ---------------------------------------------------------------- 4. interleaved tool calls


def _tool_stream(deltas: list[dict[str, Any]]) -> bytes:
    out = b""
    for calls, finish in [*((d, None) for d in deltas), (None, "tool_calls")]:
        c: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        delta = {"tool_calls": calls} if calls else {}
        c["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        out += _sse(c)
    return out + b"data: [DONE]\n\n"


def _call(index: int, args: str, name: str | None = None) -> list[dict[str, Any]]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if name:
        call |= {"id": f"call_{index}", "type": "function"}
        call["function"]["name"] = name
    return [call]


def test_interleaved_tool_calls_cannot_split_a_match(env: Setup) -> None:
    """A provider returns to a tool call it left, after the stream guard released that call's
    held text: the address split across the switch is still masked."""
    deltas = [
        _call(0, '{"to": "alice@exam', "send"),
        _call(1, '{"n": 1}', "count"),
        _call(0, 'ple.com"}'),
    ]
    env.scripted.answer = (200, "text/event-stream", _tool_stream(deltas))
    args: dict[int, str] = {}
    for chunk in env.openai().chat.completions.create(
        model="s-openai", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                args[call.index] = args.get(call.index, "") + ((call.function and call.function.arguments) or "")
    # the part released before the switch is out; the rest of the address is not
    assert args[0] == '{"to": "alice@exam' + MASK + '"}', args
    assert args[1] == '{"n": 1}'


def test_tool_calls_in_order_are_still_masked_whole(env: Setup) -> None:
    deltas = [_call(0, '{"to": "ali', "send"), _call(0, 'ce@example.com"}'), _call(1, '{"n": 1}', "count")]
    env.scripted.answer = (200, "text/event-stream", _tool_stream(deltas))
    args: dict[int, str] = {}
    for chunk in env.openai().chat.completions.create(
        model="s-openai", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                args[call.index] = args.get(call.index, "") + ((call.function and call.function.arguments) or "")
    assert args == {0: '{"to": "' + MASK + '"}', 1: '{"n": 1}'}
