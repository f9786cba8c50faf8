"""Attacks on mcpAuthentication as the MCP authorization spec asks it, through the real daemon
with JWTs signed by the test identity provider: tokens for other resources, the client's token
reaching MCP upstreams, the 401 challenge and the RFC 9728 documents built from what the client
sends, and the OAuth endpoints the gateway serves for a provider."""

from __future__ import annotations

from typing import Any

import httpx
import jwt

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


# ---------------------------------------------------------------------------------- audiences


def test_tokens_for_other_resources_are_refused(gateway, idp):
    """RFC 8707 / MCP: a token must have been issued for this server. Same issuer, same key, same
    subject: only the audience differs. Audiences compare as exact strings (a trailing slash,
    another scheme, port, letter case or path is another resource); a token that names this
    server among others was issued for it too."""
    port = free_port()
    gateway(_config(port, idp))
    ours = f"http://127.0.0.1:{port}/mcp"
    refused = [
        "http://127.0.0.1:1/mcp",  # another port
        f"https://127.0.0.1:{port}/mcp",  # another scheme
        f"{ours}/",  # trailing slash
        f"http://127.0.0.1:{port}/MCP",  # path case
        f"HTTP://127.0.0.1:{port}/mcp",  # scheme case
        f"http://127.0.0.1:{port}/mcp/other",  # a resource below
        f"http://127.0.0.1:{port}",  # the origin alone
        [f"http://127.0.0.1:{port}/mcp2", "http://other.example/mcp"],
        [],
        "",
        None,  # no aud at all
    ]
    for aud in refused:
        r = _post(port, idp.mint(aud=aud))
        assert r.status_code == 401, (aud, r.status_code, r.text)
        assert r.headers["www-authenticate"].startswith('Bearer resource_metadata="'), aud
        assert 'error="invalid_token"' in r.headers["www-authenticate"], aud
    # Not issued by the issuer, though signed with its key and for us.
    assert _post(port, idp.mint(aud=ours, iss="http://other.example")).status_code == 401
    assert _post(port, idp.mint(aud=ours)).status_code == 200
    assert _post(port, idp.mint(aud=["http://other.example/mcp", ours])).status_code == 200


def test_no_aud_is_refused_even_when_not_required(gateway, idp):
    """``jwtValidationOptions.requiredClaims`` without ``aud`` does not make the audience check
    optional: the configured audiences are always checked."""
    port = free_port()
    gateway(_config(port, idp, jwtValidationOptions={"requiredClaims": []}))
    assert _post(port, idp.mint(aud=None, exp=None)).status_code == 401
    assert _post(port, idp.mint(aud=f"http://127.0.0.1:{port}/mcp", exp=None)).status_code == 200


# ---------------------------------------------------------------------------------- passthrough


def test_client_token_never_reaches_mcp_upstreams(gateway, idp, upstream):
    """No token passthrough (confused deputy): what the gateway sends a streamable HTTP or an
    HTTP+SSE target carries none of the client's credentials, wherever the client put its token
    (header, ``access_token`` query, cookie). The targets are the echo upstream, which records
    every request it gets."""
    up = upstream()
    port = free_port()
    targets = [
        {"name": "streamable", "mcp": {"host": f"http://{up.address}/drop"}},
        {"name": "sse", "sse": {"host": f"http://{up.address}/legacy"}},
    ]
    gateway(_config(port, idp, targets=targets))
    token = idp.mint(aud=f"http://127.0.0.1:{port}/mcp")
    r = _post(port, token, path=f"/mcp?access_token={token}", cookie=f"access_token={token}; session={token}")
    assert r.status_code in (200, 502, 503), r.text  # the echo server speaks no MCP
    seen = up.requests()
    assert {q["target"].split("?")[0] for q in seen} >= {"/drop", "/legacy"}, seen
    for q in seen:
        text = repr(q).lower()
        assert token.lower() not in text, q
        assert "authorization" not in {k.lower() for k in dict(q["headers"])}, q
        assert "cookie" not in {k.lower() for k in dict(q["headers"])}, q


# ---------------------------------------------------------------------------------- reasons


def test_token_header_cannot_split_the_challenge(gateway, idp):
    """The reason a token is refused goes into ``error_description``; parts of it come from the
    token's unverified header (its ``kid``, its ``alg``). A CR LF there added headers of the
    attacker's to the 401 (``Set-Cookie`` on the gateway's origin, from a link to
    ``/mcp?access_token=<token>`` when tokens are read from the query). Characters RFC 6750
    does not allow in ``error_description`` become ``?``; the same for ``jwtAuth``."""
    port = free_port()
    query = {"queryParameter": {"name": "access_token"}}
    config = _config(port, idp, authorizationLocation=query)
    config["binds"] = [
        {
            "port": free_port(),
            "listeners": [
                {
                    "routes": [
                        {
                            "policies": {
                                "jwtAuth": {"issuer": idp.issuer, "jwks": {"url": idp.jwks_url}, "location": query}
                            },
                            "backends": [{"host": "127.0.0.1:1"}],
                        }
                    ]
                }
            ],
        }
    ]
    gateway(config)
    jwt_port = config["binds"][0]["port"]
    key, _ = idp.keys[idp.current]
    for header in (
        {"kid": "k\r\nset-cookie: session=attacker\r\nx-injected: 1"},
        {"kid": "k\nx-injected: 1"},
        {"kid": "k\rx-injected: 1"},
        {"kid": "k\x00\x1b[31m\x7f\u2028"},
    ):
        token = jwt.encode({"aud": "x"}, key, algorithm="RS256", headers=header)
        for p in (port, jwt_port):
            status, headers, _ = _raw(
                p,
                b"GET /mcp?access_token=" + token.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            )
            assert status == 401, (p, header)
            assert "set-cookie" not in headers and "x-injected" not in headers, (p, headers)
            challenge = headers["www-authenticate"]
            description = challenge.split('error_description="', 1)[1]
            assert all(" " <= c <= "~" for c in description), (p, challenge)
            assert "unknown signing key (kid k?" in description, challenge
