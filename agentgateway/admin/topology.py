"""The running config as the UI draws it: binds → listeners → routes → backends, with the policies
that apply at each level and, for routes a playground can try, how to reach them on this host.

Built from the decoded config as JSON builtins with secrets redacted (``/config_dump``'s
``config``), walked by agentgateway's key names without knowing every policy: a policy or
backend kind added later shows up by its key without a change here. Each route has an ``id``,
its path in the file (``binds[0].listeners[0].routes[2]``, ``routes[1]``, ``mcp``, ``llm``), by
which the playgrounds name it; the admin plane resolves the id against the running config
again on every call, so a page can never name an address.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

# Route kinds a playground can try.
MCP, LLM, A2A, HTTP = "mcp", "llm", "a2a", "http"


def _keys(node: object) -> list[str]:
    return sorted(node) if isinstance(node, dict) else []


def _describe_match(match: Json) -> str:
    parts = []
    path = match.get("path") or {}
    if "exact" in path:
        parts.append(f"path = {path['exact']}")
    elif "pathPrefix" in path:
        parts.append(f"path {path['pathPrefix']}*")
    elif "regex" in path:
        parts.append(f"path ~ {path['regex']}")
    if match.get("method"):
        parts.append(f"method {match['method']}")
    for h in match.get("headers") or []:
        parts.append(f"header {h.get('name', '?')}")
    for q in match.get("query") or []:
        parts.append(f"query {q.get('name', '?')}")
    return " & ".join(parts) or "/*"


def _backend_kind(backend: Json, named: dict[str, Json]) -> str:
    if "mcp" in backend:
        return MCP
    if "ai" in backend:
        return LLM
    ref = backend.get("backend")
    if isinstance(ref, str) and ref in named:
        return _backend_kind(named[ref], {})
    return HTTP


def _models_of_ai(ai: Json) -> list[str]:
    """Model names a route's ``ai`` backend fixes (empty: the request's model is used)."""
    out: list[str] = []
    providers = [ai] + [p for g in ai.get("groups") or [] for p in g.get("providers") or []]
    for p in providers:
        for settings in (p.get("provider") or {}).values():
            if isinstance(settings, dict) and isinstance(settings.get("model"), str):
                out.append(settings["model"])
    return sorted(set(out))


def _describe_backend(backend: Json, named: dict[str, Json]) -> Json:
    target = named.get(backend["backend"], {}) if isinstance(backend.get("backend"), str) else backend
    kind = _backend_kind(backend, named)
    out: Json = {
        "kind": kind,
        "weight": backend.get("weight", 1),
        "policies": _keys(backend.get("policies")) or _keys(target.get("policies")),
    }
    if "backend" in backend:
        out["label"] = f"backend {backend['backend']}"
    elif "host" in backend:
        out["label"] = str(backend["host"])
    if kind == MCP:
        mcp = target.get("mcp") or {}
        out["label"] = out.get("label") or "MCP"
        out["targets"] = [_describe_target(t) for t in mcp.get("targets") or []]
        out["policies"] = sorted({*out["policies"], *(k for k in ("toolPinning",) if k in mcp)})
    elif kind == LLM:
        ai = target.get("ai") or {}
        providers = [ai] + [p for g in ai.get("groups") or [] for p in g.get("providers") or []]
        names = [
            f"{p.get('name') or 'ai'} ({', '.join(_keys(p.get('provider')))})" for p in providers if p.get("provider")
        ]
        out["label"] = out.get("label") or "LLM: " + ", ".join(names)
        out["models"] = _models_of_ai(ai)
        out["policies"] = sorted({*out["policies"], *_keys(ai.get("policies"))})
    return out


def _describe_target(target: Json) -> Json:
    kind = next((k for k in ("stdio", "mcp", "sse", "openapi") if k in target), "?")
    spec = target.get(kind) or {}
    if kind == "stdio":
        where = " ".join([str(spec.get("cmd", "")), *map(str, spec.get("args") or [])]).strip()
    else:
        where = str(spec.get("host") or spec.get("schema") or "")
    return {"name": target.get("name", "?"), "kind": kind, "where": where, "policies": _keys(target.get("policies"))}


def _call(port: int, route: Json, listener_hostname: str | None, tls: bool, kind: str) -> Json | None:
    """How the playground reaches ``route``: port, path base, Host and the headers its matches
    need; None when no request can be built for it (a path regex, a header regex)."""
    if kind == HTTP:
        return None
    headers: list[list[str]] = []
    base = ""
    matches = route.get("matches") or [{}]
    chosen = None
    for match in matches:
        path = match.get("path") or {}
        if "regex" in path:
            continue
        if any("regex" in (h.get("value") or {}) for h in match.get("headers") or []):
            continue
        chosen = match
        base = path.get("exact") or path.get("pathPrefix") or ""
        break
    if chosen is None:
        return None
    for h in chosen.get("headers") or []:
        value = h.get("value") or {}
        if "exact" in value:
            headers.append([str(h.get("name", "")).lower(), str(value["exact"])])
    query = "&".join(
        f"{q.get('name')}={(q.get('value') or {}).get('exact', '')}"
        for q in chosen.get("query") or []
        if "exact" in (q.get("value") or {})
    )
    base = base.rstrip("/")
    if kind == MCP and not base:
        base = "/mcp"
    hostnames = [h for h in route.get("hostnames") or [] if isinstance(h, str)]
    host = hostnames[0] if hostnames else listener_hostname
    if host and host.startswith("*."):
        host = "playground." + host[2:]
    return {
        "port": port,
        "base": base,
        "query": query,
        "host": host or f"127.0.0.1:{port}",
        "tls": tls,
        "headers": headers,
        "method": chosen.get("method"),
    }


def _route(route_id: str, route: Json, port: int, listener: Json, named: dict[str, Json]) -> Json:
    backends = [_describe_backend(b, named) for b in route.get("backends") or [] if isinstance(b, dict)]
    policies = route.get("policies") or {}
    kind = HTTP
    if any(b["kind"] == MCP for b in backends):
        kind = MCP
    elif any(b["kind"] == LLM for b in backends):
        kind = LLM
    elif "a2a" in policies:
        kind = A2A
    models = sorted({m for b in backends for m in b.get("models", [])})
    tls = listener.get("protocol") == "HTTPS" or "tls" in listener
    return {
        "id": route_id,
        "name": route.get("name") or route_id,
        "hostnames": route.get("hostnames") or [],
        "matches": [_describe_match(m) for m in route.get("matches") or []] or ["/*"],
        "policies": _keys(policies),
        "kind": kind,
        "backends": backends,
        "models": models,
        "call": _call(port, route, listener.get("hostname"), tls, kind),
    }


def _gateway_refs(refs: object) -> list[str]:
    if not refs:
        return ["default"]
    return [refs] if isinstance(refs, str) else [str(r) for r in refs] if isinstance(refs, list) else []


def topology(config: Json) -> Json:
    """The picture of ``config`` (decoded, redacted builtins)."""
    named = {b["name"]: b for b in config.get("backends") or [] if isinstance(b, dict) and "name" in b}
    binds: list[Json] = []
    for i, bind in enumerate(config.get("binds") or []):
        port = int(bind.get("port", 0))
        listeners = []
        for j, ls in enumerate(bind.get("listeners") or []):
            routes = [
                _route(f"binds[{i}].listeners[{j}].routes[{k}]", r, port, ls, named)
                for k, r in enumerate(ls.get("routes") or [])
            ]
            listeners.append(_listener(ls.get("name") or f"listener{j}", ls, routes))
        binds.append({"port": port, "source": f"binds[{i}]", "listeners": listeners})
    attached = list(enumerate(config.get("routes") or []))
    for name, gw in (config.get("gateways") or {}).items():
        port = int(gw.get("port", 0))
        entries = (
            [(f"{name}/{ls.get('name') or f'listener{j}'}", ls) for j, ls in enumerate(gw["listeners"])]
            if gw.get("listeners")
            else [(name, gw)]
        )
        listeners = []
        for ref, ls in entries:
            routes = [
                _route(f"routes[{k}]", r, port, ls, named)
                for k, r in attached
                if name in _gateway_refs(r.get("gateways")) or ref in _gateway_refs(r.get("gateways"))
            ]
            listeners.append(_listener(ref, ls, routes))
        binds.append({"port": port, "source": f"gateways.{name}", "listeners": listeners})
    mcp = config.get("mcp")
    if isinstance(mcp, dict):
        port = int(mcp.get("port", 3000))
        backend = {
            "kind": MCP,
            "label": "MCP",
            "weight": 1,
            "policies": _keys(mcp.get("toolPinning") and {"toolPinning": 1}),
        }
        backend["targets"] = [_describe_target(t) for t in mcp.get("targets") or []]
        route = {
            "id": "mcp",
            "name": "mcp",
            "hostnames": [],
            "matches": ["path = /mcp", "path = /sse"],
            "policies": _keys(mcp.get("policies")),
            "kind": MCP,
            "backends": [backend],
            "models": [],
            "call": {
                "port": port,
                "base": "/mcp",
                "query": "",
                "host": f"127.0.0.1:{port}",
                "tls": False,
                "headers": [],
                "method": None,
            },
        }
        binds.append({"port": port, "source": "mcp", "listeners": [_listener("mcp", {}, [route])]})
    llm = config.get("llm")
    if isinstance(llm, dict):
        port = int(llm.get("port", 4000))
        models = [m.get("name") for m in llm.get("models") or []] + [
            v.get("name") for v in llm.get("virtualModels") or []
        ]
        providers = sorted({str(m.get("provider")) for m in llm.get("models") or []})
        route = {
            "id": "llm",
            "name": "llm",
            "hostnames": [],
            "matches": ["/*"],
            "policies": _keys(llm.get("policies")),
            "kind": LLM,
            "backends": [
                {
                    "kind": LLM,
                    "label": "LLM: " + ", ".join(providers),
                    "weight": 1,
                    "policies": [],
                    "models": [m for m in models if isinstance(m, str)],
                }
            ],
            "models": sorted(m for m in models if isinstance(m, str)),
            "call": {
                "port": port,
                "base": "",
                "query": "",
                "host": f"127.0.0.1:{port}",
                "tls": False,
                "headers": [],
                "method": None,
            },
        }
        binds.append({"port": port, "source": "llm", "listeners": [_listener("llm", {}, [route])]})
    frontend = config.get("frontendPolicies") or {}
    return {
        "binds": binds,
        "frontendPolicies": _keys(frontend),
        "backends": [{"name": n, **_describe_backend({"backend": n}, named)} for n in sorted(named)],
    }


def _listener(name: str, ls: Json, routes: list[Json]) -> Json:
    gateway_policies = [k for k in ("jwtAuth", "basicAuth", "apiKey", "authorization") if k in ls]
    return {
        "name": name,
        "hostname": ls.get("hostname"),
        "protocol": ls.get("protocol") or ("HTTPS" if "tls" in ls else "HTTP"),
        "policies": gateway_policies,
        "routes": routes,
    }


def find_route(picture: Json, route_id: str) -> Json | None:
    for bind in picture["binds"]:
        for listener in bind["listeners"]:
            for route in listener["routes"]:
                if route["id"] == route_id:
                    return route  # type: ignore[no-any-return]
    return None
