"""Audit 6: rate limits, MCP session identity, CORS/CSRF and TLS reloads, attacked as an
outsider would, through the running daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import binds, free_port, raw_connection, read_response

# ---------------------------------------------------------------- remoteRateLimit cost

# A batch endpoint that costs its batch size, read from the request: the client chooses the
# number. Whatever it writes, the request must be counted (or refused), never let through.
_COSTS = {
    "int": 'int(request.headers["x-batch"])',
    "double": 'double(request.headers["x-batch"])',
}
# (expression kind, value the client sends)
_HUGE = [
    ("int", "9223372036854775807"),  # the largest CEL int: overflows a counter that holds anything
    ("double", "1e30"),  # beyond 64 bits
    ("double", "inf"),
]


def _descriptor(cost: str, **extra: Any) -> dict[str, Any]:
    return {"entries": [{"key": "route", "value": '"batch"'}], "cost": cost, **extra}


@pytest.mark.parametrize(("kind", "value"), _HUGE)
def test_a_huge_cost_is_charged_not_a_redis_failure_let_through(gateway, upstream, redis_server, kind, value):
    """Redis counts in 64-bit integers: a cost beyond them (or one that overflows the counter)
    made INCRBY fail, and `failOpen` (meant for an unreachable Redis) let the request through,
    every time: the client chose to be unlimited. Now the cost is bounded, and charged."""
    up = upstream()
    redis = redis_server()
    port = free_port()
    limit = {
        "domain": "batch",
        "redis": {"url": redis.url},
        "failureMode": "failOpen",
        "descriptors": [_descriptor(_COSTS[kind], limit={"requestsPerUnit": 10, "unit": "hour"})],
    }
    gateway(binds(port, [{"policies": {"remoteRateLimit": limit}, "backends": [{"host": up.address}]}]))
    url = f"http://127.0.0.1:{port}/echo"
    assert httpx.get(url, headers={"x-batch": "5"}).status_code == 200
    statuses = [httpx.get(url, headers={"x-batch": value}).status_code for _ in range(3)]
    assert statuses == [429, 429, 429]
    assert httpx.get(url, headers={"x-batch": "1"}).status_code == 429
    assert len(up.requests()) == 1


@pytest.mark.parametrize(("kind", "value"), [*_HUGE, ("int", "4294967296")])
def test_a_huge_cost_is_charged_by_the_rate_limit_service(gateway, upstream, rls, kind, value):
    """The service's hits_addend is a uint32: a cost beyond it was an internal error (500) of
    the policy chain. Now it is sent as the largest count the protocol carries."""
    up = upstream()
    service = rls(limit=10)
    port = free_port()
    limit = {
        "domain": "batch",
        "host": service.address,
        "failureMode": "failOpen",
        "descriptors": [_descriptor(_COSTS[kind])],
    }
    gateway(binds(port, [{"policies": {"remoteRateLimit": limit}, "backends": [{"host": up.address}]}]))
    url = f"http://127.0.0.1:{port}/echo"
    assert httpx.get(url, headers={"x-batch": "5"}).status_code == 200
    r = httpx.get(url, headers={"x-batch": value})
    assert r.status_code == 429, r.text
    assert httpx.get(url, headers={"x-batch": "1"}).status_code == 429


def test_a_huge_answer_limit_is_not_an_internal_error_with_the_rate_limit_service(tmp_path: Path, gateway, rls):
    """A token reservation is sent to the service as hits_addend (a uint32): a request's
    `max_tokens` beyond it was answered 500 `internal error: Value out of range`."""
    from tests.support.llm import FakeProvider
    from tests.support.llm_fakes import API_KEY

    fake = FakeProvider(tmp_path, "openai")
    try:
        service = rls(limit=100_000)
        port = free_port()
        limit = {
            "domain": "t",
            "host": service.address,
            "descriptors": [{"type": "tokens", "entries": [{"key": "k", "value": '"all"'}]}],
        }
        model = {
            "name": "gpt-4o-mini",
            "provider": "openAI",
            "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1"},
        }
        gateway({"llm": {"port": port, "models": [model], "policies": {"remoteRateLimit": limit}}})
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        hi = [{"role": "user", "content": "hi"}]
        for max_tokens in (2**32, 10**30):
            r = httpx.post(url, json={"model": "gpt-4o-mini", "max_tokens": max_tokens, "messages": hi})
            assert r.status_code == 429, r.text
        assert fake.count() == 0
    finally:
        fake.stop()


# ---------------------------------------------------------------- rate limit service headers


def test_a_header_the_rate_limit_service_sets_replaces_the_clients(gateway, upstream, rls):
    """The service's `request_headers_to_add` are its own, as agentgateway writes them (it
    replaces a header of that name): the client's `x-rls-user: admin` was kept beside the
    service's value (an upstream reading the first saw the client's), and so was its underscore
    spelling `x_rls_user`, which CGI-style upstreams read as the same header."""
    up = upstream()
    service = rls(limit=100, headers={"x-rls-user": "seen"})
    port = free_port()
    limit = {"domain": "api", "host": service.address, "descriptors": [_descriptor('"all"')]}
    limit["descriptors"][0].pop("cost")
    gateway(binds(port, [{"policies": {"remoteRateLimit": limit}, "backends": [{"host": up.address}]}]))
    with raw_connection(port) as s:
        s.sendall(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Rls-User: admin\r\nx_rls_user: admin\r\nX_RLS_USER: root\r\n"
            b"Connection: close\r\n\r\n"
        )
        status, _, body = read_response(s)
    assert status == 200
    headers = [(k.lower(), v) for k, v in json.loads(body)["headers"]]
    assert [v for k, v in headers if k.replace("_", "-") == "x-rls-user"] == ["seen"]
