"""The compiled form of ``llm:`` and ``ai`` backends: providers, the model table, virtual
models, and the ``policies.ai`` that shape requests. Built once per config load."""

from __future__ import annotations

import fnmatch
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.credentials import Credentials

from agentgateway.config import referenced
from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.paths import resolve_file
from agentgateway.config.schema import (
    AiBackend,
    AiNamedProvider,
    AiPolicy,
    AiProvider,
    BackendAuth,
    BackendKey,
    BackendTls,
    FileRef,
    LlmModel,
    LlmShortcut,
    PromptGuardRule,
    Secret,
)
from agentgateway.llm.accounting import NO_HOOKS, LlmHooks
from agentgateway.llm.guards import GuardSet, RegexGuard, Rejection, builtin_rule, custom_rule
from agentgateway.llm.providers import AwsSigning, Provider
from agentgateway.llm.redact import Redactor
from agentgateway.upstream.target import HttpTarget, split_host_port

# (host, port, tls settings, label, where) → HttpTarget; provided by the config compiler.
MakeHttpTarget = Callable[[str, int, BackendTls | None, str, str], HttpTarget]

_DEFAULT_BASE = {
    "openAI": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta",
}


class ModelTarget:
    """A provider and the model name to send it (None: the request's model, after aliases)."""

    __slots__ = ("provider", "model")

    def __init__(self, provider: Provider, model: str | None) -> None:
        self.provider = provider
        self.model = model


class ModelRoute:
    """Where requests for one model name go: priority tiers of weighted targets. A failure
    (connect error, timeout, 429, 5xx) moves on to the next target of the tier, then to the
    next tier, before the client sees an error."""

    __slots__ = ("name", "tiers", "timeout", "owner")

    def __init__(
        self, name: str, tiers: tuple[tuple[tuple[ModelTarget, int], ...], ...], timeout: float | None, owner: str
    ) -> None:
        self.name = name
        self.tiers = tiers
        self.timeout = timeout
        self.owner = owner  # owned_by in /v1/models

    def attempts(self) -> list[ModelTarget]:
        """Targets in the order to try them: tier by tier, weighted-random within a tier."""
        out: list[ModelTarget] = []
        for tier in self.tiers:
            if len(tier) == 1:
                out.append(tier[0][0])
                continue
            # weighted shuffle: sort by u^(1/w) descending (Efraimidis-Spirakis)
            keyed = sorted(tier, key=lambda tw: random.random() ** (1.0 / tw[1]), reverse=True)
            out.extend(t for t, _ in keyed)
        return out


# tokenReservation.outputTokens when unset (addition).
DEFAULT_OUTPUT_RESERVATION = 1024


class LlmPolicy:
    """``policies.ai`` compiled: aliases, request shaping and guards."""

    __slots__ = (
        "aliases",
        "alias_patterns",
        "defaults",
        "overrides",
        "prepend",
        "append",
        "request_guards",
        "response_guards",
        "webhooks",
        "default_output_tokens",
    )

    def __init__(
        self,
        aliases: dict[str, str],
        alias_patterns: tuple[tuple[str, str], ...],
        defaults: dict[str, Any],
        overrides: dict[str, Any],
        prepend: tuple[dict[str, str], ...],
        append: tuple[dict[str, str], ...],
        request_guards: GuardSet,
        response_guards: GuardSet,
        webhooks: tuple[tuple[HttpTarget, bool], ...] = (),
        default_output_tokens: int = DEFAULT_OUTPUT_RESERVATION,
    ) -> None:
        self.aliases = aliases
        self.alias_patterns = alias_patterns
        self.defaults = defaults
        self.overrides = overrides
        self.prepend = prepend
        self.append = append
        self.request_guards = request_guards
        self.response_guards = response_guards
        self.webhooks = webhooks  # (target, on_response) of webhook guards
        # reserved against token rate limits for the answer of a request without an output limit
        self.default_output_tokens = default_output_tokens

    def resolve_alias(self, model: str) -> str:
        exact = self.aliases.get(model)
        if exact is not None:
            return exact
        for pattern, target in self.alias_patterns:
            if fnmatch.fnmatchcase(model, pattern):
                return target
        return model


EMPTY_POLICY = LlmPolicy({}, (), {}, {}, (), (), GuardSet(()), GuardSet(()))


class LlmService:
    """A route backend of kind llm: the model table (exact names, then wildcards in order), or
    a single route for every model (an ``ai`` backend)."""

    __slots__ = ("label", "models", "patterns", "default", "listed", "policy", "hooks", "_redactor")
    kind = "llm"

    def __init__(
        self,
        label: str,
        models: dict[str, ModelRoute],
        patterns: tuple[tuple[str, ModelRoute], ...],
        default: ModelRoute | None,
        policy: LlmPolicy,
        hooks: LlmHooks = NO_HOOKS,
    ) -> None:
        self.label = label
        self.models = models
        self.patterns = patterns
        self.default = default
        self.listed = tuple(m for m in models.values())
        self.policy = policy
        self.hooks = hooks
        self._redactor: Redactor | None = None

    @property
    def redactor(self) -> Redactor:
        """Takes every credential of this service's providers out of their errors (made on the
        first error: the model table is complete by then)."""
        redactor = self._redactor
        if redactor is None:
            routes = [*self.models.values(), *(r for _, r in self.patterns)]
            if self.default is not None:
                routes.append(self.default)
            secrets = {
                secret
                for route in routes
                for tier in route.tiers
                for target, _ in tier
                for secret in target.provider.secrets
            }
            redactor = self._redactor = Redactor(secrets)
        return redactor

    def route_for(self, model: str) -> ModelRoute | None:
        route = self.models.get(model)
        if route is not None:
            return route
        for pattern, candidate in self.patterns:
            if fnmatch.fnmatchcase(model, pattern):
                return candidate
        return self.default


# ---------------------------------------------------------------- compile


def read_secret(secret: Secret, base_dir: Path | None, where: str) -> str:
    if isinstance(secret, FileRef):
        path = resolve_file(os.path.expandvars(secret.file), base_dir, f"{where}.file")
        try:
            return referenced.read_text(path).strip()
        except OSError as exc:
            raise ConfigError(f"{where}.file", f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}.file", f"{path} is not a text (UTF-8) file") from None
    return secret


def _backend_key(key: str | BackendKey, base_dir: Path | None, where: str) -> str:
    """The secret of ``backendAuth.key``; the provider kind decides the header it goes in."""
    if isinstance(key, str):
        return key
    if key.location is not None:
        raise ConfigError(f"{where}.location", "not supported for ai backends (each provider has its own header)")
    if (key.value is None) == (key.file is None):
        raise ConfigError(where, "exactly one of value or file must be set")
    if key.value is not None:
        return read_secret(key.value, base_dir, f"{where}.value")
    return read_secret(FileRef(file=key.file or ""), base_dir, where)


def _base_url(url: str, where: str) -> tuple[str, int, bool, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(where, f"{url!r} is not an http(s) URL")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise ConfigError(where, f"{url!r} has an invalid port") from None
    return parts.hostname, port, tls, parts.path.rstrip("/")


def _aws_credentials(auth: BackendAuth | None, where: str) -> Credentials:
    aws = auth.aws if auth else None
    key = aws.access_key_id if aws and aws.access_key_id else os.environ.get("AWS_ACCESS_KEY_ID")
    secret = aws.secret_access_key if aws and aws.secret_access_key else os.environ.get("AWS_SECRET_ACCESS_KEY")
    token = aws.session_token if aws and aws.session_token else os.environ.get("AWS_SESSION_TOKEN")
    if not key or not secret:
        raise ConfigError(
            where,
            "Bedrock needs credentials: backendAuth.aws (accessKeyId, secretAccessKey), AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment, or an API key (apiKey / backendAuth.key)",
        )
    return Credentials(key, secret, token)


class ProviderSpec:
    """The pieces of a provider from either config form, before compilation."""

    def __init__(
        self,
        name: str,
        kind: str,
        model: str | None,
        api_key: str | None,
        base_url: str | None,
        host_override: str | None,
        path_override: str | None,
        path_prefix: str | None,
        tokenize: bool,
        region: str | None = None,
        project: str | None = None,
        azure_resource: str | None = None,
        azure_version: str | None = None,
        auth: BackendAuth | None = None,
        tls: BackendTls | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.model = model
        self.api_key = api_key
        self.base_url = base_url
        self.host_override = host_override
        self.path_override = path_override
        self.path_prefix = path_prefix
        self.tokenize = tokenize
        self.region = region
        self.project = project
        self.azure_resource = azure_resource
        self.azure_version = azure_version
        self.auth = auth
        self.tls = tls


def compile_provider(spec: ProviderSpec, make_http: MakeHttpTarget, where: str) -> Provider:
    kind = spec.kind
    region = spec.region
    azure_version: str | None = None
    # Default endpoint of each kind.
    if kind in _DEFAULT_BASE:
        base = _DEFAULT_BASE[kind]
    elif kind == "vertex":
        if not spec.project:
            raise ConfigError(where, "vertex needs a project (vertexProject / projectId)")
        region = region or "global"
        host = "aiplatform.googleapis.com" if region == "global" else f"{region}-aiplatform.googleapis.com"
        base = f"https://{host}/v1/projects/{spec.project}/locations/{region}"
    elif kind == "bedrock":
        if not region:
            raise ConfigError(where, "bedrock needs a region (awsRegion / region)")
        base = f"https://bedrock-runtime.{region}.amazonaws.com"
    else:  # azure
        if not spec.azure_resource and not spec.base_url and not spec.host_override:
            raise ConfigError(where, "azure needs azureResourceName (or a baseUrl)")
        base = f"https://{spec.azure_resource}.openai.azure.com/openai"
        version = spec.azure_version or "v1"
        if version == "v1":
            base += "/v1"
        else:
            azure_version = version
    if spec.base_url:
        base = spec.base_url
    host, port, tls, path = _base_url(base, f"{where}.baseUrl" if spec.base_url else where)
    if spec.host_override:
        try:
            host, port = split_host_port(spec.host_override)
        except ValueError as exc:
            raise ConfigError(f"{where}.hostOverride", str(exc)) from None
        tls = port == 443
    if spec.path_prefix is not None:
        path = spec.path_prefix.rstrip("/")
    tls_settings = spec.tls
    if tls_settings is None and tls:
        tls_settings = BackendTls()
    target = make_http(host, port, tls_settings, spec.name, where)
    # Credentials: the gateway's own, never the client's.
    key = spec.api_key
    auth = spec.auth
    if auth is not None and (auth.passthrough is not None or auth.gcp is not None):
        kind_name = "passthrough" if auth.passthrough is not None else "gcp"
        raise ConfigError(f"{where}.policies.backendAuth.{kind_name}", "not supported for ai backends yet")
    if key is None and auth is not None and auth.key is not None:
        key = _backend_key(auth.key, None, f"{where}.policies.backendAuth.key")
    aws: AwsSigning | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if kind == "bedrock" and (key is None or (auth is not None and auth.aws is not None)):
        # SigV4 (explicit keys, or the environment's); a Bedrock API key is a bearer token instead
        creds = _aws_credentials(auth, where)
        aws = AwsSigning(creds, (auth.aws.region if auth and auth.aws and auth.aws.region else region) or "")
    if aws is None and key:
        value = key.encode()
        if kind == "anthropic":
            headers = ((b"x-api-key", value),)
        elif kind == "gemini":
            headers = ((b"x-goog-api-key", value),)
        elif kind == "azure":
            headers = ((b"api-key", value),)
        else:  # openAI, vertex (OAuth access token), bedrock API key
            headers = ((b"authorization", b"Bearer " + value),)
    return Provider(
        spec.name,
        kind,
        target,
        path,
        spec.model,
        headers,
        aws,
        spec.path_override,
        azure_version,
        region or "",
        spec.tokenize,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _provider_kind(p: AiProvider, where: str) -> tuple[str, Any]:
    set_kinds = [
        (k, v)
        for k, v in (
            ("openAI", p.open_ai),
            ("anthropic", p.anthropic),
            ("gemini", p.gemini),
            ("vertex", p.vertex),
            ("bedrock", p.bedrock),
            ("azure", p.azure),
        )
        if v is not None
    ]
    if len(set_kinds) != 1:
        raise ConfigError(
            where, "exactly one provider kind must be set (openAI, anthropic, gemini, vertex, bedrock, azure)"
        )
    return set_kinds[0]


def _ai_provider(
    name: str,
    provider: AiProvider,
    host_override: str | None,
    path_override: str | None,
    path_prefix: str | None,
    tokenize: bool,
    auth: BackendAuth | None,
    tls: BackendTls | None,
    make_http: MakeHttpTarget,
    where: str,
) -> Provider:
    kind, cfg = _provider_kind(provider, f"{where}.provider")
    _azure_type(getattr(cfg, "resource_type", None), f"{where}.provider.azure.resourceType")
    spec = ProviderSpec(
        name,
        kind,
        cfg.model,
        None,
        None,
        host_override,
        path_override,
        path_prefix,
        tokenize,
        region=getattr(cfg, "region", None),
        project=getattr(cfg, "project_id", None),
        azure_resource=getattr(cfg, "resource_name", None),
        azure_version=_text(getattr(cfg, "api_version", None)),
        auth=auth,
        tls=tls,
    )
    return compile_provider(spec, make_http, where)


def compile_ai_backend(
    ai: AiBackend,
    label: str,
    where: str,
    make_http: MakeHttpTarget,
    policy: LlmPolicy,
    auth: BackendAuth | None,
    tls: BackendTls | None,
) -> LlmService:
    """``backends: [{ai: ...}]``: every request goes to this provider (or these groups)."""
    own_auth = ai.policies.backend_auth if ai.policies and ai.policies.backend_auth else auth
    own_tls = ai.policies.backend_tls if ai.policies and ai.policies.backend_tls else tls
    if (ai.provider is None) == (not ai.groups):
        raise ConfigError(where, "exactly one of provider or groups must be set")
    tiers: list[tuple[tuple[ModelTarget, int], ...]] = []
    if ai.provider is not None:
        provider = _ai_provider(
            ai.name or label,
            ai.provider,
            ai.host_override,
            ai.path_override,
            ai.path_prefix,
            ai.tokenize,
            own_auth,
            own_tls,
            make_http,
            where,
        )
        tiers.append(((ModelTarget(provider, provider.model), 1),))
    for g, group in enumerate(ai.groups):
        if not group.providers:
            raise ConfigError(f"{where}.groups[{g}].providers", "a group needs at least one provider")
        tier = []
        for k, named in enumerate(group.providers):
            pwhere = f"{where}.groups[{g}].providers[{k}]"
            provider = _named_provider(named, own_auth, own_tls, make_http, pwhere, f"{label}-{g}-{k}")
            tier.append((ModelTarget(provider, provider.model), 1))
        tiers.append(tuple(tier))
    route = ModelRoute(label, tuple(tiers), None, tiers[0][0][0].provider.genai_name)
    return LlmService(label, {}, (), route, policy)


def _named_provider(
    named: AiNamedProvider,
    auth: BackendAuth | None,
    tls: BackendTls | None,
    make_http: MakeHttpTarget,
    where: str,
    fallback: str,
) -> Provider:
    p = named.policies
    return _ai_provider(
        named.name or fallback,
        named.provider,
        named.host_override,
        named.path_override,
        named.path_prefix,
        named.tokenize,
        p.backend_auth if p and p.backend_auth else auth,
        p.backend_tls if p and p.backend_tls else tls,
        make_http,
        where,
    )


def _model_provider(model: LlmModel, make_http: MakeHttpTarget, where: str, base_dir: Path | None) -> Provider:
    params = model.params
    _azure_type(params.azure_resource_type if params else None, f"{where}.params.azureResourceType")
    api_key = read_secret(params.api_key, base_dir, f"{where}.params.apiKey") if params and params.api_key else None
    spec = ProviderSpec(
        model.name,
        model.provider,
        params.model if params else None,
        api_key,
        params.base_url if params else None,
        None,
        None,
        None,
        params.tokenize if params else False,
        region=(params.vertex_region or params.aws_region) if params else None,
        project=params.vertex_project if params else None,
        azure_resource=params.azure_resource_name if params else None,
        azure_version=_text(params.azure_api_version) if params else None,
    )
    return compile_provider(spec, make_http, f"{where}.params" if params else where)


def _azure_type(value: str | None, where: str) -> None:
    """Azure's ``openAI`` resources (``https://<name>.openai.azure.com``, the default) are served;
    the other resource types are refused by name."""
    if value not in (None, "openAI"):
        raise ConfigError(where, f"{value} is not supported (only openAI resources)")


def compile_llm_shortcut(cfg: LlmShortcut, make_http: MakeHttpTarget, base_dir: Path | None) -> LlmService:
    if not cfg.models and not cfg.virtual_models:
        raise ConfigError("llm.models", "the llm shortcut needs at least one model")
    exact: dict[str, ModelRoute] = {}
    patterns: list[tuple[str, ModelRoute]] = []
    names: set[str] = set()
    for i, model in enumerate(cfg.models):
        where = f"llm.models[{i}]"
        if model.name in names:
            raise ConfigError(f"{where}.name", f"duplicate model name {model.name!r}")
        names.add(model.name)
        provider = _model_provider(model, make_http, where, base_dir)
        wildcard = any(c in model.name for c in "*?[")
        # A wildcard model sends the requested name; an exact one its params.model, or its name.
        upstream = provider.model or (None if wildcard else model.name)
        route = ModelRoute(model.name, (((ModelTarget(provider, upstream), 1),),), None, provider.genai_name)
        if wildcard:
            patterns.append((model.name, route))
        else:
            exact[model.name] = route
    service = LlmService("llm", exact, tuple(patterns), None, EMPTY_POLICY)

    def resolve(name: str, where: str) -> ModelTarget:
        route = service.route_for(name)
        if route is None or name in virtual_names:
            raise ConfigError(where, f"no model named {name!r} in llm.models")
        target = route.tiers[0][0][0]
        return ModelTarget(target.provider, target.model or name)

    virtual_names = {v.name for v in cfg.virtual_models}
    for i, vm in enumerate(cfg.virtual_models):
        where = f"llm.virtualModels[{i}]"
        if vm.name in names:
            raise ConfigError(f"{where}.name", f"{vm.name!r} is already a model name")
        names.add(vm.name)
        routing = vm.routing
        if (routing.failover is None) == (routing.weighted is None):
            raise ConfigError(f"{where}.routing", "exactly one of failover or weighted must be set")
        timeout = None
        if routing.failover is not None:
            targets = routing.failover.targets
            if routing.failover.timeout:
                try:
                    timeout = parse_duration(routing.failover.timeout)
                except ValueError as exc:
                    raise ConfigError(f"{where}.routing.failover.timeout", str(exc)) from None
            kind = "failover"
        else:
            assert routing.weighted is not None
            targets = routing.weighted.targets
            kind = "weighted"
        if not targets:
            raise ConfigError(f"{where}.routing.{kind}.targets", "needs at least one target")
        by_priority: dict[int, list[tuple[ModelTarget, int]]] = {}
        for k, t in enumerate(targets):
            twhere = f"{where}.routing.{kind}.targets[{k}]"
            if t.weight <= 0:
                raise ConfigError(f"{twhere}.weight", "must be positive")
            priority = t.priority if kind == "failover" else 0
            by_priority.setdefault(priority, []).append((resolve(t.model, f"{twhere}.model"), t.weight))
        tiers = tuple(tuple(by_priority[p]) for p in sorted(by_priority))
        exact[vm.name] = ModelRoute(vm.name, tiers, timeout, "agentgateway")
    service.listed = tuple(exact.values())
    return service


def compile_policy(ai: AiPolicy | None, where: str, make_http: MakeHttpTarget) -> LlmPolicy:
    if ai is None:
        return EMPTY_POLICY
    aliases: dict[str, str] = {}
    patterns: list[tuple[str, str]] = []
    for name, target in ai.model_aliases.items():
        if any(c in name for c in "*?["):
            patterns.append((name, target))
        else:
            aliases[name] = target
    # most specific pattern first: longer literal part wins
    patterns.sort(key=lambda pt: -len(pt[0].replace("*", "")))
    prompts = ai.prompts
    for key in ("prepend", "append"):
        for k, msg in enumerate(getattr(prompts, key) if prompts else []):
            if msg.role not in ("system", "developer", "user", "assistant"):
                raise ConfigError(f"{where}.prompts.{key}[{k}].role", "must be system, developer, user or assistant")
    guard = ai.prompt_guard
    request_guards, request_hooks = _guards(
        guard.request if guard else [], f"{where}.promptGuard.request", make_http, False
    )
    response_guards, response_hooks = _guards(
        guard.response if guard else [], f"{where}.promptGuard.response", make_http, True
    )
    for key in ("model", "messages", "stream"):
        if key in ai.overrides or key in ai.defaults:
            raise ConfigError(
                f"{where}.overrides", f"{key!r} cannot be set by defaults or overrides (use modelAliases)"
            )
    output_tokens = DEFAULT_OUTPUT_RESERVATION
    if ai.token_reservation is not None:
        output_tokens = ai.token_reservation.output_tokens
        if output_tokens < 0:
            raise ConfigError(f"{where}.tokenReservation.outputTokens", "cannot be negative")
    return LlmPolicy(
        aliases,
        tuple(patterns),
        dict(ai.defaults),
        dict(ai.overrides),
        tuple({"role": m.role, "content": m.content} for m in (prompts.prepend if prompts else [])),
        tuple({"role": m.role, "content": m.content} for m in (prompts.append if prompts else [])),
        request_guards,
        response_guards,
        request_hooks + response_hooks,
        output_tokens,
    )


def _guards(
    rules: list[PromptGuardRule], where: str, make_http: MakeHttpTarget, response: bool
) -> tuple[GuardSet, tuple[tuple[HttpTarget, bool], ...]]:
    guards: list[RegexGuard] = []
    webhooks: list[tuple[HttpTarget, bool]] = []
    for i, rule in enumerate(rules):
        gwhere = f"{where}[{i}]"
        if (rule.regex is None) == (rule.webhook is None):
            raise ConfigError(gwhere, "exactly one of regex or webhook must be set")
        rejection = rule.rejection
        status = rejection.status if rejection else 403
        if not 400 <= status <= 599:
            raise ConfigError(f"{gwhere}.rejection.status", "must be a 4xx or 5xx status")
        message = (
            rejection.body if rejection and rejection.body else None
        ) or "the request was rejected by a prompt guard"
        if rule.webhook is not None:
            host = rule.webhook.target.host
            if not host:
                raise ConfigError(f"{gwhere}.webhook.target.host", "required")
            try:
                h, p = split_host_port(host)
            except ValueError as exc:
                raise ConfigError(f"{gwhere}.webhook.target.host", str(exc)) from None
            webhooks.append((make_http(h, p, None, f"webhook:{host}", f"{gwhere}.webhook"), response))
            continue
        assert rule.regex is not None
        if not rule.regex.rules:
            raise ConfigError(f"{gwhere}.regex.rules", "needs at least one rule")
        compiled = []
        for k, r in enumerate(rule.regex.rules):
            if (r.builtin is None) == (r.pattern is None):
                raise ConfigError(f"{gwhere}.regex.rules[{k}]", "exactly one of builtin or pattern must be set")
            if r.builtin is not None:
                compiled.append(builtin_rule(r.builtin))
            else:
                assert r.pattern is not None
                try:
                    compiled.append(custom_rule(r.pattern, r.name))
                except Exception as exc:
                    raise ConfigError(f"{gwhere}.regex.rules[{k}].pattern", f"invalid regex: {exc}") from None
        guards.append(RegexGuard(tuple(compiled), rule.regex.action == "reject", Rejection(status, message)))
    return GuardSet(tuple(guards)), tuple(webhooks)
