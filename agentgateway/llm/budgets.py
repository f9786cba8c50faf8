"""The route's policies as the LLM exchange's hooks (llm/accounting.py): who the caller is, from
what the authentication policies learned, and token budgets over ``localRateLimit`` buckets and
``remoteRateLimit`` descriptors of ``type: tokens``.

A token bucket is checked before the provider call: an empty bucket refuses it (429 in the
client API's format, with ``x-ratelimit-*``). With ``tokenize`` the estimated prompt tokens are
taken at once; when the provider has reported its usage, the bucket is trued up to the tokens it
charged (input + output). A failed call gives the estimate back. As in agentgateway, a bucket
that still holds a single token lets a call through, which may then overdraw it to zero.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from agentgateway.llm.accounting import CallerIdentity, LlmCall, Refusal
from agentgateway.llm.usage import Usage

if TYPE_CHECKING:
    from agentgateway.policy.local_rate_limit import LocalRateLimit
    from agentgateway.policy.remote_rate_limit import RemoteRateLimit
    from agentgateway.server.context import RequestCtx


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


class RemoteTokenBudget:
    """A ``TokenBudget`` and ``TokenAdmission`` over the ``tokens`` descriptors of one route's
    ``remoteRateLimit``: before the call one hit is asked for (the service refuses when the limit
    is spent; 429, or 500 when the service fails closed, in the client API's format); after it,
    the rest of the tokens the provider reported are added in the background, so the client's
    answer never waits for the service."""

    __slots__ = ("limit",)

    # Counting tasks still running (the event loop keeps only weak references to tasks).
    _pending: set[asyncio.Task[None]] = set()

    def __init__(self, limit: RemoteRateLimit) -> None:
        self.limit = limit

    def reserve(self, call: LlmCall) -> object:
        return call.ctx

    async def admit(self, call: LlmCall) -> Refusal | None:
        reply = await self.limit.admit_tokens(call.ctx)
        if reply is None:
            return None
        return Refusal(reply.status, reply.reason, tuple(h for h in reply.headers if h[0] != b"content-type"))

    def settle(self, reservation: object, usage: Usage) -> None:
        rest = (usage.total_tokens if usage.known else 0) - 1  # the admitting hit counted one
        if rest <= 0:
            return
        ctx = cast("RequestCtx", reservation)  # what reserve returned
        task = asyncio.get_running_loop().create_task(self.limit.add_tokens(ctx, rest))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
