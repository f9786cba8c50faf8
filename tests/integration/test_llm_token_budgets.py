"""Token budgets under concurrency, through the real daemon with the official SDKs: 50 calls at
once against a budget with 40 tokens left, in each store (the local shared table with two
workers, a real redis-server, the rate limit service). Each call reserves what it may cost before
the provider is called, so the tokens spent stay within what was left plus each admitted call's
usage beyond its own reservation (README "Token budgets under concurrency")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import free_port
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY, USAGE_IN, USAGE_OUT

CHARGED = USAGE_IN + USAGE_OUT  # what every answer of the fakes costs
LEFT = 40  # tokens left when the 50 calls start
BUDGET = LEFT + 2 * CHARGED  # two calls are made first
CALLS = 50
# "slowstream" makes the fake stream slowly (the calls stay in flight together); 64 bytes are
# estimated at 16 tokens without the tokenizer (1 per 4 bytes).
LONG_PROMPT = "slowstream budget check, padded to sixty-four bytes of prompt..."
SHORT_PROMPT = "slowstream"


def _reservation(prompt: str, max_tokens: int) -> int:
    return (len(prompt.encode()) + 3) // 4 + max_tokens


def _anthropic_total(usage: Any) -> int:
    """Anthropic reports cache reads apart from input_tokens; the budget counts them."""
    cached = (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    return int(usage.input_tokens + cached + usage.output_tokens)


async def _burst(port: int, prompt: str, max_tokens: int) -> tuple[int, int, int]:
    """50 calls at once, alternating OpenAI Chat and Anthropic Messages, streamed and not:
    (answered, refused with 429, tokens the answered ones were charged)."""
    oa = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="key-a", max_retries=0, timeout=30)
    an = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key="key-a", max_retries=0, timeout=30)
    messages: Any = [{"role": "user", "content": prompt}]

    async def one(i: int) -> int:
        """Tokens charged, or -1 when refused."""
        try:
            if i % 4 == 0:
                r = await oa.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=max_tokens)
                assert r.usage is not None
                return r.usage.total_tokens
            if i % 4 == 1:
                stream = await oa.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=messages,
                    max_tokens=max_tokens,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                total = 0
                async for c in stream:
                    if c.usage is not None:
                        total = c.usage.total_tokens
                return total
            if i % 4 == 2:
                m = await an.messages.create(model="claude-haiku", max_tokens=max_tokens, messages=messages)
                return _anthropic_total(m.usage)
            async with an.messages.stream(model="claude-haiku", max_tokens=max_tokens, messages=messages) as s:
                final = await s.get_final_message()
            return _anthropic_total(final.usage)
        except (openai.RateLimitError, anthropic.RateLimitError):
            return -1

    try:
        results = await asyncio.gather(*(one(i) for i in range(CALLS)))
    finally:
        await oa.close()
        await an.close()
    answered = [r for r in results if r >= 0]
    return len(answered), CALLS - len(answered), sum(answered)


def _spend(port: int, calls: int) -> None:
    """Spend ``calls`` answers' tokens one after the other."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="key-a", max_retries=0)
    try:
        for _ in range(calls):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "warm up"}], max_tokens=USAGE_OUT
            )
    finally:
        client.close()


def _config(port: int, fakes: dict[str, FakeProvider], limit: dict[str, Any]) -> dict[str, Any]:
    return {
        "llm": {
            "port": port,
            "models": [
                {
                    "name": "gpt-4o-mini",
                    "provider": "openAI",
                    "params": {"apiKey": API_KEY, "baseUrl": f"{fakes['openai'].base}/v1"},
                },
                {
                    "name": "claude-haiku",
                    "provider": "anthropic",
                    "params": {"apiKey": API_KEY, "baseUrl": f"{fakes['anthropic'].base}/v1"},
                },
            ],
            "policies": {
                "apiKey": {"mode": "strict", "keys": [{"key": "key-a", "metadata": {"team": "a"}}]},
                **limit,
            },
        }
    }


@pytest.mark.parametrize("store", ["local", "redis", "rls"])
@pytest.mark.parametrize(
    ("prompt", "max_tokens"),
    [(LONG_PROMPT, USAGE_OUT), (SHORT_PROMPT, USAGE_OUT)],
    ids=["reservation-covers-usage", "reservation-below-usage"],
)
def test_fifty_concurrent_calls_stay_within_the_budget(
    store: str,
    prompt: str,
    max_tokens: int,
    tmp_path: Path,
    gateway: Callable[..., Any],
    rls: Callable[..., Any],
    redis_server: Callable[[], Any],
) -> None:
    fakes = {kind: FakeProvider(tmp_path, kind) for kind in ("openai", "anthropic")}
    try:
        if store == "local":
            bucket = {"type": "tokens", "maxTokens": BUDGET, "tokensPerFill": 1, "fillInterval": "1h"}
            limit: dict[str, Any] = {"localRateLimit": [{**bucket, "key": "apiKey.team"}]}
        else:
            descriptor: dict[str, Any] = {"type": "tokens", "entries": [{"key": "team", "value": "apiKey.team"}]}
            remote: dict[str, Any] = {"domain": "budget", "descriptors": [descriptor]}
            if store == "redis":
                remote["redis"] = {"url": redis_server().url}
                descriptor["limit"] = {"requestsPerUnit": BUDGET, "unit": "hour"}
            else:
                remote["host"] = rls(limit=BUDGET).address
            limit = {"remoteRateLimit": remote}
        port = free_port()
        gateway(_config(port, fakes, limit), workers=2 if store == "local" else 1)
        _spend(port, 2)
        if store != "local":
            # the true-ups after the warm-up calls run in the background
            time.sleep(0.5)
        before = sum(f.count() for f in fakes.values())
        answered, refused, spent = asyncio.run(_burst(port, prompt, max_tokens))
        reserved = _reservation(prompt, max_tokens)
        # Worst case: what was left, plus each admitted call's usage beyond its reservation.
        worst = LEFT + answered * max(0, CHARGED - reserved)
        assert answered >= 1 and refused >= CALLS - 8, (answered, refused)
        assert spent == answered * CHARGED
        assert spent <= worst, (spent, worst, answered)
        if reserved >= CHARGED:
            assert spent <= LEFT
        # refused calls never reached a provider
        assert sum(f.count() for f in fakes.values()) - before == answered
    finally:
        for f in fakes.values():
            f.stop()


@pytest.mark.parametrize(
    ("limits", "status"),
    [
        ({"max_completion_tokens": 1, "max_tokens": 990}, 429),
        ({"max_completion_tokens": 990, "max_tokens": 1}, 429),
        ({"max_tokens": "990"}, 400),
        ({"max_completion_tokens": -1}, 400),
        ({"max_tokens": 10, "n": True}, 400),
        ({"max_completion_tokens": 1, "max_tokens": 10}, 200),
    ],
)
def test_a_call_reserves_what_any_provider_would_read_as_its_limit(
    limits: dict[str, Any], status: int, tmp_path: Path, gateway: Callable[..., Any]
) -> None:
    """A provider that knows only ``max_tokens`` (Ollama-style) reads it beside a small
    ``max_completion_tokens``, and a lenient one reads ``"990"`` as 990: the budget reserves
    the larger of the two limits, and a limit that is not a count is refused (it reserved only
    the policy's default before). One call first leaves the bucket of 1000 below 990 (a
    reservation larger than the whole bucket would take all of a full one and run)."""
    fakes = {kind: FakeProvider(tmp_path, kind) for kind in ("openai", "anthropic")}
    try:
        bucket = {"type": "tokens", "maxTokens": 1000, "tokensPerFill": 1, "fillInterval": "1h"}
        port = free_port()
        gateway(_config(port, fakes, {"localRateLimit": [{**bucket, "key": "apiKey.team"}]}))
        _spend(port, 1)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **limits}
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers={"authorization": "Bearer key-a"}
        )
        assert answer.status_code == status, answer.text
        assert fakes["openai"].count() == (2 if status == 200 else 1)
    finally:
        for f in fakes.values():
            f.stop()


@pytest.mark.parametrize("leave", [True, False], ids=["client-leaves-mid-stream", "stream-read-to-its-end"])
def test_a_stream_the_client_leaves_keeps_its_reservation(
    leave: bool, tmp_path: Path, gateway: Callable[..., Any]
) -> None:
    """A client that reads a streamed answer and leaves before its last event (which carries
    the usage): the provider charged for the call, so the budget keeps what the call reserved
    (before, it was given back: every such call ran free). Read to its end, the call is charged
    the usage the provider reported."""
    fakes = {kind: FakeProvider(tmp_path, kind) for kind in ("openai", "anthropic")}
    try:
        bucket = {"type": "tokens", "maxTokens": 1000, "tokensPerFill": 1, "fillInterval": "1h"}
        port = free_port()
        gateway(_config(port, fakes, {"localRateLimit": [{**bucket, "key": "apiKey.team"}]}))
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        auth = {"authorization": "Bearer key-a"}
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": SHORT_PROMPT}],
            "max_tokens": 300,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with httpx.Client(timeout=10) as client, client.stream("POST", url, json=body, headers=auth) as answer:
            assert answer.status_code == 200
            chunks = answer.iter_bytes()
            first = next(chunks)
            assert first.startswith(b"data: ")
            if not leave:
                rest = b"".join(chunks)
                assert b'"usage"' in rest
        time.sleep(1.0)  # the gateway notices the client left and settles
        # 303 reserved and kept leave 697: a call reserving 803 is refused; charged its usage
        # (23) instead, 977 are left and it runs.
        big = {**body, "max_tokens": 800, "stream": False}
        del big["stream_options"]
        status = httpx.post(url, json=big, headers=auth, timeout=10).status_code
        assert status == (429 if leave else 200)
    finally:
        for f in fakes.values():
            f.stop()
