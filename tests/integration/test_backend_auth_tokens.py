"""backendAuth that mints or fetches tokens, through the real daemon: jwtSign (verified with the
public key), oauthTokenExchange and crossAppAccess (against the test authorization servers of
tests/support/idp.py, which verify what they exchange), azure (against a strict fake of Entra
ID and the instance metadata service, tests/support/azure_fake.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.azure_fake import IDENTITY_HEADER, AzureFake
from tests.support.gateway import REPO, binds, free_port
from tests.support.idp import IdentityProvider


def _auth_of(seen: dict) -> list[str]:
    return [v for k, v in seen["headers"] if k == "authorization"]


def _pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# ---------------------------------------------------------------- jwtSign


def test_jwt_sign(gateway, upstream, tmp_path):
    up = upstream()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "rsa.pem"
    key_file.write_text(_pem(rsa_key))
    port = free_port()
    routes = [
        {
            "name": "rs",
            "matches": [{"path": {"pathPrefix": "/rs"}}],
            "backends": [
                {
                    "host": up.address,
                    "policies": {
                        "backendAuth": {
                            "jwtSign": {
                                "signingKey": {"file": str(key_file)},
                                "kid": "k-1",
                                "claims": {"iss": "gw", "sub": "svc", "aud": "snowflake", "n": 3, "roles": ["a"]},
                                "ttl": "90s",
                            }
                        }
                    },
                }
            ],
        },
        {
            "name": "es",
            "matches": [{"path": {"pathPrefix": "/es"}}],
            "backends": [
                {
                    "host": up.address,
                    "policies": {
                        "backendAuth": {
                            "jwtSign": {
                                "signingKey": _pem(ec_key),
                                "alg": "ES256",
                                "claims": {"iss": "gw"},
                                "location": {"header": {"name": "x-signed", "prefix": "JWT "}},
                            }
                        }
                    },
                }
            ],
        },
    ]
    gateway(binds(port, routes))
    base = f"http://127.0.0.1:{port}"
    seen = httpx.get(f"{base}/rs", headers={"authorization": "Bearer client"}).json()
    (value,) = _auth_of(seen)
    token = value.removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["kid"] == "k-1"
    claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"], audience="snowflake")
    assert claims["iss"] == "gw" and claims["sub"] == "svc" and claims["n"] == 3 and claims["roles"] == ["a"]
    assert claims["exp"] - claims["iat"] == 100  # ttl, and iat ten seconds back
    assert "nbf" not in claims
    seen = httpx.get(f"{base}/es", headers={"authorization": "Bearer client"}).json()
    signed = [v for k, v in seen["headers"] if k == "x-signed"]
    assert len(signed) == 1 and signed[0].startswith("JWT ")
    claims = jwt.decode(signed[0][4:], ec_key.public_key(), algorithms=["ES256"])
    assert claims["exp"] - claims["iat"] == 310
    assert _auth_of(seen) == ["Bearer client"]  # a location elsewhere leaves the client's header


def _validate(tmp_path, config) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "agentgateway", "--validate-only", "-f", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_token_auth_configs(tmp_path):
    rsa_pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ec_pem = _pem(ec.generate_private_key(ec.SECP256R1()))
    cases = [
        ({"jwtSign": {"signingKey": rsa_pem, "claims": {"exp": 1}}}, "claims.exp"),
        ({"jwtSign": {"signingKey": rsa_pem, "claims": {"nbf": 1}}}, "claims.nbf"),
        ({"jwtSign": {"signingKey": ec_pem}}, "RS256 needs an RSA key"),
        ({"jwtSign": {"signingKey": rsa_pem, "alg": "ES384"}}, "ES384 needs an EC key"),
        ({"jwtSign": {"signingKey": "not a key"}}, "PEM"),
        ({"jwtSign": {"signingKey": rsa_pem, "ttl": "0s"}}, "ttl"),
        ({"jwtSign": {"signingKey": rsa_pem, "alg": "HS256"}}, "alg"),
        ({"oauthTokenExchange": {"host": "127.0.0.1:1", "path": "token"}}, "must start with /"),
        (
            {"oauthTokenExchange": {"host": "127.0.0.1:1", "additionalParams": {"subject_token": "'x'"}}},
            "additionalParams.subject_token",
        ),
        (
            {"oauthTokenExchange": {"host": "127.0.0.1:1", "authorizationLocation": {"expression": "'x'"}}},
            "authorizationLocation.expression",
        ),
        ({"oauthTokenExchange": {"host": "127.0.0.1:1", "clientAuth": {"clientId": "a"}}}, "clientAuth.clientSecret"),
        (
            {"oauthTokenExchange": {"host": "127.0.0.1:1", "grantType": "jwtBearer", "requestedTokenType": "x:y"}},
            "requestedTokenType",
        ),
        ({"azure": {}}, "exactly one of explicitConfig or implicit"),
        ({"azure": {"developerImplicit": {}}}, "developerImplicit"),
        ({"azure": {"explicitConfig": {"clientSecret": {"tenant_id": "t", "client_id": "c"}}}}, "client_secret"),
    ]
    for auth, expected in cases:
        config = binds(1, [{"backends": [{"host": "127.0.0.1:9", "policies": {"backendAuth": auth}}]}])
        result = _validate(tmp_path, config)
        assert result.returncode != 0 and expected in (result.stdout + result.stderr), (auth, result.stderr)


# ---------------------------------------------------------------- oauthTokenExchange


@pytest.fixture
def sts() -> Iterator[IdentityProvider]:
    """A second authorization server (the resource's, for crossAppAccess)."""
    provider = IdentityProvider()
    yield provider
    provider.stop()


def _exchange_route(up, idp: IdentityProvider, **extra) -> dict:
    return {
        "policies": {
            "jwtAuth": {"mode": "strict", "issuer": idp.issuer, "jwks": {"url": idp.jwks_url}},
            "backendAuth": {
                "oauthTokenExchange": {
                    "host": f"127.0.0.1:{idp.port}",
                    "path": "/token",
                    "clientAuth": {"clientId": "gw", "clientSecret": "gw-secret"},
                    "audiences": ["https://backend.example"],
                    "scopes": ["read", "write"],
                    **extra,
                }
            },
        },
        "backends": [{"host": up.address}],
    }


def test_token_exchange_per_subject_and_cached(gateway, upstream, idp):
    idp.register_client("gw", "gw-secret", [])
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [_exchange_route(up, idp, additionalParams={"tenant": 'request.headers["x-tenant"]'})],
        )
    )
    base = f"http://127.0.0.1:{port}"
    alice, bob = idp.mint(), idp.mint(sub="bob")
    headers = {"authorization": f"Bearer {alice}", "x-tenant": "t1"}
    first = httpx.get(f"{base}/x", headers=headers)
    assert first.status_code == 200, first.text
    (sent,) = _auth_of(first.json())
    exchanged = sent.removeprefix("Bearer ")
    assert exchanged != alice
    claims = idp.verify(exchanged, audience="https://backend.example")
    assert claims["sub"] == "alice" and claims["scope"] == "read write"
    form = idp.token_requests[-1]["form"]
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert form["subject_token"] == alice
    assert form["subject_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert form["tenant"] == "t1" and "requested_token_type" not in form
    assert idp.token_requests[-1]["headers"]["authorization"].startswith("Basic ")
    exchanges = len(idp.token_requests)
    # The same subject again: from the cache.
    again = httpx.get(f"{base}/x", headers=headers)
    assert _auth_of(again.json()) == [sent] and len(idp.token_requests) == exchanges
    # Another subject never gets alice's token.
    other = httpx.get(f"{base}/x", headers={"authorization": f"Bearer {bob}", "x-tenant": "t1"})
    (bob_sent,) = _auth_of(other.json())
    assert idp.verify(bob_sent.removeprefix("Bearer "))["sub"] == "bob"
    # Other inputs (a parameter) are part of the key too.
    httpx.get(f"{base}/x", headers={**headers, "x-tenant": "t2"})
    assert len(idp.token_requests) == exchanges + 2
    # The client's token is never sent upstream.
    assert all(alice not in str(r["headers"]) and bob not in str(r["headers"]) for r in up.requests())


def test_token_exchange_failures(gateway, upstream, idp):
    idp.register_client("gw", "gw-secret", [])
    up = upstream()
    port = free_port()
    route = _exchange_route(up, idp)
    del route["policies"]["jwtAuth"]
    bad_client = _exchange_route(up, idp)
    bad_client["policies"]["backendAuth"]["oauthTokenExchange"]["clientAuth"]["clientSecret"] = "wrong"
    bad_client["matches"] = [{"path": {"pathPrefix": "/badclient"}}]
    gateway(binds(port, [bad_client, route]))
    base = f"http://127.0.0.1:{port}"
    # No subject token.
    assert httpx.get(f"{base}/x").status_code == 400
    # A subject token the authorization server refuses (signed by a key it does not have).
    other = IdentityProvider()
    try:
        refused = httpx.get(f"{base}/x", headers={"authorization": f"Bearer {other.mint()}"})
    finally:
        other.stop()
    assert refused.status_code == 400
    # The gateway's own credentials refused: the gateway's fault.
    assert httpx.get(f"{base}/badclient", headers={"authorization": f"Bearer {idp.mint()}"}).status_code == 500
    assert up.requests() == []


def test_cross_app_access(gateway, upstream, idp, sts):
    idp.register_client("gw", "gw-secret", [])
    sts.register_client("gw-at-rs", "rs-secret", [], method="client_secret_post")
    sts.trusted_assertion_issuer = idp
    up = upstream()
    port = free_port()
    config = binds(
        port,
        [
            {
                "backends": [
                    {
                        "host": up.address,
                        "policies": {
                            "backendAuth": {
                                "crossAppAccess": {
                                    "identityProvider": {
                                        "host": f"127.0.0.1:{idp.port}",
                                        "path": "/token",
                                        "clientAuth": {"clientId": "gw", "clientSecret": "gw-secret"},
                                    },
                                    "resourceAuthorizationServer": {
                                        "host": f"127.0.0.1:{sts.port}",
                                        "path": "/token",
                                        "clientAuth": {
                                            "clientId": "gw-at-rs",
                                            "clientSecret": "rs-secret",
                                            "method": "clientSecretPost",
                                        },
                                    },
                                    "audience": sts.issuer,
                                    "resources": ["https://api.example/"],
                                    "scopes": ["todos.read"],
                                }
                            }
                        },
                    }
                ]
            }
        ],
    )
    gateway(config)
    id_token = idp.mint(aud="client-app", nonce="n")
    r = httpx.get(f"http://127.0.0.1:{port}/todos", headers={"authorization": f"Bearer {id_token}"})
    assert r.status_code == 200, r.text
    (sent,) = _auth_of(r.json())
    claims = sts.verify(sent.removeprefix("Bearer "))
    assert claims["sub"] == "alice" and claims["scope"] == "todos.read" and claims["aud"] == ["https://api.example/"]
    leg1 = idp.token_requests[-1]["form"]
    assert leg1["requested_token_type"] == "urn:ietf:params:oauth:token-type:id-jag"
    assert leg1["subject_token_type"] == "urn:ietf:params:oauth:token-type:id_token"
    assert leg1["audience"] == sts.issuer and leg1["resource"] == "https://api.example/"
    leg2 = sts.token_requests[-1]["form"]
    assert leg2["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert leg2["client_id"] == "gw-at-rs" and leg2["scope"] == "todos.read"
    # Cached per subject: a second call makes no new exchange.
    counts = (len(idp.token_requests), len(sts.token_requests))
    httpx.get(f"http://127.0.0.1:{port}/todos", headers={"authorization": f"Bearer {id_token}"})
    assert (len(idp.token_requests), len(sts.token_requests)) == counts


# ---------------------------------------------------------------- azure


@pytest.fixture
def entra() -> Iterator[AzureFake]:
    fake = AzureFake(clients={"app-1": "app-secret"})
    yield fake
    fake.stop()


def _azure_route(up, auth: dict, prefix: str) -> dict:
    return {
        "matches": [{"path": {"pathPrefix": prefix}}],
        "backends": [{"host": up.address, "policies": {"backendAuth": {"azure": auth}}}],
    }


def test_azure_credentials(gateway, upstream, entra, tmp_path):
    up = upstream()
    federated = tmp_path / "federated-token"
    federated.write_text(entra.federated_token + "\n")
    port = free_port()
    routes = [
        _azure_route(
            up,
            {
                "explicitConfig": {
                    "clientSecret": {"tenant_id": "t-1", "client_id": "app-1", "client_secret": "app-secret"}
                }
            },
            "/secret",
        ),
        _azure_route(
            up,
            {"explicitConfig": {"clientSecret": {"tenant_id": "t-1", "client_id": "app-1", "client_secret": "no"}}},
            "/wrong",
        ),
        _azure_route(
            up, {"explicitConfig": {"managedIdentity": {"userAssignedIdentity": {"clientId": "uami-1"}}}}, "/mi"
        ),
        _azure_route(up, {"explicitConfig": {"workloadIdentity": {}}}, "/wi"),
    ]
    env = {
        "AZURE_AUTHORITY_HOST": entra.url,
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": entra.url,
        "AZURE_FEDERATED_TOKEN_FILE": str(federated),
        "AZURE_TENANT_ID": "t-2",
        "AZURE_CLIENT_ID": "wi-client",
    }
    gateway(binds(port, routes), env=env)
    base = f"http://127.0.0.1:{port}"

    def token(path: str) -> str:
        r = httpx.get(f"{base}{path}", headers={"authorization": "Bearer client"})
        assert r.status_code == 200, r.text
        (value,) = _auth_of(r.json())
        return value.removeprefix("Bearer ")

    first = token("/secret")
    assert first.startswith("aad:t-1:app-1:https://cognitiveservices.azure.com/.default:")
    assert token("/secret") == first  # cached until near expiry
    assert httpx.get(f"{base}/wrong").status_code == 500
    assert token("/mi").startswith("aad:mi:uami-1:https://cognitiveservices.azure.com:")
    imds = next(r for r in entra.requests if r["path"].startswith("/metadata/"))
    assert imds["headers"]["metadata"] == "true"
    assert token("/wi").startswith("aad:t-2:wi-client:")
    assert all("Bearer client" not in str(r["headers"]) for r in up.requests())


def test_azure_implicit_and_app_service(gateway, upstream, entra):
    up = upstream()
    port = free_port()
    gateway(
        binds(port, [_azure_route(up, {"implicit": {}}, "/")]),
        env={"IDENTITY_ENDPOINT": f"{entra.url}/msi/token", "IDENTITY_HEADER": IDENTITY_HEADER},
    )
    r = httpx.get(f"http://127.0.0.1:{port}/")
    assert r.status_code == 200, r.text
    assert _auth_of(r.json())[0].startswith("Bearer aad:mi:system:https://cognitiveservices.azure.com:")
    msi = entra.requests[-1]
    assert msi["path"].startswith("/msi/token") and msi["headers"]["x-identity-header"] == IDENTITY_HEADER
