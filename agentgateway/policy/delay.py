"""``delay``: latency injected before the request goes to the backend (fault injection).

``duration`` is a duration (``2s``, ``250ms``), fixed at load, or a CEL expression evaluated per
request whose value is a duration text (``"500ms"``) or a number of milliseconds (``request.
headers["x-delay-ms"]`` as an int, ``jwt.tier == "free" ? 500 : 0``). A value that is not
positive, or an expression that fails, injects no delay. The wait is capped at ``MAX_DELAY`` and
ends early when the client leaves (the request's task is cancelled). It runs where agentgateway
runs it: after authentication, rate limits and rewrites, before a direct response.
"""

from __future__ import annotations

import asyncio

from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import Delay
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import LocalReply
from agentgateway.policy.cel import CelEvaluationError, CelExpression

MAX_DELAY = 3600.0


class DelayPolicy:
    kind = "delay"
    is_async = True
    __slots__ = ("fixed", "expression")

    def __init__(self, cfg: Delay, where: str) -> None:
        text = cfg.duration.strip()
        self.fixed: float | None = None
        self.expression: CelExpression | None = None
        try:
            seconds = parse_duration(text)
        except ValueError:
            self.expression = CelExpression(text, f"{where}.duration")
        else:
            if seconds > MAX_DELAY:
                raise ConfigError(f"{where}.duration", f"at most {MAX_DELAY:g}s")
            self.fixed = seconds

    def seconds(self, ctx: RequestCtx) -> float:
        if self.fixed is not None:
            return self.fixed
        assert self.expression is not None
        try:
            value = self.expression.evaluate(ctx, ctx.cel_vars)
        except CelEvaluationError:
            return 0.0
        if isinstance(value, bool):
            return 0.0
        if isinstance(value, int | float):
            seconds = float(value) / 1000.0
        elif isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError:
                return 0.0
        else:
            return 0.0
        if not seconds > 0.0:  # also NaN
            return 0.0
        return min(seconds, MAX_DELAY)

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None:
        seconds = self.seconds(ctx)
        if seconds > 0.0:
            await asyncio.sleep(seconds)
        return None
