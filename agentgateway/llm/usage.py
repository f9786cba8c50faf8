"""Token usage in one shape, read from and written to every provider's wire format.

``input_tokens`` follows the OTel GenAI convention: it *includes* cached tokens (cache reads and
cache writes). ``output_tokens`` includes reasoning tokens. Each provider reports these
differently (protocols.md §3.5-3.7, §4); the conversions are here and nowhere else.
"""

from __future__ import annotations

from typing import Any

# ``isinstance`` with a tuple: ``a | b`` would build a union object on every call.
_NUMBER = (int, float)

# The most tokens one count of one call may claim. A provider's usage is the upstream's word:
# a negative count would give budgets back (to everyone sharing the budget's key), and a count
# beyond 64 bits would not fit the budgets' counters (their true-up would fail and charge
# nothing), and such a number in JSON reads as a float (``1e30``) that must not count as 0.
# Negative counts read as 0, larger ones as this bound (far beyond any real call, so a budget
# they are charged to is emptied).
MAX_TOKENS = 1 << 40


def _object(value: Any) -> dict[str, Any]:
    """A details member as an object (a provider may send anything there)."""
    return value if isinstance(value, dict) else {}


def token_count(value: Any) -> int:
    """A token count as a provider reported it, made safe to charge (see ``MAX_TOKENS``)."""
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not value > 0:
        return 0  # (NaN too)
    return MAX_TOKENS if value >= MAX_TOKENS else int(value)


class Usage:
    __slots__ = ("input_tokens", "output_tokens", "cache_read", "cache_creation", "reasoning", "known")

    def __init__(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read: int = 0,
        cache_creation: int = 0,
        reasoning: int = 0,
        known: bool = False,
    ) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cache_read = cache_read
        self.cache_creation = cache_creation
        self.reasoning = reasoning
        # False until a provider reported usage (an interrupted stream may never report it).
        self.known = known

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __repr__(self) -> str:
        return (
            f"Usage(in={self.input_tokens}, out={self.output_tokens}, cache_read={self.cache_read}, "
            f"cache_creation={self.cache_creation}, reasoning={self.reasoning}, known={self.known})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Usage) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ readers

    @classmethod
    def from_openai(cls, u: dict[str, Any]) -> Usage:
        """Chat Completions ``usage`` (``prompt_tokens`` already includes cached tokens)."""
        prompt = u.get("prompt_tokens")
        if prompt is None:  # the Responses API names
            prompt_details = _object(u.get("input_tokens_details"))
            out_details = _object(u.get("output_tokens_details"))
            return cls(
                token_count(u.get("input_tokens")),
                token_count(u.get("output_tokens")),
                token_count(prompt_details.get("cached_tokens")),
                0,
                token_count(out_details.get("reasoning_tokens")),
                True,
            )
        prompt_details = _object(u.get("prompt_tokens_details"))
        out_details = _object(u.get("completion_tokens_details"))
        return cls(
            token_count(prompt),
            token_count(u.get("completion_tokens")),
            token_count(prompt_details.get("cached_tokens")),
            0,
            token_count(out_details.get("reasoning_tokens")),
            True,
        )

    def update_anthropic(self, u: dict[str, Any]) -> None:
        """Merge an Anthropic ``usage`` object: ``input_tokens`` excludes cache reads and writes;
        counts in stream events are cumulative, and a later event may omit the input side."""
        if "input_tokens" in u or "cache_read_input_tokens" in u or "cache_creation_input_tokens" in u:
            self.cache_read = token_count(u.get("cache_read_input_tokens")) or self.cache_read
            self.cache_creation = token_count(u.get("cache_creation_input_tokens")) or self.cache_creation
            raw = u.get("input_tokens")
            if raw is not None:
                self.input_tokens = token_count(raw) + self.cache_read + self.cache_creation
        if "output_tokens" in u:
            self.output_tokens = token_count(u.get("output_tokens"))
        self.known = True

    @classmethod
    def from_anthropic(cls, u: dict[str, Any]) -> Usage:
        usage = cls()
        usage.update_anthropic(u)
        return usage

    @classmethod
    def from_gemini(cls, u: dict[str, Any]) -> Usage:
        """``usageMetadata``: thoughts are not part of ``candidatesTokenCount``."""
        thoughts = token_count(u.get("thoughtsTokenCount"))
        return cls(
            token_count(u.get("promptTokenCount")) + token_count(u.get("toolUsePromptTokenCount")),
            token_count(u.get("candidatesTokenCount")) + thoughts,
            token_count(u.get("cachedContentTokenCount")),
            0,
            thoughts,
            True,
        )

    @classmethod
    def from_bedrock(cls, u: dict[str, Any]) -> Usage:
        """Converse ``usage``: cache reads and writes are reported apart from ``inputTokens``."""
        read = token_count(u.get("cacheReadInputTokens"))
        write = token_count(u.get("cacheWriteInputTokens"))
        return cls(
            token_count(u.get("inputTokens")) + read + write, token_count(u.get("outputTokens")), read, write, 0, True
        )

    # ------------------------------------------------------------------ writers

    def to_openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        }

    def to_anthropic(self) -> dict[str, Any]:
        return {
            "input_tokens": max(0, self.input_tokens - self.cache_read - self.cache_creation),
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
        }

    def to_responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cache_read},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.total_tokens,
        }
