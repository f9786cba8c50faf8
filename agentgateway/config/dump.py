"""The effective config as JSON for ``/config_dump`` and the status page, secrets redacted
(config/redact.py: by the schema's markers, then by value on every string, status included)."""

from __future__ import annotations

from typing import Any

import msgspec

from agentgateway.config.ir import RuntimeConfig
from agentgateway.config.redact import redact_config, scrub_tree
from agentgateway.config.schema import Route, RouteBackend, RouteMatch, TcpRoute


def _describe_match(m: RouteMatch) -> str:
    parts = []
    if isinstance(m.path, str):
        parts.append(f"path {m.path}")
    elif m.path is not None:
        if m.path.exact is not None:
            parts.append(f"path == {m.path.exact}")
        elif m.path.path_prefix is not None:
            parts.append(f"path {m.path.path_prefix}*")
        elif m.path.regex is not None:
            parts.append(f"path ~ {m.path.regex}")
    if m.method:
        parts.append(f"method {m.method}")
    parts += [f"header {h.name}" for h in m.headers]
    parts += [f"query {q.name}" for q in m.query]
    return " & ".join(parts) or "/*"


def _backend_name(b: RouteBackend) -> str:
    if b.host or b.backend:
        return str(b.host or b.backend)
    if b.service is not None:
        return f"service {b.service.name}:{b.service.port}"
    if b.ai is not None:
        return f"ai {b.ai.name or ''}".strip()
    return "mcp" if b.mcp is not None else "-"


def _gateway_refs(refs: str | list[str] | None) -> list[str]:
    if not refs:
        return ["default"]
    return [refs] if isinstance(refs, str) else refs


def _describe_tcp_route(k: int, r: TcpRoute) -> dict[str, Any]:
    name = r.name or f"tcproute{k}"
    return {
        "name": f"{r.namespace}/{name}" if r.namespace else name,
        "hostnames": r.hostnames,
        "backends": [f"{b.host or b.backend} (weight {b.weight})" for b in r.backends],
        "policies": sorted(msgspec.to_builtins(r.policies)) if r.policies is not None else [],
    }


def _describe_route(k: int, r: Route) -> dict[str, Any]:
    name = r.name or f"route{k}"
    policies = msgspec.to_builtins(r.policies) if r.policies is not None else {}
    return {
        "name": f"{r.namespace}/{name}" if r.namespace else name,
        "hostnames": r.hostnames,
        "matches": [_describe_match(m) for m in r.matches],
        "backends": [f"{_backend_name(b)} (weight {b.weight})" for b in r.backends],
        "policies": sorted(policies),
    }


def effective(runtime: RuntimeConfig) -> dict[str, Any]:
    static = runtime.static
    limits = runtime.limits

    def addr(a: tuple[str, int] | None) -> str | None:
        return f"{a[0]}:{a[1]}" if a else None

    binds: list[dict[str, Any]] = []
    for i, bind in enumerate(runtime.source.binds):
        listeners = [
            {
                "name": ls.name or f"listener{j}",
                "hostname": ls.hostname,
                "protocol": ls.protocol,
                "routes": [_describe_route(k, r) for k, r in enumerate(ls.routes)],
                **(
                    {"tcpRoutes": [_describe_tcp_route(k, r) for k, r in enumerate(ls.tcp_routes)]}
                    if ls.tcp_routes is not None
                    else {}
                ),
            }
            for j, ls in enumerate(bind.listeners)
        ]
        binds.append({"index": i, "port": bind.port, "listeners": listeners})
    source = runtime.source
    for name, gw in source.gateways.items():
        if gw.listeners:
            refs = [
                (f"{name}/{ls.name or f'listener{j}'}", ls.hostname, ls.protocol, ls.tls)
                for j, ls in enumerate(gw.listeners)
            ]
        else:
            refs = [(name, gw.hostname, gw.protocol, gw.tls)]
        listeners = []
        for ref, hostname, protocol, tls in refs:
            attached = [
                r for r in source.routes if name in _gateway_refs(r.gateways) or ref in _gateway_refs(r.gateways)
            ]
            tcp_attached = [
                r for r in source.tcp_routes if name in _gateway_refs(r.gateways) or ref in _gateway_refs(r.gateways)
            ]
            entry: dict[str, Any] = {
                "name": ref,
                "hostname": hostname,
                "protocol": protocol or ("HTTPS" if tls else "HTTP"),
                "routes": [_describe_route(k, r) for k, r in enumerate(attached)],
            }
            if tcp_attached:
                entry["tcpRoutes"] = [_describe_tcp_route(k, r) for k, r in enumerate(tcp_attached)]
            listeners.append(entry)
        binds.append({"gateway": name, "port": gw.port, "listeners": listeners})
    return {
        "planes": {
            "admin": addr(static.admin_addr),
            "stats": addr(static.stats_addr),
            "readiness": addr(static.readiness_addr),
        },
        "workers": static.workers,
        "logging": {"format": static.log_format, "level": static.log_level},
        "backend": {
            "connectTimeout": static.connect_timeout,
            "poolIdleTimeout": static.pool_idle_timeout,
            "poolMaxSize": static.pool_max_size,
            "responseHeaderTimeout": static.response_header_timeout,
        },
        "connectionTerminationDeadline": static.termination_deadline,
        "limits": {
            "maxHeaderSize": limits.max_header_size,
            "http1MaxHeaders": limits.max_headers,
            "headerReadTimeout": limits.header_read_timeout,
            "http1IdleTimeout": limits.idle_timeout,
            "maxRequestBodySize": limits.max_request_body_size,
            "maxBufferSize": limits.max_buffer_size,
            "handshakeTimeout": limits.tls_handshake_timeout,
            "requestBodyIdleTimeout": limits.body_idle_timeout,
            "requestBodyMinRate": limits.body_min_rate,
            "requestBodyMinRateGrace": limits.body_min_rate_grace,
            "escapedSlashes": "decode" if limits.decode_escaped_slashes else "reject",
            "trustedProxies": [str(network) for network in limits.trusted_proxies],
            "tcpIdleTimeout": limits.tunnel_idle_timeout,
        },
        "binds": binds,
    }


def config_dump(runtime: RuntimeConfig, status: dict[str, Any], version: str) -> dict[str, Any]:
    """The dump: ``config`` (the decoded file), ``effective`` (with defaults applied), ``status``
    (of the supervisor: generation, readiness, the last reload error) and ``version``."""
    config, secrets = redact_config(runtime.source)
    dump = {"config": config, "effective": effective(runtime), "status": status, "version": version}
    result: dict[str, Any] = scrub_tree(dump, secrets | runtime.env_secrets)
    return result
