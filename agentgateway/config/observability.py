"""``config.tracing``, ``config.logging.filter``/``fields``, ``config.metrics``,
``frontendPolicies.accessLog`` and ``frontendPolicies.tracing`` compiled into what observe/
reads: OTLP targets, sampling rules, and CEL expressions as plain callables (observe/ sits below
the policy layer that owns CEL, so it receives evaluators, not expressions)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from agentgateway import __version__
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import (
    AccessLogPolicy,
    FrontendTracing,
    LocalConfig,
    LoggingFields,
    SamplingRule,
    TracingSettings,
)
from agentgateway.core.context import RequestCtx
from agentgateway.observe.accesslog import AccessLogSettings, LogShape, OtlpLogSettings
from agentgateway.observe.metrics import MetricSettings
from agentgateway.observe.otlp import OtlpTarget
from agentgateway.observe.tracing import Evaluate, Sampling
from agentgateway.observe.tracing import TracingSettings as CompiledTracing
from agentgateway.policy.cel import CelEvaluationError, CelExpression


def evaluator(text: str, where: str) -> Evaluate:
    """A CEL expression as a callable: its value, or None when the evaluation fails."""
    expression = CelExpression(text, where)

    def evaluate(ctx: RequestCtx, variables: dict[str, object] | None) -> object:
        try:
            return expression.evaluate(ctx, variables)
        except (CelEvaluationError, TypeError, ValueError):
            return None

    return evaluate


def _fields(add: Mapping[str, str] | None, where: str) -> tuple[tuple[str, Evaluate], ...]:
    return tuple((name, evaluator(text, f"{where}.{name}")) for name, text in (add or {}).items())


def _sampling(rule: SamplingRule | None, default: float, where: str) -> Sampling:
    if rule is None:
        return default
    if isinstance(rule, bool):
        return 1.0 if rule else 0.0
    if isinstance(rule, int | float):
        value = float(rule)
    else:
        text = rule.strip()
        if text in ("true", "false"):
            return 1.0 if text == "true" else 0.0
        try:
            value = float(text)
        except ValueError:
            return evaluator(text, where)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(where, f"a sampling probability is 0.0 to 1.0, not {value:g}")
    return value


def _endpoint(value: str, where: str) -> str:
    value = value.strip()
    if not value:
        raise ConfigError(where, "empty endpoint")
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ConfigError(where, f"endpoint scheme {scheme!r}: use http:// or https://")
        return value
    return f"http://{value}"


def _path(value: str | None, default: str, where: str) -> str:
    if value is None:
        return default
    if not value.startswith("/"):
        raise ConfigError(where, "must start with /")
    return value


def resource_defaults() -> dict[str, object]:
    """``service.name`` (``OTEL_SERVICE_NAME``, else agentgateway), ``service.version`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k=v``); the config's ``resources`` override them."""
    attributes: dict[str, object] = {}
    for pair in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = value.strip()
    attributes["service.name"] = os.environ.get("OTEL_SERVICE_NAME") or attributes.get("service.name") or "agentgateway"
    attributes["service.version"] = __version__
    return attributes


def _static_tracing(raw: TracingSettings) -> CompiledTracing | None:
    if raw.otlp_endpoint is None:
        return None
    where = "config.tracing"
    protocol = raw.otlp_protocol or "grpc"
    target = OtlpTarget(
        _endpoint(raw.otlp_endpoint, f"{where}.otlpEndpoint"),
        protocol,
        _path(raw.path, "/v1/traces", f"{where}.path"),
        tuple((raw.headers or {}).items()),
    )
    fields = raw.fields or LoggingFields()
    return CompiledTracing(
        target,
        resource_defaults(),
        _sampling(raw.random_sampling, 0.0, f"{where}.randomSampling"),
        _sampling(raw.client_sampling, 1.0, f"{where}.clientSampling"),
        _fields(fields.add, f"{where}.fields.add"),
        frozenset(fields.remove or ()),
    )


def _frontend_tracing(policy: FrontendTracing, static: CompiledTracing | None) -> CompiledTracing:
    where = "frontendPolicies.tracing"
    if policy.host is None:
        raise ConfigError(where, "host is required (the OTLP collector, host:port)")
    resources = resource_defaults()
    for name, text in (policy.resources or {}).items():
        value = CelExpression(text, f"{where}.resources.{name}")
        try:
            resources[name] = value.evaluate(None, None)
        except (CelEvaluationError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.resources.{name}", f"cannot be evaluated without a request: {exc}") from None
    protocol = policy.protocol or "grpc"
    target = OtlpTarget(_endpoint(policy.host, f"{where}.host"), protocol, _path(policy.path, "/v1/traces", where), ())
    # Sampling: this policy's rules, else config.tracing's, else agentgateway's defaults.
    random_default: Sampling = static.random_sampling if static is not None else 0.0
    client_default: Sampling = static.client_sampling if static is not None else 1.0
    return CompiledTracing(
        target,
        resources,
        _sampling(policy.random_sampling, 0.0, f"{where}.randomSampling")
        if policy.random_sampling is not None
        else random_default,
        _sampling(policy.client_sampling, 1.0, f"{where}.clientSampling")
        if policy.client_sampling is not None
        else client_default,
        _fields(policy.attributes, f"{where}.attributes"),
        frozenset(policy.remove or ()),
        evaluator(policy.filter, f"{where}.filter") if policy.filter else None,
    )


def compile_tracing(cfg: LocalConfig) -> CompiledTracing | None:
    """``frontendPolicies.tracing`` when given (its collector, attributes and sampling, the
    sampling falling back to ``config.tracing``'s), else ``config.tracing``."""
    raw = cfg.config.tracing if cfg.config is not None else None
    static = _static_tracing(raw) if raw is not None else None
    fp = cfg.frontend_policies
    if fp is not None and fp.tracing is not None:
        return _frontend_tracing(fp.tracing, static)
    return static


def compile_access_log(cfg: LocalConfig, tracing: CompiledTracing | None) -> AccessLogSettings | None:
    fp = cfg.frontend_policies
    policy: AccessLogPolicy | None = None
    where = "frontendPolicies.accessLog"
    if fp is not None:
        if fp.access_log is not None and fp.logging is not None:
            raise ConfigError("frontendPolicies.logging", "set accessLog or logging (its older name), not both")
        policy = fp.access_log or fp.logging
        if fp.logging is not None:
            where = "frontendPolicies.logging"
    legacy = cfg.config.logging if cfg.config is not None else None
    filter_text = legacy.filter if legacy is not None else None
    filter_where = "config.logging.filter"
    add: dict[str, tuple[str, str]] = {}
    remove: set[str] = set()
    if legacy is not None and legacy.fields is not None:
        add.update({k: (v, f"config.logging.fields.add.{k}") for k, v in (legacy.fields.add or {}).items()})
        remove.update(legacy.fields.remove or ())
    if policy is not None:
        if policy.filter is not None:
            filter_text, filter_where = policy.filter, f"{where}.filter"
        add.update({k: (v, f"{where}.add.{k}") for k, v in (policy.add or {}).items()})
        remove.update(policy.remove or ())
    if filter_text is None and not add and not remove and (policy is None or policy.otlp is None):
        return None
    shape = LogShape(
        evaluator(filter_text, filter_where) if filter_text is not None else None,
        tuple((name, evaluator(text, w)) for name, (text, w) in add.items()),
        frozenset(remove),
    )
    otlp = _otlp_logs(policy, where, tracing, shape) if policy is not None and policy.otlp is not None else None
    return AccessLogSettings(shape, otlp)


def _otlp_logs(
    policy: AccessLogPolicy, where: str, tracing: CompiledTracing | None, parent: LogShape
) -> OtlpLogSettings:
    """The records' own filter and fields where given, the access log's otherwise."""
    otlp = policy.otlp
    assert otlp is not None
    where = f"{where}.otlp"
    protocol: str | None = otlp.protocol
    if otlp.host is not None:
        endpoint = _endpoint(otlp.host, f"{where}.host")
        headers: tuple[tuple[str, str], ...] = ()
    elif tracing is not None:
        endpoint = tracing.target.endpoint
        headers = tracing.target.headers
        protocol = protocol or tracing.target.protocol
    else:
        raise ConfigError(where, "host is required (or configure tracing, whose collector is then used)")
    target = OtlpTarget(endpoint, protocol or "grpc", _path(otlp.path, "/v1/logs", f"{where}.path"), headers)
    fields = otlp.fields
    shape = LogShape(
        evaluator(otlp.filter, f"{where}.filter") if otlp.filter is not None else parent.filter,
        _fields(fields.add, f"{where}.fields.add") if fields is not None else parent.add,
        frozenset(fields.remove or ()) if fields is not None else parent.remove,
    )
    return OtlpLogSettings(target, tracing.resource if tracing is not None else resource_defaults(), shape)


def compile_metrics(cfg: LocalConfig) -> MetricSettings:
    raw = cfg.config.metrics if cfg.config is not None else None
    if raw is None:
        return MetricSettings()
    labels = _fields(raw.fields.add if raw.fields is not None else None, "config.metrics.fields.add")
    for name, _ in labels:
        if not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ConfigError(f"config.metrics.fields.add.{name}", "a label name is letters, digits and _")
    return MetricSettings(frozenset(raw.remove or ()), labels)
