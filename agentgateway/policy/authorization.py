"""``authorization``: CEL rules decide whether a request may go on (agentgateway's HTTP RBAC).

Rules are compiled at config load (a bad one is a config error naming it) and evaluated natively
with agentgateway's ``allow``/``deny``/``require`` semantics (``policy/cel.py``), over
``request``, ``source`` and what the authentication policies before it learned (``jwt``,
``apiKey``, ``basicAuth``). A denied request is answered 403.
"""

from __future__ import annotations

from agentgateway.config.schema import Authorization
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import LocalReply
from agentgateway.policy.cel import CelRuleSet


class AuthorizationPolicy:
    kind = "authorization"

    __slots__ = ("rules", "_denied")

    def __init__(self, cfg: Authorization, where: str) -> None:
        self.rules = CelRuleSet.compile(cfg.rules, f"{where}.rules")
        self._denied = LocalReply.text(403, "authorization failed")

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        decision = self.rules.evaluate(ctx, ctx.cel_vars)
        if decision.allowed:
            return None
        ctx.error = decision.reason
        return self._denied
