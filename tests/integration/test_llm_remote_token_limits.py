"""``remoteRateLimit`` descriptors of ``type: tokens`` on an LLM route, through the real daemon with
the OpenAI and Anthropic SDKs, against both shared stores: Envoy's rate limit service (the test
service counts ``hits_addend``) and a real ``redis-server``. Before a call the gateway reserves what
it may cost; after it, the counters are trued up to the tokens the provider reported, in the
background."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import grpc
import openai
import pytest
import redis
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.support.gateway import free_port, wait_for
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY, USAGE_IN, USAGE_OUT

HI = [{"role": "user", "content": "hi"}]
USED = USAGE_IN + USAGE_OUT  # what each answer of the fake provider costs
# Two calls fit (each reserves its prompt's estimate and USAGE_OUT tokens for the answer, trued up
# to what the fake charged), the third cannot reserve and is refused.
LIMIT = 2 * USED
DOMAIN = "llm-tokens"


def _rls_count(address: str, team: str) -> int:
    """Hits the test service counted for the team's descriptor (its ``__stats`` domain)."""
    entry = ratelimit_pb2.RateLimitDescriptor.Entry(key="key", value=f"{DOMAIN}:team={team}")
    request = rls_pb2.RateLimitRequest(
        domain="__stats", descriptors=[ratelimit_pb2.RateLimitDescriptor(entries=[entry])]
    )
    with grpc.insecure_channel(address) as channel:
        response = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(request, timeout=5)
    return int(response.statuses[0].limit_remaining)


def _redis_count(url: str, team: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return sum(int(client.get(k) or 0) for k in client.keys(f"agw:rl:{DOMAIN}:*team={team}"))
    finally:
        client.close()


@pytest.mark.parametrize("store", ["rls", "redis"])
def test_remote_token_limit_counts_provider_usage(
    store: str, tmp_path: Path, gateway: Callable[..., Any], rls: Callable[..., Any], redis_server: Callable[[], Any]
) -> None:
    fake = FakeProvider(tmp_path, "openai")
    try:
        descriptor: dict[str, Any] = {"type": "tokens", "entries": [{"key": "team", "value": "apiKey.team"}]}
        limit: dict[str, Any] = {"domain": DOMAIN, "descriptors": [descriptor]}
        if store == "rls":
            service = rls(limit=LIMIT)
            limit["host"] = service.address
            counted = lambda team: _rls_count(service.address, team)  # noqa: E731
        else:
            server = redis_server()
            limit["redis"] = {"url": server.url}
            descriptor["limit"] = {"requestsPerUnit": LIMIT, "unit": "hour"}
            counted = lambda team: _redis_count(server.url, team)  # noqa: E731
        port = free_port()
        model = {
            "name": "gpt-4o-mini",
            "provider": "openAI",
            "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1"},
        }
        keys = [{"key": "key-a", "metadata": {"team": "a"}}, {"key": "key-b", "metadata": {"team": "b"}}]
        gateway(
            {
                "llm": {
                    "port": port,
                    "models": [model],
                    "policies": {
                        "apiKey": {"mode": "strict", "keys": keys},
                        "remoteRateLimit": limit,
                        "ai": {"tokenReservation": {"outputTokens": USAGE_OUT}},
                    },
                }
            }
        )
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="key-a", max_retries=0)
        messages = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", auth_token="key-a", max_retries=0)
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
            # the reservation before the call, trued up to the provider's usage after it
            wait_for(lambda: counted("a") == USED, 10, f"{USED} tokens counted")
            with client.chat.completions.create(
                model="gpt-4o-mini",
                messages=HI,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            ) as stream:
                assert [c for c in stream if c.usage is not None]
            wait_for(lambda: counted("a") == 2 * USED, 10, f"{2 * USED} tokens counted")
            calls = fake.count()
            with pytest.raises(openai.RateLimitError) as err:
                client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
            assert err.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
            with pytest.raises(anthropic.RateLimitError) as aerr:
                messages.messages.create(model="gpt-4o-mini", max_tokens=8, messages=HI)  # type: ignore[arg-type]
            assert aerr.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
            assert fake.count() == calls  # refused before the provider was asked
            # the limit is per team
            other = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="key-b", max_retries=0)
            other.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
            other.close()
        finally:
            client.close()
            messages.close()
    finally:
        fake.stop()


@pytest.mark.parametrize("store", ["rls", "redis"])
def test_descriptor_cost(
    store: str, tmp_path: Path, gateway: Callable[..., Any], rls: Callable[..., Any], redis_server: Callable[[], Any]
) -> None:
    """``cost`` (CEL) is what a request counts on a descriptor: evaluated with the request for
    ``requests`` descriptors, once the call is over for ``tokens`` ones (instead of
    ``llm.totalTokens``); an expression that fails skips its descriptor."""
    fake = FakeProvider(tmp_path, "openai")
    try:
        requests = {"entries": [{"key": "team", "value": "apiKey.team"}], "cost": "3"}
        output = {
            "type": "tokens",
            "entries": [{"key": "team", "value": '"out-" + apiKey.team'}],
            "cost": "llm.outputTokens * 10",
        }
        skipped = {
            "type": "tokens",
            "entries": [{"key": "team", "value": '"skip-" + apiKey.team'}],
            "cost": 'jwt.sub == "x" ? 1 : 2',  # no jwt: fails, the descriptor is skipped
        }
        limit: dict[str, Any] = {"domain": DOMAIN, "descriptors": [requests, output, skipped]}
        if store == "rls":
            service = rls(limit=10_000)
            limit["host"] = service.address
            counted = lambda team: _rls_count(service.address, team)  # noqa: E731
        else:
            server = redis_server()
            limit["redis"] = {"url": server.url}
            for d in (requests, output, skipped):
                d["limit"] = {"requestsPerUnit": 10_000, "unit": "hour"}
            counted = lambda team: _redis_count(server.url, team)  # noqa: E731
        port = free_port()
        model = {"name": "gpt-4o-mini", "provider": "openAI", "params": {"apiKey": API_KEY, "baseUrl": fake.base}}
        gateway(
            {
                "llm": {
                    "port": port,
                    "models": [model],
                    "policies": {
                        "apiKey": {"mode": "strict", "keys": [{"key": "key-a", "metadata": {"team": "a"}}]},
                        "remoteRateLimit": limit,
                        "ai": {"tokenReservation": {"outputTokens": 1}},
                    },
                }
            }
        )
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="key-a", max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
        wait_for(lambda: counted("a") == 3, 10, "the request counted 3")
        wait_for(lambda: counted("out-a") == 10 * USAGE_OUT, 10, f"{10 * USAGE_OUT} output tokens counted")
        if store == "redis":
            wait_for(lambda: counted("skip-a") == 0, 10, "the skipped descriptor's reservation given back")
    finally:
        fake.stop()
