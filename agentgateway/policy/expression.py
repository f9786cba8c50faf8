"""Expressions in policies: compiled at config load, evaluated per request to a value.

Policies that take a CEL expression (transformation header values and bodies, rate-limit
descriptor values and keys) depend only on ``ValueExpression`` and ``compile_value``. The forms
that need no interpreter — a string literal and a direct lookup such as
``request.headers["x-user"]``, ``request.path`` or ``source.address`` — are answered in Python
(one attribute read per request); every other expression is compiled by the native CEL engine
(``agentgateway.policy.cel``) at load, a compile error naming its path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import orjson

from agentgateway.config.errors import ConfigError
from agentgateway.policy.cel import CelEvaluationError, CelExpression
from agentgateway.policy.header_modifier import FIELD_VALUE

# ``isinstance`` with a tuple: ``a | b`` would build a union object on every call.
_NUMBER = (int, float)

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx


_STRING = re.compile(r"""^(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')$""", re.S)
_HEADER = re.compile(
    r"""^request\.headers\[\s*(?:"([!#$%&'*+.^_`|~0-9A-Za-z-]+)"|'([!#$%&*+.^_`|~0-9A-Za-z-]+)')\s*\]$"""
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
# What a request line's path or method may hold (no blank or control character at all).
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")


class ValueExpression:
    """An expression of the config, evaluated against one request. ``evaluate`` returns the value
    as bytes (header values, descriptor values and bodies are bytes on the wire), or None when
    the value is absent (a missing header): callers skip what depends on it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        raise NotImplementedError

    def evaluate_header(self, ctx: RequestCtx) -> bytes | None:
        """The value for a header: absent (None) also when it holds CR, LF, NUL or another
        control character. A value computed from a caller's data (a token's claim, an
        authorizer's metadata) would otherwise write header lines of the caller's choice on the
        wire (request smuggling upstream, response splitting)."""
        value = self.evaluate(ctx)
        if value is None or FIELD_VALUE.fullmatch(value) is None:
            return None
        return value

    def evaluate_target(self, ctx: RequestCtx) -> bytes | None:
        """The value for a request line's path or method: absent (None) also when it holds a
        blank or a control character (it would end the request line early)."""
        value = self.evaluate(ctx)
        if value is None or _TARGET.fullmatch(value) is None:
            return None
        return value

    @property
    def constant(self) -> bytes | None:
        """The value, when it does not depend on the request."""
        return None


class _Literal(ValueExpression):
    __slots__ = ("value",)

    def __init__(self, text: str, value: bytes) -> None:
        super().__init__(text)
        self.value = value

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        return self.value

    @property
    def constant(self) -> bytes | None:
        return self.value


class _Header(ValueExpression):
    __slots__ = ("name",)

    def __init__(self, text: str, name: bytes) -> None:
        super().__init__(text)
        self.name = name

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        name = self.name
        for k, v in ctx.headers:
            if k == name:
                return v
        return None


class _Path(ValueExpression):
    __slots__ = ()

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        return ctx.path


class _PathAndQuery(ValueExpression):
    __slots__ = ()

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        return ctx.target


class _Method(ValueExpression):
    __slots__ = ()

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        return ctx.method


class _Host(ValueExpression):
    __slots__ = ()

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        return ctx.host


class _Scheme(ValueExpression):
    __slots__ = ()

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        return ctx.scheme


class _SourceAddress(ValueExpression):
    __slots__ = ()

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        return ctx.client_ip.encode()


class _SourcePort(ValueExpression):
    __slots__ = ()

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        return b"%d" % ctx.client_port


class _Cel(ValueExpression):
    """Any other expression, evaluated natively. A failed evaluation (a missing header or claim)
    is an absent value, like a missing header in the lookups."""

    __slots__ = ("program",)

    def __init__(self, text: str, where: str) -> None:
        super().__init__(text)
        self.program = CelExpression(text, where)

    def evaluate(self, ctx: RequestCtx) -> bytes | None:
        try:
            value = self.program.evaluate(ctx, ctx.cel_vars)
        except CelEvaluationError:
            return None
        return _to_bytes(value)


def _to_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, _NUMBER):
        return str(value).encode()
    return orjson.dumps(value)


_LOOKUPS: dict[str, type[ValueExpression]] = {
    "request.path": _Path,
    "request.pathAndQuery": _PathAndQuery,
    "request.method": _Method,
    "request.host": _Host,
    "request.scheme": _Scheme,
    "source.address": _SourceAddress,
    "source.port": _SourcePort,
}


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def compile_value(text: str, where: str) -> ValueExpression:
    """Compile ``text`` (CEL syntax) or raise ConfigError naming ``where``."""
    stripped = text.strip()
    m = _STRING.match(stripped)
    if m:
        body = m.group(1) if m.group(1) is not None else m.group(2)
        return _Literal(text, _unescape(body).encode())
    m = _HEADER.match(stripped)
    if m:
        return _Header(text, (m.group(1) or m.group(2)).lower().encode())
    lookup = _LOOKUPS.get(stripped)
    if lookup is not None:
        return lookup(text)
    return _Cel(text, where)


def compile_condition(text: str, where: str) -> ValueExpression:
    """A boolean CEL condition (retry precondition, health check, ...): the forward does not
    consult conditions yet, so any is refused at load rather than ignored."""
    raise ConfigError(where, f"condition {text!r}: CEL conditions are not supported here yet")
