"""CEL for policies: authorization rule sets, and single expressions evaluated to a value
(rate-limit descriptors, transformations). Compiled at config load, evaluated natively.

The native side is told what each compiled expression reads, so a request is handed over as a
few references (``request`` only if read, its headers only if read, ``source`` only if read)
and converted once per evaluation, for every rule of a set together. Callers pass the other
variables (``jwt``, ``apiKey``, ``basicAuth``, ``mcp``, ``llm``, ``backend``, ``extauthz``,
``metadata``) in ``extra`` as they have them; entries no expression reads are not converted.

Rule sets follow agentgateway: no rules allow; a ``deny`` rule that is true denies; a
``require`` rule that is not true denies; an ``allow`` rule (a bare string) that is true allows;
otherwise the request is denied if there are ``allow`` rules, allowed if there are only
``deny``/``require`` rules. An expression that fails (a missing header or claim, a type
mismatch) counts as false for ``allow`` and as failed for ``require``, but as *not matched* for
``deny``: a ``deny`` rule is unsafe on errors, as in agentgateway. Prefer ``require`` (or guard
with ``has()``) for checks that must hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from agentgateway import _native
from agentgateway.config.errors import ConfigError
from agentgateway.core.context import RequestCtx

__all__ = [
    "CelEvaluationError",
    "CelExpression",
    "CelRuleSet",
    "Decision",
    "RuleKind",
    "RuleSpec",
]

CelEvaluationError = _native.CelEvaluationError
"""An expression whose evaluation failed, or whose value has no Python equivalent."""

RuleKind: TypeAlias = Literal["allow", "deny", "require"]
RuleSpec: TypeAlias = str | Mapping[str, str]
"""A rule as written in the config: a CEL string (allow), or ``{allow|deny|require: CEL}``."""

_RULE_KINDS: tuple[RuleKind, ...] = ("allow", "deny", "require")
_RULE_SHAPE = "a rule is a CEL expression or {allow|deny|require: <CEL expression>}"
# httptools reports "1.1"; CEL's request.version reads "HTTP/1.1".
_HTTP_VERSIONS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2", "2.0": "HTTP/2"}

_Head: TypeAlias = tuple[bytes, bytes, bytes, bytes, bytes, str, list[tuple[bytes, bytes]] | None]


def _head(ctx: RequestCtx, headers: bool) -> _Head:
    version = _HTTP_VERSIONS.get(ctx.version) or f"HTTP/{ctx.version}"
    return (ctx.method, ctx.scheme, ctx.host, ctx.path, ctx.target, version, ctx.headers if headers else None)


@dataclass(frozen=True, slots=True)
class Decision:
    """A rule set's verdict. ``rule`` is the index of the rule that decided (None when none
    did); ``reason`` says it in words, for logs."""

    allowed: bool
    rule: int | None
    reason: str


class CelExpression:
    """One expression, compiled once, evaluated to a Python value."""

    __slots__ = ("_program", "_request", "_headers", "_source", "expression", "variables")

    def __init__(self, expression: str, where: str = "") -> None:
        """Raises ConfigError(where, reason) when ``expression`` does not compile."""
        try:
            self._program = _native.CelProgram(expression)
        except _native.CelCompileError as exc:
            raise ConfigError(where, str(exc)) from None
        self.expression = expression
        self.variables: frozenset[str] = self._program.variables
        self._request = "request" in self.variables
        self._headers = self._program.needs_headers
        self._source = "source" in self.variables

    def evaluate(self, ctx: RequestCtx | None = None, extra: dict[str, object] | None = None) -> object:
        """The value: bool, int, float, str, bytes, None, list or dict (an IP or CIDR as its
        text). Raises CelEvaluationError when the evaluation fails."""
        head = _head(ctx, self._headers) if ctx is not None and self._request else None
        peer = (ctx.client_ip, ctx.client_port) if ctx is not None and self._source else None
        return self._program.evaluate(head, peer, extra)

    def __repr__(self) -> str:
        return f"CelExpression({self.expression!r})"


class CelRuleSet:
    """Authorization rules (``allow`` / ``deny`` / ``require``), evaluated in one native call."""

    __slots__ = (
        "_rules",
        "_decisions",
        "_request",
        "_headers",
        "_source",
        "kinds",
        "rules",
        "variables",
        "request_fields",
        "header_names",
    )

    def __init__(self, rules: Sequence[tuple[RuleKind, str]], where: str = "") -> None:
        """Raises ConfigError(``where[i]``, reason) naming the first rule that does not compile."""
        try:
            self._rules = _native.CelRules(list(rules))
        except _native.CelCompileError as exc:
            raise ConfigError(f"{where}[{exc.index}]", str(exc)) from None
        self.rules: tuple[tuple[RuleKind, str], ...] = tuple(rules)
        self.kinds: tuple[RuleKind, ...] = tuple(kind for kind, _ in rules)
        self.variables: frozenset[str] = self._rules.variables
        # What the rules read of ``request``: its fields, and which headers (None: all of them).
        self.request_fields: frozenset[str] = self._rules.request_fields
        self.header_names: frozenset[str] | None = self._rules.header_names
        self._request = "request" in self.variables
        self._headers = self._rules.needs_headers
        self._source = "source" in self.variables
        # Every possible verdict, made once: the native call returns the deciding rule's index,
        # -1 (allowed, no rule decided) or -2 (denied, no rule decided), an index into this.
        by_rule = [
            Decision(kind == "allow", i, f"{kind} rule {i} {'failed' if kind == 'require' else 'matched'}")
            for i, kind in enumerate(self.kinds)
        ]
        allowed_reason = "no deny or require rule applied" if self.kinds else "no rules"
        self._decisions = (
            *by_rule,
            Decision(False, None, "no allow rule matched"),
            Decision(True, None, allowed_reason),
        )

    @classmethod
    def compile(cls, rules: Sequence[RuleSpec], where: str) -> CelRuleSet:
        """Rules as written in the config; errors name the rule: ``where[2]: reason``."""
        parsed: list[tuple[RuleKind, str]] = []
        for i, rule in enumerate(rules):
            if isinstance(rule, str):
                parsed.append(("allow", rule))
                continue
            if isinstance(rule, Mapping) and len(rule) == 1:
                ((kind, expression),) = rule.items()
                if kind in _RULE_KINDS and isinstance(expression, str):
                    parsed.append((kind, expression))
                    continue
            raise ConfigError(f"{where}[{i}]", _RULE_SHAPE)
        return cls(parsed, where)

    @classmethod
    def concat(cls, sets: Sequence[CelRuleSet], where: str = "") -> CelRuleSet:
        """Rule sets that apply together (agentgateway merges attached rule sets this way: a deny
        in any denies, every require must hold, an allow in any allows)."""
        return cls([rule for s in sets for rule in s.rules], where)

    def evaluate(self, ctx: RequestCtx, extra: dict[str, object] | None = None) -> Decision:
        """The verdict for ``ctx``, with ``extra`` variables (``jwt``, ``mcp``, ...)."""
        if not self.kinds:
            return self._decisions[-1]
        head = _head(ctx, self._headers) if self._request else None
        peer = (ctx.client_ip, ctx.client_port) if self._source else None
        return self._decisions[self._rules.evaluate(head, peer, extra)]

    def explain(self, ctx: RequestCtx, extra: dict[str, object] | None = None) -> list[bool | str]:
        """Each rule's own result, in order: True, False, or the error message (for debugging)."""
        head = _head(ctx, self._headers) if self._request else None
        peer = (ctx.client_ip, ctx.client_port) if self._source else None
        return self._rules.explain(head, peer, extra)

    def __len__(self) -> int:
        return len(self.kinds)
