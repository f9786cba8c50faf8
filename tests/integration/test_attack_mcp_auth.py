"""Attacks on mcpAuthentication as the MCP authorization spec asks it, through the real daemon
with JWTs signed by the test identity provider: tokens for other resources, the client's token
reaching MCP upstreams, the 401 challenge and the RFC 9728 documents built from what the client
sends, and the OAuth endpoints the gateway serves for a provider."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.gateway import free_port, raw_connection, read_response, stdio_target
from tests.support.idp import IdentityProvider

_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _config(port: int, idp: IdentityProvider, targets: list[dict] | None = None, **auth: Any) -> dict:
    policy: dict[str, Any] = {
        "issuer": idp.issuer,
        "audiences": [f"http://127.0.0.1:{port}/mcp"],
        "jwks": {"url": idp.jwks_url},
    }
    policy.update(auth)
    return {
        "mcp": {
            "port": port,
            "targets": targets or [stdio_target("alpha")],
            "policies": {"mcpAuthentication": policy},
        }
    }


def _raw(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    with raw_connection(port) as s:
        s.sendall(head)
        return read_response(s)


def _post(port: int, token: str | None, path: str = "/mcp", **headers: str) -> httpx.Response:
    sent = dict(_ACCEPT, **headers)
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    return httpx.post(f"http://127.0.0.1:{port}{path}", json=_INIT, headers=sent, timeout=20)


# ---------------------------------------------------------------------------------- challenges


def test_quote_in_path_cannot_add_challenge_parameters(gateway, idp):
    """The edge passes a raw ``"`` in a path; the challenge's quoted ``resource_metadata`` must
    not end there, or the path writes parameters of its own (a second ``resource_metadata`` on
    another host, an ``error``/``scope`` the client would act on)."""
    port = free_port()
    gateway(_config(port, idp))
    path = b'/mcp/x",resource_metadata="http://evil.example/prm",scope="admin'
    status, headers, _ = _raw(
        port,
        b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: 2\r\n\r\n{}",
    )
    assert status == 401
    challenge = headers["www-authenticate"]
    assert challenge.count('"') == 2, challenge  # one quoted value: resource_metadata's
    assert challenge == (
        'Bearer resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource'
        '/mcp/x%22,resource_metadata=%22http:/evil.example/prm%22,scope=%22admin"'
    )
    # The metadata document names the same, percent-encoded, resource.
    status, _, body = _raw(
        port, b'GET /.well-known/oauth-protected-resource/mcp/a"b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
    )
    assert status == 200 and b'"resource":"http://127.0.0.1/mcp/a%22b"' in body


def test_forwarded_scheme_must_be_http_or_https(gateway, idp):
    """A trusted proxy that passes its client's ``X-Forwarded-Proto`` on: only http or https
    becomes the scheme of the URLs the gateway writes (a ``"`` there would end the quoted
    challenge value; ``javascript`` would be a URL the client fetches)."""
    port = free_port()
    config = _config(port, idp)
    config["frontendPolicies"] = {"http": {"trustedProxies": ["127.0.0.1"]}}
    gateway(config)
    for proto in ('x",error="insufficient_scope', "javascript"):
        r = _post(port, None, **{"x-forwarded-proto": proto})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == (
            f'Bearer resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"'
        )
    r = _post(port, None, **{"x-forwarded-proto": "HTTPS, http"})
    assert r.headers["www-authenticate"].startswith('Bearer resource_metadata="https://127.0.0.1:')
    prm = httpx.get(
        f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp",
        headers={"x-forwarded-proto": "https"},
        timeout=10,
    )
    assert prm.json()["resource"] == f"https://127.0.0.1:{port}/mcp"
    # A cache in front keyed on the URL alone must not hand this document to http clients.
    assert "x-forwarded-proto" in prm.headers.get("vary", "").lower()
    plain = httpx.get(f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp", timeout=10)
    assert plain.json()["resource"] == f"http://127.0.0.1:{port}/mcp" and "vary" not in plain.headers


def test_well_known_prefix_is_a_whole_segment(gateway, idp):
    """``/.well-known/oauth-protected-resource@evil.example/mcp`` is not the metadata of a
    resource: answered as one, its ``resource`` (and, with a provider, its authorization server)
    was ``http://127.0.0.1@evil.example/mcp``, a URL of evil.example served by the gateway."""
    port = free_port()
    gateway(_config(port, idp, provider={"keycloak": {}}))
    base = f"http://127.0.0.1:{port}"
    for path in (
        "/.well-known/oauth-protected-resource@evil.example/mcp",
        "/.well-known/oauth-protected-resource.evil.example/mcp",
        "/.well-known/oauth-authorization-server@evil.example/mcp",
    ):
        r = httpx.get(base + path, timeout=10)
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert "evil.example" not in r.text
    # The documents themselves, with and without a path below.
    prm = httpx.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=10).json()
    assert prm["resource"] == f"{base}/mcp" and prm["authorization_servers"] == [f"{base}/mcp"]
    assert httpx.get(f"{base}/.well-known/oauth-protected-resource", timeout=10).json()["resource"] == base
