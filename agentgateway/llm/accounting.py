"""Who is calling and what a call may cost: the two inputs the LLM exchange takes from policies
that live outside ``llm/`` (API keys, token rate limits, budgets).

- ``CallerIdentity``: what an authentication policy (``apiKey``, ``jwtAuth``) learned about the
  caller. ``allowed_models`` (patterns, ``*`` wildcards) limits which models it may call.
- ``TokenBudget``: a token account (``localRateLimit``/``remoteRateLimit`` of ``type: tokens``,
  per-key budgets). ``reserve`` runs before the provider call and takes ``call.reserve`` tokens
  (the prompt's estimate plus the answer's limit, llm/exchange.py) or refuses; an account held by
  a service takes them in ``admit`` (``TokenAdmission``, awaited, after every ``reserve``).
  ``settle`` runs once the provider reported usage (or the call failed: usage unknown), so the
  account is trued up with what the provider actually charged. Reserving what a call may cost
  is what keeps concurrent calls from spending the same tokens.

The exchange calls them through ``LlmHooks``, compiled per route. Nothing here keeps counters.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Protocol

from agentgateway.llm.usage import Usage


class CallerIdentity:
    __slots__ = ("name", "metadata", "allowed_models")

    def __init__(
        self, name: str, metadata: dict[str, Any] | None = None, allowed_models: tuple[str, ...] | None = None
    ) -> None:
        self.name = name
        self.metadata = metadata or {}
        # None: every model; () : none
        self.allowed_models = allowed_models

    def may_call(self, model: str) -> bool:
        allowed = self.allowed_models
        if allowed is None:
            return True
        return any(p == model or ("*" in p and fnmatch.fnmatchcase(model, p)) for p in allowed)


class LlmCall:
    """The facts of one call a budget decides on."""

    __slots__ = ("route", "caller", "request_model", "provider", "estimate", "reserve", "ctx")

    def __init__(
        self,
        route: str,
        caller: CallerIdentity | None,
        request_model: str,
        provider: str,
        estimate: int,
        ctx: Any = None,
        reserve: int | None = None,
    ) -> None:
        # ctx: the request (core/context.py RequestCtx), for budgets keyed by its values
        self.ctx = ctx
        self.route = route
        self.caller = caller
        self.request_model = request_model
        self.provider = provider
        self.estimate = estimate  # the prompt's tokens, estimated
        # what the call may cost: the estimate and the tokens its answer may use
        self.reserve = estimate if reserve is None else reserve


class Refusal:
    """A budget's no: answered as ``status`` (429 for rate limits) in the client API's format."""

    __slots__ = ("status", "message", "headers")

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status = status
        self.message = message
        self.headers = headers


class TokenBudget(Protocol):
    def reserve(self, call: LlmCall) -> object | Refusal:
        """Take ``call.reserve`` tokens (or refuse). What it returns is given back to settle."""

    def settle(self, reservation: object, usage: Usage) -> None:
        """True up: ``usage.total_tokens`` were used (``usage.known`` False: the call failed)."""


class TokenAdmission(Protocol):
    async def admit(self, call: LlmCall, reservation: object) -> Refusal | None:
        """Before the provider call, after every budget reserved: the reservation made with a
        service (None: go on). ``reservation`` is what this budget's ``reserve`` returned."""


class IdentitySource(Protocol):
    def __call__(self, ctx: Any) -> CallerIdentity | None: ...


def no_identity(ctx: Any) -> None:
    return None


class LlmHooks:
    """What the route's policies plug into the LLM exchange."""

    __slots__ = ("identity", "budgets", "admissions", "tokenize")

    def __init__(
        self,
        identity: IdentitySource = no_identity,
        budgets: tuple[TokenBudget, ...] = (),
        tokenize: bool = False,
        admissions: tuple[TokenAdmission, ...] = (),
    ) -> None:
        self.identity = identity
        self.budgets = budgets
        self.admissions = admissions
        self.tokenize = tokenize


NO_HOOKS = LlmHooks()


def reserve_all(
    budgets: tuple[TokenBudget, ...], call: LlmCall
) -> tuple[list[tuple[TokenBudget, object]], Refusal | None]:
    """Reserve on every budget; on a refusal, the ones already taken are released (settled with
    zero usage) and the refusal returned."""
    taken: list[tuple[TokenBudget, object]] = []
    for budget in budgets:
        result = budget.reserve(call)
        if isinstance(result, Refusal):
            for b, r in taken:
                b.settle(r, Usage())
            return [], result
        taken.append((budget, result))
    return taken, None


async def admit_all(
    admissions: tuple[TokenAdmission, ...], taken: list[tuple[TokenBudget, object]], call: LlmCall
) -> Refusal | None:
    """The reservations held by services, in order; the first refusal stops (what was taken is
    released by ``settle_all`` like any other reservation)."""
    for budget, reservation in taken:
        held: object = budget  # an admission is one of the budgets (the same object)
        for admission in admissions:
            if admission is held:
                refusal = await admission.admit(call, reservation)
                if refusal is not None:
                    return refusal
    return None


def settle_all(taken: list[tuple[TokenBudget, object]], usage: Usage) -> None:
    for budget, reservation in taken:
        budget.settle(reservation, usage)
