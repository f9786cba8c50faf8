"""The route's policies as the LLM exchange's hooks (llm/accounting.py): who the caller is, from
what the authentication policies learned, and token budgets over ``localRateLimit`` buckets of
``type: tokens``.

A token bucket is checked before the provider call: an empty bucket refuses it (429 in the
client API's format, with ``x-ratelimit-*``). With ``tokenize`` the estimated prompt tokens are
taken at once; when the provider has reported its usage, the bucket is trued up to the tokens it
charged (input + output). A failed call gives the estimate back. As in agentgateway, a bucket
that still holds a single token lets a call through, which may then overdraw it to zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentgateway.llm.accounting import CallerIdentity, LlmCall, Refusal
from agentgateway.llm.usage import Usage

if TYPE_CHECKING:
    from agentgateway.policy.local_rate_limit import LocalRateLimit


def caller_of(ctx: Any) -> CallerIdentity | None:
    """The caller as the route's authentication policies proved it (``RequestCtx.identity``,
    the ``apiKey`` metadata, the models the key may call); None when none did."""
    allowed = ctx.allowed_models
    if not ctx.identity and allowed is None:
        return None
    cel_vars = ctx.cel_vars
    metadata = cel_vars.get("apiKey") if cel_vars else None
    return CallerIdentity(ctx.identity, metadata if isinstance(metadata, dict) else None, allowed)


class LocalTokenBudget:
    """A ``TokenBudget`` over the ``tokens`` buckets of one route's ``localRateLimit``."""

    __slots__ = ("limit",)

    def __init__(self, limit: LocalRateLimit) -> None:
        self.limit = limit

    def reserve(self, call: LlmCall) -> object | Refusal:
        ctx = call.ctx
        headers = self.limit.token_refusal(ctx)
        if headers is not None:
            return Refusal(429, "token rate limit exceeded", headers)
        taken = call.estimate if call.estimate > 1 else 0  # 1: no estimate (tokenize off)
        if taken:
            self.limit.take_tokens(ctx, taken)
        return (ctx, taken)

    def settle(self, reservation: object, usage: Usage) -> None:
        assert isinstance(reservation, tuple)
        ctx, taken = reservation
        used = usage.total_tokens if usage.known else 0
        if used != taken:
            self.limit.take_tokens(ctx, used - taken)
