"""Audit 13 through the daemon: where the gateway translates between LLM APIs.

Request guards against what a provider reads that the guard did not (Responses ``instructions``
given as parts, Anthropic ``document`` and ``search_result`` blocks, a Chat message's ``name``,
a Chat image that Gemini reads as text, a Cloud Storage URI Vertex would read with the gateway's
credential); response guards against the reasoning text OpenAI-compatible providers add to a
Chat answer; an untrusted provider's stream (Bedrock frames whose headers lie inside valid
CRCs, a Gemini error event naming any status under a held stream); a client-chosen model that
is a dot segment of a provider path; client bodies of the wrong shape for the translation."""

from __future__ import annotations

import base64
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import Gateway, Process, free_port, wait_listening
from tests.support.guard_fakes import GUARD_KEY
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY, frame, raw_frame, string_header
from tests.support.raw_server import ScriptedProvider

EMAIL = "alice@example.com"
MASK = "<EMAIL_ADDRESS>"


class ContentSafety(Process):
    """The Azure AI Content Safety fake (tests/support/guard_fakes.py): ``HATEFUL`` is Hate at
    severity 4."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "tests.support.guard_fakes", "--kind", "contentsafety", "--port", str(self.port)]
        super().__init__(args, tmp / "guard-contentsafety.log")
        wait_listening(self, self.port, "content safety fake")


class Setup:
    def __init__(self, gw: Gateway, port: int, fakes: dict[str, FakeProvider], scripted: ScriptedProvider) -> None:
        self.gw = gw
        self.port = port
        self.fakes = fakes
        self.scripted = scripted
        self.held_port = 0
        self.hook = scripted

    def post(self, path: str, body: dict[str, Any], port: int | None = None) -> httpx.Response:
        headers = {"authorization": "Bearer client", "anthropic-version": "2023-06-01"}
        url = f"http://127.0.0.1:{port or self.port}{path}"
        return httpx.post(url, json=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp: Path = tmp_path_factory.mktemp("translation")
    procs: list[Any] = []
    scripted = ScriptedProvider()
    hook = ScriptedProvider()
    try:
        fakes = {k: FakeProvider(tmp, k) for k in ("openai", "anthropic", "gemini", "vertex", "bedrock")}
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
                    {
                        "name": "gemini",
                        "provider": "gemini",
                        "params": {"apiKey": API_KEY, "baseUrl": f["gemini"], "nativeApi": True, "model": "gemini-x"},
                    },
                    {
                        "name": "vertex",
                        "provider": "vertex",
                        "params": {
                            "apiKey": API_KEY,
                            "vertexProject": "proj-1",
                            "vertexRegion": "us-central1",
                            "baseUrl": f["vertex"],
                            "model": "gemini-2.0-flash",
                        },
                    },
                    {"name": "reasoner", "provider": "openAI", "params": {"apiKey": "sk-up", "baseUrl": f"{s}/v1"}},
                    {
                        "name": "h-bedrock",
                        "provider": "bedrock",
                        "params": {"apiKey": "br-key", "awsRegion": "us-east-1", "baseUrl": s, "model": "m1"},
                    },
                    # any other name: Bedrock with the client's model in the path
                    {
                        "name": "*",
                        "provider": "bedrock",
                        "params": {"apiKey": "br-key", "awsRegion": "us-east-1", "baseUrl": s},
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
        # Gemini behind a vendor response guard: streams are held until judged, so an error
        # before the first event is answered with a status line of its own.
        held_port = free_port()
        held_route = {
            "backends": [
                {
                    "ai": {
                        "name": "gemini",
                        "provider": {"gemini": {"model": "gemini-x", "nativeApi": True}},
                        "hostOverride": f"127.0.0.1:{scripted.port}",
                    },
                    "policies": {"backendAuth": {"key": "g-key"}},
                }
            ],
            "policies": {
                "ai": {
                    "promptGuard": {
                        "response": [
                            {
                                "azureContentSafety": {
                                    "endpoint": "safety.cognitiveservices.azure.com",
                                    "baseUrl": f"http://127.0.0.1:{free_port()}",
                                    "policies": {"backendAuth": {"key": "guard-key"}},
                                }
                            }
                        ]
                    }
                }
            },
        }
        # a request guard webhook that answers what the test tells the scripted server
        webhook_route = {
            "matches": [{"path": {"pathPrefix": "/hooked/"}}],
            "backends": [
                {
                    "ai": {
                        "name": "openai",
                        "provider": {"openAI": {"model": "gpt-4o-mini"}},
                        "hostOverride": f"127.0.0.1:{fakes['openai'].port}",
                        "pathPrefix": "/v1",
                    },
                    "policies": {"backendAuth": {"key": API_KEY}},
                }
            ],
            "policies": {
                "ai": {"promptGuard": {"request": [{"webhook": {"target": {"host": f"127.0.0.1:{hook.port}"}}}]}}
            },
        }
        # a vendor response guard (Azure AI Content Safety's fake) over the scripted provider
        safety = ContentSafety(tmp)
        procs.append(safety)
        judged_route = {
            "matches": [{"path": {"pathPrefix": "/judged/"}}],
            "backends": [
                {
                    "ai": {
                        "name": "reasoner",
                        "provider": {"openAI": {"model": "reasoner"}},
                        "hostOverride": f"127.0.0.1:{scripted.port}",
                        "pathPrefix": "/v1",
                    },
                    "policies": {"backendAuth": {"key": "sk-up"}},
                }
            ],
            "policies": {
                "ai": {
                    "promptGuard": {
                        "response": [
                            {
                                "azureContentSafety": {
                                    "endpoint": "safety.cognitiveservices.azure.com",
                                    "baseUrl": f"http://127.0.0.1:{safety.port}",
                                    "analyzeText": {},
                                    "policies": {
                                        "backendAuth": {
                                            "key": {
                                                "value": GUARD_KEY,
                                                "location": {"header": {"name": "Ocp-Apim-Subscription-Key"}},
                                            }
                                        }
                                    },
                                },
                                "rejection": {"status": 451, "body": "judged"},
                            }
                        ]
                    }
                }
            },
        }
        routes = [webhook_route, judged_route, held_route]
        config["binds"] = [{"port": held_port, "listeners": [{"routes": routes}]}]
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, config)
        procs.append(gw)
        setup = Setup(gw, port, fakes, scripted)
        setup.held_port = held_port
        setup.hook = hook
        yield setup
    finally:
        for p in reversed(procs):
            p.stop()
        scripted.close()
        hook.close()


def _last_body(fake: FakeProvider) -> Any:
    body = fake.last()["body"]
    return json.loads(body) if isinstance(body, str) else body


def _assert_refused_before_the_provider(env: Setup, kind: str, path: str, body: dict[str, Any]) -> None:
    before = env.fakes[kind].count()
    r = env.post(path, body)
    assert r.status_code == 403, (r.status_code, r.text, env.fakes[kind].last().get("body"))
    assert env.fakes[kind].count() == before


# ---------------------------------------------------------------- request guards


def test_responses_instructions_as_parts_are_guarded(env: Setup) -> None:
    """Responses ``instructions`` given as content parts become the provider's system prompt
    (Anthropic here): the guard reads them as it reads a string."""
    body = {
        "model": "claude",
        "instructions": [{"type": "input_text", "text": f"write to {EMAIL}"}],
        "input": "hi",
    }
    _assert_refused_before_the_provider(env, "anthropic", "/v1/responses", body)


def test_responses_instructions_as_a_string_still_guarded_and_served(env: Setup) -> None:
    r = env.post("/v1/responses", {"model": "claude", "instructions": "be brief", "input": "hi"})
    assert r.status_code == 200, r.text
    assert _last_body(env.fakes["anthropic"])["system"] == "be brief"
    r = env.post("/v1/responses", {"model": "claude", "instructions": f"mail {EMAIL}", "input": "hi"})
    assert r.status_code == 403


@pytest.mark.parametrize(
    "block",
    [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": f"mail {EMAIL}"}},
        {
            "type": "document",
            "source": {"type": "content", "content": [{"type": "text", "text": f"mail {EMAIL}"}]},
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "plain"},
            "title": EMAIL,
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "plain"},
            "context": f"from {EMAIL}",
        },
        {
            "type": "search_result",
            "source": "https://example.com/a",
            "title": "a",
            "content": [{"type": "text", "text": f"mail {EMAIL}"}],
        },
    ],
    ids=["document-text", "document-content", "document-title", "document-context", "search-result"],
)
def test_anthropic_documents_are_guarded(env: Setup, block: dict[str, Any]) -> None:
    """Documents and search results go to Anthropic as they came (Messages → Anthropic):
    their texts are the prompt too."""
    body = {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": [block]}]}
    _assert_refused_before_the_provider(env, "anthropic", "/v1/messages", body)


def test_anthropic_document_without_secrets_is_served(env: Setup) -> None:
    block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}}
    body = {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": [block]}]}
    r = env.post("/v1/messages", body)
    assert r.status_code == 200, r.text
    assert _last_body(env.fakes["anthropic"])["messages"][0]["content"] == [block]


def test_chat_message_name_is_guarded(env: Setup) -> None:
    """A Chat message's ``name`` goes to an OpenAI provider (which shows it to the model)."""
    body = {"model": "gpt", "messages": [{"role": "user", "name": EMAIL, "content": "hi"}]}
    _assert_refused_before_the_provider(env, "openai", "/v1/chat/completions", body)


def _image(url: str) -> dict[str, Any]:
    return {
        "model": "gemini",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "read this"}, {"type": "image_url", "image_url": {"url": url}}],
            }
        ],
    }


@pytest.mark.parametrize(
    "url",
    [
        "data:text/plain;base64," + base64.b64encode(f"mail {EMAIL}".encode()).decode(),
        "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4").decode(),
        "gs://private-bucket/secret.png",
        "file:///etc/passwd",
    ],
    ids=["text-data-url", "pdf-data-url", "cloud-storage", "file"],
)
@pytest.mark.parametrize("model", ["gemini", "vertex"])
def test_gemini_image_parts_are_images(env: Setup, url: str, model: str) -> None:
    """A Chat ``image_url`` becomes Gemini ``inlineData`` (any MIME type, text read as text) or
    ``fileData`` (a ``gs://`` URI Vertex reads with the gateway's credential): only images and
    web URLs are sent."""
    kind = "gemini" if model == "gemini" else "vertex"
    before = env.fakes[kind].count()
    r = env.post("/v1/chat/completions", {**_image(url), "model": model})
    assert r.status_code == 400, (r.status_code, r.text, env.fakes[kind].last().get("body"))
    assert env.fakes[kind].count() == before


@pytest.mark.parametrize("url", ["data:image/png;base64,iVBORw0KGgo=", "https://example.com/cat.png"])
def test_gemini_images_still_go(env: Setup, url: str) -> None:
    r = env.post("/v1/chat/completions", _image(url))
    assert r.status_code == 200, r.text
    parts = _last_body(env.fakes["gemini"])["contents"][0]["parts"]
    assert parts[1] in (
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/png", "fileUri": url}},
    )


# ---------------------------------------------------------------- response guards


def _reasoning_answer(reasoning: str = f"thought of {EMAIL}") -> bytes:
    answer = {
        "id": "chatcmpl-r",
        "object": "chat.completion",
        "created": 1,
        "model": "reasoner",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "done", "reasoning_content": reasoning},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }
    return json.dumps(answer).encode()


def _reasoning_stream(key: str, text: str = "thought of alice@example.com, then") -> bytes:
    pieces = [text[:14], text[14:21], text[21:]]
    chunks = [{"role": "assistant", "content": ""}] + [{key: p} for p in pieces] + [{"content": "done"}]
    out = b""
    for delta in chunks:
        c: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "reasoner"}
        c["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
        out += b"data: " + json.dumps(c).encode() + b"\n\n"
    last: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "reasoner"}
    last["choices"] = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    usage = {**last, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}
    for x in (last, usage):
        out += b"data: " + json.dumps(x).encode() + b"\n\n"
    return out + b"data: [DONE]\n\n"


def test_reasoning_text_of_an_answer_is_guarded(env: Setup) -> None:
    """DeepSeek, vLLM and other OpenAI-compatible providers add the model's reasoning to a Chat
    answer (``reasoning_content``): the response guard masks it like the content."""
    env.scripted.answer = (200, "application/json", _reasoning_answer())
    r = env.post("/v1/chat/completions", {"model": "reasoner", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message["reasoning_content"] == f"thought of {MASK}", message
    assert EMAIL not in r.text


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_streamed_reasoning_is_guarded(env: Setup, key: str) -> None:
    """The same in a stream, the address split across three deltas."""
    env.scripted.answer = (200, "text/event-stream", _reasoning_stream(key))
    body = {"model": "reasoner", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    r = env.post("/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    reasoning = ""
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                reasoning += choice["delta"].get(key) or ""
    assert reasoning == f"thought of {MASK}, then", r.text
    assert "ali" not in reasoning.replace("<", "")


def test_streamed_legacy_function_call_is_guarded(env: Setup) -> None:
    """OpenAI still streams the legacy ``function_call`` (for ``functions``): its arguments are
    held back and masked like a tool call's."""
    pieces = ['{"to": "ali', "ce@exam", 'ple.com"}']
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "function_call": {"name": "send", "arguments": ""}}
    ]
    deltas += [{"function_call": {"arguments": p}} for p in pieces]
    out = b""
    for delta, finish in [*((d, None) for d in deltas), ({}, "function_call")]:
        c = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "reasoner"}
        c["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        out += b"data: " + json.dumps(c).encode() + b"\n\n"
    env.scripted.answer = (200, "text/event-stream", out + b"data: [DONE]\n\n")
    body = {"model": "reasoner", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    r = env.post("/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    name, args = "", ""
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                call = choice["delta"].get("function_call") or {}
                name += call.get("name") or ""
                args += call.get("arguments") or ""
    assert name == "send"
    assert args == '{"to": "' + MASK + '"}', r.text


@pytest.mark.parametrize("stream", [False, True])
def test_vendor_response_guard_judges_the_reasoning(env: Setup, stream: bool) -> None:
    """A vendor response guard judges the reasoning of an answer too, whole or held streamed."""
    reasoning = "thought of HATEFUL things"
    if stream:
        env.scripted.answer = (200, "text/event-stream", _reasoning_stream("reasoning_content", reasoning))
    else:
        env.scripted.answer = (200, "application/json", _reasoning_answer(reasoning))
    body = {"model": "reasoner", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    r = env.post("/judged/v1/chat/completions", body, port=env.held_port)
    assert r.status_code == 451, (r.text, env.gw.output()[-2000:])


# ---------------------------------------------------------------- hostile provider streams


def _stream_from_bedrock(env: Setup, frames: bytes) -> httpx.Response:
    env.scripted.answer = (200, "application/vnd.amazon.eventstream", frames)
    body = {"model": "h-bedrock", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    return env.post("/v1/chat/completions", body)


_START = frame("messageStart", {"role": "assistant"})
_BAD_HEADERS = {
    "int32-cut-short": b"\x05:abcd\x04\x00",
    "int16-at-the-end": b"\x05:abcd\x03",
    "int64-cut-short": b"\x05:abcd\x05\x00\x00\x00",
    "name-not-utf8": b"\x02\xff\xfe\x07\x00\x01x",
    "name-past-the-end": b"\x40:a",
}


@pytest.mark.parametrize("case", list(_BAD_HEADERS))
def test_bedrock_frame_with_lying_headers_is_a_provider_error(env: Setup, case: str) -> None:
    """A frame whose CRCs are right but whose headers run past their length: the provider's
    fault (502 in the stream), not the gateway's (500, a traceback in the log)."""
    r = _stream_from_bedrock(env, _START + raw_frame(_BAD_HEADERS[case], b"{}"))
    assert r.status_code == 200
    assert "internal error" not in r.text, r.text
    assert "malformed" in r.text, r.text
    assert "Traceback" not in env.gw.output(), env.gw.output()[-3000:]


def test_bedrock_exception_frame_is_the_providers_error(env: Setup) -> None:
    headers = string_header(":message-type", "exception") + string_header(":exception-type", "throttlingException")
    r = _stream_from_bedrock(env, _START + raw_frame(headers, b'{"message":"slow down"}'))
    assert r.status_code == 200
    errors = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {") and '"error"' in x]
    assert errors and errors[-1]["error"]["message"] == "slow down", r.text
    assert errors[-1]["error"]["type"] == "rate_limit_exceeded"


@pytest.mark.parametrize("code", ["100", "101", "1", "200", "204", "true", "1000000", "-5", '"429"'])
def test_gemini_stream_error_code_is_not_a_status_line(env: Setup, code: str) -> None:
    """Gemini's stream error names a code; under a vendor response guard the stream is held, so
    the error becomes the answer's status line. A code that is no error status (an interim
    1xx that leaves the client waiting for another answer, a success, no status at all) is the
    provider's fault: 502."""
    event = '{"error":{"code":' + code + ',"message":"boom","status":"X"}}'
    env.scripted.answer = (200, "text/event-stream", b"data: " + event.encode() + b"\r\n\r\n")
    body = json.dumps({"model": "gemini-x", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n{body}"
    ).encode()
    with socket.create_connection(("127.0.0.1", env.held_port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    status_line = data.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 502 "), data[:300]


def test_gemini_stream_error_status_is_kept(env: Setup) -> None:
    env.scripted.answer = (200, "text/event-stream", b'data: {"error":{"code":429,"message":"slow"}}\n\n')
    body = {"model": "gemini-x", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    r = env.post("/v1/chat/completions", body, port=env.held_port)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["message"] == "slow"


@pytest.mark.parametrize(
    ("verdict", "status"),
    [
        (b'{"action":"reject","reason":"no","status":101}', 403),
        (b'{"action":"reject","reason":"no","status":200}', 403),
        (b'{"action":"reject","reason":"no","status":"abc"}', 403),
        (b'{"action":"reject","reason":"no","status":451}', 451),
        (b"[]", 503),
    ],
)
def test_webhook_verdict_status_is_an_error_status(env: Setup, verdict: bytes, status: int) -> None:
    """The same for a guard webhook's ``status``: its reject is a refusal whatever it names, and
    an answer that is no JSON object is a failed webhook (503), not a 500 with a traceback."""
    env.hook.answer = (200, "application/json", verdict)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    r = env.post("/hooked/v1/chat/completions", body, port=env.held_port)
    assert r.status_code == status, r.text
    assert "Traceback" not in env.gw.output(), env.gw.output()[-3000:]


# ---------------------------------------------------------------- model paths


@pytest.mark.parametrize("model", ["..", ".", ""])
def test_bedrock_model_cannot_be_a_dot_segment(env: Setup, model: str) -> None:
    """The client's model is one segment of Bedrock's path (``/model/<id>/converse``); ``..``
    would take the gateway's credential to ``/converse`` (``%2e%2e`` is sent as ``%252e%252e``,
    a name, below)."""
    env.scripted.last_path = ""
    env.scripted.answer = (200, "application/json", b'{"output":{"message":{"content":[{"text":"x"}]}},"usage":{}}')
    r = env.post("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400, (r.status_code, r.text, env.scripted.last_path)
    assert env.scripted.last_path == ""


def test_bedrock_model_ids_with_colons_and_arns_still_go(env: Setup) -> None:
    env.scripted.answer = (200, "application/json", b'{"output":{"message":{"content":[{"text":"x"}]}},"usage":{}}')
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
    r = env.post("/v1/chat/completions", {"model": arn, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert env.scripted.last_path == "/model/" + arn.replace(":", "%3A").replace("/", "%2F") + "/converse"
    r = env.post("/v1/chat/completions", {"model": "%2e%2e", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert env.scripted.last_path == "/model/%252e%252e/converse"


# ---------------------------------------------------------------- client bodies of the wrong shape


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/messages", {"model": "gpt", "max_tokens": 5, "messages": [1]}),
        ("/v1/messages", {"model": "gpt", "max_tokens": 5, "messages": [{"role": "user", "content": [5]}]}),
        (
            "/v1/messages",
            {
                "model": "gpt",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "text", "text": [1]}]}],
            },
        ),
        ("/v1/chat/completions", {"model": "claude", "messages": ["hi"]}),
        ("/v1/chat/completions", {"model": "claude", "messages": [{"role": "user", "content": [7]}]}),
        ("/v1/chat/completions", {"model": "gemini", "messages": [{"role": "assistant", "tool_calls": [3]}]}),
        ("/v1/chat/completions", {"model": "claude", "messages": [{"role": "user", "content": "x"}], "n": "2"}),
        ("/v1/responses", {"model": "claude", "input": [4]}),
        ("/v1/responses", {"model": "claude", "input": "x", "tools": ["t"]}),
    ],
)
def test_client_bodies_of_the_wrong_shape_are_refused(env: Setup, path: str, body: dict[str, Any]) -> None:
    """A request the translation cannot read is the client's error (400), not the gateway's
    (500 and a traceback in the log for every such request)."""
    r = env.post(path, body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert "internal error" not in r.text
    assert "Traceback" not in env.gw.output(), env.gw.output()[-3000:]
