"""Token reservations: what a call reserves (the prompt's estimate and the answer's limit), and
``localRateLimit`` buckets of ``type: tokens`` taking them all or none, clamped to a bucket's
size, trued up to the provider's usage (the native shared table, private to this process)."""

from __future__ import annotations

from agentgateway.config.schema import LocalRateLimit as LocalRateLimitConfig
from agentgateway.core.context import RequestCtx
from agentgateway.llm.accounting import LlmCall, Refusal
from agentgateway.llm.budgets import LocalTokenBudget
from agentgateway.llm.tokens import invalid_limit, output_limit, rough_count
from agentgateway.llm.usage import Usage
from agentgateway.policy import buckets
from agentgateway.policy.local_rate_limit import LocalRateLimit, TokenHold


def _ctx() -> RequestCtx:
    return RequestCtx(
        b"POST", b"/v1/chat/completions", b"/v1/chat/completions", b"", b"h", [], "1.1", True, None, False, False,
        "10.0.0.1", 4000, b"http", 0.0, "bind/1",
    )  # fmt: skip


def _limit(name: str, *sizes: int) -> LocalRateLimit:
    cfgs = [LocalRateLimitConfig(fill_interval="1h", max_tokens=n, tokens_per_fill=1, type="tokens") for n in sizes]
    return LocalRateLimit(cfgs, "test", name, ("g", "l", "r"))


def _available(limit: LocalRateLimit, ctx: RequestCtx) -> list[int]:
    return [buckets.table().available(b.table_key(ctx), b.spec) for b in limit.buckets]


def test_what_a_call_reserves() -> None:
    assert rough_count(["x" * 64]) == 16 and rough_count(["é" * 4]) == 2 and rough_count([]) == 0
    assert output_limit("chat", {"max_tokens": 10}) == 10
    # both limits set: the larger (a provider may read either)
    assert output_limit("chat", {"max_completion_tokens": 5, "max_tokens": 10, "n": 3}) == 30
    assert output_limit("chat", {"max_completion_tokens": 50, "max_tokens": 10}) == 50
    assert invalid_limit("chat", {"max_tokens": "9"}) == "max_tokens" and invalid_limit("chat", {"n": True}) == "n"
    assert invalid_limit("chat", {"max_tokens": 9.0, "max_completion_tokens": None}) is None
    assert (
        invalid_limit("messages", {"max_tokens": -1}) == "max_tokens"
        and invalid_limit("embeddings", {"n": "x"}) is None
    )
    assert output_limit("chat", {}) is None and output_limit("chat", {"max_tokens": "9"}) is None
    # An integral float is the number a lenient provider reads (``n: 3.0`` is three choices).
    assert output_limit("chat", {"max_tokens": 10.0, "n": 3.0}) == 30
    assert output_limit("chat", {"max_tokens": 10.5}) is None and output_limit("chat", {"max_tokens": -1.0}) is None
    assert output_limit("messages", {"max_tokens": 7}) == 7
    assert output_limit("responses", {"max_output_tokens": 8}) == 8
    assert output_limit("embeddings", {}) == 0


def test_reservations_are_all_or_none_and_trued_up() -> None:
    ctx = _ctx()
    limit = _limit("reserve-all-or-none", 100, 30)
    budget = LocalTokenBudget(limit)
    first = budget.reserve(LlmCall("r", None, "m", "p", 5, ctx, 25))
    assert isinstance(first, TokenHold) and _available(limit, ctx) == [75, 5]
    # the second bucket cannot cover 25: refused, and the first gets its 25 back
    refused = budget.reserve(LlmCall("r", None, "m", "p", 5, ctx, 25))
    assert isinstance(refused, Refusal) and refused.status == 429
    assert dict(refused.headers)[b"x-ratelimit-remaining"] == b"5"
    assert _available(limit, ctx) == [75, 5]
    # trued up to what the provider charged: 10 of the 25 reserved
    budget.settle(first, Usage(6, 4, known=True))
    assert _available(limit, ctx) == [90, 20]
    # a failed call gives everything back
    second = budget.reserve(LlmCall("r", None, "m", "p", 5, ctx, 20))
    assert _available(limit, ctx) == [70, 0]
    budget.settle(second, Usage())
    assert _available(limit, ctx) == [90, 20]


def test_a_reservation_larger_than_a_bucket_takes_the_whole_bucket() -> None:
    ctx = _ctx()
    limit = _limit("reserve-clamped", 50)
    budget = LocalTokenBudget(limit)
    hold = budget.reserve(LlmCall("r", None, "m", "p", 10, ctx, 4096))
    assert isinstance(hold, TokenHold) and _available(limit, ctx) == [0]
    assert isinstance(budget.reserve(LlmCall("r", None, "m", "p", 0, ctx, 0)), Refusal)  # at least one token
    budget.settle(hold, Usage(20, 10, known=True))
    assert _available(limit, ctx) == [20]
    # usage beyond the bucket empties it, never below zero
    hold = budget.reserve(LlmCall("r", None, "m", "p", 1, ctx, 5))
    budget.settle(hold, Usage(500, 500, known=True))
    assert _available(limit, ctx) == [0]
