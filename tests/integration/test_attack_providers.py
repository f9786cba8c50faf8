"""Audit 9 through the daemon: what one client can do to another's requests where the gateway
speaks for many (a stateless MCP backend's shared upstream session), and what of a client's
query is left beside the parameters the gateway owns (an authorizer's query changes, a
``backendAuth`` key in the query) for an upstream that splits the query at ';' as well."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest

from tests.support.gateway import binds, free_port, mcp_config, raw_connection, read_response, stdio_target


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------- MCP: stateless shared sessions


def _stateless_keyed(port: int) -> dict[str, Any]:
    config = mcp_config(port, [stdio_target("alpha")], statefulMode="stateless")
    config["binds"][0]["listeners"][0]["routes"][0]["policies"] = {
        "apiKey": {"mode": "strict", "keys": [{"key": "key-a"}, {"key": "key-b"}]}
    }
    return config


def _headers(key: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {key}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-06-18",
    }


@pytest.mark.anyio
async def test_a_stateless_client_cannot_cancel_anothers_call(gateway) -> None:
    """Stateless clients share the worker's upstream session; their request ids are their own
    (both may use 7). B's notifications/cancelled for id 7 must not cancel A's call 7."""
    port = free_port()
    gw = gateway(_stateless_keyed(port), workers=1)
    url = f"http://127.0.0.1:{port}/mcp"
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "sleep", "arguments": {"seconds": 2}}}
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "x"}}
    async with httpx.AsyncClient(timeout=20) as a, httpx.AsyncClient(timeout=20) as b:
        # the shared session exists before the race (its first request starts the stdio server)
        r = await a.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=_headers("key-a"))
        assert r.status_code == 200 and "result" in r.json(), r.text
        a_call = asyncio.create_task(a.post(url, json=call, headers=_headers("key-a")))
        await asyncio.sleep(0.7)  # A's call is running upstream
        r = await b.post(url, json=cancel, headers=_headers("key-b"))
        assert r.status_code == 202
        r = await asyncio.wait_for(a_call, 15)
    assert r.status_code == 200
    assert r.json()["result"]["content"][0]["text"] == "alpha slept 2.0", r.text
    assert "alpha: sleep cancelled" not in gw.output()


@pytest.mark.anyio
async def test_a_stateless_client_still_cancels_its_own_call(gateway) -> None:
    port = free_port()
    gw = gateway(_stateless_keyed(port), workers=1)
    url = f"http://127.0.0.1:{port}/mcp"
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "sleep", "arguments": {"seconds": 30}},
    }
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "x"}}
    async with httpx.AsyncClient(timeout=40) as a:
        r = await a.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=_headers("key-a"))
        assert r.status_code == 200
        a_call = asyncio.create_task(a.post(url, json=call, headers=_headers("key-a")))
        await asyncio.sleep(0.7)
        async with httpx.AsyncClient(timeout=20) as again:  # another connection, the same caller
            r = await again.post(url, json=cancel, headers=_headers("key-a"))
        assert r.status_code == 202
        for _ in range(100):
            if "alpha: sleep cancelled" in gw.output():
                break
            await asyncio.sleep(0.1)
        assert "alpha: sleep cancelled" in gw.output()
        a_call.cancel()


# ---------------------------------------------------------------- extAuthz: query changes


def _get(port: int, target: bytes, headers: bytes = b"") -> tuple[int, bytes]:
    with raw_connection(port, timeout=15) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: gw.test\r\n" + headers + b"\r\n")
        status, _, body = read_response(sock)
    return status, body


def _old_parser(query: str) -> dict[str, list[str]]:
    """A query as Go before 1.17, Rack 2 and Python before 3.9.2 read it: ';' separates too."""
    out: dict[str, list[str]] = {}
    for part in re.split("[&;]", query):
        if part:
            key, _, value = part.partition("=")
            out.setdefault(unquote_plus(key), []).append(unquote_plus(value))
    return out


@pytest.mark.parametrize(
    "query",
    [
        b"keep=2;drop=evil",
        b"keep=2;checked=forged",
        b"keep=2&x=1;checked=forged;drop=evil",
        b"keep=2;%64rop=evil",
    ],
)
def test_ext_authz_query_changes_cover_semicolon_parameters(gateway, upstream, authz, query: bytes) -> None:
    """The authorizer sets ``checked=yes`` and removes ``drop``: no spelling of the client's
    query leaves its own ``checked`` or ``drop`` for an upstream that splits at ';'."""
    up, svc = upstream(), authz("grpc")
    port = free_port()
    gateway(
        binds(port, [{"policies": {"extAuthz": {"host": f"127.0.0.1:{svc.port}"}}, "backends": [{"host": up.address}]}])
    )
    status, body = _get(port, b"/echo?" + query, b"x-authz: allow\r\n")
    assert status == 200, body
    target = json.loads(body)["target"]
    params = _old_parser(target.partition("?")[2])
    assert params.get("checked") == ["yes"], target
    assert "drop" not in params, target
    assert params.get("keep") == ["2"], target


# ---------------------------------------------------------------- backendAuth: a key in the query


@pytest.mark.parametrize(
    "query", [b"x=1;api_key=client", b"api_key=client;x=1", b"a=1&b=2;api_key=client;c=3", b"x=1;api%5Fkey=client"]
)
def test_backend_auth_query_key_replaces_the_clients_after_a_semicolon(gateway, upstream, query: bytes) -> None:
    """The gateway's key at ``location: {queryParameter: api_key}``: a client's ``api_key`` after a
    ';' must not stand before it for an upstream that splits the query there."""
    up = upstream()
    port = free_port()
    key = {"value": "gw-key-1", "location": {"queryParameter": {"name": "api_key"}}}
    gateway(binds(port, [{"backends": [{"host": up.address, "policies": {"backendAuth": {"key": key}}}]}]))
    status, body = _get(port, b"/echo?" + query)
    assert status == 200, body
    target = json.loads(body)["target"]
    params = _old_parser(target.partition("?")[2])
    assert params["api_key"] == ["gw-key-1"], target
    assert "client" not in target
