"""The route's policies as the LLM exchange's hooks (llm/accounting.py): who the caller is, from
what the authentication policies learned, and token budgets over ``localRateLimit`` buckets and
``remoteRateLimit`` descriptors of ``type: tokens``.

A call reserves what it may cost before it is made (``LlmCall.reserve``: the prompt's estimate
and the answer's limit); a limit that cannot cover the reservation refuses the call (429 in the
client API's format, with ``x-ratelimit-*``). Once the provider reported its usage, the limit is
trued up to the tokens it charged (input + output); a failed call gives the reservation back.
Concurrent calls therefore cannot all spend the same last tokens: what they may overspend is
what each used beyond its own reservation (README, "Token budgets under concurrency").
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from agentgateway.llm.accounting import CallerIdentity, LlmCall, Refusal
from agentgateway.llm.usage import Usage
from agentgateway.policy.local_rate_limit import TokenHold
from agentgateway.policy.remote_rate_limit import RemoteHold

if TYPE_CHECKING:
    from agentgateway.policy.local_rate_limit import LocalRateLimit
    from agentgateway.policy.remote_rate_limit import RemoteRateLimit


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
    """A ``TokenBudget`` over the ``tokens`` buckets of one route's ``localRateLimit`` (the
    shared table: every worker of the host sees the same reservations)."""

    __slots__ = ("limit",)

    def __init__(self, limit: LocalRateLimit) -> None:
        self.limit = limit

    def reserve(self, call: LlmCall) -> object | Refusal:
        hold = self.limit.reserve_tokens(call.ctx, call.reserve)
        if isinstance(hold, TokenHold):
            return hold
        return Refusal(429, "token rate limit exceeded", hold)

    def settle(self, reservation: object, usage: Usage) -> None:
        assert isinstance(reservation, TokenHold)
        self.limit.settle_tokens(reservation, usage.total_tokens if usage.known else 0)


class _Pending:
    """A reservation with a service, filled in by ``admit`` (None: not made, nothing to settle)."""

    __slots__ = ("hold",)

    def __init__(self) -> None:
        self.hold: RemoteHold | None = None


class RemoteTokenBudget:
    """A ``TokenBudget`` and ``TokenAdmission`` over the ``tokens`` descriptors of one route's
    ``remoteRateLimit``: the reservation is made with the service before the call (``admit``:
    429, or 500 when the service fails closed, in the client API's format); the true-up after it
    runs in the background, so the client's answer never waits for the service."""

    __slots__ = ("limit",)

    # True-ups still running (the event loop keeps only weak references to tasks).
    _pending: set[asyncio.Task[None]] = set()

    def __init__(self, limit: RemoteRateLimit) -> None:
        self.limit = limit

    def reserve(self, call: LlmCall) -> object:
        return _Pending()

    async def admit(self, call: LlmCall, reservation: object) -> Refusal | None:
        assert isinstance(reservation, _Pending)
        reply, hold = await self.limit.reserve_tokens(call.ctx, call.reserve)
        if reply is not None:
            return Refusal(reply.status, reply.reason, tuple(h for h in reply.headers if h[0] != b"content-type"))
        reservation.hold = hold
        return None

    def settle(self, reservation: object, usage: Usage) -> None:
        assert isinstance(reservation, _Pending)
        hold = reservation.hold
        if hold is None:
            return
        used = usage.total_tokens if usage.known else 0
        task = asyncio.get_running_loop().create_task(self.limit.settle_tokens(hold, used))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
