"""oidc's pure parts: the return-path check, cookie attributes, client credentials encoding."""

from __future__ import annotations

import base64

import pytest

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import Oidc, OidcLogout
from agentgateway.policy.oidc import OidcPolicy, basic_credentials, safe_return_path

KEY = bytes(range(32))


@pytest.mark.parametrize(
    "target",
    ["/", "/app?x=1", "/a/b%20c", "/%7Euser"],
)
def test_local_paths_are_kept(target):
    assert safe_return_path(target) == target


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "https://evil.example/",
        "evil",
        "",
        "/a\r\nset-cookie: x",
        "/" + "a" * 3000,
    ],
)
def test_other_targets_become_root(target):
    assert safe_return_path(target) == "/"


def _policy(redirect: str, **extra) -> OidcPolicy:
    cfg = Oidc(
        issuer="https://idp.example",
        client_id="c",
        client_secret="s",
        redirect_uri=redirect,
        authorization_endpoint="https://idp.example/authorize",
        token_endpoint="https://idp.example/token",
        jwks='{"keys": [{"kty": "EC", "kid": "k", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}',
        **extra,
    )
    return OidcPolicy(cfg, KEY, "route-1", None, "oidc")


def test_cookie_attributes_follow_the_redirect_uri():
    secure = _policy("https://app.example/cb")._cookie("n", "v", 10).decode()
    assert secure == "n=v; Path=/; Max-Age=10; HttpOnly; SameSite=Lax; Secure"
    plain = _policy("http://127.0.0.1:8080/cb")._cookie("n", "v", 10).decode()
    assert "Secure" not in plain and "HttpOnly" in plain


def test_redirect_uri_and_logout_checks():
    for bad in ("/cb", "https://app.example/cb#f", "https://app.example/cb?x=1", "javascript:alert(1)"):
        with pytest.raises(ConfigError):
            _policy(bad)
    for path in ("//evil", "/cb", "/out?x=1", "relative"):
        with pytest.raises(ConfigError):
            _policy("https://app.example/cb", logout=OidcLogout(path=path))
    with pytest.raises(ConfigError, match="session"):
        OidcPolicy(
            Oidc(issuer="i", client_id="c", client_secret="s", redirect_uri="https://a/cb"), None, "r", None, "o"
        )


def test_cookies_of_one_policy_do_not_open_in_another():
    a, b = _policy("https://app.example/cb"), _policy("https://app.example/cb")
    b.policy_id = "route-2"
    sealed = a.cipher.seal(b'{"idToken": "t", "expiresAt": 9999999999}', b"session\0route-1")
    assert a._open_session(sealed.encode()) == "t"
    assert b._open_session(sealed.encode()) is None
    # nor a transaction cookie as a session
    txn = a.cipher.seal(b'{"idToken": "t", "expiresAt": 9999999999}', a._transaction_aad("x"))
    assert a._open_session(txn.encode()) is None


def test_client_secret_basic_is_form_encoded_first():
    value = basic_credentials("my client", "p:ss/+&")
    raw = base64.b64decode(value.removeprefix(b"Basic ")).decode()
    assert raw == "my%20client:p%3Ass%2F%2B%26"
