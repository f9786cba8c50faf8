"""The route policy chain on LLM routes, through the real daemon with the OpenAI and Anthropic
SDKs: authentication and authorization before the LLM exchange, response policies after it,
``localRateLimit`` token buckets trued up with the provider's usage, ``apiKey`` model allow-lists,
``backendRequestTimeout`` on provider calls and the ``llm`` CEL variable."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.llm import FakeProvider, LlmSetup
from tests.support.llm_fakes import API_KEY, USAGE_IN, USAGE_OUT

HI = [{"role": "user", "content": "hi"}]
# Each answer of the fakes costs USAGE_IN + USAGE_OUT tokens; a bucket of this many lets two
# calls through (each reserving its prompt's estimate and USAGE_OUT tokens for the answer, trued up
# to what the fake charged) and refuses the third.
BUCKET = 2 * (USAGE_IN + USAGE_OUT)


def _key(name: str, team: str, allowed: list[str] | None = None) -> dict[str, object]:
    entry: dict[str, object] = {"key": name, "metadata": {"team": team}}
    if allowed is not None:
        entry["allowedModels"] = allowed
    return entry


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmSetup]:
    tmp = tmp_path_factory.mktemp("llmroute")
    procs = []
    try:
        fakes = {k: FakeProvider(tmp, k) for k in ("openai", "anthropic")}
        procs += fakes.values()
        o, a = fakes["openai"].base, fakes["anthropic"].base
        port, route_port = free_port(), free_port()
        config = {
            "llm": {
                "port": port,
                "models": [
                    {"name": "gpt-4o-mini", "provider": "openAI", "params": {"apiKey": API_KEY, "baseUrl": f"{o}/v1"}},
                    {
                        "name": "claude-haiku",
                        "provider": "anthropic",
                        "params": {"apiKey": API_KEY, "baseUrl": f"{a}/v1"},
                    },
                    {
                        "name": "sluggish",
                        "provider": "openAI",
                        "params": {"apiKey": API_KEY, "baseUrl": f"{o}/v1", "model": "slow-model"},
                    },
                ],
                "policies": {
                    "apiKey": {
                        "mode": "strict",
                        "keys": [
                            _key("key-gpt-only", "a", ["gpt-*"]),
                            _key("key-any", "c"),
                            _key("key-blocked", "d"),
                        ],
                    },
                    "authorization": {"rules": [{"deny": 'apiKey.team == "d"'}]},
                    "timeout": {"backendRequestTimeout": "1s"},
                    "responseHeaderModifier": {"set": {"x-served-by": "llm-route"}},
                    "transformations": {
                        "response": {"set": {"x-llm-model": "llm.requestModel", "x-llm-provider": "llm.provider"}}
                    },
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
                                                "provider": {"openAI": {}},
                                                "hostOverride": f"127.0.0.1:{fakes['openai'].port}",
                                            },
                                            "policies": {"backendAuth": {"key": API_KEY}},
                                        }
                                    ],
                                    "policies": {
                                        "apiKey": {"mode": "strict", "keys": [_key("route-key", "r", ["gpt-4o-mini"])]},
                                        "localRateLimit": [{"maxTokens": 2, "tokensPerFill": 1, "fillInterval": "1h"}],
                                        "cors": {"allowOrigins": ["https://app.example"], "allowHeaders": ["*"]},
                                    },
                                },
                                {
                                    "name": "budget",
                                    "matches": [{"path": {"pathPrefix": "/budget"}}],
                                    "backends": [
                                        {
                                            "ai": {
                                                "name": "openai",
                                                "provider": {"openAI": {}},
                                                # without a pathPrefix the provider would get the
                                                # client's path (/budget/v1/...), as in agentgateway
                                                "hostOverride": f"127.0.0.1:{fakes['openai'].port}",
                                                "pathPrefix": "/v1",
                                            },
                                            "policies": {"backendAuth": {"key": API_KEY}},
                                        }
                                    ],
                                    "policies": {
                                        "apiKey": {
                                            "mode": "strict",
                                            "keys": [_key("key-budget", "b"), _key("key-budget-2", "b2")],
                                        },
                                        "ai": {"tokenReservation": {"outputTokens": USAGE_OUT}},
                                        # one bucket of LLM tokens per team
                                        "localRateLimit": [
                                            {
                                                "type": "tokens",
                                                "maxTokens": BUCKET,
                                                "tokensPerFill": 1,
                                                "fillInterval": "1h",
                                                "key": "apiKey.team",
                                            }
                                        ],
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
        gw = Gateway(gw_dir, config)
        procs.append(gw)
        setup = LlmSetup(gw, port, fakes)
        setup.route_port = route_port
        yield setup
        setup.close()
    finally:
        for p in reversed(procs):
            p.stop()


def oa(llm: LlmSetup, key: str, port: int | None = None, prefix: str = "") -> openai.OpenAI:
    """An OpenAI SDK client with ``key`` (one per key and base URL, closed with the setup)."""
    base = f"http://127.0.0.1:{port or llm.port}{prefix}"
    client = llm._clients.get(("openai", base, key))  # type: ignore[call-overload]
    if client is None:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        llm._clients[("openai", base, key)] = client  # type: ignore[index]
    return client  # type: ignore[no-any-return]


def an(llm: LlmSetup, key: str, port: int | None = None, prefix: str = "") -> anthropic.Anthropic:
    """An Anthropic SDK client; the apiKey policy reads ``Authorization: Bearer`` (its auth_token)."""
    base = f"http://127.0.0.1:{port or llm.port}{prefix}"
    client = llm._clients.get(("anthropic", base, key))  # type: ignore[call-overload]
    if client is None:
        client = anthropic.Anthropic(base_url=base, auth_token=key, max_retries=0)
        llm._clients[("anthropic", base, key)] = client  # type: ignore[index]
    return client  # type: ignore[no-any-return]


def test_authentication_runs_before_the_llm_exchange(llm: LlmSetup) -> None:
    calls = llm.fakes["openai"].count()
    with pytest.raises(openai.AuthenticationError):
        oa(llm, "wrong-key").chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    with pytest.raises(anthropic.AuthenticationError):
        an(llm, "wrong-key").messages.create(model="claude-haiku", max_tokens=8, messages=HI)  # type: ignore[arg-type]
    resp = httpx.post(f"{llm.url}/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI})
    assert resp.status_code == 401
    # an authorization rule on the key's metadata
    with pytest.raises(openai.PermissionDeniedError):
        oa(llm, "key-blocked").chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    assert llm.fakes["openai"].count() == calls  # no provider was called
    # the accepted key does not reach the provider: the gateway sends its own
    oa(llm, "key-any").chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    assert llm.fakes["openai"].last()["headers"]["authorization"] == f"Bearer {API_KEY}"


def test_response_policies_and_llm_cel_variables(llm: LlmSetup) -> None:
    raw = oa(llm, "key-any").chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=HI,  # type: ignore[arg-type]
    )
    assert raw.headers["x-served-by"] == "llm-route"
    assert raw.headers["x-llm-model"] == "gpt-4o-mini"
    assert raw.headers["x-llm-provider"] == "openai"
    assert raw.parse().choices[0].message.content == "Hello from openai! You said: hi"
    # a stream's head goes through them too
    with an(llm, "key-any").messages.with_streaming_response.create(
        model="claude-haiku",
        max_tokens=8,
        messages=HI,
        stream=True,  # type: ignore[arg-type]
    ) as streamed:
        assert streamed.headers["x-served-by"] == "llm-route"
        assert streamed.headers["x-llm-provider"] == "anthropic"
        assert "message_stop" in "".join(streamed.iter_lines())
    # and the gateway's own LLM errors
    with pytest.raises(openai.NotFoundError) as err:
        oa(llm, "key-any").chat.completions.create(model="no-such-model", messages=HI)  # type: ignore[arg-type]
    assert err.value.response.headers["x-served-by"] == "llm-route"


def test_allowed_models_of_an_api_key(llm: LlmSetup) -> None:
    r = oa(llm, "key-gpt-only").chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    assert r.choices[0].message.content == "Hello from openai! You said: hi"
    with pytest.raises(openai.PermissionDeniedError) as err:
        oa(llm, "key-gpt-only").chat.completions.create(model="claude-haiku", messages=HI)  # type: ignore[arg-type]
    assert err.value.status_code == 403
    assert "claude-haiku" in err.value.body["message"]  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError) as aerr:
        an(llm, "key-gpt-only").messages.create(model="claude-haiku", max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert aerr.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    # another key of the same policy may call it
    r2 = an(llm, "key-any").messages.create(model="claude-haiku", max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert r2.content[0].text == "Hello from anthropic! You said: hi"  # type: ignore[union-attr]


def test_token_rate_limit_counts_provider_usage(llm: LlmSetup) -> None:
    client = oa(llm, "key-budget", llm.route_port, "/budget")
    # two calls: the bucket starts full and is charged what the provider reported
    client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    with client.chat.completions.create(
        model="gpt-4o-mini",
        messages=HI,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        assert [c for c in stream if c.usage is not None]
    calls = llm.fakes["openai"].count()
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    assert err.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    headers = err.value.response.headers
    assert headers["x-ratelimit-limit"] == str(BUCKET) and headers["x-ratelimit-remaining"] == "0"
    with pytest.raises(anthropic.RateLimitError) as aerr:
        an(llm, "key-budget", llm.route_port, "/budget").messages.create(
            model="claude-haiku",
            max_tokens=8,
            messages=HI,  # type: ignore[arg-type]
        )
    assert aerr.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert llm.fakes["openai"].count() == calls
    # the bucket is per team: another key still gets through
    other = oa(llm, "key-budget-2", llm.route_port, "/budget")
    other.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]


def test_backend_request_timeout_bounds_the_provider_call(llm: LlmSetup) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        oa(llm, "key-any").chat.completions.create(model="sluggish", messages=HI)  # type: ignore[arg-type]
    assert err.value.status_code == 504


def test_ai_route_runs_the_route_policies(llm: LlmSetup) -> None:
    url = f"http://127.0.0.1:{llm.route_port}/v1/chat/completions"
    resp = httpx.post(url, json={"model": "gpt-4o-mini", "messages": HI})
    assert resp.status_code == 401
    preflight = httpx.options(url, headers={"origin": "https://app.example", "access-control-request-method": "POST"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    client = oa(llm, "route-key", llm.route_port)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=HI,  # type: ignore[arg-type]
        extra_headers={"origin": "https://app.example"},
    )
    assert raw.headers["x-ratelimit-limit"] == "2"
    assert raw.headers["access-control-allow-origin"] == "https://app.example"
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    # the request bucket (2) is empty now: the policy answers before the exchange
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
