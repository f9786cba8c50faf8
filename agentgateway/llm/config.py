"""The compiled form of ``llm:`` and ``ai`` backends: providers, the model table, virtual
models, and the ``policies.ai`` that shape requests. Built once per config load."""

from __future__ import annotations

import fnmatch
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import (
    AiBackend,
    AiNamedProvider,
    AiPolicy,
    AiProvider,
    Authorization,
    BackendAuth,
    BackendTls,
    LlmModel,
    LlmParams,
    LlmProviderDef,
    LlmProviderDefaults,
    LlmProviderRef,
    LlmShortcut,
    PromptGuardRule,
    WebhookGuardSpec,
)
from agentgateway.llm.accounting import NO_HOOKS, LlmHooks
from agentgateway.llm.caching import CachePlan
from agentgateway.llm.endpoints import (
    BUILTIN_KINDS,
    MakeHttpTarget,
    ProviderSpec,
    compile_provider,
    custom_formats,
    preset_spec,
    read_secret,
)
from agentgateway.llm.errors import (
    CHAT,
    COUNT_TOKENS,
    DETECT,
    EMBEDDINGS,
    MESSAGES,
    MODELS,
    PASSTHROUGH,
    RERANK,
    RESPONSES,
)
from agentgateway.llm.guards import GuardSet, RegexGuard, Rejection, WebhookGuard, builtin_rule, custom_rule
from agentgateway.llm.providers import PRESETS, Provider
from agentgateway.llm.redact import Redactor
from agentgateway.llm.transforms import BodyTransform
from agentgateway.llm.vendor_guards import VendorGuard, compile_vendor_guard
from agentgateway.policy.cel import CelRuleSet
from agentgateway.policy.expression import ValueExpression, compile_value
from agentgateway.policy.header_modifier import HeaderEdit
from agentgateway.routing.table import ValueMatcher, compile_regex
from agentgateway.upstream.target import HttpTarget, split_host_port

__all__ = [
    "DEFAULT_OUTPUT_RESERVATION",
    "EMPTY_POLICY",
    "LlmPolicy",
    "LlmService",
    "MakeHttpTarget",
    "ModelOptions",
    "ModelRoute",
    "ModelTarget",
    "compile_ai_backend",
    "compile_llm_shortcut",
    "compile_policy",
]

# policies.ai.routes values → the client API (see errors.py); None: refused (not served here)
ROUTE_TYPES: dict[str, str | None] = {
    "completions": CHAT,
    "messages": MESSAGES,
    "models": MODELS,
    "passthrough": PASSTHROUGH,
    "detect": DETECT,
    "responses": RESPONSES,
    "embeddings": EMBEDDINGS,
    "anthropicTokenCount": COUNT_TOKENS,
    "rerank": RERANK,
    "realtime": None,
    "generateContent": None,
    "geminiCountTokens": None,
}


class ModelShaping:
    """Request shaping of one model (``llm.models[]`` fields, with its provider's defaults),
    applied after the route's ``policies.ai``: its values win."""

    __slots__ = ("defaults", "overrides", "transform", "final_transform", "prompt_caching")

    def __init__(
        self,
        defaults: dict[str, Any],
        overrides: dict[str, Any],
        transform: BodyTransform | None,
        final_transform: BodyTransform | None,
        prompt_caching: CachePlan | None,
    ) -> None:
        self.defaults = defaults
        self.overrides = overrides
        self.transform = transform
        self.final_transform = final_transform
        self.prompt_caching = prompt_caching


class ModelOptions:
    """What one ``llm.models[]`` entry adds: its shaping, its ``authorization`` (CEL rules over the
    request, checked once the model is known) and ``passthrough`` (``detect``/``opaque``: the
    request goes as the client sent it)."""

    __slots__ = ("shaping", "authorization", "passthrough", "request_headers", "response_headers")

    def __init__(
        self,
        shaping: ModelShaping | None,
        authorization: CelRuleSet | None,
        passthrough: str | None,
        request_headers: HeaderEdit | None = None,
        response_headers: HeaderEdit | None = None,
    ) -> None:
        self.shaping = shaping
        self.authorization = authorization
        self.passthrough = passthrough
        # ``requestHeaders`` / ``responseHeaders``: edits of the provider call's headers and of
        # the answer's
        self.request_headers = request_headers
        self.response_headers = response_headers


class ModelTarget:
    """A provider and the model name to send it (None: the request's model, after aliases)."""

    __slots__ = ("provider", "model", "options")

    def __init__(self, provider: Provider, model: str | None, options: ModelOptions | None = None) -> None:
        self.provider = provider
        self.model = model
        self.options = options


class ModelRoute:
    """Where requests for one model name go: priority tiers of weighted targets. A failure
    (connect error, timeout, 429, 5xx) moves on to the next target of the tier, then to the
    next tier, before the client sees an error."""

    __slots__ = ("name", "tiers", "timeout", "owner", "internal")

    def __init__(
        self,
        name: str,
        tiers: tuple[tuple[tuple[ModelTarget, int], ...], ...],
        timeout: float | None,
        owner: str,
        internal: bool = False,
    ) -> None:
        self.name = name
        self.tiers = tiers
        self.timeout = timeout
        self.owner = owner  # owned_by in /v1/models
        # visibility: internal: reachable through virtual models only (not requested, not listed)
        self.internal = internal

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
    """``policies.ai`` compiled: aliases, request shaping, routes and guards."""

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
        "transform",
        "final_transform",
        "prompt_caching",
        "routes",
        "vendor_request",
        "vendor_response",
        "stream_guards",
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
        webhooks: tuple[WebhookGuard, ...] = (),
        default_output_tokens: int = DEFAULT_OUTPUT_RESERVATION,
        transform: BodyTransform | None = None,
        final_transform: BodyTransform | None = None,
        prompt_caching: CachePlan | None = None,
        routes: tuple[tuple[bytes, str], ...] | None = None,
        vendor_request: tuple[VendorGuard, ...] = (),
        vendor_response: tuple[VendorGuard, ...] = (),
        stream_guards: bool = True,
    ) -> None:
        self.aliases = aliases
        self.alias_patterns = alias_patterns
        self.defaults = defaults
        self.overrides = overrides
        self.prepend = prepend
        self.append = append
        self.request_guards = request_guards
        self.response_guards = response_guards
        self.webhooks = webhooks
        # reserved against token rate limits for the answer of a request without an output limit
        self.default_output_tokens = default_output_tokens
        self.transform = transform
        self.final_transform = final_transform
        self.prompt_caching = prompt_caching
        # path suffix → client API, longest first, "*" last (None: the built-in suffixes)
        self.routes = routes
        # openAIModeration, bedrockGuardrails, googleModelArmor, azureContentSafety
        self.vendor_request = vendor_request
        self.vendor_response = vendor_response
        # response guards on streamed answers (promptGuard.streaming: Disabled turns them off)
        self.stream_guards = stream_guards

    def resolve_alias(self, model: str) -> str:
        exact = self.aliases.get(model)
        if exact is not None:
            return exact
        for pattern, target in self.alias_patterns:
            if fnmatch.fnmatchcase(model, pattern):
                return target
        return model

    def route_for_path(self, path: bytes) -> str | None:
        """The client API of a request path by ``routes`` (agentgateway: the longest matching
        suffix, else ``*``, else Chat Completions)."""
        routes = self.routes
        assert routes is not None
        for suffix, api in routes:
            if suffix == b"*" or path.endswith(suffix):
                return api
        return CHAT


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
        self.listed = tuple(m for m in models.values() if not m.internal)
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

    def route_for(self, model: str, direct: bool = True) -> ModelRoute | None:
        """The route of a model name (``direct``: as a client asked for it, so internal models
        are not found)."""
        route = self.models.get(model)
        if route is None:
            for pattern, candidate in self.patterns:
                if fnmatch.fnmatchcase(model, pattern):
                    route = candidate
                    break
            else:
                route = self.default
        if route is not None and route.internal and direct:
            return None
        return route


# ---------------------------------------------------------------- providers


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
            ("custom", p.custom),
        )
        if v is not None
    ]
    if len(set_kinds) != 1:
        raise ConfigError(
            where, "exactly one provider kind must be set (openAI, anthropic, gemini, vertex, bedrock, azure, custom)"
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
    spec = ProviderSpec(name, kind)
    spec.model = cfg.model
    spec.host_override = host_override
    spec.path_override = path_override
    spec.path_prefix = path_prefix
    spec.tokenize = tokenize
    spec.region = getattr(cfg, "region", None)
    spec.project = getattr(cfg, "project_id", None)
    spec.azure_resource = getattr(cfg, "resource_name", None)
    spec.azure_type = getattr(cfg, "resource_type", None)
    spec.azure_version = _text(getattr(cfg, "api_version", None))
    spec.azure_project = getattr(cfg, "project_name", None)
    spec.gemini_native = bool(getattr(cfg, "native_api", False))
    if kind == "bedrock" and (cfg.guardrail_identifier is not None or cfg.guardrail_version is not None):
        if cfg.guardrail_identifier is None or cfg.guardrail_version is None:
            raise ConfigError(f"{where}.provider.bedrock", "guardrailIdentifier and guardrailVersion go together")
        spec.guardrail = (cfg.guardrail_identifier, cfg.guardrail_version)
    if kind == "custom":
        spec.formats = custom_formats([(f.type, f.path) for f in cfg.formats], f"{where}.provider.custom.formats")
        spec.genai_name = cfg.provider_override or "custom"
    spec.auth = auth
    spec.tls = tls
    return compile_provider(spec, make_http, where)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


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


# ---------------------------------------------------------------- the llm: shortcut


def _merge_params(base: LlmParams | None, over: LlmParams | None) -> LlmParams | None:
    """A model's params over its provider's: each field the model sets wins."""
    if base is None or over is None:
        return over or base
    defaults = LlmParams()
    changes = {f: getattr(over, f) for f in LlmParams.__struct_fields__ if getattr(over, f) != getattr(defaults, f)}
    return msgspec.structs.replace(base, **changes)


def _provider_name(value: LlmProviderRef, where: str, providers: dict[str, tuple[LlmProviderDef, int]]) -> Any:
    """(kind or preset, custom provider, provider def) of a model's ``provider``."""
    if isinstance(value, str):
        if value in BUILTIN_KINDS or value in PRESETS:
            return value, None, None
        if value == "copilot":
            raise ConfigError(where, "the copilot provider is not supported")
        known = sorted({*BUILTIN_KINDS, *PRESETS})
        raise ConfigError(where, f"unknown provider {value!r}; one of {', '.join(known)}, {{reference}} or {{custom}}")
    if (value.reference is None) == (value.custom is None):
        raise ConfigError(where, "exactly one of reference or custom must be set")
    if value.custom is not None:
        return "custom", value.custom, None
    ref = providers.get(value.reference or "")
    if ref is None:
        raise ConfigError(f"{where}.reference", f"no provider named {value.reference!r} in llm.providers")
    return None, None, ref


class _ModelSource:
    """One model's provider and params once a reference is resolved."""

    __slots__ = ("kind", "custom", "params", "defaults", "where")

    def __init__(self, kind: str, custom: Any, params: LlmParams | None, defaults: LlmProviderDefaults | None) -> None:
        self.kind = kind
        self.custom = custom
        self.params = params
        self.defaults = defaults


def _resolve_source(
    model: LlmModel, where: str, providers: dict[str, tuple[LlmProviderDef, int]]
) -> tuple[_ModelSource, str]:
    kind, custom, ref = _provider_name(model.provider, f"{where}.provider", providers)
    if ref is None:
        return _ModelSource(kind, custom, model.params, None), where
    pdef, index = ref
    pwhere = f"llm.providers[{index}]"
    pkind, pcustom, pref = _provider_name(pdef.provider, f"{pwhere}.provider", {})
    if pref is not None:
        raise ConfigError(f"{pwhere}.provider", "a provider cannot reference another")
    return _ModelSource(pkind, pcustom, _merge_params(pdef.params, model.params), pdef.defaults), where


def _model_provider(
    model: LlmModel, source: _ModelSource, make_http: MakeHttpTarget, where: str, base_dir: Path | None
) -> Provider:
    params = source.params or LlmParams()
    pwhere = f"{where}.params"
    kind = source.kind
    spec = ProviderSpec(model.name, BUILTIN_KINDS.get(kind, kind))
    if kind in PRESETS:
        preset_spec(spec, kind)
    elif kind == "custom":
        custom = source.custom
        spec.formats = custom_formats([(f.type, f.path) for f in custom.formats], f"{where}.provider.custom.formats")
        spec.genai_name = custom.provider_override or "custom"
        if custom.model is not None:
            spec.model = custom.model
    if params.model is not None:
        spec.model = params.model
    if params.api_key is not None:
        spec.api_key = read_secret(params.api_key, base_dir, f"{pwhere}.apiKey")
    spec.base_url = params.base_url
    spec.host_override = params.host_override
    spec.path_override = params.path_override
    spec.path_prefix = params.path_prefix
    spec.tokenize = params.tokenize
    spec.region = params.vertex_region or params.aws_region
    spec.project = params.vertex_project
    spec.azure_resource = params.azure_resource_name
    spec.azure_type = params.azure_resource_type
    spec.azure_version = _text(params.azure_api_version)
    spec.azure_project = params.azure_project_name
    spec.gemini_native = bool(params.native_api)
    defaults = source.defaults
    if model.backend_tls is not None and model.tls is not None:
        raise ConfigError(f"{where}.tls", "backendTLS and tls are the same setting; set one")
    spec.tls = model.backend_tls or model.tls
    spec.auth = model.auth
    if defaults is not None:
        spec.tls = spec.tls or defaults.backend_tls or defaults.tls
        spec.auth = spec.auth or defaults.auth
    spec.base_dir = base_dir
    return compile_provider(spec, make_http, pwhere)


def _model_options(model: LlmModel, defaults: LlmProviderDefaults | None, where: str) -> ModelOptions | None:
    """A model's own shaping (its fields over its provider's ``defaults``), authorization and
    passthrough; None when it has none."""
    d = defaults or LlmProviderDefaults()
    merged_defaults = {**(d.defaults or {}), **(model.defaults or {})}
    overrides = {**(d.overrides or {}), **(model.overrides or {})}
    transformation = {**(d.transformation or {}), **(model.transformation or {})}
    caching = model.prompt_caching or d.prompt_caching
    for key in ("model", "messages", "stream"):
        if key in overrides or key in merged_defaults:
            raise ConfigError(f"{where}.overrides", f"{key!r} cannot be set by defaults or overrides")
    shaping = None
    if merged_defaults or overrides or transformation or model.final_transformation or caching:
        shaping = ModelShaping(
            merged_defaults,
            overrides,
            BodyTransform(transformation, f"{where}.transformation") if transformation else None,
            BodyTransform(model.final_transformation, f"{where}.finalTransformation")
            if model.final_transformation
            else None,
            CachePlan(caching) if caching else None,
        )
    authorization = _authorization(model.authorization, f"{where}.authorization")
    request_headers = model.request_headers or d.request_headers
    response_headers = model.response_headers or d.response_headers
    if (
        shaping is None
        and authorization is None
        and model.passthrough is None
        and request_headers is None
        and response_headers is None
    ):
        return None
    return ModelOptions(
        shaping,
        authorization,
        model.passthrough,
        HeaderEdit(request_headers, f"{where}.requestHeaders", underscore_spellings=True) if request_headers else None,
        HeaderEdit(response_headers, f"{where}.responseHeaders") if response_headers else None,
    )


def _authorization(cfg: Authorization | None, where: str) -> CelRuleSet | None:
    if cfg is None or not cfg.rules:
        return None
    return CelRuleSet.compile(cfg.rules, f"{where}.rules")


def compile_llm_shortcut(cfg: LlmShortcut, make_http: MakeHttpTarget, base_dir: Path | None) -> LlmService:
    if not cfg.models and not cfg.virtual_models:
        raise ConfigError("llm.models", "the llm shortcut needs at least one model")
    providers: dict[str, tuple[LlmProviderDef, int]] = {}
    for i, pdef in enumerate(cfg.providers):
        if pdef.name in providers:
            raise ConfigError(f"llm.providers[{i}].name", f"duplicate provider name {pdef.name!r}")
        providers[pdef.name] = (pdef, i)
    exact: dict[str, ModelRoute] = {}
    patterns: list[tuple[str, ModelRoute]] = []
    names: set[str] = set()
    for i, model in enumerate(cfg.models):
        where = f"llm.models[{i}]"
        if model.name in names:
            raise ConfigError(f"{where}.name", f"duplicate model name {model.name!r}")
        names.add(model.name)
        source, _ = _resolve_source(model, where, providers)
        provider = _model_provider(model, source, make_http, where, base_dir)
        options = _model_options(model, source.defaults, where)
        wildcard = any(c in model.name for c in "*?[")
        # A wildcard model sends the requested name; an exact one its params.model, or its name.
        upstream = provider.model or (None if wildcard else model.name)
        route = ModelRoute(
            model.name,
            (((ModelTarget(provider, upstream, options), 1),),),
            None,
            provider.genai_name,
            model.visibility == "internal",
        )
        if wildcard:
            patterns.append((model.name, route))
        else:
            exact[model.name] = route
    service = LlmService("llm", exact, tuple(patterns), None, EMPTY_POLICY)

    def resolve(name: str, where: str) -> ModelTarget:
        route = service.route_for(name, direct=False)
        if route is None or name in virtual_names:
            raise ConfigError(where, f"no model named {name!r} in llm.models")
        target = route.tiers[0][0][0]
        return ModelTarget(target.provider, target.model or name, target.options)

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
            target = resolve(t.model, f"{twhere}.model")
            if kind == "failover" and target.options is not None and target.options.authorization is not None:
                # agentgateway: authorization cannot be enforced once a failover picked its target
                raise ConfigError(
                    f"{twhere}.model", f"{t.model!r} has authorization; failover virtual models cannot target it"
                )
            by_priority.setdefault(priority, []).append((target, t.weight))
        tiers = tuple(tuple(by_priority[p]) for p in sorted(by_priority))
        exact[vm.name] = ModelRoute(vm.name, tiers, timeout, "agentgateway")
    service.listed = tuple(r for r in exact.values() if not r.internal)
    return service


# ---------------------------------------------------------------- policies.ai


def compile_policy(
    ai: AiPolicy | None, where: str, make_http: MakeHttpTarget, base_dir: Path | None = None
) -> LlmPolicy:
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
    request_guards, request_hooks, vendor_request = _guards(
        guard.request if guard else [], f"{where}.promptGuard.request", make_http, False, base_dir
    )
    response_guards, response_hooks, vendor_response = _guards(
        guard.response if guard else [], f"{where}.promptGuard.response", make_http, True, base_dir
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
        BodyTransform(ai.transformations, f"{where}.transformations") if ai.transformations else None,
        BodyTransform(ai.final_transformations, f"{where}.finalTransformations") if ai.final_transformations else None,
        CachePlan(ai.prompt_caching) if ai.prompt_caching else None,
        _routes(ai.routes, f"{where}.routes") if ai.routes else None,
        vendor_request,
        vendor_response,
        not (guard is not None and guard.streaming == "Disabled"),
    )


def _routes(routes: Mapping[str, str], where: str) -> tuple[tuple[bytes, str], ...]:
    table: list[tuple[bytes, str]] = []
    for suffix, written in routes.items():
        kind = written[0].lower() + written[1:]  # ``Models``: agentgateway's earlier spelling
        api = ROUTE_TYPES[kind]
        if api is None:
            raise ConfigError(f"{where}.{suffix}", f"route type {kind!r} is not supported")
        if not suffix:
            raise ConfigError(where, "a route suffix cannot be empty")
        table.append((suffix.encode(), api))
    # agentgateway's order: "*" last, longer suffixes first
    table.sort(key=lambda e: (e[0] == b"*", -len(e[0]), e[0]))
    return tuple(table)


def _rejection(rule: PromptGuardRule, where: str) -> Rejection:
    rejection = rule.rejection
    status = rejection.status if rejection else 403
    if not 400 <= status <= 599:
        raise ConfigError(f"{where}.rejection.status", "must be a 4xx or 5xx status")
    body = rejection.body if rejection else None
    if isinstance(body, list):  # agentgateway's Bytes as a list of byte values
        body = bytes(body).decode("utf-8", "replace")
    message = body or "the request was rejected by a prompt guard"
    edit = None
    if rejection is not None and rejection.headers is not None:
        edit = HeaderEdit(rejection.headers, f"{where}.rejection.headers")
    return Rejection(status, message, edit)


# an HTTP header name (RFC 9110 token)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _webhook(cfg: WebhookGuardSpec, target: HttpTarget, response: bool, where: str) -> WebhookGuard:
    headers: list[tuple[bytes, ValueExpression]] = []
    path = method = None
    for name, text in cfg.headers.items():
        hwhere = f"{where}.headers.{name}"
        expression = compile_value(text, hwhere)
        if name == ":path":
            path = expression
        elif name == ":method":
            method = expression
        elif name == ":authority":
            raise ConfigError(hwhere, "not supported (the call goes to the target's host)")
        elif not _HEADER_NAME.fullmatch(name) or name.lower() in ("host", "content-length", "transfer-encoding"):
            raise ConfigError(hwhere, f"{name!r} is not a header the gateway can set")
        else:
            headers.append((name.lower().encode(), expression))
    forward = []
    for k, match in enumerate(cfg.forward_header_matches):
        mwhere = f"{where}.forwardHeaderMatches[{k}]"
        if not _HEADER_NAME.fullmatch(match.name):
            raise ConfigError(f"{mwhere}.name", f"{match.name!r} is not a header name")
        value = match.value
        if isinstance(value, str):
            raise ConfigError(f"{mwhere}.value", f"{value!r} (a match that never holds) is not supported")
        if (value.exact is None) == (value.regex is None):
            raise ConfigError(f"{mwhere}.value", "exactly one of exact or regex must be set")
        regex = None
        if value.regex is not None:
            try:
                regex = compile_regex(value.regex)
            except ValueError as exc:
                raise ConfigError(f"{mwhere}.value.regex", f"invalid regex: {exc}") from None
        exact = value.exact.encode() if value.exact is not None else None
        forward.append(ValueMatcher(match.name.lower().encode(), exact, regex))
    return WebhookGuard(target, response, tuple(headers), path, method, tuple(forward), cfg.failure_mode == "failOpen")


def _guards(
    rules: list[PromptGuardRule], where: str, make_http: MakeHttpTarget, response: bool, base_dir: Path | None
) -> tuple[GuardSet, tuple[WebhookGuard, ...], tuple[VendorGuard, ...]]:
    guards: list[RegexGuard] = []
    webhooks: list[WebhookGuard] = []
    vendors: list[VendorGuard] = []
    for i, rule in enumerate(rules):
        gwhere = f"{where}[{i}]"
        kinds = [
            k
            for k in ("regex", "webhook", "open_ai_moderation", "bedrock_guardrails", "google_model_armor")
            + ("azure_content_safety",)
            if getattr(rule, k) is not None
        ]
        if len(kinds) != 1:
            raise ConfigError(
                gwhere,
                "exactly one of regex, webhook, openAIModeration, bedrockGuardrails, googleModelArmor or "
                "azureContentSafety must be set",
            )
        rejection = _rejection(rule, gwhere)
        if rule.webhook is not None:
            host = rule.webhook.target.host
            if not host:
                raise ConfigError(f"{gwhere}.webhook.target.host", "required")
            try:
                h, p = split_host_port(host)
            except ValueError as exc:
                raise ConfigError(f"{gwhere}.webhook.target.host", str(exc)) from None
            target = make_http(h, p, None, f"webhook:{host}", f"{gwhere}.webhook")
            webhooks.append(_webhook(rule.webhook, target, response, f"{gwhere}.webhook"))
            continue
        if rule.regex is None:
            vendors.append(compile_vendor_guard(rule, rejection, response, gwhere, make_http, base_dir))
            continue
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
        guards.append(RegexGuard(tuple(compiled), rule.regex.action == "reject", rejection))
    return GuardSet(tuple(guards)), tuple(webhooks), tuple(vendors)
