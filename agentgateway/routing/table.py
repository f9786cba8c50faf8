"""Route selection: listener by host, then the best route by Gateway API precedence.

Precedence (as agentgateway): most specific hostname, then exact path, then the longest prefix or
regex (a regex by the length of its pattern; a prefix before a regex of the same length only by the
rules below), then a method match, then most header matches, then most query matches, then the
order of the config file. Rules are sorted once at compile time, so selection
is a first-match scan over the candidates for the request's host.
"""

from __future__ import annotations

from typing import Generic, TypeVar
from urllib.parse import parse_qsl

from agentgateway._native import Pattern
from agentgateway.routing.hostnames import host_candidates, normalize_host
from agentgateway.routing.route import CompiledRoute

PATH_EXACT, PATH_PREFIX, PATH_REGEX = 0, 1, 2
_SEGMENT_END = (0x2F, 0x3B)  # "/", ";"

Headers = list[tuple[bytes, bytes]]


def compile_regex(text: str) -> Pattern:
    """A regex of a route match, run as agentgateway runs it: the ``regex`` crate's syntax (no
    look-around or back-references: ValueError) and time linear in the input. Python's ``re``
    backtracks, so a pattern such as ``/api/(\\w+/?)+`` let one request for a path that almost
    matched hold a worker's CPU for minutes."""
    return Pattern(text)


class ValueMatcher:
    """Exact or regex match of a header or query value (see ``Pattern.whole``)."""

    __slots__ = ("name", "exact", "regex")

    def __init__(self, name: bytes, exact: bytes | None, regex: Pattern | None) -> None:
        self.name = name
        self.exact = exact
        self.regex = regex

    def test(self, value: bytes | None) -> bool:
        if value is None:
            return False
        if self.exact is not None:
            return value == self.exact
        assert self.regex is not None
        return self.regex.whole(value)


class RouteRule:
    """One ``matches[]`` entry of one route (a route with N matches gives N rules)."""

    __slots__ = (
        "route",
        "path_kind",
        "path",
        "prefix",
        "match_prefix",
        "regex",
        "method",
        "headers",
        "query",
        "order",
        "matches_all",
    )

    def __init__(
        self,
        route: CompiledRoute,
        path_kind: int,
        path: bytes,
        regex: Pattern | None,
        method: bytes | None,
        headers: list[ValueMatcher],
        query: list[ValueMatcher],
        order: int,
    ) -> None:
        self.route = route
        self.path_kind = path_kind
        self.path = path
        # Prefixes match whole path segments and ignore trailing slashes: /api matches /api, /api/
        # and /api/x but not /apix. A segment's parameters belong to it: /api matches /api;v=1/x
        # (servlet containers serve it as /api/x).
        self.prefix = path.rstrip(b"/")
        # What a prefix rewrite replaces (None for exact and regex matches).
        self.match_prefix = self.prefix if path_kind == PATH_PREFIX else None
        self.regex = regex
        self.method = method
        self.headers = headers
        self.query = query
        self.order = order
        # Matches every request (a catch-all prefix and nothing else): ``matches`` is not called.
        self.matches_all = path_kind == PATH_PREFIX and not self.prefix and method is None and not headers and not query

    def sort_key(self) -> tuple[int, int, int, int, int, int]:
        # agentgateway's order: exact paths first, then prefixes and regexes together by length
        # (a regex by the length of its pattern), so ``regex: /admin/.*`` is tried before
        # ``pathPrefix: /``; a catch-all prefix does not take every path a regex route names.
        return (
            0 if self.path_kind == PATH_EXACT else 1,
            -len(self.path),
            0 if self.method else 1,
            -len(self.headers),
            -len(self.query),
            self.order,
        )

    def matches(self, method: bytes, path: bytes, headers: Headers, query: dict[bytes, bytes] | None) -> bool:
        kind = self.path_kind
        if kind == PATH_PREFIX:
            prefix = self.prefix
            if prefix:
                trimmed = path.rstrip(b"/")
                if not trimmed.startswith(prefix):
                    return False
                if len(trimmed) != len(prefix) and trimmed[len(prefix)] not in _SEGMENT_END:
                    return False
        elif kind == PATH_EXACT:
            if path != self.path:
                return False
        else:
            assert self.regex is not None
            # agentgateway's semantics: the leftmost match must span the path. Not a full match
            # by any alternative: ``/pub|/pub/admin`` does not match ``/pub/admin``.
            if not self.regex.whole(path):
                return False
        if self.method is not None and method != self.method:
            return False
        for hm in self.headers:
            if not hm.test(_header(headers, hm.name)):
                return False
        if self.query:
            assert query is not None
            for qm in self.query:
                if not qm.test(query.get(qm.name)):
                    return False
        return True


def _header(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def parse_query(raw: bytes) -> dict[bytes, bytes]:
    """Last value of each query parameter, percent-decoded (the reference's form decoding): as in
    agentgateway, which collects the parameters into a map, so ``?debug=no&debug=true`` is
    ``debug=true`` for a route's query match, as PHP and Rails upstreams read it."""
    out: dict[bytes, bytes] = {}
    for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        out[k.encode("latin-1")] = v.encode("latin-1")
    return out


class RouteTable:
    """Rules of one listener, grouped by the hostname pattern they were declared for."""

    __slots__ = ("_by_pattern", "_host_specific", "_needs_query")

    def __init__(self, rules_by_pattern: dict[bytes, list[RouteRule]]) -> None:
        self._by_pattern = {p: sorted(rs, key=RouteRule.sort_key) for p, rs in rules_by_pattern.items() if rs}
        self._host_specific = any(p for p in self._by_pattern)
        self._needs_query = any(r.query for rs in self._by_pattern.values() for r in rs)

    def select(
        self, host: bytes, method: bytes, path: bytes, headers: Headers, raw_query: bytes
    ) -> CompiledRoute | None:
        rule = self.select_rule(host, method, path, headers, raw_query)
        return rule.route if rule is not None else None

    def select_rule(
        self, host: bytes, method: bytes, path: bytes, headers: Headers, raw_query: bytes
    ) -> RouteRule | None:
        """The matching rule (its route is ``rule.route``; its path match feeds rewrites)."""
        query = parse_query(raw_query) if self._needs_query else None
        if self._host_specific:
            for pattern in host_candidates(normalize_host(host)):
                rules = self._by_pattern.get(pattern)
                if rules:
                    for rule in rules:
                        if rule.matches_all or rule.matches(method, path, headers, query):
                            return rule
            return None
        rules = self._by_pattern.get(b"")
        if rules:
            for rule in rules:
                if rule.matches_all or rule.matches(method, path, headers, query):
                    return rule
        return None

    def is_empty(self) -> bool:
        return not self._by_pattern


L = TypeVar("L")


class ListenerSet(Generic[L]):
    """The listeners of one bind, chosen by the request's host (or the TLS SNI)."""

    __slots__ = ("_by_hostname", "_single")

    def __init__(self, listeners: dict[bytes, L]) -> None:
        self._by_hostname = listeners
        self._single = next(iter(listeners.values())) if len(listeners) == 1 and b"" in listeners else None

    def select(self, host: bytes) -> L | None:
        if self._single is not None:
            return self._single
        for pattern in host_candidates(normalize_host(host)):
            found = self._by_hostname.get(pattern)
            if found is not None:
                return found
        return None

    def values(self) -> list[L]:
        return list(self._by_hostname.values())
