"""Credentials the gateway sent, taken out of what a provider answers.

A provider that refuses a key may quote it: OpenAI writes ``Incorrect API key provided:
sk-proj-********…abcd`` (the first 8 and the last 4 characters), some OpenAI-compatible servers
the whole key. Before a provider's error reaches a client (either API format, a stream's error
event) or a log line, the gateway removes from it, for every credential it injected (provider
keys, ``backendAuth`` keys, AWS access key id, secret and session token):

- every run of 8 or more consecutive characters of the credential (the whole key, a truncated
  quote, its first or last part);
- an elided quote: a prefix of the credential, a run of mask characters (``***``, ``...``,
  ``…``, ``•••``) and a suffix of it, when prefix and suffix show 4 characters or more together
  (``sk-abc…wxyz``).

Each is replaced by ``[REDACTED]``. Shorter fragments (3 characters after a mask) are left:
they no longer tell the key apart from others. Credentials shorter than 8 characters are
redacted whole only. This runs on errors only, never on a successful answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import orjson

REDACTED = "[REDACTED]"
_RUN = 8  # shortest fragment of a credential that is redacted
_SHOWN = 4  # characters an elided quote must show to be redacted
_MASK = r"(?:[*•·]{3,}|\.{3,}|…+)"
_DEPTH = 12  # longest prefix or suffix an elided quote is matched on


def _prefixes(secret: str) -> str:
    """A pattern matching any non-empty prefix of ``secret`` (up to _DEPTH characters)."""
    chars = [re.escape(c) for c in secret[:_DEPTH]]
    pattern = ""
    for c in reversed(chars[1:]):
        pattern = f"(?:{c}{pattern})?"
    return chars[0] + pattern


def _suffixes(secret: str) -> str:
    chars = [re.escape(c) for c in secret[-_DEPTH:]]
    pattern = ""
    for c in chars[:-1]:
        pattern = f"(?:{pattern}{c})?"
    return pattern + chars[-1]


class Redactor:
    __slots__ = ("secrets", "_grams", "_elided")

    def __init__(self, secrets: Iterable[str]) -> None:
        kept = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.secrets = tuple(kept)
        self._grams = frozenset(s[i : i + _RUN] for s in kept for i in range(len(s) - _RUN + 1))
        self._elided = tuple(
            re.compile(f"(?:{_prefixes(s)})?({_MASK})(?:{_suffixes(s)})?") for s in kept if len(s) >= _RUN
        )

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, text: str) -> str:
        if not self.secrets or not text:
            return text
        covered: list[tuple[int, int]] = []
        for secret in self.secrets:
            if len(secret) < _RUN:
                start = text.find(secret)
                while start >= 0:
                    covered.append((start, start + len(secret)))
                    start = text.find(secret, start + 1)
        grams = self._grams
        for i in range(len(text) - _RUN + 1):
            if text[i : i + _RUN] in grams:
                covered.append((i, i + _RUN))
        for pattern in self._elided:
            for m in pattern.finditer(text):
                if m.end() - m.start() - len(m.group(1)) >= _SHOWN:
                    covered.append((m.start(), m.end()))
        if not covered:
            return text
        covered.sort()
        merged: list[tuple[int, int]] = []
        for start, stop in covered:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
            else:
                merged.append((start, stop))
        out: list[str] = []
        pos = 0
        for start, stop in merged:
            out.append(text[pos:start])
            out.append(REDACTED)
            pos = stop
        out.append(text[pos:])
        return "".join(out)

    def body(self, raw: bytes) -> bytes:
        """A provider's answer: JSON is redacted string by string (escapes decoded first), any
        other body as text."""
        if not self.secrets or not raw:
            return raw
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            text = raw.decode("utf-8", "replace")
            redacted = self.text(text)
            return raw if redacted == text else redacted.encode()
        changed = [False]
        data = self._json(data, changed)
        return orjson.dumps(data) if changed[0] else raw

    def _json(self, value: object, changed: list[bool]) -> object:
        if isinstance(value, str):
            new = self.text(value)
            if new != value:
                changed[0] = True
            return new
        if isinstance(value, dict):
            return {self._json(k, changed): self._json(v, changed) for k, v in value.items()}
        if isinstance(value, list):
            return [self._json(v, changed) for v in value]
        return value

    def headers(self, headers: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
        if not self.secrets:
            return tuple(headers)
        return tuple((k, self.text(v.decode("latin-1")).encode("latin-1")) for k, v in headers)


NO_SECRETS = Redactor(())
