"""MCP backends as the data plane sees them: the compiled form of ``mcp: {targets: [...]}``."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import BackendTls, McpAuthorization, McpBackend, McpHost, McpTarget, ToolPinning
from agentgateway.config.tlsfiles import read_pem
from agentgateway.mcp.access import McpAccess
from agentgateway.mcp.authorization import McpAuthorization as CompiledAuthorization
from agentgateway.mcp.openapi import OpenApiError, OpenApiTools
from agentgateway.mcp.pinning import PinStore, ToolPins, read_pin_file, valid_digest
from agentgateway.policy.cel import CelRuleSet
from agentgateway.upstream.backend_auth import compile_backend_auth
from agentgateway.upstream.target import HttpTarget, split_host_port

# Target names appear in tool names (`<target>_<tool>`) and resource URIs (`<target>+<uri>`):
# the delimiters are not allowed in them, so a prefixed name always splits one way.
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")

STDIO, STREAMABLE, SSE, OPENAPI = "stdio", "mcp", "sse", "openapi"

# When no session key is configured, the supervisor makes one for the run and hands it to its
# workers in this environment variable (sessions then work across the workers of one gateway).
EPHEMERAL_KEY_ENV = "AGENTGATEWAY_EPHEMERAL_SESSION_KEY"

# (host, port, tls settings, label, where) → HttpTarget; provided by the config compiler.
MakeHttpTarget = Callable[[str, int, BackendTls | None, str, str], HttpTarget]


class McpTargetSpec:
    """One upstream MCP server. ``kind`` is stdio, mcp (streamable HTTP) or sse (legacy)."""

    __slots__ = (
        "name",
        "kind",
        "cmd",
        "args",
        "env",
        "clear_env",
        "http",
        "path",
        "openapi",
        "openapi_url",
        "openapi_fetch",
        "openapi_failed",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        cmd: str = "",
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        clear_env: bool = False,
        http: HttpTarget | None = None,
        path: bytes = b"",
        openapi: OpenApiTools | None = None,
        openapi_url: tuple[HttpTarget, bytes] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.cmd = cmd
        self.args = args
        self.env = env or {}
        self.clear_env = clear_env
        self.http = http
        self.path = path
        # openapi targets: the parsed document, or where to fetch it (at first use).
        self.openapi = openapi
        self.openapi_url = openapi_url
        # The fetch of that document under way (one for every session waiting on it), and the
        # last failure: (until when it is not fetched again, the message).
        self.openapi_fetch: asyncio.Future[OpenApiTools] | None = None
        self.openapi_failed: tuple[float, str] | None = None

    def describe(self) -> str:
        if self.kind == OPENAPI:
            assert self.http is not None
            return f"OpenAPI on {self.http.host_header.decode()}"
        if self.kind == STDIO:
            return " ".join((self.cmd, *self.args))
        assert self.http is not None
        scheme = "https" if self.http.tls else "http"
        return f"{scheme}://{self.http.host_header.decode()}{self.path.decode()}"


class McpService:
    """A virtual MCP server federating ``targets`` (a route backend of kind mcp)."""

    __slots__ = (
        "label",
        "scope",
        "targets",
        "by_name",
        "stateful",
        "prefix",
        "dedupe",
        "fail_open",
        "target_names",
        "access",
        "dns_rebinding",
    )
    kind = "mcp"

    def __init__(
        self,
        label: str,
        targets: tuple[McpTargetSpec, ...],
        stateful: bool,
        prefix_mode: str,
        fail_open: bool,
        access: McpAccess | None = None,
        dns_rebinding: bool | None = None,
        scope: str = "",
    ) -> None:
        self.label = label
        # Which sessions continue here: the backend's place in the config (a named backend's
        # ``backends[k].mcp``, an inline one's route path). Labels are not unique (every inline
        # backend is "mcp"): a session made on one route must not be continued through another
        # route whose backend is another (it would reach the first route's servers past the
        # second route's policies). Kept over reloads that keep the backend where it was.
        self.scope = scope or label
        self.targets = targets
        self.by_name = {t.name: t for t in targets}
        self.target_names = tuple(t.name for t in targets)
        self.stateful = stateful
        # conditional (the default): a prefix only when there is more than one target.
        self.prefix = prefix_mode == "always" or (prefix_mode == "conditional" and len(targets) > 1)
        # never: names offered by more than one target are hidden (a call could not be routed).
        self.dedupe = prefix_mode == "never"
        self.fail_open = fail_open
        # mcpAuthorization and toolPinning; None when neither is configured (nothing to check).
        self.access = access if access else None
        # dnsRebindingProtection: Host and Origin must be localhost names (mcp/origin.py); None
        # (unset): for clients whose address is a loopback one (mcp/origin.py).
        self.dns_rebinding = dns_rebinding


def _http_location(host: McpHost, default_path: str, where: str) -> tuple[str, int, bool, str]:
    """(host, port, tls, path) from a URL, or from host + port + path."""
    if host.host is None:
        raise ConfigError(where, "host is required (a URL, or a host with port and path)")
    if host.port is not None or host.path is not None:
        if host.port is None or host.path is None:
            raise ConfigError(where, "if port or path is set, both must be set; otherwise give a URL in host")
        if not host.path.startswith("/"):
            raise ConfigError(f"{where}.path", "a path starts with /")
        return host.host, host.port, False, host.path
    text = host.host
    if "://" not in text:
        try:
            name, port = split_host_port(text)
        except ValueError as exc:
            raise ConfigError(f"{where}.host", str(exc)) from None
        return name, port, False, default_path
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"{where}.host", f"{text!r} is not an http(s) URL")
    tls = url.scheme == "https"
    try:
        port = url.port or (443 if tls else 80)
    except ValueError:
        raise ConfigError(f"{where}.host", f"{text!r} has an invalid port") from None
    path = url.path if url.path not in ("", "/") else default_path
    if url.query:
        path += "?" + url.query
    return url.hostname, port, tls, path


def _compile_openapi(cfg: McpTarget, where: str, make_http: MakeHttpTarget, base_dir: Path | None) -> McpTargetSpec:
    api = cfg.openapi
    assert api is not None
    owhere = f"{where}.openapi"
    host, port, implicit_tls, path = _http_location(api, "/", owhere)
    tls = cfg.policies.backend_tls if cfg.policies else None
    if tls is None and implicit_tls:
        tls = BackendTls()
    http = make_http(host, port, tls, cfg.name, owhere)
    _target_auth(cfg, http, where, base_dir)
    source = api.schema
    if source is None:
        raise ConfigError(f"{owhere}.schema", "required: the OpenAPI document (file, inline or url)")
    given = [k for k in ("file", "inline", "url") if getattr(source, k) is not None]
    if len(given) != 1:
        raise ConfigError(f"{owhere}.schema", "exactly one of file, inline or url must be set")
    tools = None
    fetch = None
    if source.url is not None:
        url = urlsplit(source.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"{owhere}.schema.url", f"{source.url!r} is not an http(s) URL")
        secure = url.scheme == "https"
        fetch_target = make_http(url.hostname, url.port or (443 if secure else 80), BackendTls() if secure else None,
                                 f"{cfg.name} (schema)", f"{owhere}.schema")  # fmt: skip
        fetch = (fetch_target, ((url.path or "/") + (f"?{url.query}" if url.query else "")).encode())
    else:
        document: Any = source.inline
        if source.file is not None:
            text = read_pem(source.file, base_dir, f"{owhere}.schema.file")  # any text file
            document = text
        if isinstance(document, str):
            try:
                document = msgspec.yaml.decode(document)
            except msgspec.DecodeError as exc:
                raise ConfigError(f"{owhere}.schema", f"not YAML or JSON: {exc}") from None
        try:
            tools = OpenApiTools(document)
        except OpenApiError as exc:
            raise ConfigError(f"{owhere}.schema", str(exc)) from None
    return McpTargetSpec(cfg.name, OPENAPI, http=http, path=path.encode(), openapi=tools, openapi_url=fetch)


def compile_target(
    cfg: McpTarget, where: str, make_http: MakeHttpTarget, base_dir: Path | None = None
) -> McpTargetSpec:
    if not _TARGET_NAME.match(cfg.name):
        raise ConfigError(
            f"{where}.name",
            f"{cfg.name!r}: target names use letters, digits, '.' and '-' (they prefix tool names)",
        )
    given = ((STDIO, cfg.stdio), (STREAMABLE, cfg.mcp), (SSE, cfg.sse), (OPENAPI, cfg.openapi))
    kinds = [k for k, v in given if v is not None]
    if len(kinds) != 1:
        raise ConfigError(where, "exactly one of stdio, mcp, sse or openapi must be set")
    kind = kinds[0]
    if kind == STDIO:
        assert cfg.stdio is not None
        if not cfg.stdio.cmd:
            raise ConfigError(f"{where}.stdio.cmd", "must not be empty")
        if cfg.policies and cfg.policies.backend_tls:
            raise ConfigError(f"{where}.policies.backendTLS", "a stdio target has no network connection")
        if cfg.policies and cfg.policies.backend_auth:
            raise ConfigError(f"{where}.policies.backendAuth", "a stdio target has no network connection")
        return McpTargetSpec(
            cfg.name,
            STDIO,
            cmd=cfg.stdio.cmd,
            args=tuple(cfg.stdio.args),
            env=dict(cfg.stdio.env),
            clear_env=cfg.stdio.clear_env,
        )
    if kind == OPENAPI:
        return _compile_openapi(cfg, where, make_http, base_dir)
    host_cfg = cfg.mcp if kind == STREAMABLE else cfg.sse
    assert host_cfg is not None
    host, port, implicit_tls, path = _http_location(
        host_cfg, "/mcp" if kind == STREAMABLE else "/sse", f"{where}.{kind}"
    )
    tls = cfg.policies.backend_tls if cfg.policies else None
    if tls is None and implicit_tls:
        tls = BackendTls()  # an https URL means TLS with the system roots
    http = make_http(host, port, tls, cfg.name, f"{where}.{kind}")
    _target_auth(cfg, http, where, base_dir)
    return McpTargetSpec(cfg.name, kind, http=http, path=path.encode())


def _target_auth(cfg: McpTarget, http: HttpTarget, where: str, base_dir: Path | None) -> None:
    """``policies.backendAuth`` of an HTTP target: applied by the client to every request."""
    auth = cfg.policies.backend_auth if cfg.policies else None
    if auth is not None:
        http.auth = compile_backend_auth(auth, f"{where}.policies.backendAuth", http.host, base_dir, mcp=True)


# mcpAuthorization rule sets attached above the backend (route, backend reference), with the
# path of each in the file.
AuthorizationSources = Sequence[tuple[McpAuthorization, str]]


def compile_mcp_backend(
    cfg: McpBackend,
    label: str,
    where: str,
    make_http: MakeHttpTarget,
    base_dir: Path | None = None,
    authorization: AuthorizationSources = (),
) -> McpService:
    if not cfg.targets:
        raise ConfigError(f"{where}.targets", "an MCP backend needs at least one target")
    targets = []
    seen: set[str] = set()
    for i, target in enumerate(cfg.targets):
        spec = compile_target(target, f"{where}.targets[{i}]", make_http, base_dir)
        if spec.name in seen:
            raise ConfigError(f"{where}.targets[{i}].name", f"duplicate target name {spec.name!r}")
        seen.add(spec.name)
        targets.append(spec)
    rules = compile_authorization(cfg, label, where, authorization)
    pins = compile_pinning(cfg.tool_pinning, label, f"{where}.toolPinning", targets, base_dir)
    return McpService(
        label,
        tuple(targets),
        stateful=cfg.stateful_mode == "stateful",
        prefix_mode=cfg.prefix_mode or "conditional",
        fail_open=cfg.failure_mode == "failOpen",
        access=McpAccess(rules, pins),
        dns_rebinding=cfg.dns_rebinding_protection,
        scope=where,
    )


def compile_authorization(
    cfg: McpBackend, label: str, where: str, outer: AuthorizationSources
) -> CompiledAuthorization | None:
    """Per target, every mcpAuthorization rule set that applies to it, concatenated: the route's
    and the backend's (``outer``) and the target's own (agentgateway merges them so)."""
    outer_sets = [CelRuleSet.compile(a.rules, f"{w}.rules") for a, w in outer]
    # One set for the targets without rules of their own: the caller is then fingerprinted once.
    shared = CelRuleSet.concat(outer_sets, f"{where} (mcpAuthorization)")
    by_target: dict[str, CelRuleSet] = {}
    for i, target in enumerate(cfg.targets):
        own = target.policies.mcp_authorization if target.policies else None
        rules = shared
        if own is not None:
            mine = CelRuleSet.compile(own.rules, f"{where}.targets[{i}].policies.mcpAuthorization.rules")
            rules = CelRuleSet.concat([*outer_sets, mine], f"{where}.targets[{i}] (mcpAuthorization)")
        if len(rules):
            by_target[target.name] = rules
    return CompiledAuthorization(by_target, label) if by_target else None


def compile_pinning(
    cfg: ToolPinning | None, label: str, where: str, targets: Sequence[McpTargetSpec], base_dir: Path | None
) -> ToolPins | None:
    if cfg is None:
        return None
    names = {t.name for t in targets}
    for key, digest in cfg.pins.items():
        target, sep, tool = key.partition("_")
        if not sep or not tool or target not in names:
            raise ConfigError(
                f"{where}.pins.{key}",
                f"a pin is named <target>_<tool>, with a target of this backend ({', '.join(sorted(names))})",
            )
        if not valid_digest(digest):
            raise ConfigError(f"{where}.pins.{key}", "a pin is sha256:<64 lower-case hex digits>")
    if cfg.store is not None:
        if not cfg.store:
            raise ConfigError(f"{where}.store", "must not be empty")
        path = Path(cfg.store)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            read_pin_file(path)
        except ValueError as exc:
            raise ConfigError(f"{where}.store", str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"{where}.store", f"cannot be read: {exc}") from None
        store = PinStore(path)
    else:
        # Shared by this run's workers: one file per set of targets (the same servers share pins).
        identity = "\0".join([label, *(f"{t.name}={t.describe()}" for t in targets)])
        store = PinStore(run_name=f"mcp-pins-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json")
    return ToolPins(label, cfg.mode, cfg.pins, cfg.learn, store)
