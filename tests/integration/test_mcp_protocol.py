"""MCP eras and bad input: modern (2026-07-28) clients, input-required rounds, and the spec's error
for each malformed message, through the real daemon."""

from __future__ import annotations

import base64

import httpx
import pytest
from mcp import Client
from mcp_types import ElicitResult

from tests.support.gateway import free_port, mcp_config, stdio_target

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}
ACCEPT = "application/json, text/event-stream"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def two_targets(gateway, mcp_server):
    beta = mcp_server("beta", "http")
    port = free_port()
    gateway(mcp_config(port, [stdio_target("alpha"), {"name": "beta", "mcp": {"host": beta.url}}]), workers=2)
    return f"http://127.0.0.1:{port}/mcp"


def _text(result) -> str:
    return result.content[0].text


@pytest.mark.parametrize("mode", ["auto", MODERN])
async def test_modern_clients(two_targets, mode):
    asked: list[str] = []

    async def on_elicit(context, params):
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": False})

    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with Client(two_targets, mode=mode, elicitation_callback=on_elicit) as client:
        assert client.protocol_version == MODERN  # auto mode found the gateway modern (server/discover)
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"alpha_echo", "beta_echo"} <= names
        assert _text(await client.call_tool("beta_echo", {"text": "x"})) == "beta: x"
        assert (
            _text(await client.call_tool("alpha_count", {"steps": 2}, progress_callback=on_progress))
            == "alpha counted 2"
        )
        assert progress == [1, 2]
        # The upstream asks the client during the call: the gateway turns that into an
        # input_required round and resumes the call with the client's answer.
        for target in ("alpha", "beta"):
            assert (
                _text(await client.call_tool(f"{target}_confirm", {"question": "Ship?"}))
                == f"{target}: confirmed=False"
            )
        assert asked == ["Ship?", "Ship?"]
        prompt = await client.get_prompt("beta_greet", {"person": "Lin"})
        assert "beta greets Lin" in prompt.messages[0].content.text
        read = await client.read_resource("alpha+memo://alpha/info")
        assert read.contents[0].text == "info of alpha"


def _modern(method: str, params: dict | None = None, id_: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": {**(params or {}), "_meta": dict(ENVELOPE)}}


def _headers(method: str, name: str | None = None, version: str = MODERN) -> dict[str, str]:
    headers = {"accept": ACCEPT, "mcp-protocol-version": version, "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    return headers


async def test_modern_discover_and_header_validation(two_targets):
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(two_targets, json=_modern("server/discover"), headers=_headers("server/discover"))
        assert r.status_code == 200
        result = r.json()["result"]
        assert MODERN in result["supportedVersions"] and "tools" in result["capabilities"]
        assert result["resultType"] == "complete"
        call = _modern("tools/call", {"name": "alpha_echo", "arguments": {"text": "hé"}})
        # Mcp-Name must match params.name; non-ASCII travels base64-wrapped.
        ok = await http.post(
            two_targets, json=call, headers={**_headers("tools/call", "alpha_echo"), "accept": "application/json"}
        )
        assert ok.status_code == 200 and ok.json()["result"]["content"][0]["text"] == "alpha: hé"
        wrong = await http.post(two_targets, json=call, headers=_headers("tools/call", "beta_echo"))
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == -32020
        missing = await http.post(two_targets, json=call, headers={"accept": ACCEPT, "mcp-protocol-version": MODERN})
        assert missing.status_code == 400 and missing.json()["error"]["code"] == -32020
        encoded = "=?base64?" + base64.b64encode(b"alpha_echo").decode() + "?="
        wrapped = await http.post(
            two_targets, json=call, headers={**_headers("tools/call", encoded), "accept": "application/json"}
        )
        assert wrapped.status_code == 200
        old = _modern("tools/list")
        old["params"]["_meta"] = {**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2027-01-01"}
        r = await http.post(two_targets, json=old, headers=_headers("tools/list", version="2027-01-01"))
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["code"] == -32022 and MODERN in error["data"]["supported"]
        no_caps = _modern("tools/list")
        del no_caps["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]
        r = await http.post(two_targets, json=no_caps, headers=_headers("tools/list"))
        assert r.status_code == 400 and r.json()["error"]["code"] == -32602
        unknown = await http.post(two_targets, json=_modern("nope/nope"), headers=_headers("nope/nope"))
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == -32601


@pytest.mark.parametrize(
    "body,status,code",
    [
        (b"{not json", 400, -32700),
        (b"[]", 400, -32600),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 400, -32600),
        (b'{"jsonrpc":"1.0","id":1,"method":"initialize","params":{}}', 400, -32600),
        (b'{"jsonrpc":"2.0","id":null,"method":"initialize","params":{}}', 400, -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":7}', 400, -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":[1]}', 400, -32600),
        (b'{"jsonrpc":"2.0","id":1}', 400, -32600),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', 400, -32600),  # no session, no envelope
    ],
    ids=[
        "parse",
        "empty-batch",
        "batch",
        "version",
        "null-id",
        "method-type",
        "params-type",
        "no-method",
        "no-session",
    ],
)
async def test_invalid_messages_get_the_spec_errors(two_targets, body, status, code):
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(two_targets, content=body, headers={"content-type": "application/json", "accept": ACCEPT})
        assert r.status_code == status
        assert r.json()["error"]["code"] == code
        # ... and the gateway keeps serving.
        ok = await http.post(two_targets, json=_modern("server/discover"), headers=_headers("server/discover"))
        assert ok.status_code == 200


async def test_legacy_session_errors(two_targets):
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(two_targets, json=init, headers={"accept": ACCEPT})
        assert r.status_code == 200 and r.json()["result"]["protocolVersion"] == "2025-03-26"
        token = r.headers["mcp-session-id"]
        assert all(0x21 <= ord(c) <= 0x7E for c in token)
        session = {"accept": ACCEPT, "mcp-session-id": token}
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "gamma_echo", "arguments": {}}}
        r = await http.post(two_targets, json=call, headers={**session, "accept": "application/json"})
        assert r.json()["error"]["code"] == -32602 and "Unknown tool" in r.json()["error"]["message"]
        r = await http.post(two_targets, json={"jsonrpc": "2.0", "id": 3, "method": "bogus"}, headers=session)
        assert r.json()["error"]["code"] == -32601
        r = await http.post(two_targets, json={**init, "id": 4}, headers=session)
        assert r.json()["error"]["code"] == -32600  # already initialized
        r = await http.request("PUT", two_targets, headers=session)
        assert r.status_code == 405
        r = await http.get(two_targets, headers={"accept": "application/json"})
        assert r.status_code == 405
        assert (await http.delete(two_targets, headers=session)).status_code == 200
        r = await http.post(two_targets, json=call, headers=session)
        assert r.status_code == 404  # ended sessions are unknown everywhere
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        r = await http.post(two_targets, json=call, headers={**session, "mcp-session-id": forged})
        assert r.status_code == 404


def _initialize(id_: int = 1) -> dict:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    return {"jsonrpc": "2.0", "id": id_, "method": "initialize", "params": params}


async def test_browser_origins_are_checked(gateway, mcp_server):
    """A present Origin must be the endpoint's own (or both localhost): the MCP transport's 403.
    Clients that are not browsers send none and are not affected. (With the DNS-rebinding
    protection off, as for a gateway reached under a public name: test_mcp_rebinding.py tests it
    on, the default for clients on this machine.)"""
    beta = mcp_server("beta", "http")
    port = free_port()
    gateway(mcp_config(port, [{"name": "beta", "mcp": {"host": beta.url}}], dnsRebindingProtection=False))
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx.AsyncClient(timeout=20) as http:
        for origin in ("https://evil.example", "null", "http://127.0.0.1:1/path"):
            r = await http.post(url, json=_initialize(), headers={"accept": ACCEPT, "origin": origin})
            assert r.status_code == 403, origin
            error = r.json()["error"]
            assert error["code"] == -32600 and "Origin" in error["message"], error
        r = await http.get(url, headers={"accept": "text/event-stream", "origin": "https://evil.example"})
        assert r.status_code == 403
        r = await http.post(
            url,
            json=_modern("server/discover"),
            headers={**_headers("server/discover"), "origin": "https://evil.example"},
        )
        assert r.status_code == 403
        for origin in (None, f"http://127.0.0.1:{port}", "http://localhost:5173"):
            headers = {"accept": ACCEPT, **({"origin": origin} if origin else {})}
            r = await http.post(url, json=_initialize(), headers=headers)
            assert r.status_code == 200 and r.json()["result"]["serverInfo"]["name"] == "agentgateway", origin
        # A page of another site is refused even when the gateway is reached under a public name.
        r = await http.post(
            url,
            json=_initialize(),
            headers={"accept": ACCEPT, "host": "mcp.example.com", "origin": "http://localhost:5173"},
        )
        assert r.status_code == 403
        r = await http.post(
            url,
            json=_initialize(),
            headers={"accept": ACCEPT, "host": "mcp.example.com", "origin": "http://mcp.example.com"},
        )
        assert r.status_code == 200


async def test_cors_policy_lets_named_origins_in(gateway, mcp_server):
    """A page of an origin the route's cors policy allows may use the endpoint (and gets its
    preflight answered); other origins are still refused."""
    beta = mcp_server("beta", "http")
    port = free_port()
    config = mcp_config(port, [{"name": "beta", "mcp": {"host": beta.url}}])
    config["binds"][0]["listeners"][0]["routes"][0]["policies"] = {
        "cors": {"allowOrigins": ["https://app.example"], "allowMethods": ["POST", "GET"], "allowHeaders": ["*"]}
    }
    gateway(config)
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.options(url, headers={"origin": "https://app.example", "access-control-request-method": "POST"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = await http.post(url, json=_initialize(), headers={"accept": ACCEPT, "origin": "https://app.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = await http.post(url, json=_initialize(), headers={"accept": ACCEPT, "origin": "https://evil.example"})
        assert r.status_code == 403


async def test_dns_rebinding_protection(gateway, mcp_server):
    """``dnsRebindingProtection`` (the ``mcp:`` shortcut here): Host and Origin must be localhost,
    which refuses the rebinding attack's same-origin requests under the attacker's name."""
    beta = mcp_server("beta", "http")
    port = free_port()
    gateway(
        {
            "mcp": {
                "port": port,
                "dnsRebindingProtection": True,
                "targets": [{"name": "beta", "mcp": {"host": beta.url}}],
            }
        }
    )
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx.AsyncClient(timeout=20) as http:
        attack = {"accept": ACCEPT, "host": "evil.example.com", "origin": "http://evil.example.com"}
        r = await http.post(url, json=_initialize(), headers=attack)
        assert r.status_code == 403 and "dnsRebindingProtection" in r.json()["error"]["message"]
        r = await http.post(url, json=_initialize(), headers={"accept": ACCEPT, "host": "evil.example.com"})
        assert r.status_code == 403
        r = await http.post(url, json=_initialize(), headers={"accept": ACCEPT, "origin": "http://evil.example.com"})
        assert r.status_code == 403
        for host in (f"127.0.0.1:{port}", "localhost", f"[::1]:{port}"):
            r = await http.post(
                url, json=_initialize(), headers={"accept": ACCEPT, "host": host, "origin": f"http://{host}"}
            )
            assert r.status_code == 200, host


async def test_errors_quote_little_of_what_the_client_sent(gateway, mcp_server):
    """An unknown method, tool, prompt or resource named with 100 KB: the error says which, in a
    bounded message (and the access log line is bounded too)."""
    beta = mcp_server("beta", "http")
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha"), {"name": "beta", "mcp": {"host": beta.url}}]), workers=1)
    url = f"http://127.0.0.1:{port}/mcp"
    long = "x" * 100_000
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(url, json=_initialize(), headers={"accept": ACCEPT})
        session = {"accept": "application/json", "mcp-session-id": r.headers["mcp-session-id"]}

        async def error(method: str, params: dict | None = None) -> dict:
            msg = {"jsonrpc": "2.0", "id": 7, "method": method, **({"params": params} if params else {})}
            r = await http.post(url, json=msg, headers=session)
            assert r.status_code == 200 and len(r.content) < 1000, (method, len(r.content))
            return dict(r.json()["error"])

        assert (await error("tools/" + long))["message"] == f"Method not found: tools/{'x' * 194}… (100006 characters)"
        got = await error("tools/call", {"name": "gamma_" + long})
        assert got["message"].startswith("Unknown tool: gamma_xxx") and got["message"].endswith("(100006 characters)")
        assert (await error("prompts/get", {"name": long}))["message"].startswith("Unknown prompt: xxx")
        assert (await error("resources/read", {"uri": "gamma+" + long}))["message"].startswith("Unknown resource:")
        assert (await error("tools/list", {"cursor": long}))["message"] == "invalid cursor"
        # The modern shape: an unsupported version and an unknown method.
        r = await http.post(url, json=_modern("x" * 50_000), headers=_headers("x" * 50_000))
        assert r.status_code == 404 and len(r.content) < 1000
        bad = _modern("tools/list")
        version = "2" * 30_000  # (the header must fit in the gateway's limit on request heads)
        bad["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = version
        r = await http.post(url, json=bad, headers=_headers("tools/list", version=version))
        assert r.status_code == 400 and len(r.content) < 1000, r.text[:300]
    assert max(len(line) for line in gw.access_lines()) < 2000
