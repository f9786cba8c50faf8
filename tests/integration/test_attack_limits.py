"""Audit 6: rate limits, MCP session identity, CORS/CSRF and TLS reloads, attacked as an
outsider would, through the running daemon."""

from __future__ import annotations

import json
import time
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


# ---------------------------------------------------------------- identities without `sub`

_MCP_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
_MCP_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def _mcp_post(port: int, body: dict, token: str, session: str | None = None) -> httpx.Response:
    headers = {**_MCP_ACCEPT, "authorization": f"Bearer {token}"}
    if session:
        headers["mcp-session-id"] = session
    return httpx.post(f"http://127.0.0.1:{port}/mcp", json=body, headers=headers, timeout=20)


def test_tokens_without_sub_do_not_share_an_mcp_session(gateway, idp):
    """Client-credentials tokens often carry no `sub` (the client is `client_id` or `azp`). The
    caller's identity was `jwt:<iss> ` for all of them, so one client could continue, and end,
    another's MCP session (and share its extAuthz cache entries and session quota). Without `sub`
    the identity is a digest of the verified claims (less the per-token `exp`, `iat`, `nbf`,
    `jti`): the same client with a fresh token keeps its session, another client does not."""
    from tests.support.gateway import stdio_target

    port = free_port()
    aud = f"http://127.0.0.1:{port}/mcp"
    policy = {"issuer": idp.issuer, "audiences": [aud], "jwks": {"url": idp.jwks_url}}
    gateway({"mcp": {"port": port, "targets": [stdio_target("alpha")], "policies": {"mcpAuthentication": policy}}})
    app_a = idp.mint(aud=aud, sub=None, client_id="app-a", jti="1")
    app_b = idp.mint(aud=aud, sub=None, client_id="app-b", jti="2")
    init = _mcp_post(port, _MCP_INIT, app_a)
    assert init.status_code == 200, init.text
    sid = init.headers["mcp-session-id"]
    assert _mcp_post(port, {"jsonrpc": "2.0", "method": "notifications/initialized"}, app_a, sid).status_code == 202
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert _mcp_post(port, listing, app_a, sid).status_code == 200
    stolen = _mcp_post(port, listing, app_b, sid)
    assert stolen.status_code == 404, stolen.text
    ended = httpx.delete(aud, headers={"authorization": f"Bearer {app_b}", "mcp-session-id": sid})
    assert ended.status_code == 404
    # app-a's next token (another jti, iat and expiry) is still app-a
    fresh = idp.mint(
        aud=aud, sub=None, client_id="app-a", jti="3", iat=int(time.time()) - 5, exp=int(time.time()) + 900
    )
    assert _mcp_post(port, listing, fresh, sid).status_code == 200
