from __future__ import annotations

import collections

from agentgateway.config.compile import compile_config
from agentgateway.config.loader import load_text
from agentgateway.core.request import remove_dot_segments, split_target
from agentgateway.routing.hostnames import host_candidates, normalize_host
from agentgateway.upstream.balance import WeightedChoice


def _table(yaml_routes: str):
    runtime = compile_config(load_text(f"binds: [{{port: 80, listeners: [{{routes: {yaml_routes}}}]}}]"))
    listener = runtime.binds[80].listeners.select(b"x")
    return listener.routes


def test_precedence_exact_prefix_regex_method_headers_query():
    # agentgateway's order: exact paths, then prefixes and regexes together by length (a regex by
    # its pattern's), then a method, then the most headers, then the file's order.
    routes = _table(
        "[{name: re, matches: [{path: {regex: '/a/.*'}}]},"
        " {name: short, matches: [{path: {pathPrefix: /a}}]},"
        " {name: long, matches: [{path: {pathPrefix: /a/b/x}}]},"
        " {name: exact, matches: [{path: {exact: /a/b/c}}]},"
        " {name: m, matches: [{path: {pathPrefix: /m}}]},"
        " {name: method, matches: [{path: {pathPrefix: /m}, method: POST}]},"
        " {name: hdr, matches: [{path: {pathPrefix: /m}, headers: [{name: X-A, value: {exact: '1'}}]}]}]"
    )

    def pick(path, method=b"GET", headers=()):
        route = routes.select(b"h", method, path, list(headers), b"")
        return route.name if route else None

    assert pick(b"/a/b/c") == "exact"
    assert pick(b"/a/b/x/1") == "long"  # a prefix of 6 before a regex of 5
    assert pick(b"/a/b/d") == "re"  # a regex of 5 before a prefix of 2
    assert pick(b"/a") == "short"
    assert pick(b"/m/z") == "m"
    assert pick(b"/m/z", b"POST") == "method"
    assert pick(b"/m/z", headers=[(b"x-a", b"1")]) == "hdr"
    assert pick(b"/ab") is None


def test_host_candidates_and_normalization():
    assert normalize_host(b"API.Example.COM:443") == b"api.example.com"
    assert normalize_host(b"[::1]:80") == b"[::1]"
    assert host_candidates(b"a.b.c") == [b"a.b.c", b"*.b.c", b"*.c", b""]


def test_split_target():
    assert split_target(b"/p?q=1") == (b"/p", b"q=1", None)
    assert split_target(b"http://Host:8/x/y?z") == (b"/x/y", b"z", b"Host:8")
    assert split_target(b"http://host") == (b"/", b"", b"host")
    assert split_target(b"/a/./b/../c#frag") == (b"/a/c", b"", None)
    assert split_target(b"example.com:443") is None


def test_remove_dot_segments():
    assert remove_dot_segments(b"/a/b/../../..") == b"/"
    assert remove_dot_segments(b"/a/./b/") == b"/a/b/"
    assert remove_dot_segments(b"/a/..") == b"/"


def test_weighted_choice_distribution():
    choice = WeightedChoice([("a", 1), ("b", 3), ("z", 0)])
    counts = collections.Counter(choice.pick() for _ in range(8000))
    assert counts["z"] == 0
    assert 1700 < counts["a"] < 2300
    assert WeightedChoice([]).pick() is None
    assert WeightedChoice([("only", 5)]).pick() == "only"
