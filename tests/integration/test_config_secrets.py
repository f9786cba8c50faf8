"""No secret of the config shows: a config that sets every secret-bearing field of the schema (each
marked field, and URLs with user-info) to a recognizable value runs in the real daemon, and
neither /config_dump, the /ui page, /metrics nor the log holds any of them; a broken edit's
error (status.lastError, the log) does not either."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import typing

import httpx
import msgspec
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from agentgateway.config import schema as S
from agentgateway.config.loader import load_text
from agentgateway.config.redact import marked_fields
from tests.support.gateway import free_port, stdio_target, wait_for
from tests.unit.config.test_redact import all_marked_fields


def _secret(name: str) -> str:
    return f"S3CR3T-{name}-{secrets.token_hex(6)}"


def _private_jwk(kid: str) -> dict:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key))
    jwk["kid"] = kid
    return jwk


def _pem_body_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def _set_fields(node: object, out: set[tuple[str, str]]) -> None:
    """(struct, key) of every field set in a decoded config (to check the test config covers every
    marked field)."""
    if isinstance(node, S.Schema):
        defaults = {f.name: f.default for f in msgspec.structs.fields(type(node))}
        for attr, key, _ in marked_fields(type(node)):
            value = getattr(node, attr)
            if value is not msgspec.UNSET and value != defaults.get(attr):
                out.add((type(node).__name__, key))
            _set_fields(value, out)
    elif isinstance(node, list):
        for item in node:
            _set_fields(item, out)
    elif isinstance(node, dict):
        for item in node.values():
            _set_fields(item, out)


def test_no_secret_shows_anywhere(gateway, upstream):
    up = upstream()
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    client_cert = ca.issue_cert("client.example")
    server_key_pem = server_cert.private_key_pem.bytes().decode()
    client_key_pem = client_cert.private_key_pem.bytes().decode()
    jwk_a, jwk_b, jwk_c, jwk_d, jwk_e = (_private_jwk(kid) for kid in ("a1", "b1", "c1", "d1", "e1"))
    signing_key_pem = ca.issue_cert("signer.example").private_key_pem.bytes().decode()
    assertion_key_pem = ca.issue_cert("assertion.example").private_key_pem.bytes().decode()
    s = {
        name: _secret(name)
        for name in (
            "header-set",
            "header-add",
            "response-cookie",
            "transform",
            "extauthz",
            "backendkey-value",
            "backendkey-str",
            "aws-secret",
            "aws-session",
            "apikey",
            "apikey-hashed",
            "htpasswd",
            "stdio-env",
            "llm-apikey",
            "redis-password",
            "jwks-url-password",
            "mcp-url-token",
            "oidc-secret",
            "exchange-secret",
            "azure-secret",
        )
    }
    s["session"] = secrets.token_hex(32)
    s["aws-key-id"] = "AKIA" + secrets.token_hex(8).upper()
    s["apikey-hash-hex"] = hashlib.sha256(s["apikey-hashed"].encode()).hexdigest()
    sha = base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
    htpasswd = f"alice:{{SHA}}{sha}\n# {s['htpasswd']}\n"
    port, tls_port, llm_port = free_port(), free_port(), free_port()
    target = stdio_target("alpha")
    target["stdio"]["env"]["UPSTREAM_TOKEN"] = s["stdio-env"]
    private_members = [jwk[m] for jwk in (jwk_a, jwk_b, jwk_c, jwk_d, jwk_e) for m in ("d", "p", "q", "dp", "dq", "qi")]
    routes = [
        {
            "name": "headers",
            "matches": [{"path": {"pathPrefix": "/headers"}}],
            "policies": {
                "requestHeaderModifier": {
                    "set": {"Authorization": f"Bearer {s['header-set']}", "x-visible": "shown-value"},
                    "add": {"x-api-key": s["header-add"]},
                },
                "responseHeaderModifier": {"add": {"set-cookie": f"sid={s['response-cookie']}"}},
                "transformations": {"request": {"set": {"proxy-authorization": f"'Basic {s['transform']}'"}}},
                "backendAuth": {"key": {"value": s["backendkey-value"]}},
            },
            "backends": [{"host": up.address}],
        },
        {
            "name": "keys",
            "matches": [{"path": {"pathPrefix": "/keys"}}],
            "policies": {
                "apiKey": {"keys": [{"key": s["apikey"]}, {"keyHash": f"sha256:{s['apikey-hash-hex']}"}]},
                "basicAuth": {"htpasswd": htpasswd},
                "backendAuth": {"key": s["backendkey-str"]},
            },
            "backends": [{"host": up.address}],
        },
        {
            "name": "jwt",
            "matches": [{"path": {"pathPrefix": "/jwt"}}],
            "policies": {
                "jwtAuth": {
                    "providers": [
                        {"issuer": "https://a.example", "jwks": {"keys": [jwk_a]}},
                        {"issuer": "https://b.example", "jwks": json.dumps({"keys": [jwk_b]})},
                        {
                            "issuer": "https://c.example",
                            "jwks": {"url": f"http://jwks:{s['jwks-url-password']}@127.0.0.1:1/jwks.json"},
                        },
                    ]
                },
                "mcpAuthentication": {
                    "issuer": "https://c.example",
                    "audiences": ["mcp"],
                    "jwks": json.dumps({"keys": [jwk_c]}),
                },
            },
            "backends": [{"host": up.address}],
        },
        {
            "name": "jwt-single",
            "matches": [{"path": {"pathPrefix": "/jwt-single"}}],
            "policies": {"jwtAuth": {"issuer": "https://d.example", "jwks": json.dumps({"keys": [jwk_d]})}},
            "backends": [{"host": up.address}],
        },
        {
            "name": "outbound",
            "matches": [{"path": {"pathPrefix": "/outbound"}}],
            "policies": {
                "extAuthz": {
                    "host": "127.0.0.1:1",
                    "protocol": {"http": {"addRequestHeaders": {"authorization": f"'{s['extauthz']}'"}}},
                },
                "remoteRateLimit": {
                    "domain": "d",
                    "descriptors": [
                        {"entries": [{"key": "k", "value": "'v'"}], "limit": {"requestsPerUnit": 1, "unit": "minute"}}
                    ],
                    "redis": {"url": f"redis://user:{s['redis-password']}@127.0.0.1:1/0"},
                },
                "backendTLS": {"cert": client_cert.cert_chain_pems[0].bytes().decode(), "key": client_key_pem},
                "backendAuth": {
                    "aws": {
                        "accessKeyId": s["aws-key-id"],
                        "secretAccessKey": s["aws-secret"],
                        "sessionToken": s["aws-session"],
                        "region": "us-east-1",
                    }
                },
            },
            "backends": [{"host": "127.0.0.1:1"}],
        },
        {
            "name": "login",
            "matches": [{"path": {"pathPrefix": "/login"}}],
            "policies": {
                "oidc": {
                    "issuer": "https://login.example",
                    "clientId": "gateway",
                    "clientSecret": s["oidc-secret"],
                    "redirectURI": f"http://127.0.0.1:{port}/login/callback",
                    "authorizationEndpoint": "https://login.example/auth",
                    "tokenEndpoint": "https://login.example/token",
                    "jwks": json.dumps({"keys": [jwk_e]}),
                }
            },
            "backends": [{"host": up.address}],
        },
        {
            "name": "signed",
            "matches": [{"path": {"pathPrefix": "/signed"}}],
            "policies": {"backendAuth": {"jwtSign": {"signingKey": signing_key_pem, "alg": "ES256"}}},
            "backends": [{"host": up.address}],
        },
        {
            "name": "exchanged",
            "matches": [{"path": {"pathPrefix": "/exchanged"}}],
            "policies": {
                "backendAuth": {
                    "oauthTokenExchange": {
                        "host": "127.0.0.1:1",
                        "path": "/token",
                        "clientAuth": {"clientId": "gw", "clientSecret": s["exchange-secret"]},
                    }
                }
            },
            "backends": [{"host": up.address}],
        },
        {
            "name": "cross-app",
            "matches": [{"path": {"pathPrefix": "/cross-app"}}],
            "policies": {
                "backendAuth": {
                    "crossAppAccess": {
                        "identityProvider": {
                            "host": "127.0.0.1:1",
                            "path": "/token",
                            "clientAuth": {
                                "clientId": "gw",
                                "method": "privateKeyJwt",
                                "signingKey": assertion_key_pem,
                                "alg": "ES256",
                                "assertionAudience": "https://idp.example/token",
                            },
                        },
                        "resourceAuthorizationServer": {
                            "host": "127.0.0.1:1",
                            "path": "/token",
                            "clientAuth": {"clientId": "gw", "clientSecret": s["exchange-secret"]},
                        },
                        "audience": "https://resource.example",
                    }
                }
            },
            "backends": [{"host": up.address}],
        },
        {
            "name": "azure",
            "matches": [{"path": {"pathPrefix": "/azure"}}],
            "policies": {
                "backendAuth": {
                    "azure": {
                        "explicitConfig": {
                            "clientSecret": {
                                "tenant_id": "t",
                                "client_id": "c",
                                "client_secret": s["azure-secret"],
                            }
                        }
                    }
                }
            },
            "backends": [{"host": up.address}],
        },
        {
            "name": "mcp",
            "matches": [{"path": {"pathPrefix": "/mcp"}}],
            "backends": [
                {
                    "mcp": {
                        "targets": [
                            target,
                            {"name": "remote", "mcp": {"host": f"http://{s['mcp-url-token']}@127.0.0.1:1/mcp"}},
                        ]
                    }
                }
            ],
        },
    ]
    config = {
        "config": {"session": {"key": s["session"]}},
        "binds": [
            {"port": port, "listeners": [{"routes": routes}]},
            {
                "port": tls_port,
                "listeners": [
                    {
                        "protocol": "HTTPS",
                        "tls": {"cert": server_cert.cert_chain_pems[0].bytes().decode(), "key": server_key_pem},
                        "routes": [{"backends": [{"host": up.address}]}],
                    }
                ],
            },
        ],
        "llm": {
            "port": llm_port,
            "models": [
                {
                    "name": "m",
                    "provider": "openAI",
                    "params": {"apiKey": s["llm-apikey"], "baseUrl": "http://127.0.0.1:1/v1"},
                }
            ],
        },
    }
    gw = gateway(config)
    # The test config sets every field the schema marks as secret-bearing.
    covered: set[tuple[str, str]] = set()
    _set_fields(load_text(gw.config_path.read_text()), covered)
    assert set(all_marked_fields()) <= covered, set(all_marked_fields()) - covered

    # Some traffic, so that /metrics has labels to show.
    assert httpx.get(f"http://127.0.0.1:{port}/headers/x").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/keys/x", headers={"authorization": f"Bearer {s['apikey']}"}).status_code
    dump = httpx.get(gw.admin_url + "/config_dump")
    assert dump.status_code == 200
    page = httpx.get(gw.admin_url + "/ui")
    assert page.status_code == 200
    outputs = {"config_dump": dump.text, "ui": page.text, "metrics": gw.metrics_text()}

    # Harmless values are still shown.
    parsed = dump.json()
    headers_route = parsed["config"]["binds"][0]["listeners"][0]["routes"][0]
    assert headers_route["policies"]["requestHeaderModifier"]["set"]["x-visible"] == "shown-value"
    assert parsed["config"]["binds"][0]["port"] == port
    assert "<redacted>" in dump.text

    def assert_nothing_secret(outputs: dict[str, str]) -> None:
        for where, text in outputs.items():
            for name, value in s.items():
                assert value not in text, (where, name)
            for line in [
                *_pem_body_lines(server_key_pem),
                *_pem_body_lines(client_key_pem),
                *_pem_body_lines(signing_key_pem),
                *_pem_body_lines(assertion_key_pem),
            ]:
                assert line not in text, (where, "a PEM private key line")
            assert "PRIVATE KEY" not in text, where
            for member in private_members:
                assert member not in text, (where, "a private JWK member")

    assert_nothing_secret(outputs)

    # A broken edit: its error (which names a URL with a password, and a key body without its
    # PEM header) is kept and logged without them.
    failures = gw.metric("agentgateway_config_reloads_total", result="failure")
    broken = json.loads(json.dumps(config))
    broken["llm"]["models"][0]["params"]["baseUrl"] = f"ftp://admin:{s['llm-apikey']}-x@llm.example/v1"
    gw.write_config(broken)
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") > failures, 10, "a failure")
    failures = gw.metric("agentgateway_config_reloads_total", result="failure")
    last_error = httpx.get(gw.admin_url + "/config_dump").json()["status"]["lastError"]
    assert "is not an http(s) URL" in last_error and "<redacted>" in last_error, last_error
    broken = json.loads(json.dumps(config))
    body = "".join(_pem_body_lines(server_key_pem))
    broken["binds"][1]["listeners"][0]["tls"]["key"] = body
    gw.write_config(broken)
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") > failures, 10, "a failure")
    last_error = httpx.get(gw.admin_url + "/config_dump").json()["status"]["lastError"]
    assert "tls.key" in last_error and "not found" in last_error, last_error
    outputs = {
        "config_dump": httpx.get(gw.admin_url + "/config_dump").text,
        "ui": httpx.get(gw.admin_url + "/ui").text,
        "metrics": gw.metrics_text(),
    }
    assert_nothing_secret(outputs)
    assert body[:64] not in gw.output()
    log_text = gw.output()
    assert "config reload rejected" in log_text
    assert_nothing_secret({"log": log_text})
    assert typing.cast(str, last_error) in httpx.get(gw.admin_url + "/ui").text.replace("&#x27;", "'")
