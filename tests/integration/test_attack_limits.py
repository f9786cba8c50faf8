"""Audit 6: rate limits, MCP session identity, CORS/CSRF and TLS reloads, attacked as an
outsider would, through the running daemon."""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.support.gateway import binds, free_port, raw_connection, read_response, wait_for

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


# ---------------------------------------------------------------- reloads under TLS


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_after_a_reload_of_the_client_roots_no_connection_gets_in_with_the_old_ones(gateway, upstream, tmp_path):
    """A reload that replaces a listener's `tls.root`: once it counts as applied, a certificate
    from the old CA fails every new handshake, in every worker, and a TLS session made with it
    before the reload does not resume (it would skip the certificate check)."""
    up = upstream()
    server_ca, old_ca, new_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("localhost")
    cert, key, roots = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "clients.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    old_ca.cert_pem.write_to_path(str(roots))
    port = free_port()
    tls = {"cert": str(cert), "key": str(key), "root": str(roots)}
    listener = {"protocol": "HTTPS", "tls": tls, "routes": [{"backends": [{"host": up.address}]}]}
    gw = gateway({"binds": [{"port": port, "listeners": [listener]}]}, workers=2)

    def context(ca: trustme.CA) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        server_ca.configure_trust(ctx)
        ca.issue_cert("client.test").configure_cert(ctx)
        return ctx

    old_ctx, new_ctx = context(old_ca), context(new_ca)

    def get(ctx: ssl.SSLContext, session: ssl.SSLSession | None = None) -> tuple[int, ssl.SSLSession | None, bool]:
        """(status or 0 when refused, the TLS session, whether it was resumed)"""
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s,
            ):
                s.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                status, _, _ = read_response(s)
                return status, s.session, s.session_reused
        except (ssl.SSLError, OSError):
            return 0, None, False

    sessions = []
    for _ in range(6):  # sessions from both workers
        status, session, _ = get(old_ctx)
        assert status == 200
        sessions.append(session)
    assert any(get(old_ctx, s)[2] for s in sessions), "sessions resume before the reload"
    applied = gw.metric("agentgateway_config_reloads_total", result="success")
    _replace(roots, new_ca.cert_pem.bytes())
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="success") > applied, 10, "the reload")
    for _ in range(10):
        assert get(old_ctx)[0] == 0
    for s in sessions:
        status, _, reused = get(old_ctx, s)
        assert status == 0, f"resumed={reused}"
    assert get(new_ctx)[0] == 200


def test_an_invalid_roots_file_keeps_the_previous_listener(gateway, upstream, tmp_path):
    """A broken `tls.root` replacement is a broken config: the previous roots keep serving (the
    listener is neither dropped nor opened to every client)."""
    up = upstream()
    server_ca, client_ca, stranger_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("localhost")
    cert, key, roots = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "clients.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    client_ca.cert_pem.write_to_path(str(roots))
    port = free_port()
    tls = {"cert": str(cert), "key": str(key), "root": str(roots)}
    listener = {"protocol": "HTTPS", "tls": tls, "routes": [{"backends": [{"host": up.address}]}]}
    gw = gateway({"binds": [{"port": port, "listeners": [listener]}]})
    url = f"https://localhost:{port}/"

    def status(ca: trustme.CA | None) -> int:
        ctx = ssl.create_default_context()
        server_ca.configure_trust(ctx)
        if ca is not None:
            ca.issue_cert("client.test").configure_cert(ctx)
        try:
            return httpx.get(url, verify=ctx).status_code
        except httpx.HTTPError:
            return 0

    assert (status(client_ca), status(stranger_ca), status(None)) == (200, 0, 0)
    failed = gw.metric("agentgateway_config_reloads_total", result="failure")
    for broken in (b"", b"not a certificate\n", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        _replace(roots, broken)
        wait_for(
            lambda seen=failed: gw.metric("agentgateway_config_reloads_total", result="failure") > seen,
            10,
            "a failed reload",
        )
        failed = gw.metric("agentgateway_config_reloads_total", result="failure")
        assert (status(client_ca), status(stranger_ca), status(None)) == (200, 0, 0), broken
