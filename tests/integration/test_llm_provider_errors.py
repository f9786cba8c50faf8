"""Provider errors that quote the credential the gateway sent, through the real daemon with the
OpenAI and Anthropic SDKs: a 401 quoting the key as OpenAI does (first 8 and last 4 characters) or
whole (in the body and a kept header), a mid-stream error quoting it; in both client formats,
passed through or translated, plain and streamed, and in the access log. None of it reaches the
client or the log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.llm import FakeProvider, LlmSetup
from tests.support.llm_fakes import API_KEY

# Keys the fakes refuse: OpenAI quotes the first one elided, the "-echo-" ones whole.
ELIDED_KEY = "sk-proj-Wr0ngKeyAbCdEfGhIjKlMnOpQrStUvWxYz9876"
ECHO_KEY = "sk-test-echo-9f8e7d6c5b4a3210fedcba"
ANTHROPIC_ECHO_KEY = "sk-ant-echo-0123456789abcdefXYZ"
ROUTE_ECHO_KEY = "sk-route-echo-5555aaaa6666bbbb"
# Fragments that must not appear anywhere a client or the log can see.
FRAGMENTS = {
    ELIDED_KEY: ("sk-proj-", "Wr0ngKey", "Yz9876", "9876."),
    ECHO_KEY: ("9f8e7d6c", "fedcba", "echo-9f8e"),
    ANTHROPIC_ECHO_KEY: ("0123456789", "abcdefXYZ"),
    ROUTE_ECHO_KEY: ("5555aaaa", "6666bbbb"),
    API_KEY: ("provider-secret",),
}


def _clean(text: str, key: str) -> None:
    assert key not in text, text
    for fragment in FRAGMENTS[key]:
        assert fragment not in text, (fragment, text)


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmSetup]:
    tmp = tmp_path_factory.mktemp("provider-errors")
    procs: list[Any] = []
    try:
        fakes = {k: FakeProvider(tmp, k) for k in ("openai", "anthropic")}
        procs += fakes.values()
        o, a = fakes["openai"].base, fakes["anthropic"].base
        port, route_port = free_port(), free_port()

        def model(name: str, provider: str, key: str, base: str, upstream: str | None = None) -> dict[str, Any]:
            params = {"apiKey": key, "baseUrl": base, **({"model": upstream} if upstream else {})}
            return {"name": name, "provider": provider, "params": params}

        config = {
            "llm": {
                "port": port,
                "models": [
                    model("oa-elided", "openAI", ELIDED_KEY, f"{o}/v1"),
                    model("oa-echo", "openAI", ECHO_KEY, f"{o}/v1"),
                    model("an-echo", "anthropic", ANTHROPIC_ECHO_KEY, f"{a}/v1"),
                    model("oa-leak", "openAI", API_KEY, f"{o}/v1", "leakkey"),
                    model("an-leak", "anthropic", API_KEY, f"{a}/v1", "leakkey"),
                ],
            },
            "binds": [
                {
                    "port": route_port,
                    "listeners": [
                        {
                            "routes": [
                                {
                                    "name": "keyed",
                                    "backends": [
                                        {
                                            "ai": {
                                                "name": "openai",
                                                "provider": {"openAI": {"model": "gpt-4o-mini"}},
                                                "hostOverride": f"127.0.0.1:{fakes['openai'].port}",
                                            },
                                            "policies": {"backendAuth": {"key": ROUTE_ECHO_KEY}},
                                        }
                                    ],
                                }
                            ]
                        }
                    ],
                }
            ],
        }
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, config)
        procs.append(gw)
        setup = LlmSetup(gw, port, fakes)
        setup.route_port = route_port
        yield setup
        setup.close()
    finally:
        for p in reversed(procs):
            p.stop()


HI: Any = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("model", "key"),
    [("oa-elided", ELIDED_KEY), ("oa-echo", ECHO_KEY), ("an-echo", ANTHROPIC_ECHO_KEY)],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_401_quoting_the_key_reaches_no_client(llm: LlmSetup, model: str, key: str, stream: bool) -> None:
    # OpenAI Chat client (passed through to an OpenAI provider, translated to Anthropic)
    with pytest.raises(openai.AuthenticationError) as err:
        r = llm.openai().chat.completions.create(model=model, messages=HI, stream=stream)
        if stream:
            for _ in r:  # type: ignore[union-attr]
                pass
    assert err.value.status_code == 401
    _clean(err.value.response.text, key)
    _clean(str(dict(err.value.response.headers)), key)
    if model != "an-echo":
        assert "Incorrect API key provided: [REDACTED]" in err.value.response.text
    # Anthropic Messages client (translated from OpenAI, passed through to Anthropic)
    with pytest.raises(anthropic.AuthenticationError) as aerr:
        if stream:
            with llm.anthropic().messages.stream(model=model, max_tokens=8, messages=HI) as s:
                s.get_final_text()
        else:
            llm.anthropic().messages.create(model=model, max_tokens=8, messages=HI)
    assert aerr.value.body["type"] == "error"  # type: ignore[index]
    _clean(aerr.value.response.text, key)
    _clean(str(dict(aerr.value.response.headers)), key)
    # and the access log's reason
    line = llm.access_line(f"gen_ai.request.model={model}")
    _clean(line, key)


def test_responses_and_the_route_form(llm: LlmSetup) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        llm.openai().responses.create(model="oa-echo", input="hi")
    _clean(err.value.response.text, ECHO_KEY)
    _clean(str(dict(err.value.response.headers)), ECHO_KEY)
    # a backendAuth key on an ai route
    with pytest.raises(openai.AuthenticationError) as rerr:
        llm.openai(llm.route_port).chat.completions.create(model="m", messages=HI)
    _clean(rerr.value.response.text, ROUTE_ECHO_KEY)
    _clean(str(dict(rerr.value.response.headers)), ROUTE_ECHO_KEY)
    assert "[REDACTED]" in rerr.value.response.text


@pytest.mark.parametrize("model", ["oa-leak", "an-leak"])
def test_a_mid_stream_error_quoting_the_key(llm: LlmSetup, model: str) -> None:
    with pytest.raises(openai.APIError) as err:
        for _ in llm.openai().chat.completions.create(model=model, messages=HI, stream=True):
            pass
    _clean(str(err.value), API_KEY)
    with (
        pytest.raises(anthropic.APIStatusError) as aerr,
        llm.anthropic().messages.stream(model=model, max_tokens=8, messages=HI) as s,
    ):
        s.get_final_text()
    _clean(str(aerr.value), API_KEY)
    # what went over the wire, both formats
    for path, body in (
        ("/v1/chat/completions", {"model": model, "messages": HI, "stream": True}),
        ("/v1/messages", {"model": model, "max_tokens": 8, "messages": HI, "stream": True}),
    ):
        raw = httpx.post(f"{llm.url}{path}", json=body, timeout=10)
        assert "[REDACTED]" in raw.text, raw.text
        _clean(raw.text, API_KEY)
    _clean(llm.access_line(f"gen_ai.request.model={model}"), API_KEY)
