"""``localRateLimit``: token buckets held by this host, exact across its worker processes.

Each entry is a bucket of ``maxTokens`` that gains ``tokensPerFill`` every ``fillInterval``
(agentgateway's semantics); a request of type ``requests`` takes one token or is answered 429.
Buckets live in the native shared table (``policy/buckets.py``), so N workers enforce one limit.
Answers carry ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset``
(seconds until the next fill), on success as on refusal.

``key`` (an addition) splits a bucket by a value of the request, e.g.
``request.headers["x-user"]``: one bucket per distinct value, requests without it sharing one.
Limits of type ``tokens`` count LLM tokens: the LLM gateway reserves what a call may cost
before making it (``reserve_tokens``, refused when a bucket cannot cover it) and trues the
buckets up to the provider's usage after it (``settle_tokens``); on other traffic they do not
apply (as in agentgateway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway._native import BucketSpec, bucket_key
from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import LocalRateLimit as LocalRateLimitConfig
from agentgateway.core.reply import LocalReply
from agentgateway.observe.counters import COUNTERS
from agentgateway.policy import buckets
from agentgateway.policy.expression import ValueExpression, compile_value

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx

_LIMIT, _REMAINING, _RESET = b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset"
Headers = tuple[tuple[bytes, bytes], ...]


class _Bucket:
    __slots__ = ("spec", "key", "identity", "by", "requests", "limit_value")

    def __init__(self, cfg: LocalRateLimitConfig, where: str, identity: bytes) -> None:
        try:
            interval = parse_duration(cfg.fill_interval)
        except ValueError as exc:
            raise ConfigError(f"{where}.fillInterval", str(exc)) from None
        interval_ns = int(interval * 1e9)
        if interval_ns <= 0:
            raise ConfigError(f"{where}.fillInterval", "must be positive")
        if cfg.max_tokens < 0 or cfg.tokens_per_fill < 0:
            raise ConfigError(where, "maxTokens and tokensPerFill cannot be negative")
        if cfg.tokens_per_fill > cfg.max_tokens:
            raise ConfigError(f"{where}.tokensPerFill", "cannot exceed maxTokens")
        # The identity names the route and the bucket's settings: every worker derives the same
        # table key, a reload that keeps them keeps the bucket, a changed limit starts afresh.
        self.identity = b"%s|%d|%d|%d|%s|%s" % (
            identity,
            cfg.max_tokens,
            cfg.tokens_per_fill,
            interval_ns,
            cfg.type.encode(),
            (cfg.key or "").encode(),
        )
        self.by: ValueExpression | None = compile_value(cfg.key, f"{where}.key") if cfg.key else None
        self.key = bucket_key(self.identity, b"")
        # Every bucket of this rule is marked with its key-less table key: when a crowded
        # window must give up a bucket, a new key takes one of its own rule's, so a flood of
        # client-chosen keys never resets another rule's bucket (a route's or per-address limit).
        self.spec = BucketSpec(cfg.max_tokens, cfg.tokens_per_fill, interval_ns, self.key)
        self.requests = cfg.type == "requests"
        self.limit_value = b"%d" % cfg.max_tokens

    def table_key(self, ctx: RequestCtx) -> int:
        by = self.by
        if by is None:
            return self.key
        return bucket_key(self.identity, by.evaluate(ctx) or b"")


class LocalRateLimit:
    kind = "localRateLimit"
    __slots__ = ("buckets", "request_buckets", "allowed_labels", "limited_labels")

    def __init__(
        self, cfgs: list[LocalRateLimitConfig], where: str, identity: str, labels: tuple[str, str, str]
    ) -> None:
        self.buckets = tuple(_Bucket(cfg, f"{where}[{i}]", f"{identity}#{i}".encode()) for i, cfg in enumerate(cfgs))
        self.request_buckets = tuple(b for b in self.buckets if b.requests)
        self.allowed_labels = (*labels, "local", "allowed")
        self.limited_labels = (*labels, "local", "limited")

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        if not self.request_buckets:
            return None
        table = buckets.table()
        shown: tuple[bytes, int, int] | None = None
        for bucket in self.request_buckets:
            allowed, remaining, reset_ns = table.acquire(bucket.table_key(ctx), bucket.spec)
            if not allowed:
                COUNTERS.inc("agentgateway_rate_limit_decisions", self.limited_labels)
                return LocalReply.text(
                    429,
                    "rate limit exceeded",
                    (
                        (_LIMIT, bucket.limit_value),
                        (_REMAINING, b"%d" % remaining),
                        (_RESET, b"%d" % (reset_ns // 1_000_000_000)),
                    ),
                )
            if shown is None or remaining < shown[1]:
                shown = (bucket.limit_value, remaining, reset_ns)
        COUNTERS.inc("agentgateway_rate_limit_decisions", self.allowed_labels)
        assert shown is not None
        ctx.add_response_header(_LIMIT, shown[0])
        ctx.add_response_header(_REMAINING, b"%d" % shown[1])
        ctx.add_response_header(_RESET, b"%d" % (shown[2] // 1_000_000_000))
        return None

    @property
    def counts_tokens(self) -> bool:
        return len(self.request_buckets) != len(self.buckets)

    def reserve_tokens(self, ctx: RequestCtx, tokens: int) -> TokenHold | Headers:
        """Before an LLM call: take ``tokens`` from every ``tokens`` bucket, all or none. A
        bucket that cannot cover them refuses the call: its ``x-ratelimit-*`` headers are
        returned and what other buckets gave is put back. A reservation larger than a bucket
        takes the whole bucket (so such a call waits for a full bucket rather than never
        running); at least one token is always taken, as agentgateway asks for one."""
        table = buckets.table()
        taken: list[tuple[int, BucketSpec, int]] = []
        for bucket in self.buckets:
            if bucket.requests:
                continue
            key = bucket.table_key(ctx)
            spec = bucket.spec
            cost = max(1, min(tokens, spec.max_tokens))
            allowed, remaining, reset_ns = table.acquire(key, spec, cost)
            if not allowed:
                for k, s, c in taken:
                    table.amend(k, s, -c)
                COUNTERS.inc("agentgateway_rate_limit_decisions", self.limited_labels)
                return (
                    (_LIMIT, bucket.limit_value),
                    (_REMAINING, b"%d" % remaining),
                    (_RESET, b"%d" % (reset_ns // 1_000_000_000)),
                )
            taken.append((key, spec, cost))
        return TokenHold(taken)

    @staticmethod
    def settle_tokens(hold: TokenHold, used: int) -> None:
        """After an LLM call: the buckets are trued up to the ``used`` tokens the provider
        charged (a bucket that cannot pay the difference is emptied, never below zero)."""
        table = buckets.table()
        for key, spec, cost in hold.taken:
            if used != cost:
                table.amend(key, spec, used - cost)


class TokenHold:
    """The tokens one LLM call took from each bucket (table key, spec, tokens)."""

    __slots__ = ("taken",)

    def __init__(self, taken: list[tuple[int, BucketSpec, int]]) -> None:
        self.taken = taken
