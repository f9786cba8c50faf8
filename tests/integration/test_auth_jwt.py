"""jwtAuth and authorization through the real daemon: tokens minted by pyjwt with keys from
cryptography, the JWKS served by a local identity provider (tests/support/idp.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.gateway import binds, free_port
from tests.support.idp import IdentityProvider, new_key, public_jwk


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict, claims: dict, signature: bytes = b"") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


def _signed(idp: IdentityProvider, claims: dict) -> str:
    """A token signed by the provider's key k1 with exactly these claims, as JSON (Python's json:
    also NaN and Infinity), whatever their types (PyJWT's encode checks some of them)."""
    import jwt

    return jwt.api_jws.encode(json.dumps(claims).encode(), idp.keys["k1"][0], algorithm="RS256", headers={"kid": "k1"})


def _jwt_route(idp: IdentityProvider, up_address: str, **jwt_auth) -> dict:
    cfg = {"mode": "strict", "issuer": idp.issuer, "audiences": ["api"], "jwks": {"url": idp.jwks_url}}
    cfg.update(jwt_auth)
    return {"policies": {"jwtAuth": cfg}, "backends": [{"host": up_address}]}


def _get(port: int, token: str | None = None, path: str = "/echo", **kwargs) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10, **kwargs)


def _challenge(r: httpx.Response) -> str:
    assert r.status_code == 401, r.text
    return r.headers["www-authenticate"]


def test_valid_token_reaches_upstream_without_it(gateway, upstream, idp):
    up = upstream()
    port = free_port()
    gateway(binds(port, [_jwt_route(idp, up.address)]))
    r = _get(port, idp.mint(aud="api"))
    assert r.status_code == 200, r.text
    names = [k for k, _ in r.json()["headers"]]
    assert "authorization" not in names  # the validated token is not the upstream's credential
    # A second request with the same token is answered from the worker's cache: no new fetch.
    assert _get(port, idp.mint(aud="api")).status_code == 200
    assert idp.jwks_fetches == 1


def test_backend_auth_passthrough_sends_the_validated_token_again(gateway, upstream, idp):
    up = upstream()
    port = free_port()
    route = _jwt_route(idp, up.address)
    route["policies"]["backendAuth"] = {"passthrough": {}}
    gateway(binds(port, [route]))
    token = idp.mint(aud="api")
    r = _get(port, token, headers={"x-other": "kept"})
    assert r.status_code == 200, r.text
    headers = dict(r.json()["headers"])
    assert headers["authorization"] == f"Bearer {token}" and headers["x-other"] == "kept"
    # A token that does not verify never reaches the backend.
    assert _get(port, idp.mint(aud="other")).status_code == 401


def test_attacks_are_refused_with_401_and_why(gateway, upstream, idp):
    up = upstream()
    port = free_port()
    gateway(binds(port, [_jwt_route(idp, up.address)]))
    now = int(time.time())

    missing = _get(port)
    assert _challenge(missing) == "Bearer"
    not_bearer = _get(port, headers={"authorization": "Basic dXNlcjpwdw=="})
    assert _challenge(not_bearer) == "Bearer"

    cases = {
        "expired": (idp.mint(aud="api", iat=now - 7200, exp=now - 3600), "token expired"),
        "not yet valid": (idp.mint(aud="api", nbf=now + 3600), "not yet valid"),
        "wrong issuer": (idp.mint(aud="api", iss="https://evil.example"), "issuer not accepted"),
        "wrong audience": (idp.mint(aud="other"), "audience not accepted"),
        "no audience": (idp.mint(), "token has no aud claim"),
        "no exp": (idp.mint(aud="api", exp=None), "token has no exp claim"),
        "malformed": ("not.a.jwt", "malformed token"),
    }
    # Signed by a key that is not the provider's, under the provider's kid.
    other = new_key()
    forged = idp.mint(aud="api")
    cases["bad signature"] = (
        __import__("jwt").encode(idp.claims(aud="api"), other, algorithm="RS256", headers={"kid": "k1"}),
        "signature verification failed",
    )
    # alg none: an unsigned token.
    cases["alg none"] = (_forge({"alg": "none", "kid": "k1"}, idp.claims(aud="api")), "alg none")
    # Algorithm confusion: HS256 with the provider's RSA public key (PEM) as the HMAC secret.
    public_pem = (
        idp.keys["k1"][0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    body = idp.claims(aud="api")
    signing_input = f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(body).encode())}".encode()
    confused = signing_input.decode() + "." + _b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    cases["algorithm confusion"] = (confused, "algorithm HS256 is not accepted for key k1")
    # A token whose payload was edited after signing.
    parts = forged.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
    tampered["sub"] = "admin"
    cases["tampered payload"] = (
        f"{parts[0]}.{_b64(json.dumps(tampered).encode())}.{parts[2]}",
        "signature verification failed",
    )

    for name, (token, why) in cases.items():
        r = _get(port, token)
        challenge = _challenge(r)
        assert challenge.startswith('Bearer error="invalid_token", error_description="'), (name, challenge)
        assert why in challenge, (name, challenge)
        assert why in r.text, (name, r.text)
    assert up.requests() == []  # nothing reached the upstream


def test_key_rotation_refetches_and_a_kid_flood_is_bounded(gateway, upstream, idp):
    up = upstream()
    port = free_port()
    gateway(binds(port, [_jwt_route(idp, up.address)]))
    assert _get(port, idp.mint(aud="api")).status_code == 200
    assert idp.jwks_fetches == 1
    # The provider rotates: a token signed with the new key names a kid the gateway has not seen.
    idp.add_key("k2", kind="EC")
    time.sleep(2.1)  # fetches of one URL are at least 2 s apart
    r = _get(port, idp.mint(aud="api"))
    assert r.status_code == 200, r.text
    assert idp.jwks_fetches == 2
    # Old tokens stay valid while their key is published.
    assert _get(port, idp.mint(kid="k1", aud="api")).status_code == 200
    # A flood of made-up kids: refused, and the provider is asked again at most once per
    # 2 s, not once per token.
    for i in range(30):
        token = idp.mint(aud="api", headers={"kid": f"made-up-{i}"})
        r = _get(port, token)
        assert "unknown signing key" in _challenge(r)
    assert idp.jwks_fetches <= 3


def test_revoked_key_is_noticed_after_rotation(gateway, upstream, idp):
    """A key removed from the JWKS stops validating once the gateway has fetched the new set."""
    up = upstream()
    port = free_port()
    gateway(binds(port, [_jwt_route(idp, up.address)]))
    old = idp.mint(aud="api")
    assert _get(port, old).status_code == 200
    idp.add_key("k2")
    idp.drop_key("k1")
    time.sleep(2.1)  # past the refetch interval
    assert _get(port, idp.mint(aud="api")).status_code == 200  # k2: the gateway fetches the new set
    assert "unknown signing key" in _challenge(_get(port, old))


def test_token_in_query_parameter_and_cookie(gateway, upstream, idp):
    up = upstream()
    port_q, port_c = free_port(), free_port()
    gateway(
        {
            "binds": [
                {
                    "port": port_q,
                    "listeners": [
                        {"routes": [_jwt_route(idp, up.address, location={"queryParameter": {"name": "access_token"}})]}
                    ],
                },
                {
                    "port": port_c,
                    "listeners": [{"routes": [_jwt_route(idp, up.address, location={"cookie": {"name": "session"}})]}],
                },
            ]
        }
    )
    token = idp.mint(aud="api")
    r = httpx.get(f"http://127.0.0.1:{port_q}/echo?a=1&access_token={token}&b=%20x", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["target"] == "/echo?a=1&b=%20x"  # removed, the rest kept as sent
    assert httpx.get(f"http://127.0.0.1:{port_q}/echo?access_token=bad", timeout=10).status_code == 401
    assert httpx.get(f"http://127.0.0.1:{port_q}/echo", headers={"authorization": f"Bearer {token}"}).status_code == 401

    r = httpx.get(f"http://127.0.0.1:{port_c}/echo", headers={"cookie": f"theme=dark; session={token}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert dict(r.json()["headers"])["cookie"] == "theme=dark"
    assert httpx.get(f"http://127.0.0.1:{port_c}/echo", headers={"cookie": "session=x"}, timeout=10).status_code == 401


def test_modes(gateway, upstream, idp):
    up = upstream()
    optional, permissive = free_port(), free_port()
    gateway(
        {
            "binds": [
                {"port": optional, "listeners": [{"routes": [_jwt_route(idp, up.address, mode="optional")]}]},
                {"port": permissive, "listeners": [{"routes": [_jwt_route(idp, up.address, mode="permissive")]}]},
            ]
        }
    )
    expired = idp.mint(aud="api", exp=int(time.time()) - 3600)
    assert _get(optional).status_code == 200  # no token: let through
    assert _get(optional, expired).status_code == 401  # a token that is there must be valid
    assert _get(optional, idp.mint(aud="api")).status_code == 200
    assert _get(permissive, expired).status_code == 200  # never rejects...
    r = _get(permissive, expired)
    assert "authorization" in [k for k, _ in r.json()["headers"]]  # ...and an invalid token is not removed


def test_claims_in_cel_authorization(gateway, upstream, idp):
    up = upstream()
    port = free_port()
    route = _jwt_route(idp, up.address)
    route["policies"]["authorization"] = {
        "rules": [
            # deny fails open on errors (agentgateway): guard the claim that may be absent
            {"deny": 'request.path.startsWith("/admin") && !(has(jwt.groups) && "admins" in jwt.groups)'},
            {"require": 'jwt.sub != "mallory"'},
            'jwt.sub == "alice" || (has(jwt.groups) && "admins" in jwt.groups)',
        ]
    }
    gateway(binds(port, [route]))
    assert _get(port, idp.mint(aud="api")).status_code == 200
    r = _get(port, idp.mint(aud="api", sub="bob"))
    assert r.status_code == 403 and "authorization failed" in r.text
    assert _get(port, idp.mint(aud="api", sub="bob", groups=["admins"])).status_code == 200
    assert _get(port, idp.mint(aud="api"), path="/admin/x").status_code == 403
    assert _get(port, idp.mint(aud="api", groups=["admins"]), path="/admin/x").status_code == 200
    assert _get(port, idp.mint(aud="api", sub="mallory", groups=["admins"])).status_code == 403


def test_providers_inline_and_file_jwks(gateway, upstream, idp, tmp_path):
    """Two issuers: one with its keys written in the config, one from a file."""
    up = upstream()
    port = free_port()
    key_a, key_b = new_key("EC"), new_key("OKP")
    jwks_file = tmp_path / "b.json"
    jwks_file.write_text(json.dumps({"keys": [public_jwk("b1", key_b)]}))
    route = {
        "policies": {
            "jwtAuth": {
                "mode": "strict",
                "providers": [
                    {"issuer": "https://a.example", "audiences": ["api"], "jwks": {"keys": [public_jwk("a1", key_a)]}},
                    {"issuer": "https://b.example", "jwks": {"file": str(jwks_file)}},
                ],
            }
        },
        "backends": [{"host": up.address}],
    }
    gateway(binds(port, [route]))
    import jwt

    now = int(time.time())
    a = jwt.encode({"iss": "https://a.example", "aud": "api", "exp": now + 60}, key_a, "ES256", headers={"kid": "a1"})
    b = jwt.encode({"iss": "https://b.example", "exp": now + 60}, key_b, "EdDSA", headers={"kid": "b1"})
    assert _get(port, a).status_code == 200
    assert _get(port, b).status_code == 200  # no audiences configured for b: aud not checked
    # b's key cannot vouch for a's issuer.
    c = jwt.encode({"iss": "https://a.example", "aud": "api", "exp": now + 60}, key_b, "EdDSA", headers={"kid": "b1"})
    assert "issuer not accepted" in _challenge(_get(port, c))
    # ES384 is not an algorithm of a P-256 key.
    assert "not accepted for key a1" in _challenge(_get(port, _forge({"alg": "ES384", "kid": "a1"}, {}, b"x")))


def test_gateway_level_policies(gateway, upstream, idp):
    """jwtAuth on a gateway applies to its routes; a route's own jwtAuth replaces it; the
    authorization rules of both apply."""
    up = upstream()
    port = free_port()
    config = {
        "gateways": {
            "default": {
                "port": port,
                "jwtAuth": {"mode": "strict", "issuer": idp.issuer, "jwks": {"url": idp.jwks_url}},
                "authorization": {"rules": ['jwt.sub != "eve"']},
            }
        },
        "routes": [
            {"name": "plain", "matches": [{"path": {"pathPrefix": "/plain"}}], "backends": [{"host": up.address}]},
            {
                "name": "own",
                "matches": [{"path": {"pathPrefix": "/own"}}],
                "policies": {
                    "jwtAuth": {"mode": "optional", "issuer": idp.issuer, "jwks": {"url": idp.jwks_url}},
                    "authorization": {"rules": ['request.method == "GET"']},
                },
                "backends": [{"host": up.address}],
            },
        ],
    }
    gateway(config)
    assert _get(port, path="/plain").status_code == 401
    assert _get(port, idp.mint(), path="/plain").status_code == 200
    assert _get(port, path="/own").status_code == 403  # optional here, but the gateway's rule needs jwt.sub
    assert _get(port, idp.mint(), path="/own").status_code == 200
    assert _get(port, idp.mint(sub="eve"), path="/own").status_code == 403  # the gateway's rule still applies


@pytest.mark.parametrize(
    ("policy", "where"),
    [
        ({"authorization": {"rules": ["request.path ==="]}}, "policies.authorization.rules[0]"),
        (
            {"jwtAuth": {"issuer": "x", "jwks": {"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}}},
            "jwtAuth.jwks.keys",
        ),
        ({"jwtAuth": {"issuer": "x", "jwks": "{not json"}}, "jwtAuth.jwks"),
        ({"jwtAuth": {"issuer": "x", "jwks": {"url": "ftp://x/jwks"}}}, "jwtAuth.jwks.url"),
        (
            {
                "jwtAuth": {
                    "issuer": "x",
                    "jwks": {"url": "http://x/"},
                    "jwtValidationOptions": {"requiredClaims": ["jti"]},
                }
            },
            "requiredClaims",
        ),
        (
            {
                "jwtAuth": {
                    "issuer": "x",
                    "jwks": {"url": "http://x/"},
                    "location": {"header": {"name": "a"}, "cookie": {"name": "b"}},
                }
            },
            "jwtAuth.location",
        ),
        ({"jwtAuth": {"issuer": "x", "jwks": {"url": "http://x/"}, "unknownKey": 1}}, "unknownKey"),
    ],
)
def test_config_errors_name_the_path(tmp_path, policy, where):
    import subprocess
    import sys

    import yaml

    from tests.support.gateway import REPO

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(binds(8080, [{"policies": policy, "backends": [{"host": "127.0.0.1:1"}]}])))
    r = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode != 0
    assert where in r.stderr, r.stderr


def test_registered_claims_of_the_wrong_type_are_refused(gateway, upstream, idp):
    """RFC 7519 §4.1: exp, nbf and iat are NumericDates (JSON numbers), iss and sub strings, aud a
    string or an array of strings. Tokens signed by the provider's own key, in jwtAuth and in
    mcpAuthentication (one validator): a wrong type is refused with 401 and why, never read
    leniently (PyJWT alone takes "exp": "9999999999" as a number)."""
    up = upstream()
    port_jwt, port_mcp = free_port(), free_port()
    mcp_auth = {"issuer": idp.issuer, "audiences": ["api"], "jwks": {"url": idp.jwks_url}}
    gateway(
        {
            "binds": [
                {"port": port_jwt, "listeners": [{"routes": [_jwt_route(idp, up.address)]}]},
                {
                    "port": port_mcp,
                    "listeners": [
                        {"routes": [{"policies": {"mcpAuthentication": mcp_auth}, "backends": [{"host": up.address}]}]}
                    ],
                },
            ]
        }
    )
    now = int(time.time())
    later = now + 600
    cases = {
        "exp as a string": ({"exp": str(later)}, "exp claim is not a NumericDate"),
        "exp as a bool": ({"exp": True}, "exp claim is not a NumericDate"),
        "exp null": ({"exp": None, "aud": "api"}, "exp claim is not a NumericDate"),
        "exp infinite": ({"exp": float("inf")}, "exp claim is not a NumericDate"),
        "exp NaN": ({"exp": float("nan")}, "exp claim is not a NumericDate"),
        "exp beyond any float": ({"exp": 10**400}, "exp claim is not a NumericDate"),
        "exp as an array": ({"exp": [later]}, "exp claim is not a NumericDate"),
        "nbf as a string": ({"nbf": str(now - 10)}, "nbf claim is not a NumericDate"),
        "iat as a string": ({"iat": str(now)}, "iat claim is not a NumericDate"),
        "iat as a bool": ({"iat": False}, "iat claim is not a NumericDate"),
        "iss as an array": ({"iss": [idp.issuer]}, "iss claim is not a string"),
        "sub as a number": ({"sub": 42}, "sub claim is not a string"),
        "sub as an object": ({"sub": {"id": "alice"}}, "sub claim is not a string"),
        "aud as a number": ({"aud": 7}, "aud claim is not a string or an array of strings"),
        "aud array with a number": ({"aud": ["api", 7]}, "aud claim is not a string or an array of strings"),
        "aud as an object": ({"aud": {"api": True}}, "aud claim is not a string or an array of strings"),
    }
    for name, (overrides, why) in cases.items():
        claims = idp.claims(aud="api")
        claims.update(overrides)  # None stays: a claim present with the value null
        token = _signed(idp, claims)
        for port in (port_jwt, port_mcp):
            r = _get(port, token)
            assert r.status_code == 401, (name, port, r.status_code, r.text)
            assert why in _challenge(r), (name, port, r.headers["www-authenticate"])
    # The right types still pass: float dates, aud as an array, through both policies.
    good = _signed(idp, idp.claims(aud=["other", "api"], exp=later + 0.5, iat=now - 0.5, nbf=float(now - 5)))
    for port in (port_jwt, port_mcp):
        assert _get(port, good).status_code == 200
    assert up.requests() and all(req["headers"] for req in up.requests())
