"""``remoteRateLimit``: limits shared by every replica of the gateway, held by a service.

Two ways to reach the shared counters:

* **Envoy's rate limit service** (agentgateway's protocol): each request's ``descriptors`` (entries
  of key and value, the values evaluated per request) are sent to
  ``envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`` over gRPC at ``host`` (or a
  named ``backend``) for ``domain``. ``OVER_LIMIT`` is answered 429 with the service's headers and
  body; ``OK`` applies its request headers (replacing the client's of that name and its
  underscore spelling) and response headers.
* **Redis** (an addition, for teams without a rate limit service): ``redis.url`` and a ``limit``
  (``requestsPerUnit`` per ``second|minute|hour|day``) on each descriptor. Counters are fixed
  windows, one Redis key per descriptor value and window, incremented atomically by a Lua script.

A descriptor with a value that is absent for a request (a missing header) is left out of the
check, as agentgateway does; no descriptor left means no check. ``failureMode`` decides what a
failed check (service down, timeout) does: ``failClosed`` (default) answers 500, ``failOpen``
lets the request through. 429 answers carry ``x-ratelimit-limit``, ``-remaining`` and ``-reset``
when the service did not send them itself (an addition).

Descriptors of ``type: tokens`` count LLM tokens and apply on LLM routes only (llm/budgets.py):
before the provider call what the call may cost is reserved (refused, in the client API's
format, when the limit cannot cover it), and once the provider reported its usage the counters
are trued up in the background (``hits_addend`` for the service, ``INCRBY`` for Redis). On other
routes they are left out, as agentgateway does.

A descriptor's ``cost`` (CEL) is what one request counts on it, as in agentgateway: evaluated
when the request is checked for ``type: requests`` (default 1), once the LLM call is over for
``type: tokens`` (default ``llm.totalTokens``; ``llm.inputTokens``, ``llm.outputTokens`` and the
request's variables are there). An expression that fails, or is not a number, skips the
descriptor (a token reservation made on it is given back). A cost beyond 2^32-1 (infinity
included) counts 2^32-1, the most ``hits_addend`` carries.

gRPC and Redis clients are made on first use in the worker and shared by every policy that
names the same service, across config reloads.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import Descriptor as DescriptorConfig
from agentgateway.config.schema import RemoteRateLimit as RemoteRateLimitConfig
from agentgateway.core.reply import LocalReply
from agentgateway.observe.counters import COUNTERS
from agentgateway.observe.tracing import end_call, start_call
from agentgateway.policy.cel import CelEvaluationError, CelExpression
from agentgateway.policy.expression import ValueExpression, compile_value
from agentgateway.policy.header_modifier import service_header

# ``isinstance`` with a tuple: ``a | b`` would build a union object on every call.
_NUMBER = (int, float)

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.upstream.target import HttpTarget

log = logging.getLogger("agentgateway.policy")

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# The most one check counts: the rate limit service's ``hits_addend`` is a uint32. A larger cost
# (a client's number read by ``cost``, a request's ``max_tokens``) counts as this many, so it
# cannot make the check fail instead: the protocol refused it (an internal error), and Redis
# refused a count beyond its 64-bit counters, which ``failOpen`` then let through.
_MAX_HITS = 0xFFFF_FFFF
_DEFAULT_TIMEOUT = 1.0
_LIMIT, _REMAINING, _RESET = b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset"

# Atomically count one hit per key and report the count and the time left in its window.
# KEYS: one per descriptor; ARGV[1]: the cost; ARGV[1 + i]: the window of KEYS[i] in ms.
_REDIS_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCRBY', key, ARGV[1])
  if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', key, ARGV[i + 1]) end
  out[2 * i - 1] = n
  out[2 * i] = redis.call('PTTL', key)
end
return out
"""


# Token reservations: take ARGV[i] on KEYS[i] only if every key stays within its limit
# (ARGV[n + i]); a key made here expires after its window (ARGV[2n + i] ms). Answers
# {1, count, ttl, ...} when taken, {0, i, count, ttl} for the first key that cannot cover it.
_REDIS_RESERVE = """
local n = #KEYS
for i, key in ipairs(KEYS) do
  local have = tonumber(redis.call('GET', key) or '0')
  if have + tonumber(ARGV[i]) > tonumber(ARGV[n + i]) then
    return {0, i, have, redis.call('PTTL', key)}
  end
end
local out = {1}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCRBY', key, ARGV[i])
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[2 * n + i]) end
  out[#out + 1] = count
  out[#out + 1] = redis.call('PTTL', key)
end
return out
"""
# The true-up: add ARGV[i] (negative: give back) to KEYS[i] while its window lasts, never below 0.
_REDIS_TRUE_UP = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    if redis.call('INCRBY', key, ARGV[i]) < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  end
end
return 1
"""


class RemoteHold:
    """The tokens one LLM call reserved: the descriptors it was checked on, the Redis keys of
    the windows it took from (None with the rate limit service) and what each one took."""

    __slots__ = ("checks", "keys", "taken", "ctx")

    def __init__(
        self, checks: list[tuple[_Descriptor, list[tuple[str, str]]]], keys: list[str] | None, taken: tuple[int, ...]
    ) -> None:
        self.checks = checks
        self.keys = keys
        self.taken = taken
        # the request, for the descriptors' cost once the call is over
        self.ctx: RequestCtx | None = None


class RateLimitUnavailable(Exception):
    """The check could not be made (service down, timeout, bad answer)."""


class _Descriptor:
    __slots__ = ("entries", "requests", "limit", "window", "cost")

    def __init__(self, cfg: DescriptorConfig, where: str, redis: bool) -> None:
        if not cfg.entries:
            raise ConfigError(f"{where}.entries", "a descriptor needs at least one entry")
        self.entries: tuple[tuple[str, ValueExpression], ...] = tuple(
            (e.key, compile_value(e.value, f"{where}.entries[{i}].value")) for i, e in enumerate(cfg.entries)
        )
        self.requests = cfg.type == "requests"
        self.cost = CelExpression(cfg.cost, f"{where}.cost") if cfg.cost is not None else None
        self.limit = 0
        self.window = 0
        if redis:
            if cfg.limit is None:
                raise ConfigError(f"{where}.limit", "is required with redis (requestsPerUnit and unit)")
            if cfg.limit.requests_per_unit < 0:
                raise ConfigError(f"{where}.limit.requestsPerUnit", "cannot be negative")
            self.limit = cfg.limit.requests_per_unit
            self.window = _UNITS[cfg.limit.unit]
        elif cfg.limit is not None:
            raise ConfigError(f"{where}.limit", "only with redis (the rate limit service holds the limits)")

    def cost_of(self, ctx: RequestCtx | None, default: int) -> int | None:
        """What this request counts here: ``cost`` (None when it fails or is no number: the
        descriptor is skipped), else ``default``."""
        if self.cost is None:
            return default
        try:
            value = self.cost.evaluate(ctx, ctx.cel_vars if ctx is not None else None)
        except CelEvaluationError:
            return None
        if isinstance(value, bool) or not isinstance(value, _NUMBER) or value != value:
            return None
        if value >= _MAX_HITS:  # infinity included
            return _MAX_HITS
        return max(int(value), 0)

    def evaluate(self, ctx: RequestCtx) -> list[tuple[str, str]] | None:
        out = []
        for key, expr in self.entries:
            value = expr.evaluate(ctx)
            if value is None:
                return None
            out.append((key, value.decode("latin-1")))
        return out


class RemoteRateLimit:
    kind = "remoteRateLimit"
    is_async = True
    __slots__ = ("domain", "descriptors", "fail_open", "client", "labels", "counts_tokens")

    def __init__(
        self,
        cfg: RemoteRateLimitConfig,
        where: str,
        target: HttpTarget | None,
        labels: tuple[str, str, str],
    ) -> None:
        if not cfg.domain:
            raise ConfigError(f"{where}.domain", "must not be empty")
        redis = cfg.redis is not None
        self.domain = cfg.domain
        self.descriptors = tuple(
            _Descriptor(d, f"{where}.descriptors[{i}]", redis) for i, d in enumerate(cfg.descriptors)
        )
        self.fail_open = cfg.failure_mode in ("failOpen", "FailOpen")
        timeout = _DEFAULT_TIMEOUT
        if cfg.timeout is not None:
            try:
                timeout = parse_duration(cfg.timeout)
            except ValueError as exc:
                raise ConfigError(f"{where}.timeout", str(exc)) from None
        self.client: _RlsClient | _RedisClient
        if cfg.redis is not None:
            rtimeout = timeout
            if cfg.redis.timeout is not None:
                try:
                    rtimeout = parse_duration(cfg.redis.timeout)
                except ValueError as exc:
                    raise ConfigError(f"{where}.redis.timeout", str(exc)) from None
            if not cfg.redis.url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(f"{where}.redis.url", "must be a redis://, rediss:// or unix:// URL")
            self.client = _RedisClient(cfg.redis.url, rtimeout)
        else:
            assert target is not None
            if target.tls is not None:
                raise ConfigError(where, "backendTLS to the rate limit service is not supported yet")
            self.client = _RlsClient(f"{target.host}:{target.port}", timeout)
        self.labels = labels
        self.counts_tokens = any(not d.requests for d in self.descriptors)

    def _checks(self, ctx: RequestCtx, requests: bool) -> list[tuple[_Descriptor, list[tuple[str, str]]]]:
        """The descriptors of one kind (requests or tokens) with their values for this request."""
        checks = []
        for descriptor in self.descriptors:
            if descriptor.requests == requests:
                entries = descriptor.evaluate(ctx)
                if entries:
                    checks.append((descriptor, entries))
        return checks

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None:
        checks = self._checks(ctx, requests=True)
        if not any(d.cost is not None for d, _ in checks):
            return await self._check(ctx, checks, 1)
        # descriptors with a cost of their own are counted by it, one call per distinct cost
        by_cost: dict[int, list[tuple[_Descriptor, list[tuple[str, str]]]]] = {}
        for descriptor, entries in checks:
            hits = descriptor.cost_of(ctx, 1)
            if hits:
                by_cost.setdefault(hits, []).append((descriptor, entries))
        for hits, group in by_cost.items():
            reply = await self._check(ctx, group, hits)
            if reply is not None:
                return reply
        return None

    async def reserve_tokens(self, ctx: RequestCtx, tokens: int) -> tuple[LocalReply | None, RemoteHold | None]:
        """Before an LLM call: ``tokens`` taken on the ``tokens`` descriptors (the answer when
        refused, and what was taken, for the true-up). Redis takes them only when every
        descriptor can cover them, all or none (a reservation larger than a limit takes the
        whole limit); the rate limit service is sent them as ``hits_addend`` and counts them
        whether it refuses or not, as Envoy's service does. A failed service lets the call
        through with ``failOpen`` (nothing held: its usage is added afterwards)."""
        checks = self._checks(ctx, requests=False)
        if not checks:
            return None, None
        tokens = min(max(tokens, 1), _MAX_HITS)
        client = self.client
        # The true-up after the call runs once the request is over: only the reservation is a span.
        span = start_call(
            ctx,
            "rate_limit reserve",
            {"agw.policy": "remoteRateLimit", "agw.rate_limit.domain": self.domain, "agw.rate_limit.tokens": tokens},
        )
        try:
            if isinstance(client, _RedisClient):
                reply, hold = await client.reserve(self.domain, checks, ctx, tokens)
            else:
                reply = await client.check(self.domain, checks, ctx, tokens)
                hold = RemoteHold(checks, None, (tokens,) * len(checks))
        except RateLimitUnavailable as exc:
            if span is not None:
                end_call(span, 0, str(exc))
            if self.fail_open:
                self._count("failed_open")
                return None, RemoteHold(checks, None, (0,) * len(checks))
            self._count("failed_closed")
            return LocalReply.text(500, f"rate limit service unavailable: {exc}"), None
        self._count("allowed" if reply is None else "limited")
        if span is not None:
            span.attributes["agw.rate_limit.result"] = "allowed" if reply is None else "limited"
            end_call(span, 0)
        if hold is not None:
            hold.ctx = ctx
        return reply, (None if reply is not None else hold)

    async def settle_tokens(self, hold: RemoteHold, used: int) -> None:
        """After an LLM call: the counters trued up to the ``used`` tokens the provider charged
        (or a descriptor's ``cost``). Redis takes back what was reserved and not used (in the
        window it was taken from); the rate limit service cannot give hits back (``hits_addend``
        is unsigned), so only tokens beyond the reservation are added there. A failure is logged
        (the tokens are not counted)."""
        client = self.client
        costs = [descriptor.cost_of(hold.ctx, used) for descriptor, _ in hold.checks]
        try:
            if isinstance(client, _RedisClient) and hold.keys is not None:
                # a skipped descriptor gives its reservation back
                deltas = tuple((cost or 0) - taken for cost, taken in zip(costs, hold.taken, strict=True))
                await client.true_up(hold.keys, deltas)
                return
            reserved = max(hold.taken)
            by_extra: dict[int, list[tuple[_Descriptor, list[tuple[str, str]]]]] = {}
            for check, cost in zip(hold.checks, costs, strict=True):
                if cost is not None and cost > reserved:
                    by_extra.setdefault(cost - reserved, []).append(check)
            for extra, group in by_extra.items():
                await client.check(self.domain, group, None, extra)
        except RateLimitUnavailable as exc:
            log.warning("remoteRateLimit %s: %d tokens not counted: %s", self.domain, used, exc)

    async def _check(
        self, ctx: RequestCtx, checks: list[tuple[_Descriptor, list[tuple[str, str]]]], hits: int
    ) -> LocalReply | None:
        if not checks:
            return None
        attributes: dict[str, object] = {"agw.policy": "remoteRateLimit", "agw.rate_limit.domain": self.domain}
        span = start_call(ctx, "rate_limit check", attributes)
        try:
            reply = await self.client.check(self.domain, checks, ctx, hits)
        except RateLimitUnavailable as exc:
            if span is not None:
                end_call(span, 0, str(exc))
            if self.fail_open:
                self._count("failed_open")
                return None
            self._count("failed_closed")
            return LocalReply.text(500, f"rate limit service unavailable: {exc}")
        self._count("allowed" if reply is None else "limited")
        if span is not None:
            span.attributes["agw.rate_limit.result"] = "allowed" if reply is None else "limited"
            end_call(span, 0)
        return reply

    def _count(self, result: str) -> None:
        COUNTERS.inc("agentgateway_rate_limit_decisions", (*self.labels, "remote", result))


def _limit_headers(limit: int, remaining: int, reset_seconds: int) -> tuple[tuple[bytes, bytes], ...]:
    return ((_LIMIT, b"%d" % limit), (_REMAINING, b"%d" % max(remaining, 0)), (_RESET, b"%d" % reset_seconds))


# ---------------------------------------------------------------- Envoy rate limit service (gRPC)

_channels: dict[str, Any] = {}


class _RlsClient:
    __slots__ = ("address", "timeout")

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    async def check(
        self, domain: str, checks: list[tuple[_Descriptor, list[tuple[str, str]]]], ctx: RequestCtx | None, hits: int
    ) -> LocalReply | None:
        """Count ``hits`` on every descriptor; the 429 when one is over its limit. The service's
        headers are applied to ``ctx`` (None: a count after the answer, nothing to apply)."""
        # Imported on first use: only workers with a remote rate limit pay for gRPC.
        import grpc
        from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
        from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

        channel = _channels.get(self.address)
        if channel is None:
            channel = _channels[self.address] = grpc.aio.insecure_channel(self.address)
        request = rls_pb2.RateLimitRequest(
            domain=domain,
            hits_addend=min(hits, _MAX_HITS),
            descriptors=[
                ratelimit_pb2.RateLimitDescriptor(
                    entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries]
                )
                for _, entries in checks
            ],
        )
        try:
            response = await rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise RateLimitUnavailable(f"{exc.code().name} from {self.address}") from None
        code = response.overall_code
        if code == rls_pb2.RateLimitResponse.OVER_LIMIT:
            headers = _service_headers(response.response_headers_to_add, _NOT_RELAYED)
            if not any(name == _LIMIT for name, _ in headers):
                headers += _status_headers(response.statuses)
            body = bytes(response.raw_body)
            if not body:
                return LocalReply.text(429, "rate limit exceeded", headers)
            return LocalReply(429, headers, body, "rate limit exceeded")
        if code != rls_pb2.RateLimitResponse.OK:
            raise RateLimitUnavailable(f"unknown overall code {code} from {self.address}")
        if ctx is None:
            return None
        _set_request_headers(ctx, _service_headers(response.request_headers_to_add, _FRAMING))
        for name, value in _service_headers(response.response_headers_to_add, _NOT_RELAYED):
            ctx.add_response_header(name, value)
        return None


def _key_part(text: str) -> str:
    """An entry's key or value in a Redis key, its separators (``|``, ``=``) and ``%`` escaped:
    two clients' entries never spell the same key (``a=x|b=y`` from ``a: "x|b=y"`` is not
    ``a: "x", b: "y"``'s). A value without them (almost all) is kept as it is, so existing
    counters keep their keys."""
    if "|" in text or "=" in text or "%" in text:
        return text.replace("%", "%25").replace("|", "%7C").replace("=", "%3D")
    return text


# Headers a service's answer may not add: the request's framing and routing (a second
# Content-Length or Transfer-Encoding would frame the body differently upstream), and the
# answer's framing.
_FRAMING = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"host", b"upgrade", b"te", b"trailer", b"expect")
)
_NOT_RELAYED = frozenset((b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te", b"trailer"))


def _service_headers(values: Any, refused: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    """The headers of a service's answer that may be written: valid (``service_header``) and not
    ``refused``; the others are dropped (logged)."""
    out = []
    for h in values:
        checked = service_header(h.key, bytes(h.raw_value) or h.value)
        if checked is None or checked[0] in refused:
            log.warning("rate limit service header %r dropped: not a header the gateway may write", h.key[:64])
            continue
        out.append(checked)
    return out


def _set_request_headers(ctx: RequestCtx, headers: list[tuple[bytes, bytes]]) -> None:
    """The service's request headers replace the client's of the same name (as agentgateway
    writes them), and its underscore spelling: CGI-style upstreams (WSGI, PHP, Rack) read
    ``x_user`` as ``x-user``, so a client's ``x_user: admin`` would stand beside the service's."""
    for name, value in headers:
        names = (name, name.replace(b"-", b"_"))
        ctx.headers[:] = [(k, v) for k, v in ctx.headers if k not in names]
        ctx.headers.append((name, value))


def _status_headers(statuses: Any) -> list[tuple[bytes, bytes]]:
    """x-ratelimit-* from the most constrained descriptor status that carries a limit."""
    best = None
    for status in statuses:
        if status.HasField("current_limit") and (best is None or status.limit_remaining < best.limit_remaining):
            best = status
    if best is None:
        return []
    reset = best.duration_until_reset.seconds + (1 if best.duration_until_reset.nanos else 0)
    return list(_limit_headers(best.current_limit.requests_per_unit, best.limit_remaining, reset))


# ---------------------------------------------------------------- Redis (addition)

_redis_clients: dict[str, Any] = {}


class _RedisClient:
    __slots__ = ("url", "timeout", "_script")

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._script: Any = None

    def _connection(self) -> Any:
        import redis.asyncio

        key = f"{self.url}|{self.timeout}"
        client = _redis_clients.get(key)
        if client is None:
            client = _redis_clients[key] = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        return client

    @staticmethod
    def _keys(domain: str, checks: list[tuple[_Descriptor, list[tuple[str, str]]]]) -> tuple[list[str], list[str]]:
        """The key of each descriptor's current window, and how long it lives (ms)."""
        now = time.time()
        keys = []
        windows = []
        for descriptor, entries in checks:
            window = descriptor.window
            index = math.floor(now / window)
            text = "|".join(f"{_key_part(k)}={_key_part(v)}" for k, v in entries)
            keys.append(f"agw:rl:{domain}:{window}:{index}:{text}")
            windows.append(str(window * 1000 + 1000))
        return keys, windows

    def _scripts(self) -> Any:
        """The check, reserve and true-up scripts (registered on first use)."""
        if self._script is None:
            client = self._connection()
            self._script = (
                client.register_script(_REDIS_SCRIPT),
                client.register_script(_REDIS_RESERVE),
                client.register_script(_REDIS_TRUE_UP),
            )
        return self._script

    async def reserve(
        self, domain: str, checks: list[tuple[_Descriptor, list[tuple[str, str]]]], ctx: RequestCtx, tokens: int
    ) -> tuple[LocalReply | None, RemoteHold]:
        import redis.exceptions

        _, reserve, _ = self._scripts()
        keys, windows = self._keys(domain, checks)
        taken = tuple(max(1, min(tokens, descriptor.limit)) for descriptor, _ in checks)
        limits = [str(descriptor.limit) for descriptor, _ in checks]
        try:
            out = await reserve(keys=keys, args=[*map(str, taken), *limits, *windows])
        except (redis.exceptions.RedisError, OSError) as exc:
            raise RateLimitUnavailable(f"redis {self.url}: {exc}") from None
        hold = RemoteHold(checks, keys, taken)
        if int(out[0]) == 0:
            descriptor = checks[int(out[1]) - 1][0]
            count, ttl_ms = int(out[2]), int(out[3])
            reset = max(1, math.ceil(ttl_ms / 1000)) if ttl_ms > 0 else descriptor.window
            headers = _limit_headers(descriptor.limit, descriptor.limit - count, reset)
            return LocalReply.text(429, "rate limit exceeded", headers), hold
        worst: tuple[int, int, int] | None = None
        for i, (descriptor, _) in enumerate(checks):
            count, ttl_ms = int(out[1 + 2 * i]), int(out[2 + 2 * i])
            reset = max(1, math.ceil(ttl_ms / 1000)) if ttl_ms > 0 else descriptor.window
            if worst is None or descriptor.limit - count < worst[1]:
                worst = (descriptor.limit, descriptor.limit - count, reset)
        assert worst is not None
        for name, value in _limit_headers(*worst):
            ctx.add_response_header(name, value)
        return None, hold

    async def true_up(self, keys: list[str], deltas: tuple[int, ...]) -> None:
        import redis.exceptions

        if not any(deltas):
            return
        _, _, true_up = self._scripts()
        try:
            await true_up(keys=keys, args=[str(d) for d in deltas])
        except (redis.exceptions.RedisError, OSError) as exc:
            raise RateLimitUnavailable(f"redis {self.url}: {exc}") from None

    async def check(
        self, domain: str, checks: list[tuple[_Descriptor, list[tuple[str, str]]]], ctx: RequestCtx | None, hits: int
    ) -> LocalReply | None:
        import redis.exceptions

        script, _, _ = self._scripts()
        keys, windows = self._keys(domain, checks)
        try:
            counts = await script(keys=keys, args=[str(hits), *windows])
        except (redis.exceptions.RedisError, OSError) as exc:
            raise RateLimitUnavailable(f"redis {self.url}: {exc}") from None
        worst: tuple[int, int, int] | None = None
        over = False
        for i, (descriptor, _) in enumerate(checks):
            count, ttl_ms = int(counts[2 * i]), int(counts[2 * i + 1])
            remaining = descriptor.limit - count
            reset = max(1, math.ceil(ttl_ms / 1000)) if ttl_ms > 0 else descriptor.window
            if count > descriptor.limit:
                over = True
            if worst is None or remaining < worst[1]:
                worst = (descriptor.limit, remaining, reset)
        assert worst is not None
        headers = _limit_headers(*worst)
        if over:
            return LocalReply.text(429, "rate limit exceeded", headers)
        if ctx is not None:
            for name, value in headers:
                ctx.add_response_header(name, value)
        return None
