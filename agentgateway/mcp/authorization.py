"""``mcpAuthorization``: which tools, prompts and resources of an MCP backend a caller may see and use.

The rules are agentgateway's CEL rule sets (``allow`` / ``deny`` / ``require``), evaluated for one
item at a time with ``mcp`` bound to ``{methodName, tool|prompt|resource: {target, name}}`` (the
client's method; the target's own name of the item; a resource's name is its URI, also given as
``uri``), besides ``request``, ``source`` and what other policies learned about the caller
(``jwt``, ``apiKey``, ``basicAuth``: ``RequestCtx.cel_vars``). The rule sets of the route, of the
backend and of the target apply together, concatenated, as agentgateway merges them.

A list shows each caller only what it may use (filtered when the targets' lists are merged). A
call to something the caller may not use is answered as a name nothing serves is
(``-32602 Unknown tool: <name>``): the answer does not depend on whether the thing exists.

Cost: an evaluation takes a few µs, so verdicts are cached per worker by (what the rules read of
the caller, item). What the rules read of the caller (the request fields and headers they name,
the peer, the variables) is worked out once per request; a list of 500 tools then costs one dict
lookup per tool for a caller seen before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from urllib.parse import unquote

from agentgateway.core.context import RequestCtx
from agentgateway.policy.cel import CelRuleSet

__all__ = ["CURRENT_CALLER", "Caller", "McpAuthorization", "item_kind", "normalize_uri"]

log = logging.getLogger("agentgateway.mcp.authorization")

_CACHE_MAX = 100_000  # cached verdicts per MCP backend and worker; cleared when full
_RESERVED = frozenset(("mcp", "request", "source"))

# What each list holds, as ``mcp.<kind>`` names it.
_ITEM_KIND = {"tools": "tool", "prompts": "prompt", "resources": "resource", "resourceTemplates": "resource"}


def item_kind(list_key: str) -> str:
    """``tool``, ``prompt`` or ``resource`` for a list key (``tools``, ``resourceTemplates``, ...)."""
    return _ITEM_KIND[list_key]


class Caller:
    """The client request being served, as the MCP layer sees it (set once per MCP request)."""

    __slots__ = ("ctx", "_fingerprints", "_variables", "target")

    def __init__(self, ctx: RequestCtx) -> None:
        self.ctx = ctx
        # (Made on first use: most requests meet no mcpAuthorization rule.)
        self._fingerprints: dict[int, tuple[object, ...]] | None = None
        self._variables: dict[int, dict[str, object]] | None = None
        # The target a routed request was resolved to (for the access log and metrics).
        self.target: str | None = None

    def variables(self, rules: CelRuleSet) -> dict[str, object]:
        """The variables other policies learned that ``rules`` read (``jwt``, ``apiKey``, ...)."""
        if self._variables is None:
            self._variables = {}
        found = self._variables.get(id(rules))
        if found is None:
            known = self.ctx.cel_vars or {}
            found = self._variables[id(rules)] = {k: v for k, v in known.items() if k in rules.variables}
        return found

    def fingerprint(self, rules: CelRuleSet) -> tuple[object, ...]:
        """Everything ``rules`` can read of this caller (all but ``mcp``): two callers with the
        same fingerprint get the same verdicts."""
        if self._fingerprints is None:
            self._fingerprints = {}
        found = self._fingerprints.get(id(rules))
        if found is not None:
            return found
        ctx = self.ctx
        parts: list[object] = []
        variables = rules.variables
        if "request" in variables:
            parts.append((ctx.method, ctx.scheme, ctx.host, ctx.path, ctx.target, ctx.version))
            if "headers" in rules.request_fields:
                wanted = rules.header_names
                if wanted is None:
                    parts.append(tuple(ctx.headers))
                else:
                    parts.append(tuple((k, v) for k, v in ctx.headers if k.decode("latin-1") in wanted))
        if "source" in variables:
            parts.append((ctx.client_ip, ctx.client_port))
        known = ctx.cel_vars or {}
        for name in sorted(variables - _RESERVED):
            # repr: exact for the builtin values variables hold; equal reprs mean equal values.
            parts.append((name, repr(known.get(name))))
        found = tuple(parts)
        self._fingerprints[id(rules)] = found
        return found


# Set by the MCP endpoint for the request it serves (its task, and what that task starts).
CURRENT_CALLER: ContextVar[Caller | None] = ContextVar("agentgateway_mcp_caller", default=None)


class McpAuthorization:
    """The compiled rule sets of one MCP backend: per target, every set that applies to it."""

    __slots__ = ("by_target", "label", "_tables", "_size", "_warned")

    def __init__(self, by_target: Mapping[str, CelRuleSet], label: str) -> None:
        # Targets without rules are absent: everything they serve is allowed.
        self.by_target = {target: rules for target, rules in by_target.items() if len(rules)}
        self.label = label
        # (fingerprint, method, kind) → {"target\0name": verdict}: one table per kind of caller.
        self._tables: dict[tuple[object, ...], dict[str, bool]] = {}
        self._size = 0
        self._warned = False

    def __bool__(self) -> bool:
        return bool(self.by_target)

    def allows(self, kind: str, target: str, name: str, method: str) -> bool:
        """May the current caller use (or see) ``kind`` ``name`` of ``target``?"""
        rules = self.by_target.get(target)
        if rules is None:
            return True
        caller = self._caller()
        if caller is None:
            return False
        return self._verdict(self._table(rules, caller, method, kind), rules, caller, kind, target, name, method)

    def allowed_items(self, kind: str, items: Iterable[tuple[str, str]], method: str) -> set[str] | None:
        """Of (target, name) ``items``, the keys (``target\0name``) the caller may see; None when
        it may see them all."""
        caller = self._caller()
        tables: dict[int, dict[str, bool]] = {}
        keys: set[str] = set()
        hidden = False
        for target, name in items:
            key = f"{target}\0{name}"
            rules = self.by_target.get(target)
            if rules is None:
                keys.add(key)
                continue
            if caller is None:
                hidden = True
                continue
            table = tables.get(id(rules))
            if table is None:
                table = tables[id(rules)] = self._table(rules, caller, method, kind)
            verdict = table.get(key)
            if verdict is None:
                verdict = self._verdict(table, rules, caller, kind, target, name, method)
            if verdict:
                keys.add(key)
            else:
                hidden = True
        return keys if hidden else None

    def _caller(self) -> Caller | None:
        caller = CURRENT_CALLER.get()
        if caller is None and not self._warned:
            # A code path that serves MCP without naming its caller: refuse rather than guess.
            log.error("mcpAuthorization of %s evaluated without a caller: denied", self.label)
            self._warned = True
        return caller

    def _table(self, rules: CelRuleSet, caller: Caller, method: str, kind: str) -> dict[str, bool]:
        """The verdicts of callers like this one (same fingerprint) on this method and kind."""
        key = (caller.fingerprint(rules), method, kind)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = {}
        return table

    def _verdict(
        self,
        table: dict[str, bool],
        rules: CelRuleSet,
        caller: Caller,
        kind: str,
        target: str,
        name: str,
        method: str,
    ) -> bool:
        key = f"{target}\0{name}"
        verdict = table.get(key)
        if verdict is not None:
            return verdict
        variables = caller.variables(rules)
        item = {"target": target, "name": name, "uri": name} if kind == "resource" else {"target": target, "name": name}
        verdict = rules.evaluate(caller.ctx, {**variables, "mcp": {"methodName": method, kind: item}}).allowed
        if verdict and kind == "resource":
            # The server may read another spelling of a URI as the resource a rule names (other
            # case, a trailing '/', a query, escapes, dot segments): no deny or require rule may
            # refuse its normal form, with or without a trailing '/', either. (An allow rule
            # must allow the URI as given.)
            normal = normalize_uri(name)
            for form in (normal, normal + "/"):
                if form != name:
                    item = {"target": target, "name": form, "uri": form}
                    decision = rules.evaluate(caller.ctx, {**variables, "mcp": {"methodName": method, kind: item}})
                    if not decision.allowed and decision.rule is not None:
                        verdict = False
                        break
        self._size += 1
        if self._size > _CACHE_MAX:
            # Bounded: names in calls come from clients. Start over (the table in use is kept).
            self._tables = {k: t for k, t in self._tables.items() if t is table}
            table.clear()
            self._size = 1
        table[key] = verdict
        return verdict


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_MAX_DECODINGS = 4


def normalize_uri(uri: str) -> str:
    """The form of a resource URI that the ways of writing one resource share, so that a deny
    rule about it also applies to the others: escapes decoded (repeatedly: ``%252e`` is ``.``),
    no query or fragment (a server may ignore them), scheme and host in lower case, ``\\`` read
    as ``/``, dot segments resolved, repeated and trailing slashes dropped (RFC 3986 §6, and
    more: whatever a server might read as the same name)."""
    for _ in range(_MAX_DECODINGS):
        decoded = unquote(uri)
        if decoded == uri:
            break
        uri = decoded
    uri = uri.split("#", 1)[0].split("?", 1)[0].replace("\\", "/")
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() + ":" if match else ""
    rest = uri[match.end() :] if match else uri
    authority = ""
    if rest.startswith("//"):
        end = rest.find("/", 2)
        end = len(rest) if end < 0 else end
        userinfo, at, host = rest[2:end].rpartition("@")
        authority = "//" + userinfo + at + host.lower()
        rest = rest[end:]
    segments: list[str] = []
    for segment in rest.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    path = "/".join(segments)
    if path and (authority or rest.startswith("/")):
        path = "/" + path
    return scheme + authority + path
