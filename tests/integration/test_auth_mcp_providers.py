"""mcpAuthentication.provider through the real daemon: the metadata adaptations agentgateway
makes for identity providers that do not follow the MCP authorization profile as written, and the
gateway's client registration endpoint (proxied, or answered with a pre-registered clientId)."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

from tests.support.gateway import REPO, free_port, stdio_target
from tests.support.idp import IdentityProvider

_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def _config(port: int, idp: IdentityProvider, **auth) -> dict:
    policy = {"issuer": idp.issuer, "audiences": [f"http://127.0.0.1:{port}/mcp"], "resourceMetadata": {}, **auth}
    return {"mcp": {"port": port, "targets": [stdio_target("alpha")], "policies": {"mcpAuthentication": policy}}}


def test_keycloak(gateway, idp):
    port = free_port()
    gateway(_config(port, idp, provider={"keycloak": {}}))  # JWKS: Keycloak's certs path by default
    base = f"http://127.0.0.1:{port}"
    prm = httpx.get(f"{base}/.well-known/oauth-protected-resource/mcp").json()
    assert prm["authorization_servers"] == [f"{base}/mcp"]  # the gateway serves the metadata
    asm = httpx.get(f"{base}/.well-known/oauth-authorization-server/mcp")
    assert asm.status_code == 200
    document = asm.json()
    registration = f"{base}/.well-known/oauth-authorization-server/mcp/client-registration"
    assert document["registration_endpoint"] == registration
    assert document["authorization_endpoint"] == f"{idp.issuer}/authorize"  # no audience for Keycloak
    assert document["token_endpoint"] == f"{idp.issuer}/token"
    pre = httpx.options(registration)
    assert pre.status_code == 204 and pre.headers["access-control-allow-methods"] == "POST, OPTIONS"
    reg = httpx.post(registration, json={"redirect_uris": ["http://localhost:9/cb"], "client_name": "t"})
    assert reg.status_code == 201 and reg.headers["access-control-allow-origin"] == "*"
    client_id = reg.json()["client_id"]
    assert idp.clients[client_id]["redirect_uris"] == ["http://localhost:9/cb"]  # it reached Keycloak
    assert httpx.get(registration).status_code == 405
    token = idp.mint(aud=f"{base}/mcp")
    r = httpx.post(f"{base}/mcp", json=_INIT, headers={**_ACCEPT, "authorization": f"Bearer {token}"}, timeout=20)
    assert r.status_code == 200, r.text


def test_auth0_audience_and_client_id(gateway, idp):
    port = free_port()
    gateway(_config(port, idp, provider={"auth0": {}}, clientId="pre-registered"))
    base = f"http://127.0.0.1:{port}"
    document = httpx.get(f"{base}/.well-known/oauth-authorization-server/mcp").json()
    endpoint = urlsplit(document["authorization_endpoint"])
    assert parse_qs(endpoint.query) == {"audience": [f"{base}/mcp"]}
    # Auth0 keeps its own registration endpoint; the gateway's answers with the configured client.
    assert document["registration_endpoint"] == f"{idp.issuer}/register"
    reg = httpx.post(
        f"{base}/.well-known/oauth-authorization-server/mcp/client-registration",
        json={"redirect_uris": ["http://localhost:9/cb"], "client_id": "attacker-choice"},
    )
    assert reg.status_code == 201
    assert reg.json()["client_id"] == "pre-registered" and reg.json()["redirect_uris"] == ["http://localhost:9/cb"]
    assert "attacker-choice" not in idp.clients and "pre-registered" not in idp.clients


def test_authentik_without_registration(gateway, idp):
    port = free_port()
    gateway(_config(port, idp, provider={"authentik": {}}, jwks={"url": idp.jwks_url}))
    base = f"http://127.0.0.1:{port}"
    document = httpx.get(f"{base}/.well-known/oauth-authorization-server/mcp").json()
    registration = document["registration_endpoint"]
    assert registration.startswith(base)
    r = httpx.post(registration, json={"redirect_uris": []})
    assert r.status_code == 400 and "clientId" in r.text


def test_bad_provider_configs(tmp_path, idp):
    for auth, expected in (
        ({"provider": {"entra": {}}}, "provider.entra"),
        ({"provider": {"okta": {}}}, "jwks"),
        ({"provider": {"keycloak": {}, "auth0": {}}}, "exactly one"),
        ({"provider": {"keycloak": {"realm": "x"}}}, "realm"),
        ({"clientSecret": "x"}, "clientSecret"),
    ):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(_config(3999, idp, **auth)))
        result = subprocess.run(
            [sys.executable, "-m", "agentgateway", "--validate-only", "-f", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and expected in result.stderr, (auth, result.stderr)
