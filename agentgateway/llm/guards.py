"""Prompt guards: regular expressions (built-in PII recognizers or custom patterns) that mask or
reject, on requests and on responses (streamed responses too).

Patterns are compiled once at config load. A request guard sees the text of every message
(system prompt, user, assistant and tool content); a response guard sees the completion text.
A streaming response is guarded with a short hold-back window so a match split across chunks is
still caught: text is released only once it can no longer be part of a match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agentgateway.llm.errors import LlmError

# Built-in recognizers, named as agentgateway names them.
BUILTINS: dict[str, str] = {
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    # 13-19 digits in groups separated by single spaces or dashes (Visa, MasterCard, Amex, ...)
    "creditCard": r"\b(?:\d[ -]?){12,18}\d\b",
    "ssn": r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b",
    "phoneNumber": r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}\b",
    "caSin": r"\b\d{3}[ -]?\d{3}[ -]?\d{3}\b",
}
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
    __slots__ = ("name", "pattern", "label", "check")

    def __init__(self, name: str, pattern: re.Pattern[str], label: str, check: Callable[[str], bool] | None) -> None:
        self.name = name
        self.pattern = pattern
        self.label = label
        self.check = check


def builtin_rule(name: str) -> RegexRule:
    check = None
    if name == "creditCard":

        def check(text: str) -> bool:
            digits = re.sub(r"[ -]", "", text)
            return 13 <= len(digits) <= 19 and _luhn(digits)

    return RegexRule(name, re.compile(BUILTINS[name]), f"<{_MASK_NAMES[name]}>", check)


def custom_rule(pattern: str, name: str | None = None) -> RegexRule:
    return RegexRule(name or "custom", re.compile(pattern), "<MASKED>", None)


class Rejection:
    __slots__ = ("status", "message")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class RegexGuard:
    """``regex: {action, rules}`` with its ``rejection``."""

    __slots__ = ("rules", "reject", "rejection")

    def __init__(self, rules: tuple[RegexRule, ...], reject: bool, rejection: Rejection) -> None:
        self.rules = rules
        self.reject = reject
        self.rejection = rejection

    def _spans(self, text: str) -> list[tuple[int, int, str]]:
        spans = []
        for rule in self.rules:
            for m in rule.pattern.finditer(text):
                if m.end() > m.start() and (rule.check is None or rule.check(m.group())):
                    spans.append((m.start(), m.end(), rule.label))
        spans.sort()
        return spans

    def apply(self, text: str) -> str:
        """The text with matches masked; raises the rejection if the action is reject."""
        spans = self._spans(text)
        if not spans:
            return text
        if self.reject:
            raise LlmError(self.rejection.status, self.rejection.message)
        out = []
        pos = 0
        for start, end, label in spans:
            if start < pos:
                continue  # overlapping matches: the first one wins
            out.append(text[pos:start])
            out.append(label)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def safe_cut(self, text: str, hold: int) -> int:
        """Where a streamed buffer can be cut: at most ``len - hold``, never inside a match."""
        cut = max(0, len(text) - hold)
        for start, end, _ in self._spans(text):
            if start < cut < end:
                cut = start
        return cut


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


def guard_chat_request(guards: GuardSet, req: dict[str, Any]) -> None:
    """Masks (in place) or rejects the text of every message of a canonical Chat request."""
    for msg in req.get("messages") or []:
        content = msg.get("content")
        if isinstance(content, str):
            msg["content"] = guards.apply(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = guards.apply(part["text"])
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = guards.apply(fn["arguments"])


def guard_chat_response(guards: GuardSet, resp: dict[str, Any]) -> None:
    for choice in resp.get("choices") or []:
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            message["content"] = guards.apply(message["content"])


class StreamGuard:
    """Guards streamed completion text: ``feed`` returns what can be released now (masked),
    ``flush`` the rest at the end. A reject raises as soon as a match is seen."""

    __slots__ = ("guards", "_pending")

    def __init__(self, guards: GuardSet) -> None:
        self.guards = guards
        self._pending = ""

    def feed(self, text: str) -> str:
        buf = self._pending + text
        cut = len(buf)
        for guard in self.guards.guards:
            if guard.reject:
                guard.apply(buf)  # raises on a match
            cut = min(cut, guard.safe_cut(buf, STREAM_HOLD))
        self._pending = buf[cut:]
        return self.guards.apply(buf[:cut]) if cut else ""

    def flush(self) -> str:
        buf = self._pending
        self._pending = ""
        return self.guards.apply(buf) if buf else ""
