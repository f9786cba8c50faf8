"""mcpAuthorization through the real daemon: the official SDK client as two identities (told
apart by a header the rules read), official SDK servers as targets, every client generation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support.gateway import REPO, free_port, mcp_config, stdio_target

pytestmark = pytest.mark.anyio

# Everyone may use alpha's echo and add; bob also whoami everywhere; admin everything but crash;
# prompts only for bob; resources of alpha only.
RULES: list[Any] = [
    'request.headers["x-user"] == "admin"',
    'has(mcp.tool) && mcp.tool.target == "alpha" && mcp.tool.name in ["echo", "add"]',
    'request.headers["x-user"] == "bob" && has(mcp.tool) && mcp.tool.name == "whoami"',
    'request.headers["x-user"] == "bob" && has(mcp.prompt)',
    'has(mcp.resource) && mcp.resource.target == "alpha"',
    {"deny": 'has(mcp.tool) && mcp.tool.name == "crash"'},
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.asynccontextmanager
async def client(url: str, user: str, mode: str = "legacy", **headers: str) -> AsyncIterator[Client]:
    """An SDK client whose every HTTP request says who it is (``x-user``; ``x_team`` → ``x-team``)."""
    sent = {"x-user": user, **{k.replace("_", "-"): v for k, v in headers.items()}}
    async with (
        httpx2.AsyncClient(headers=sent, timeout=httpx2.Timeout(30, read=300)) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as session,  # type: ignore[arg-type]
    ):
        yield session


async def _tools(c: Client) -> set[str]:
    return {t.name for t in (await c.list_tools()).tools}


async def _refused(c: Client, tool: str) -> tuple[int, str]:
    with pytest.raises(MCPError) as info:
        await c.call_tool(tool, {})
    return info.value.error.code, info.value.error.message


def _two_targets(port: int, mcp_server: Any, **backend: Any) -> dict[str, Any]:
    beta = mcp_server("beta", "http")
    cfg = mcp_config(port, [stdio_target("alpha"), {"name": "beta", "mcp": {"host": beta.url}}], **backend)
    cfg["binds"][0]["listeners"][0]["routes"][0]["policies"] = {"mcpAuthorization": {"rules": RULES}}
    return cfg


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_two_identities_see_different_tools_and_cannot_call_hidden_ones(gateway, mcp_server, mode):
    port = free_port()
    gateway(_two_targets(port, mcp_server))
    url = f"http://127.0.0.1:{port}/mcp"
    async with (
        client(url, "alice", mode) as alice,
        client(url, "bob", mode) as bob,
        client(url, "admin", mode) as admin,
    ):
        assert await _tools(alice) == {"alpha_echo", "alpha_add"}
        assert await _tools(bob) == {"alpha_echo", "alpha_add", "alpha_whoami", "beta_whoami"}
        everything = await _tools(admin)
        assert {"alpha_whoami", "beta_echo", "beta_count"} <= everything
        assert "alpha_crash" not in everything and "beta_crash" not in everything  # deny wins over allow

        assert (await alice.call_tool("alpha_echo", {"text": "hi"})).content[0].text == "alpha: hi"
        assert (await bob.call_tool("beta_whoami", {})).content[0].text == "beta"
        # A hidden tool is answered exactly as a name nothing serves: its existence stays hidden.
        hidden = await _refused(alice, "beta_whoami")
        assert hidden == (-32602, "Unknown tool: beta_whoami")
        assert await _refused(alice, "beta_nonexistent") == (-32602, "Unknown tool: beta_nonexistent")
        assert await _refused(alice, "gamma_whoami") == (-32602, "Unknown tool: gamma_whoami")
        assert await _refused(admin, "alpha_crash") == (-32602, "Unknown tool: alpha_crash")

        # Prompts: bob only; resources: alpha's only, for everyone.
        assert {p.name for p in (await bob.list_prompts()).prompts} == {"alpha_greet", "beta_greet"}
        assert (await alice.list_prompts()).prompts == []
        with pytest.raises(MCPError, match="Unknown prompt: alpha_greet") as info:
            await alice.get_prompt("alpha_greet", {"person": "Ada"})
        assert info.value.error.code == -32602
        assert "alpha greets Ada" in (await bob.get_prompt("alpha_greet", {"person": "Ada"})).messages[0].content.text
        assert {str(r.uri) for r in (await alice.list_resources()).resources} == {"alpha+memo://alpha/info"}
        templates = {t.uri_template for t in (await alice.list_resource_templates()).resource_templates}
        assert templates == {"alpha+memo://{key}/value"}
        assert (await alice.read_resource("alpha+memo://alpha/info")).contents[0].text == "info of alpha"
        with pytest.raises(MCPError, match=r"Unknown resource: beta\+memo://beta/info"):
            await alice.read_resource("beta+memo://beta/info")


async def test_stateless_mode_filters_per_request(gateway, mcp_server):
    port = free_port()
    gateway(_two_targets(port, mcp_server, statefulMode="stateless"))
    url = f"http://127.0.0.1:{port}/mcp"
    # The worker's shared upstream sessions serve both callers; each still sees only its own.
    async with client(url, "alice") as alice, client(url, "bob") as bob:
        for _ in range(2):  # the second listing comes from the verdict cache
            assert await _tools(alice) == {"alpha_echo", "alpha_add"}
            assert await _tools(bob) == {"alpha_echo", "alpha_add", "alpha_whoami", "beta_whoami"}
        assert await _refused(alice, "alpha_whoami") == (-32602, "Unknown tool: alpha_whoami")
        assert (await bob.call_tool("alpha_whoami", {})).content[0].text == "alpha"


async def test_modern_http_requests_are_filtered(gateway, mcp_server):
    """A hand-written 2026-07-28 request (no SDK): the list and the call answers."""
    port = free_port()
    gateway(_two_targets(port, mcp_server))
    url = f"http://127.0.0.1:{port}/mcp"
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    base = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28", "x-user": "alice"}
    async with httpx.AsyncClient(timeout=20) as http:
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}
        r = await http.post(
            url, json=listing, headers={**base, "mcp-method": "tools/list", "accept": "application/json"}
        )
        assert r.status_code == 200
        result = r.json()["result"]
        assert {t["name"] for t in result["tools"]} == {"alpha_echo", "alpha_add"}
        assert result["cacheScope"] == "private"
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "beta_echo", "arguments": {"text": "x"}, "_meta": meta},
        }
        r = await http.post(url, json=call, headers={**base, "mcp-method": "tools/call", "mcp-name": "beta_echo"})
        assert r.status_code == 400
        assert r.json()["error"] == {"code": -32602, "message": "Unknown tool: beta_echo"}


async def test_target_rules_apply_with_the_route_rules(gateway, mcp_server):
    """Rules on a target apply to its items together with the route's (concatenated)."""
    beta = mcp_server("beta", "http")
    port = free_port()
    alpha = stdio_target("alpha")
    alpha["policies"] = {"mcpAuthorization": {"rules": [{"require": 'request.headers["x-team"] == "red"'}]}}
    targets = [alpha, {"name": "beta", "mcp": {"host": beta.url}}]
    cfg = mcp_config(port, targets)
    cfg["binds"][0]["listeners"][0]["routes"][0]["policies"] = {
        "mcpAuthorization": {"rules": ['has(mcp.tool) && mcp.tool.name == "echo"']}
    }
    gateway(cfg)
    url = f"http://127.0.0.1:{port}/mcp"
    async with client(url, "anyone") as plain, client(url, "anyone", x_team="red") as team:
        assert await _tools(plain) == {"beta_echo"}
        assert await _tools(team) == {"alpha_echo", "beta_echo"}


async def test_mcp_shortcut_with_jwt_rules_fails_closed_without_a_token(gateway):
    """Rules on ``jwt``: nothing in this gateway authenticates yet, so ``jwt`` is unset and the
    rule fails closed (the JWT variant of this test comes with jwtAuth)."""
    port = free_port()
    cfg = {
        "mcp": {
            "port": port,
            "targets": [stdio_target("alpha")],
            "policies": {
                "mcpAuthorization": {
                    "rules": ['jwt.sub == "alice" && mcp.tool.name == "echo"', 'mcp.tool.name == "add"']
                }
            },
        }
    }
    gateway(cfg)
    async with client(f"http://127.0.0.1:{port}/mcp", "alice") as c:
        assert await _tools(c) == {"add"}
        assert await _refused(c, "echo") == (-32602, "Unknown tool: echo")


async def test_the_example_config_does_what_it_says(gateway):
    config = yaml.safe_load((REPO / "config" / "mcp-authorization.yaml").read_text())
    port = config["mcp"]["port"] = free_port()
    gateway(config)
    url = f"http://127.0.0.1:{port}/mcp"
    expected = {
        ("admin", ""): {"demo_echo", "demo_add", "demo_time"},
        ("alice", ""): {"demo_echo", "demo_add", "demo_time"},
        ("bob", ""): {"demo_echo", "demo_time"},
        ("bob", "guests"): {"demo_echo"},
    }
    for (user, team), tools in expected.items():
        async with client(url, user, x_team=team) as c:
            assert await _tools(c) == tools
            assert [p.name for p in (await c.list_prompts()).prompts] == ["demo_greeting"]


async def test_jwt_identities_across_workers(gateway, idp):
    """Identities proved by jwtAuth: each caller sees the tools its claims allow, also when its
    session's stdio server lives in the other worker (requests relayed there carry the claims)."""
    port = free_port()
    cfg = mcp_config(port, [stdio_target("alpha")])
    cfg["binds"][0]["listeners"][0]["routes"][0]["policies"] = {
        "jwtAuth": {"mode": "strict", "issuer": idp.issuer, "audiences": ["mcp"], "jwks": {"url": idp.jwks_url}},
        "mcpAuthorization": {"rules": ['mcp.tool.name == "echo"', 'jwt.sub == "bob" && mcp.tool.name == "whoami"']},
    }
    gateway(cfg, workers=2)
    url = f"http://127.0.0.1:{port}/mcp"

    @contextlib.asynccontextmanager
    async def as_user(sub: str) -> AsyncIterator[Client]:
        token = idp.mint(sub=sub, aud="mcp")
        async with (
            httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as session,  # type: ignore[arg-type]
        ):
            yield session

    # Several sessions each, so that both workers own some and every request shape gets relayed.
    for _ in range(3):
        async with as_user("alice") as alice, as_user("bob") as bob:
            assert await _tools(alice) == {"echo"}
            assert await _tools(bob) == {"echo", "whoami"}
            assert (await bob.call_tool("whoami", {})).content[0].text == "alpha"
            assert await _refused(alice, "whoami") == (-32602, "Unknown tool: whoami")
            assert (await alice.call_tool("echo", {"text": "hi"})).content[0].text == "alpha: hi"
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert r.status_code == 401


# Spellings of file:///srv/secret.txt that a file server reads as that file.
SECRET_SPELLINGS = [
    "file:///srv/secret.txt",
    "FILE:///srv/secret.txt",
    "File:///srv/secret.txt",
    "file:///srv/secret.txt/",
    "file:///srv/secret.txt?x=1",
    "file:///srv/secret.txt?",
    "file:///srv/secret.txt#top",
    "file:///srv/public/../secret.txt",
    "file:///srv/./secret.txt",
    "file:///srv//secret.txt",
    "file:///srv/%73ecret.txt",
    "file:///srv/%2E%2E/srv/secret.txt",
    "file:///srv/public%2F..%2Fsecret.txt",
]


async def test_resource_deny_rules_hold_for_every_spelling_of_the_uri(gateway):
    """A deny rule names a resource URI; the server reads many spellings of it as the same
    file. Through a route with the rule every spelling is refused as unknown; through one
    without, the server serves them all (so the spellings do reach the same file)."""
    guarded, open_port = free_port(), free_port()
    target = {"name": "files", "stdio": stdio_target("files")["stdio"]}
    target["stdio"]["args"] = ["-m", "tests.support.file_server"]
    route = {"name": "files", "backends": [{"mcp": {"targets": [target]}}]}
    rules = [{"deny": 'has(mcp.resource) && mcp.resource.uri == "file:///srv/secret.txt"'}]
    gateway(
        {
            "binds": [
                {
                    "port": guarded,
                    "listeners": [{"routes": [{**route, "policies": {"mcpAuthorization": {"rules": rules}}}]}],
                },
                {"port": open_port, "listeners": [{"routes": [route]}]},
            ]
        }
    )
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }
    accept = {"accept": "application/json"}
    async with httpx.AsyncClient(timeout=30) as http:
        sessions = {}
        for port in (guarded, open_port):
            r = await http.post(f"http://127.0.0.1:{port}/mcp", json=init, headers=accept)
            sessions[port] = {**accept, "mcp-session-id": r.headers["mcp-session-id"]}

        async def read(port: int, uri: str) -> dict[str, Any]:
            msg = {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}}
            r = await http.post(f"http://127.0.0.1:{port}/mcp", json=msg, headers=sessions[port])
            assert r.status_code == 200
            return dict(r.json())

        for uri in SECRET_SPELLINGS:
            served = await read(open_port, uri)
            assert served["result"]["contents"][0]["text"] == "secret text", (uri, served)
            refused = await read(guarded, uri)
            assert refused["error"] == {"code": -32602, "message": f"Unknown resource: {uri}"}, (uri, refused)
        public = await read(guarded, "file:///srv/public.txt")
        assert public["result"]["contents"][0]["text"] == "public text"
        msg = {"jsonrpc": "2.0", "id": 2, "method": "resources/list"}
        listed = (await http.post(f"http://127.0.0.1:{guarded}/mcp", json=msg, headers=sessions[guarded])).json()
        assert [r["uri"] for r in listed["result"]["resources"]] == ["file:///srv/public.txt"]
