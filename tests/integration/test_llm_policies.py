"""LLM routing and policies through the real daemon: failover and weighted virtual models,
aliases, defaults and prompt enrichment, prompt guards (mask and reject, requests and responses,
streamed too), the route form with backendAuth, and errors mid-stream."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.llm import AWS_ENV, FakeProvider, LlmSetup
from tests.support.llm_fakes import API_KEY

CARD = "4111 1111 1111 1111"


class Webhook:
    """A prompt-guard webhook: masks "banana", rejects "forbidden", answers in a thread."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen = self.seen = []  # type: list[dict]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, **body})
                texts = body["texts"]
                if any("forbidden" in t for t in texts):
                    verdict: dict = {"action": "reject", "reason": "forbidden topic", "status": 422}
                elif any("banana" in t for t in texts):
                    verdict = {"action": "mask", "texts": [t.replace("banana", "[fruit]") for t in texts]}
                else:
                    verdict = {"action": "pass"}
                data = json.dumps(verdict).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmSetup]:
    tmp = tmp_path_factory.mktemp("llmpol")
    procs = []
    webhook = Webhook()
    try:
        fakes = {k: FakeProvider(tmp, k) for k in ("openai", "anthropic", "bedrock")}
        procs += fakes.values()
        o, a, b = (fakes[k].base for k in ("openai", "anthropic", "bedrock"))
        dead = f"http://127.0.0.1:{free_port()}/v1"
        port, route_port = free_port(), free_port()

        def oai(name: str, model: str | None = None, base: str = f"{o}/v1") -> dict:
            params = {"apiKey": API_KEY, "baseUrl": base, **({"model": model} if model else {})}
            return {"name": name, "provider": "openAI", "params": params}

        config = {
            "llm": {
                "port": port,
                "models": [
                    oai("gpt-4o-mini"),
                    {
                        "name": "claude-haiku",
                        "provider": "anthropic",
                        "params": {"apiKey": API_KEY, "baseUrl": f"{a}/v1"},
                    },
                    oai("broken-429", "fail429"),
                    {
                        "name": "broken-500",
                        "provider": "anthropic",
                        "params": {"apiKey": API_KEY, "baseUrl": f"{a}/v1", "model": "x-fail500"},
                    },
                    oai("dead", base=dead),
                    oai("sluggish", "slow-model"),
                    oai("openai-midstream", "midstream"),
                    oai("openai-slowstream", "slowstream"),
                    {
                        "name": "bedrock-midstream",
                        "provider": "bedrock",
                        "params": {"awsRegion": "us-east-1", "baseUrl": b, "model": "midstream"},
                    },
                ],
                "virtualModels": [
                    {
                        "name": "resilient",
                        "routing": {
                            "failover": {
                                "targets": [
                                    {"model": "broken-429", "priority": 0},
                                    {"model": "broken-500", "priority": 1},
                                    {"model": "dead", "priority": 2},
                                    {"model": "claude-haiku", "priority": 3},
                                ]
                            }
                        },
                    },
                    {
                        "name": "patient",
                        "routing": {
                            "failover": {
                                "timeout": "1s",
                                "targets": [{"model": "sluggish"}, {"model": "gpt-4o-mini", "priority": 1}],
                            }
                        },
                    },
                    {
                        "name": "hopeless",
                        "routing": {
                            "failover": {"targets": [{"model": "broken-429"}, {"model": "broken-500", "priority": 1}]}
                        },
                    },
                    {
                        "name": "split",
                        "routing": {"weighted": {"targets": [{"model": "gpt-4o-mini"}, {"model": "claude-haiku"}]}},
                    },
                ],
                "policies": {
                    "ai": {
                        "modelAliases": {"fast": "gpt-4o-mini", "anthropic/*": "claude-haiku"},
                        "defaults": {"temperature": 0.5},
                        "prompts": {"prepend": [{"role": "system", "content": "You are terse."}]},
                        "promptGuard": {
                            "request": [
                                {
                                    "regex": {"action": "reject", "rules": [{"builtin": "email"}]},
                                    "rejection": {"status": 400, "body": "no emails please"},
                                },
                                {
                                    "regex": {
                                        "action": "mask",
                                        "rules": [{"builtin": "ssn"}, {"pattern": "secret-[0-9]+"}],
                                    }
                                },
                            ],
                            "response": [{"regex": {"action": "mask", "rules": [{"builtin": "creditCard"}]}}],
                        },
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
                                    "name": "ai-route",
                                    "backends": [
                                        {
                                            "ai": {
                                                "name": "openai",
                                                "provider": {"openAI": {"model": "gpt-4o-mini"}},
                                                "hostOverride": f"127.0.0.1:{fakes['openai'].port}",
                                            },
                                            "policies": {"backendAuth": {"key": API_KEY}},
                                        }
                                    ],
                                    "policies": {
                                        "ai": {
                                            "overrides": {"top_p": 0.9},
                                            "promptGuard": {
                                                "request": [
                                                    {
                                                        "webhook": {
                                                            "target": {"host": f"127.0.0.1:{webhook.port}"},
                                                            "headers": {
                                                                "x-caller": 'request.headers["x-user"]',
                                                                ":path": '"/check/request"',
                                                            },
                                                            "forwardHeaderMatches": [
                                                                {"name": "x-team", "value": {"regex": "red|blue"}}
                                                            ],
                                                        }
                                                    }
                                                ],
                                                "response": [
                                                    {"webhook": {"target": {"host": f"127.0.0.1:{webhook.port}"}}},
                                                    # unreachable, failing open: the answer goes on
                                                    {
                                                        "webhook": {
                                                            "target": {"host": f"127.0.0.1:{free_port()}"},
                                                            "failureMode": "failOpen",
                                                        }
                                                    },
                                                ],
                                            },
                                        }
                                    },
                                },
                            ]
                        }
                    ],
                }
            ],
        }
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, config, env=AWS_ENV)
        procs.append(gw)
        setup = LlmSetup(gw, port, fakes)
        setup.route_port = route_port
        setup.webhook = webhook  # type: ignore[attr-defined]
        yield setup
        setup.close()
    finally:
        for p in reversed(procs):
            p.stop()
        webhook.stop()


def oa(llm: LlmSetup, port: int | None = None) -> openai.OpenAI:
    return llm.openai(port)  # type: ignore[no-any-return]


def an(llm: LlmSetup) -> anthropic.Anthropic:
    return llm.anthropic()  # type: ignore[no-any-return]


def test_failover_moves_on_without_the_client_seeing_errors(llm: LlmSetup) -> None:
    r = oa(llm).chat.completions.create(model="resilient", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from anthropic! You said: hi"
    with an(llm).messages.stream(
        model="resilient", max_tokens=64, messages=[{"role": "user", "content": "again"}]
    ) as s:
        assert s.get_final_text() == "Hello from anthropic! You said: again"
    line = llm.access_line("gen_ai.request.model=resilient")
    assert "agw.ai.attempts=4" in line and "gen_ai.provider.name=anthropic" in line


def test_failover_on_timeout(llm: LlmSetup) -> None:
    r = oa(llm).chat.completions.create(model="patient", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from openai! You said: hi"


def test_last_target_error_reaches_client_in_its_format(llm: LlmSetup) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        oa(llm).chat.completions.create(model="hopeless", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 500
    assert err.value.body["type"] == "server_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError) as rl:
        an(llm).messages.create(model="broken-429", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert rl.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_weighted_uses_both(llm: LlmSetup) -> None:
    seen = set()
    for _ in range(30):
        r = oa(llm).chat.completions.create(model="split", messages=[{"role": "user", "content": "w"}])
        seen.add(r.choices[0].message.content.split("!")[0])  # type: ignore[union-attr]
    assert seen == {"Hello from openai", "Hello from anthropic"}


def test_aliases_defaults_and_prompts(llm: LlmSetup) -> None:
    r = oa(llm).chat.completions.create(model="fast", messages=[{"role": "user", "content": "alias"}])
    assert r.choices[0].message.content == "Hello from openai! You said: alias"
    sent = json.loads(llm.fakes["openai"].last()["body"])
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.5
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    m = an(llm).messages.create(
        model="anthropic/claude-3",
        max_tokens=9,
        extra_body={"temperature": 0.1},
        messages=[{"role": "user", "content": "x"}],
    )
    assert m.content[0].text.startswith("Hello from anthropic")  # type: ignore[union-attr]
    sent = json.loads(llm.fakes["anthropic"].last()["body"])
    assert sent["system"] == "You are terse." and sent["temperature"] == 0.1


def test_request_guard_rejects_in_client_format(llm: LlmSetup) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oa(llm).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "mail me at a@b.example.com"}]
        )
    assert "no emails please" in str(err.value)
    with pytest.raises(anthropic.BadRequestError) as aerr:
        an(llm).messages.create(
            model="claude-haiku", max_tokens=5, messages=[{"role": "user", "content": "x@y.example.org"}]
        )
    assert aerr.value.body["error"]["message"] == "no emails please"  # type: ignore[index]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku"])
def test_request_guard_masks(llm: LlmSetup, model: str) -> None:
    r = oa(llm).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "ssn 123-45-6789 secret-42"}]
    )
    assert r.choices[0].message.content == "Hello from {}! You said: ssn <SSN> <MASKED>".format(
        "openai" if model == "gpt-4o-mini" else "anthropic"
    )
    kind = "openai" if model == "gpt-4o-mini" else "anthropic"
    assert "123-45-6789" not in llm.fakes[kind].last()["body"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku"])
def test_response_guard_masks_streams_too(llm: LlmSetup, model: str) -> None:
    r = oa(llm).chat.completions.create(model=model, messages=[{"role": "user", "content": f"card {CARD} ok"}])
    assert r.choices[0].message.content.endswith("You said: card <CREDIT_CARD> ok")  # type: ignore[union-attr]
    text = "".join(
        c.choices[0].delta.content or ""
        for c in oa(llm).chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"card {CARD} ok"}], stream=True
        )
        if c.choices
    )
    assert text.endswith("You said: card <CREDIT_CARD> ok")
    with an(llm).messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": f"card {CARD}"}]
    ) as s:
        assert s.get_final_text().endswith("You said: card <CREDIT_CARD>")


def test_route_form_with_backend_auth(llm: LlmSetup) -> None:
    client = oa(llm, llm.route_port)
    r = client.chat.completions.create(model="whatever", messages=[{"role": "user", "content": "route"}])
    assert r.choices[0].message.content == "Hello from openai! You said: route"
    last = llm.fakes["openai"].last()
    assert json.loads(last["body"])["model"] == "gpt-4o-mini"  # the backend's model wins
    assert last["headers"]["authorization"] == f"Bearer {API_KEY}"
    # an unknown API path on an ai route is a 404 in OpenAI's error format
    resp = httpx.post(f"http://127.0.0.1:{llm.route_port}/v1/unknown", json={})
    assert resp.status_code == 404 and "error" in resp.json()


def test_error_mid_stream(llm: LlmSetup) -> None:
    with pytest.raises(openai.APIError):
        for _ in oa(llm).chat.completions.create(
            model="openai-midstream", messages=[{"role": "user", "content": "a b c"}], stream=True
        ):
            pass
    with pytest.raises(openai.APIError):
        for _ in oa(llm).chat.completions.create(
            model="bedrock-midstream", messages=[{"role": "user", "content": "a b c"}], stream=True
        ):
            pass
    with (
        pytest.raises(anthropic.APIStatusError),
        an(llm).messages.stream(
            model="openai-midstream", max_tokens=9, messages=[{"role": "user", "content": "a b"}]
        ) as s,
    ):
        s.get_final_text()
    # the gateway keeps serving
    assert oa(llm).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ok"}]).choices


def test_bad_requests(llm: LlmSetup) -> None:
    url = f"{llm.url}/v1/chat/completions"
    r = httpx.post(url, content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(url, json={"messages": []})
    assert r.status_code == 400 and r.json()["error"]["message"] == "model is required"
    r = httpx.post(f"{llm.url}/v1/messages", json={"model": "nope", "max_tokens": 1, "messages": []})
    assert r.status_code == 404 and r.json()["type"] == "error"
    r = httpx.get(url)
    assert r.status_code == 405


def test_client_leaving_mid_stream(llm: LlmSetup) -> None:
    with httpx.stream(
        "POST",
        f"{llm.url}/v1/chat/completions",
        json={"model": "openai-slowstream", "stream": True, "messages": [{"role": "user", "content": "a b c d e f"}]},
        timeout=10,
    ) as r:
        first = next(r.iter_bytes())
        assert first.startswith(b"data: ")
    # the gateway noticed, let the upstream response go, and keeps serving
    r2 = oa(llm).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "still here"}])
    assert r2.choices[0].message.content == "Hello from openai! You said: still here"


def test_overrides_and_webhook_guards(llm: LlmSetup) -> None:
    client = oa(llm, llm.route_port)
    r = client.chat.completions.create(
        model="x",
        top_p=0.2,
        messages=[{"role": "user", "content": "a banana split"}],
        extra_headers={"x-user": "alice", "x-team": "red", "x-other": "kept-back"},
    )
    sent = json.loads(llm.fakes["openai"].last()["body"])
    assert sent["top_p"] == 0.9  # overridden
    assert sent["messages"][-1]["content"] == "a [fruit] split"  # masked by the request webhook
    assert r.choices[0].message.content == "Hello from openai! You said: a [fruit] split"
    phases = [(c["path"], c["phase"]) for c in llm.webhook.seen[-2:]]  # type: ignore[attr-defined]
    assert phases == [("/check/request", "request"), ("/response", "response")]
    # webhook headers: CEL over the client's request, and the client's headers that match
    asked = llm.webhook.seen[-2]["headers"]  # type: ignore[attr-defined]
    assert asked["x-caller"] == "alice" and asked["x-team"] == "red" and "x-other" not in asked
    assert "x-caller" not in llm.webhook.seen[-1]["headers"]  # type: ignore[attr-defined]
    assert llm.webhook.seen[-1]["texts"] == ["Hello from openai! You said: a [fruit] split"]  # type: ignore[attr-defined]
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": "something forbidden"}])
    assert "forbidden topic" in str(err.value)
