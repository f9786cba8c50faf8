"""Listener and route selection through the real daemon."""

from __future__ import annotations

import collections

import httpx
import pytest

from tests.support.gateway import binds, free_port


def _route(name, match=None, upstream=None, hostnames=None, weight=None):
    route = {"name": name, "backends": [{"host": upstream.address}]}
    if match is not None:
        route["matches"] = match if isinstance(match, list) else [match]
    if hostnames:
        route["hostnames"] = hostnames
    return route


@pytest.fixture
def named_upstreams(upstream):
    return {
        name: upstream(name)
        for name in ("exact", "prefix", "longprefix", "regex", "method", "header", "query", "fallback")
    }


def test_match_precedence(gateway, named_upstreams):
    u = named_upstreams
    port = free_port()
    routes = [
        # Listed least specific first: precedence must come from the match, not the order.
        _route("fallback", None, u["fallback"]),
        _route("regex", {"path": {"regex": "/api/v[0-9]+/.*"}}, u["regex"]),
        _route("prefix", {"path": {"pathPrefix": "/api"}}, u["prefix"]),
        _route("longprefix", {"path": {"pathPrefix": "/api/v1/"}}, u["longprefix"]),
        _route("exact", {"path": {"exact": "/api/v1/items"}}, u["exact"]),
        _route("method", {"path": {"pathPrefix": "/api"}, "method": "DELETE"}, u["method"]),
        _route(
            "header",
            {"path": {"pathPrefix": "/api"}, "headers": [{"name": "X-Tenant", "value": {"exact": "blue"}}]},
            u["header"],
        ),
        _route(
            "query",
            {"path": {"pathPrefix": "/api"}, "query": [{"name": "debug", "value": {"regex": "1|true"}}]},
            u["query"],
        ),
    ]
    gateway(binds(port, routes))
    base = f"http://127.0.0.1:{port}"

    def served_by(path, method="GET", **kw):
        r = httpx.request(method, base + path, **kw)
        assert r.status_code == 200, r.text
        return r.headers["x-upstream"]

    assert served_by("/api/v1/items") == "exact"
    # prefixes and regexes rank together by length, as in agentgateway: the regex (16
    # characters) before /api/v1/ (8) and /api (4)
    assert served_by("/api/v1/other") == "regex"
    assert served_by("/api/v1") == "longprefix"  # trailing slash of the prefix is ignored
    assert served_by("/api/v2/x") == "regex"
    assert served_by("/apix") == "fallback"  # prefixes match whole segments
    assert served_by("/api/zzz", "DELETE") == "method"
    assert served_by("/api/zzz", headers={"x-tenant": "blue"}) == "header"
    assert served_by("/api/zzz", headers={"x-tenant": "red"}) == "prefix"
    assert served_by("/api/zzz?debug=true") == "query"
    assert served_by("/api/zzz?debug=no") == "prefix"
    assert served_by("/") == "fallback"


def test_regex_path_is_a_full_match(gateway, upstream):
    up = upstream("r")
    port = free_port()
    gateway(binds(port, [_route("r", {"path": {"regex": "/v[0-9]+"}}, up)]))
    assert httpx.get(f"http://127.0.0.1:{port}/v12").status_code == 200
    r = httpx.get(f"http://127.0.0.1:{port}/v12/more")
    assert r.status_code == 404


def test_no_route_is_404_with_a_clear_body(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [_route("only", {"path": {"exact": "/here"}}, up)], name="main"))
    r = httpx.post(f"http://127.0.0.1:{port}/elsewhere", content=b"x")
    assert r.status_code == 404
    assert "route not found" in r.text and "/elsewhere" in r.text and "main" in r.text
    assert gw.metric("agentgateway_requests_total", status="404") == 1


def test_route_hostnames_and_listener_hostnames(gateway, upstream):
    a, b, star, other = upstream("a"), upstream("b"), upstream("star"), upstream("other")
    port = free_port()
    config = {
        "binds": [
            {
                "port": port,
                "listeners": [
                    {
                        "name": "api",
                        "hostname": "api.example.com",
                        "routes": [_route("api", None, a)],
                    },
                    {
                        "name": "wild",
                        "hostname": "*.example.com",
                        "routes": [
                            _route("b", None, b, hostnames=["b.example.com"]),
                            _route("star", None, star),
                        ],
                    },
                    {"name": "default", "routes": [_route("other", None, other)]},
                ],
            }
        ]
    }
    gateway(config)
    url = f"http://127.0.0.1:{port}/echo"

    def served_by(host):
        r = httpx.get(url, headers={"host": host})
        assert r.status_code == 200, r.text
        return r.headers["x-upstream"]

    assert served_by("api.example.com") == "a"
    assert served_by("API.Example.com:8080") == "a"  # case and port do not matter
    assert served_by("b.example.com") == "b"
    assert served_by("x.y.example.com") == "star"
    assert served_by("example.com") == "other"  # a wildcard does not match the bare domain
    assert served_by("localhost") == "other"


def test_weighted_backends(gateway, upstream):
    heavy, light, never = upstream("heavy"), upstream("light"), upstream("never")
    port = free_port()
    route = {
        "backends": [
            {"host": heavy.address, "weight": 3},
            {"host": light.address, "weight": 1},
            {"host": never.address, "weight": 0},
        ]
    }
    gateway(binds(port, [route]))
    counts = collections.Counter()
    with httpx.Client() as client:
        for _ in range(400):
            counts[client.get(f"http://127.0.0.1:{port}/status?code=204").headers["x-upstream"]] += 1
    assert counts["never"] == 0
    assert 240 <= counts["heavy"] <= 360, counts
    assert counts["heavy"] + counts["light"] == 400


def test_named_backend_reference(gateway, upstream):
    up = upstream("named")
    port = free_port()
    config = binds(port, [{"backends": [{"backend": "svc"}]}])
    config["backends"] = [{"name": "svc", "host": up.address}]
    gw = gateway(config)
    r = httpx.get(f"http://127.0.0.1:{port}/echo")
    assert r.headers["x-upstream"] == "named"
    assert gw.metric("agentgateway_requests_total", backend="svc", route="route0") == 1


def test_dot_segments_are_resolved_before_routing(gateway, upstream):
    public, admin = upstream("public"), upstream("admin")
    port = free_port()
    gateway(
        binds(
            port,
            [
                _route("public", {"path": {"pathPrefix": "/public"}}, public),
                _route("admin", {"path": {"pathPrefix": "/admin"}}, admin),
            ],
        )
    )
    with httpx.Client() as client:
        # httpx would normalize the path itself; send the raw target.
        r = client.send(client.build_request("GET", f"http://127.0.0.1:{port}/public/../admin/x"))
    assert r.headers["x-upstream"] == "admin"
    assert r.json()["target"] == "/admin/x"
