"""Prompt guards: regular expressions (built-in PII recognizers or custom patterns) that mask or
reject, on requests and on responses (streamed responses too).

Patterns are compiled once at config load. A request guard sees every text a client can send
and a response guard every text a model can answer (llm/shaping.py walks them: message content
of every role, tool-call names and arguments, tool results, reasoning). Rules match the text as
written and its folded form (llm/textfold.py), so look-alike letters, fullwidth forms and
invisible characters do not hide a match. A streaming response is guarded with a short hold-back
window per streamed text (the completion, each tool call's arguments) so a match split across
chunks is still caught: text is released only once it can no longer be part of a match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agentgateway._native import Pattern
from agentgateway.core.context import RequestCtx
from agentgateway.llm.chat import CHAT_REASONING
from agentgateway.llm.errors import LlmError
from agentgateway.llm.textfold import IndexMap, fold, plain
from agentgateway.policy.expression import ValueExpression
from agentgateway.policy.header_modifier import HeaderEdit
from agentgateway.routing.table import ValueMatcher
from agentgateway.upstream.target import HttpTarget

Json = dict[str, Any]

# Built-in recognizers, named as agentgateway names them.
BUILTINS: dict[str, str] = {
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    # 13-19 digits in groups separated by single spaces or dashes (Visa, MasterCard, Amex, ...)
    "creditCard": r"\b(?:\d[ -]?){12,18}\d\b",
    "ssn": r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b",
    "phoneNumber": r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}\b",
    "caSin": r"\b\d{3}[ -]?\d{3}[ -]?\d{3}\b",
}
# Builtins with look-around, which only ``re`` runs (see RegexRule).
_LOOK_AROUND = frozenset(("ssn", "phoneNumber"))
_SURROGATE = re.compile("[\ud800-\udfff]")
_MASK_NAMES = {
    "email": "EMAIL_ADDRESS",
    "creditCard": "CREDIT_CARD",
    "ssn": "SSN",
    "phoneNumber": "PHONE_NUMBER",
    "caSin": "CA_SIN",
}
# Longest text a streamed match is assumed to span (chars held back before release).
STREAM_HOLD = 64


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class RegexRule:
    """``pattern``: a native ``Pattern`` (the ``regex`` crate, as agentgateway), for a custom
    pattern of the config and the builtins that need no look-around: a pattern such as
    ``(\\w+\\s?)+$`` run by ``re`` over a prompt the client wrote took minutes of a worker's CPU,
    and so did the ``email`` builtin (``re`` retries its unbounded local part from every word
    start: 0.6 s for 20,000 characters of ``a.a.a.``, hours for a 2 MB prompt). ``ssn`` and
    ``phoneNumber`` look around, which the crate cannot; their repetitions are bounded, so
    ``re`` runs them in linear time."""

    __slots__ = ("name", "pattern", "label", "check")

    def __init__(
        self, name: str, pattern: re.Pattern[str] | Pattern, label: str, check: Callable[[str], bool] | None
    ) -> None:
        self.name = name
        self.pattern = pattern
        self.label = label
        self.check = check

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Non-empty matches of ``text`` (that pass ``check``) as (start, end) string indices."""
        pattern = self.pattern
        if isinstance(pattern, Pattern):
            # Lone surrogates (a JSON escape such as "\\ud800") are not UTF-8: each stands in
            # as U+FFFD, one character for one, so the indices are the text's.
            safe = text if text.isascii() else _SURROGATE.sub("\ufffd", text)
            found = pattern.spans(safe)
        else:
            found = [m.span() for m in pattern.finditer(text)]
        check = self.check
        return [(a, b) for a, b in found if b > a and (check is None or check(text[a:b]))]


def builtin_rule(name: str) -> RegexRule:
    check = None
    if name == "creditCard":

        def check(text: str) -> bool:
            digits = re.sub(r"[ -]", "", text)
            return 13 <= len(digits) <= 19 and _luhn(digits)

    text = BUILTINS[name]
    pattern = re.compile(text) if name in _LOOK_AROUND else Pattern(text)
    return RegexRule(name, pattern, f"<{_MASK_NAMES[name]}>", check)


def custom_rule(pattern: str, name: str | None = None) -> RegexRule:
    """ValueError when ``pattern`` is not a regex of the ``regex`` crate's syntax."""
    return RegexRule(name or "custom", Pattern(pattern), "<MASKED>", None)


class Rejection:
    """A guard's answer: ``rejection.status``, ``.body`` (the message, in the client API's error
    format) and ``.headers`` (edits of the answer's headers)."""

    __slots__ = ("status", "message", "edit")

    def __init__(self, status: int, message: str, edit: HeaderEdit | None = None) -> None:
        self.status = status
        self.message = message
        self.edit = edit

    def error(self) -> LlmError:
        return LlmError(self.status, self.message, edit=self.edit)


class RegexGuard:
    """``regex: {action, rules}`` with its ``rejection``.

    Rules match the original text and its folded form (llm/textfold.py: look-alikes, invisible
    characters, JSON escapes); a match in the folded form is mapped back to the original
    characters it came from, which are masked."""

    __slots__ = ("rules", "reject", "rejection")

    def __init__(self, rules: tuple[RegexRule, ...], reject: bool, rejection: Rejection) -> None:
        self.rules = rules
        self.reject = reject
        self.rejection = rejection

    def _find(self, text: str) -> list[tuple[int, int, str]]:
        spans: list[tuple[int, int, str]] = []
        for rule in self.rules:
            spans.extend((start, end, rule.label) for start, end in rule.spans(text))
        return spans

    def spans(self, text: str, index: IndexMap | None = None) -> list[tuple[int, int, str]]:
        """Matches as spans of ``text`` (folded matches mapped back), sorted by start.
        ``index``: the text's index map when the caller already made it."""
        spans = self._find(text)
        if index is None and plain(text):
            spans.sort()
            return spans
        folded = index.text if index is not None else fold(text)
        if folded != text:
            found = self._find(folded)
            if found:
                if index is None:
                    index = IndexMap(text)
                for start, end, label in found:
                    o_start, o_end = index.span(start, end)
                    spans.append((o_start, o_end, label))
        spans.sort()
        return spans

    def apply(self, text: str) -> str:
        """The text with matches masked; raises the rejection if the action is reject."""
        spans = self.spans(text)
        if not spans:
            return text
        if self.reject:
            raise self.rejection.error()
        out = []
        pos = 0
        merged: list[tuple[int, int, str]] = []
        for start, end, label in spans:  # overlapping matches become one, labelled by the first
            if merged and start < merged[-1][1]:
                last = merged[-1]
                merged[-1] = (last[0], max(last[1], end), last[2])
            else:
                merged.append((start, end, label))
        for start, end, label in merged:
            out.append(text[pos:start])
            out.append(label)
            pos = end
        out.append(text[pos:])
        return "".join(out)


class GuardSet:
    """The guards of one direction, applied in order."""

    __slots__ = ("guards",)

    def __init__(self, guards: tuple[RegexGuard, ...]) -> None:
        self.guards = guards

    def __bool__(self) -> bool:
        return bool(self.guards)

    def apply(self, text: str) -> str:
        for guard in self.guards:
            text = guard.apply(text)
        return text

    def safe_cut(self, text: str, hold: int) -> int:
        """Where a streamed buffer can be cut: before its last ``hold`` characters (counted in
        the folded form, so invisible characters cannot stretch a match past the window), never
        inside a match. Raises the rejection of a reject guard that matches."""
        index = None if plain(text) else IndexMap(text)
        folded_length = len(text) if index is None else len(index.text)
        cut = max(0, folded_length - hold)
        if index is not None:
            cut = index.original_offset(cut)
        spans: list[tuple[int, int, str]] = []
        for guard in self.guards:
            found = guard.spans(text, index)
            if found and guard.reject:
                raise LlmError(guard.rejection.status, guard.rejection.message)
            spans += found
        spans.sort(reverse=True)  # latest start first: moving the cut back may enter earlier ones
        for start, end, _ in spans:
            if start < cut < end:
                cut = start
        return cut


class StreamGuard:
    """Guards one streamed text (the completion, or one tool call's arguments): ``feed``
    returns what can be released now (masked), ``flush`` the rest at the end. A reject raises as
    soon as a match is seen.

    A text released whole (flushed when another part starts) can go on: a provider that
    interleaves tool calls returns to one it left. What it then sends is read after the end of
    what was released (``_tail``), so a match split across the flush is still seen: a reject
    raises, a mask covers the part not yet sent."""

    __slots__ = ("guards", "_pending", "_tail")

    def __init__(self, guards: GuardSet) -> None:
        self.guards = guards
        self._pending = ""
        self._tail = ""

    def _released(self, out: str) -> str:
        self._tail = (self._tail + out)[-_TAIL:]
        return out

    def _after_release(self, buf: str) -> str:
        """``buf`` with a match that starts in the released text masked where it goes on."""
        tail = self._tail
        n = len(tail)
        for guard in self.guards.guards:
            text = tail + buf
            crossing = [(start, end, label) for start, end, label in guard.spans(text) if start < n < end]
            if not crossing:
                continue
            if guard.reject:
                raise guard.rejection.error()
            end = max(e for _, e, _ in crossing)
            buf = crossing[0][2] + text[end:]
        return buf

    def feed(self, text: str) -> str:
        if not self._pending and self._tail:
            text = self._after_release(text)
        buf = self._pending + text
        cut = self.guards.safe_cut(buf, STREAM_HOLD)
        self._pending = buf[cut:]
        return self._released(self.guards.apply(buf[:cut])) if cut else ""

    def flush(self) -> str:
        buf = self._pending
        self._pending = ""
        return self._released(self.guards.apply(buf)) if buf else ""


# How much released text a resumed stream is read after (folding can stretch a match).
_TAIL = 4 * STREAM_HOLD


# The texts of a Chat delta held back per choice: the answer, a refusal, and the reasoning that
# OpenAI-compatible providers stream beside it (``reasoning_content``, ``reasoning``).
_DELTA_TEXTS = ("content", "refusal", "reasoning_content", "reasoning")


class _ChoiceGuard:
    """The streamed texts of one choice: content, refusal, reasoning, each tool call's
    arguments."""

    __slots__ = ("texts", "calls", "open_call", "function_args")

    def __init__(self, guards: GuardSet) -> None:
        self.texts = {key: StreamGuard(guards) for key in _DELTA_TEXTS}
        self.calls: dict[int, StreamGuard] = {}
        self.open_call = -1
        # the legacy ``function_call`` (one per choice) that OpenAI still streams for ``functions``
        self.function_args = StreamGuard(guards)

    def held_args(self) -> list[Json]:
        """The held arguments of the open tool call, as a tool-call delta (or nothing)."""
        guard = self.calls.get(self.open_call)
        rest = guard.flush() if guard is not None else ""
        return [{"index": self.open_call, "function": {"arguments": rest}}] if rest else []


class ChunkGuard:
    """Guards a stream of canonical Chat chunks, per choice: the content, the refusal, the
    reasoning, and each tool call's name (sent whole) and arguments (held back like text, one
    window per call). Held text is released in the chunk that ends its part (a tool call
    starting, the finish reason; for the reasoning, the answer starting too), ahead of what that
    chunk starts, so the encoders see every part in order."""

    __slots__ = ("guards", "_choices")

    def __init__(self, guards: GuardSet) -> None:
        self.guards = guards
        self._choices: dict[int, _ChoiceGuard] = {}

    def feed(self, c: Json) -> Json | None:
        """Chunk ``c`` guarded (None when all it carried is held back)."""
        choices = c.get("choices")
        if not choices:
            return c
        keep = False
        for choice in choices:
            if isinstance(choice, dict) and self._choice(choice):
                keep = True
        return c if keep else None

    def _choice(self, choice: Json) -> bool:
        index = choice.get("index", 0)
        state = self._choices.get(index)
        if state is None:
            state = self._choices[index] = _ChoiceGuard(self.guards)
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        guards = self.guards
        calls = delta.get("tool_calls")
        finish = choice.get("finish_reason")
        ends_text = bool(calls) or bool(finish)
        ends_reasoning = ends_text or bool(delta.get("content"))
        for key, guard in state.texts.items():
            text = delta.get(key)
            released = guard.feed(text) if isinstance(text, str) and text else ""
            if ends_text or (ends_reasoning and key in CHAT_REASONING):
                released += guard.flush()
            if released:
                delta[key] = released
            elif delta.get(key):
                delta[key] = ""
        out_calls: list[Json] = []
        for call in calls or ():
            k = call.get("index", 0)
            if k != state.open_call:
                out_calls += state.held_args()
                state.open_call = k
            fn = call.get("function")
            if isinstance(fn, dict):
                name = fn.get("name")
                if isinstance(name, str) and name:
                    fn["name"] = guards.apply(name)
                args = fn.get("arguments")
                if isinstance(args, str) and args:
                    args_guard = state.calls.get(k)
                    if args_guard is None:
                        args_guard = state.calls[k] = StreamGuard(guards)
                    fn["arguments"] = args_guard.feed(args)
            out_calls.append(call)
        if finish:
            out_calls += state.held_args()
        if out_calls:
            delta["tool_calls"] = out_calls
        legacy = delta.get("function_call")
        if isinstance(legacy, dict) or finish:
            legacy = legacy if isinstance(legacy, dict) else {}
            name = legacy.get("name")
            if isinstance(name, str) and name:
                legacy["name"] = guards.apply(name)
            args = legacy.get("arguments")
            released = state.function_args.feed(args) if isinstance(args, str) and args else ""
            if finish:
                released += state.function_args.flush()
            if released or "arguments" in legacy:
                legacy["arguments"] = released
            if legacy:
                delta["function_call"] = legacy
        held_back = isinstance(legacy, dict) and not (legacy.get("name") or legacy.get("arguments"))
        if held_back:
            delta.pop("function_call", None)
        return bool(
            any(delta.get(key) for key in _DELTA_TEXTS)
            or out_calls
            or delta.get("function_call")
            or delta.get("role")
            or finish
        )

    def finish(self) -> Json | None:
        """A chunk with what is still held at the end of the stream (None: nothing is)."""
        out: list[Json] = []
        for index, state in self._choices.items():
            delta: Json = {}
            for key, guard in state.texts.items():
                rest = guard.flush()
                if rest:
                    delta[key] = rest
            calls = state.held_args()
            if calls:
                delta["tool_calls"] = calls
            rest = state.function_args.flush()
            if rest:
                delta["function_call"] = {"arguments": rest}
            if delta:
                out.append({"index": index, "delta": delta, "finish_reason": None})
        if not out:
            return None
        return {"id": "", "model": "", "choices": out}


class WebhookGuard:
    """A ``webhook`` prompt guard: where its calls go and how they are shaped. ``headers``: CEL
    values over the client's request (``:path`` and ``:method`` replace the call's own);
    ``forward``: the client's headers that match go along; ``fail_open``: an unreachable or
    failing webhook lets the request through (agentgateway's ``failureMode: failOpen``)."""

    __slots__ = ("target", "on_response", "headers", "path", "method", "forward", "fail_open")

    def __init__(
        self,
        target: HttpTarget,
        on_response: bool,
        headers: tuple[tuple[bytes, ValueExpression], ...],
        path: ValueExpression | None,
        method: ValueExpression | None,
        forward: tuple[ValueMatcher, ...],
        fail_open: bool,
    ) -> None:
        self.target = target
        self.on_response = on_response
        self.headers = headers
        self.path = path
        self.method = method
        self.forward = forward
        self.fail_open = fail_open

    def request_head(self, ctx: RequestCtx) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
        """(method, path, headers) of one call for the request ``ctx``."""
        method = (self.method.evaluate_target(ctx) if self.method is not None else None) or b"POST"
        path = (self.path.evaluate_target(ctx) if self.path is not None else None) or (
            b"/response" if self.on_response else b"/request"
        )
        headers = [(b"content-type", b"application/json")]
        if self.forward:
            for name, value in ctx.headers:
                if any(m.name == name and m.test(value) for m in self.forward):
                    headers.append((name, value))
        for name, expression in self.headers:
            computed = expression.evaluate_header(ctx)
            if computed is not None:  # a missing (or invalid) value sets nothing
                headers.append((name, computed))
        return method, path, headers
