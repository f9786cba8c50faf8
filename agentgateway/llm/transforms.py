"""``transformations`` / ``finalTransformations`` (and a model's ``transformation`` /
``finalTransformation``): request body fields computed from CEL expressions.

As in agentgateway, every expression is evaluated against the body as it is before any of them
is applied (``llmRequest``, beside ``request``, ``jwt``, ``apiKey``, ... and ``llm``); a value
replaces the field, and an expression that fails (or has no JSON value) removes the field.
``transformations`` run on the client's request (after ``overrides``, before ``defaults``),
``finalTransformations`` on the request translated to the provider's format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentgateway.config.errors import ConfigError
from agentgateway.policy.cel import CelEvaluationError, CelExpression

# ``isinstance`` with a tuple: ``a | b`` would build a union object on every call.
_SCALAR = (bool, int, float, str)

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx

Json = dict[str, Any]


class BodyTransform:
    __slots__ = ("fields",)

    def __init__(self, spec: dict[str, str], where: str) -> None:
        fields = []
        for name, text in spec.items():
            if not name:
                raise ConfigError(where, "a field name cannot be empty")
            fields.append((name, CelExpression(text, f"{where}.{name}")))
        self.fields: tuple[tuple[str, CelExpression], ...] = tuple(fields)

    def apply(self, body: Json, ctx: RequestCtx | None, llm: dict[str, object] | None = None) -> None:
        cel_vars: dict[str, object] = dict(ctx.cel_vars or {}) if ctx is not None else {}
        cel_vars["llmRequest"] = body
        if llm is not None:
            cel_vars["llm"] = llm
        values: list[tuple[str, object, bool]] = []
        for name, expr in self.fields:
            try:
                values.append((name, expr.evaluate(ctx, cel_vars), True))
            except CelEvaluationError:
                values.append((name, None, False))
        for name, value, ok in values:
            if ok and _is_json(value):
                body[name] = value
            else:
                body.pop(name, None)


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, _SCALAR):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False
