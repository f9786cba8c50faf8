"""``health``: passive outlier detection. A backend whose responses are unhealthy (a 5xx, or a
connection that fails or times out) is evicted from its route's weighted choice for
``eviction.duration`` (default 3s, times the number of evictions in a row), and comes back by
itself when the time is up. ``consecutiveFailures`` and ``healthThreshold`` (a moving average of
healthy responses, 1.0 = all healthy) gate the eviction as in agentgateway: when either is set,
an unhealthy response evicts only once one of them is crossed. When every backend of a route is
evicted, the route uses them anyway rather than failing.

State is kept per worker process and survives config reloads for as long as the backend and its
policy are unchanged.
"""

from __future__ import annotations

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import Health as HealthConfig
from agentgateway.policy.expression import compile_condition
from agentgateway.policy.timeout import positive_duration

_DEFAULT_EVICTION = 3.0
# Weight of the newest response in the health score (an exponential moving average).
_SCORE_WEIGHT = 0.2


class HealthPolicy:
    kind = "health"
    __slots__ = ("duration", "consecutive", "threshold", "restore", "fingerprint")

    def __init__(self, cfg: HealthConfig, where: str) -> None:
        if cfg.unhealthy_expression is not None and cfg.unhealthy_expression.strip():
            compile_condition(cfg.unhealthy_expression, f"{where}.unhealthyExpression")
        ev = cfg.eviction
        self.duration: float | None = None
        self.consecutive: int | None = None
        self.threshold: float | None = None
        self.restore: float | None = None
        if ev is not None:
            self.duration = (
                positive_duration(ev.duration, f"{where}.eviction.duration") if ev.duration else _DEFAULT_EVICTION
            )
            self.consecutive = ev.consecutive_failures
            for key, value in (
                ("healthThreshold", ev.health_threshold),
                ("restoreHealth", ev.restore_health),
            ):
                if value is not None and not 0.0 <= value <= 1.0:
                    raise ConfigError(f"{where}.eviction.{key}", "must be between 0.0 and 1.0")
            self.threshold = ev.health_threshold
            self.restore = ev.restore_health
        self.fingerprint = (self.duration, self.consecutive, self.threshold, self.restore)


class EndpointHealth:
    """What one worker knows of one backend under one health policy."""

    __slots__ = ("policy", "evicted_until", "failures", "score", "ejections", "evicted")

    def __init__(self, policy: HealthPolicy) -> None:
        self.policy = policy
        self.evicted_until = 0.0
        self.failures = 0
        self.score = 1.0
        self.ejections = 0
        self.evicted = False

    def available(self, now: float) -> bool:
        if now >= self.evicted_until:
            if self.evicted:
                self.evicted = False
                if self.policy.restore is not None:
                    self.score = self.policy.restore
            return True
        return False

    def record(self, healthy: bool, now: float) -> None:
        policy = self.policy
        before = self.score
        if healthy:
            self.score = before + _SCORE_WEIGHT * (1.0 - before)
            self.failures = 0
            if not self.evicted:
                self.ejections = 0
            return
        self.score = before * (1.0 - _SCORE_WEIGHT)
        self.failures += 1
        if policy.duration is None or self.evicted:
            return
        gated = policy.consecutive is not None or policy.threshold is not None
        if gated:
            tripped = (policy.consecutive is not None and 0 < policy.consecutive <= self.failures) or (
                policy.threshold is not None and before < policy.threshold
            )
            if not tripped:
                return
        self.ejections += 1
        self.evicted = True
        self.evicted_until = now + policy.duration * self.ejections
        self.failures = 0
