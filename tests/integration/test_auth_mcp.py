"""mcpAuthentication through the real daemon: the gateway as the OAuth resource server of an MCP
endpoint (RFC 9728 discovery, RFC 8707 audiences), followed by the official MCP SDK's OAuth client
against a local authorization server; MCP sessions bound to the identity that made them."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.support.gateway import free_port, stdio_target
from tests.support.idp import IdentityProvider

pytestmark = pytest.mark.anyio

_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _config(port: int, idp: IdentityProvider, **auth) -> dict:
    policy = {
        "issuer": idp.issuer,
        "audiences": [f"http://127.0.0.1:{port}/mcp"],
        "jwks": {"url": idp.jwks_url},
        "resourceMetadata": {"scopesSupported": ["mcp:tools"], "resourceName": "test gateway"},
    }
    policy.update(auth)
    return {"mcp": {"port": port, "targets": [stdio_target("alpha")], "policies": {"mcpAuthentication": policy}}}


def _post(port: int, body: dict, token: str | None = None, session: str | None = None) -> httpx.Response:
    headers = dict(_ACCEPT)
    if token:
        headers["authorization"] = f"Bearer {token}"
    if session:
        headers["mcp-session-id"] = session
    return httpx.post(f"http://127.0.0.1:{port}/mcp", json=body, headers=headers, timeout=20)


async def test_discovery_documents_and_challenges(gateway, idp):
    port = free_port()
    gateway(_config(port, idp))
    base = f"http://127.0.0.1:{port}"

    r = _post(port, _INIT)
    assert r.status_code == 401
    metadata_url = f"{base}/.well-known/oauth-protected-resource/mcp"
    assert r.headers["www-authenticate"] == f'Bearer resource_metadata="{metadata_url}"'

    prm = httpx.get(metadata_url, timeout=10)
    assert prm.status_code == 200 and prm.headers["content-type"] == "application/json"
    assert prm.json() == {
        "resource": f"{base}/mcp",
        "authorization_servers": [idp.issuer],
        "scopes_supported": ["mcp:tools"],
        "resource_name": "test gateway",
    }
    assert httpx.get(f"{base}/.well-known/oauth-protected-resource", timeout=10).json()["resource"] == base
    asm = httpx.get(f"{base}/.well-known/oauth-authorization-server", timeout=10)
    assert asm.status_code == 200 and asm.json() == idp.metadata()

    # A token issued for another resource (RFC 8707) is refused, and the client is pointed at
    # the metadata again.
    wrong = _post(port, _INIT, idp.mint(aud="http://other.example/mcp"))
    assert wrong.status_code == 401
    challenge = wrong.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer resource_metadata="{metadata_url}", error="invalid_token"')
    assert "audience not accepted" in challenge
    assert _post(port, _INIT, idp.mint(aud=f"{base}/mcp", exp=1)).status_code == 401

    ok = _post(port, _INIT, idp.mint(aud=f"{base}/mcp"))
    assert ok.status_code == 200, ok.text
    assert "mcp-session-id" in ok.headers


async def test_configured_resource_is_the_metadata_base(gateway, idp):
    port = free_port()
    resource = "https://mcp.example.com/tools/mcp"
    gateway(_config(port, idp, audiences=[resource], resourceMetadata={"resource": resource}))
    r = _post(port, _INIT)
    assert r.headers["www-authenticate"] == (
        'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"'
    )
    prm = httpx.get(f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp", timeout=10).json()
    assert prm["resource"] == resource
    assert _post(port, _INIT, idp.mint(aud=resource)).status_code == 200


class _Memory:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def test_sdk_client_discovers_and_authorizes(gateway, idp):
    """The MCP SDK's OAuth client, unauthenticated at first: it follows the 401 to the resource
    metadata, discovers the authorization server, registers, authorizes with PKCE (the browser
    step is an HTTP GET here: the test server approves at once) and calls tools with its token."""
    port = free_port()
    gateway(_config(port, idp))
    url = f"http://127.0.0.1:{port}/mcp"
    redirect = "http://127.0.0.1:1/callback"
    result: dict[str, str] = {}

    async def open_browser(authorization_url: str) -> None:
        async with httpx.AsyncClient() as browser:
            r = await browser.get(authorization_url)
        assert r.status_code == 302, r.text
        query = parse_qs(urlsplit(r.headers["location"]).query)
        result.update(code=query["code"][0], state=query["state"][0])

    async def callback() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=result["code"], state=result["state"])

    storage = _Memory()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="gateway test", redirect_uris=[redirect], grant_types=["authorization_code"], scope="mcp:tools"
        ),
        storage=storage,
        redirect_handler=open_browser,
        callback_handler=callback,
    )
    with anyio.fail_after(60):
        async with (
            httpx2.AsyncClient(auth=provider, timeout=20) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "echo" in tools
            answer = await client.call_tool("echo", {"text": "hi"})
            assert answer.content[0].text == "alpha: hi"
    assert storage.tokens is not None
    claims = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})
    assert claims["aud"] == url  # the SDK asked for this resource (RFC 8707) and got a token for it


async def test_session_bound_to_its_identity(gateway, idp):
    """A session id is useless to anyone but the identity that created it, on every worker (the
    stdio target's session lives in one; requests reaching the other are relayed to it)."""
    port = free_port()
    gateway(_config(port, idp), workers=2)
    aud = f"http://127.0.0.1:{port}/mcp"
    alice, bob = idp.mint(aud=aud), idp.mint(aud=aud, sub="bob")
    init = _post(port, _INIT, alice)
    assert init.status_code == 200, init.text
    sid = init.headers["mcp-session-id"]
    assert _post(port, {"jsonrpc": "2.0", "method": "notifications/initialized"}, alice, sid).status_code == 202
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    for _ in range(6):  # several connections: both workers see requests
        assert _post(port, listing, alice, sid).status_code == 200
        stolen = _post(port, listing, bob, sid)
        assert stolen.status_code == 404, stolen.text
    # The same identity with a fresh token (another jti, later expiry) still owns the session.
    assert _post(port, listing, idp.mint(aud=aud, exp=int(time.time()) + 900), sid).status_code == 200
    # Ending it takes the owner too.
    assert (
        httpx.delete(
            f"http://127.0.0.1:{port}/mcp", headers={"authorization": f"Bearer {bob}", "mcp-session-id": sid}
        ).status_code
        == 404
    )
    assert (
        httpx.delete(
            f"http://127.0.0.1:{port}/mcp", headers={"authorization": f"Bearer {alice}", "mcp-session-id": sid}
        ).status_code
        == 200
    )
