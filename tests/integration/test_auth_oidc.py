"""oidc through the real daemon: a browser's login (driven by httpx, every redirect followed by
hand and asserted) against the test OpenID provider (tests/support/idp.py): authorization code
with PKCE, the sealed session cookie, logout; and the attacks on each step."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from tests.support.gateway import REPO, binds, free_port
from tests.support.idp import IdentityProvider

SESSION_KEY = "ab" * 32
HTML = {"accept": "text/html"}


def _oidc(idp: IdentityProvider, port: int, **extra) -> dict:
    redirect = f"http://127.0.0.1:{port}/oauth/callback"
    if "gw" not in idp.clients:
        idp.register_client("gw", "s3cret/+&", [redirect])
    return {
        "issuer": idp.issuer,
        "clientId": "gw",
        "clientSecret": "s3cret/+&",
        "redirectURI": redirect,
        "scopes": ["profile"],
        **extra,
    }


def _start(gateway, upstream, idp, **extra):
    up = upstream()
    port = free_port()
    oidc = _oidc(idp, port, **extra)
    routes = [
        {
            "name": "app",
            "policies": {
                "oidc": oidc,
                "transformations": {"request": {"set": {"x-user": "jwt.sub", "x-aud": "jwt.aud"}}},
            },
            "backends": [{"host": up.address}],
        }
    ]
    gateway(binds(port, routes), env={"SESSION_KEY": SESSION_KEY})
    return f"http://127.0.0.1:{port}", up


def _login(client: httpx.Client, base: str, path: str = "/app?x=1") -> httpx.Response:
    """A browser's login: the protected page, the provider, the callback; the callback's answer."""
    first = client.get(f"{base}{path}", headers=HTML)
    assert first.status_code == 302, first.text
    authorize = client.get(first.headers["location"])
    assert authorize.status_code == 302, authorize.text
    callback = client.get(authorize.headers["location"], headers=HTML)
    return callback


def test_login_session_and_logout(gateway, upstream, idp):
    base, up = _start(gateway, upstream, idp, logout={"path": "/logout", "redirect": "/bye"})
    with httpx.Client() as browser:
        first = browser.get(f"{base}/app?x=1", headers={**HTML, "cookie": "theme=dark"})
        assert first.status_code == 302
        assert first.headers["cache-control"] == "no-store"
        location = urlsplit(first.headers["location"])
        assert f"{location.scheme}://{location.netloc}" == idp.issuer and location.path == "/authorize"
        q = {k: v[0] for k, v in parse_qs(location.query).items()}
        assert q["response_type"] == "code" and q["client_id"] == "gw"
        assert q["redirect_uri"] == f"{base}/oauth/callback"
        assert q["scope"] == "openid profile"
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
        assert len(q["state"]) > 20 and len(q["nonce"]) > 20
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("agw_oidc_t_") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Path=/" in cookie and "Max-Age=300" in cookie and "Secure" not in cookie  # http here
        # the verifier is not readable from the cookie (sealed)
        assert "pkce" not in base64.urlsafe_b64decode(cookie.split("=", 1)[1].split(";")[0] + "==").decode("latin-1")

        authorize = browser.get(first.headers["location"])
        callback = browser.get(authorize.headers["location"], headers=HTML)
        assert callback.status_code == 302, callback.text
        assert callback.headers["location"] == "/app?x=1"
        cookies = callback.headers.get_list("set-cookie")
        assert any(c.startswith("agw_oidc_s_") and "HttpOnly" in c for c in cookies)
        assert any(c.startswith("agw_oidc_t_") and "Max-Age=0" in c for c in cookies)
        # The code went to the token endpoint with the client's credentials and the verifier.
        exchange = idp.token_requests[-1]
        assert exchange["form"]["grant_type"] == "authorization_code"
        assert exchange["headers"]["authorization"].startswith("Basic ")
        assert "client_secret" not in exchange["form"] and len(exchange["form"]["code_verifier"]) >= 43

        browser.cookies.set("theme", "dark")
        page = browser.get(f"{base}/app?x=1")
        assert page.status_code == 200, page.text
        seen = dict(page.json()["headers"])
        assert seen["x-user"] == "alice" and seen["x-aud"] == "gw"
        # The gateway's cookies stay at the gateway; the application's own go through.
        assert "agw_oidc" not in seen.get("cookie", "") and "theme=dark" in seen["cookie"]

        # Logout: a POST from the site itself.
        assert browser.get(f"{base}/logout").status_code == 405
        assert browser.post(f"{base}/logout").status_code == 403  # no Origin
        assert browser.post(f"{base}/logout", headers={"origin": "http://evil.example"}).status_code == 403
        out = browser.post(f"{base}/logout", headers={"origin": base})
        assert out.status_code == 303 and out.headers["location"] == "/bye"
        assert any(c.startswith("agw_oidc_s_") and "Max-Age=0" in c for c in out.headers.get_list("set-cookie"))
        again = browser.get(f"{base}/app", headers=HTML)
        assert again.status_code == 302 and again.headers["location"].startswith(idp.issuer)
    assert all("agw_oidc" not in json.dumps(r["headers"]) for r in up.requests())


def test_fetches_get_401_and_sessions_do_not_forge(gateway, upstream, idp):
    base, _ = _start(gateway, upstream, idp)
    r = httpx.get(f"{base}/api", headers={"sec-fetch-mode": "cors"})
    assert r.status_code == 401
    with httpx.Client() as browser:
        assert _login(browser, base).status_code == 302
        session = next(c for c in browser.cookies.jar if c.name.startswith("agw_oidc_s_"))
        good = session.value
    assert httpx.get(f"{base}/api", headers={"cookie": f"{session.name}={good}"}).status_code == 200
    # Flipped bytes, a truncated value, a sealed value under the wrong name: a new login.
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    for forged in (f"{session.name}={flipped}", f"{session.name}={good[:40]}", f"agw_oidc_s_0000={good}"):
        r = httpx.get(f"{base}/api", headers={**HTML, "cookie": forged})
        assert r.status_code == 302 and r.headers["location"].startswith(idp.issuer), forged


def test_callback_attacks(gateway, upstream, idp):
    base, _ = _start(gateway, upstream, idp)
    with httpx.Client() as victim:
        first = victim.get(f"{base}/app", headers=HTML)
        authorize = httpx.get(first.headers["location"])
        callback_url = authorize.headers["location"]
        q = {k: v[0] for k, v in parse_qs(urlsplit(callback_url).query).items()}
        # Login CSRF: the attacker's callback reaches a browser without the transaction cookie.
        assert httpx.get(callback_url).status_code == 400
        # A state whose CSRF half was changed.
        state = json.loads(base64.urlsafe_b64decode(q["state"] + "=="))
        state["csrfState"] = "x" * 22
        forged = base64.urlsafe_b64encode(json.dumps(state).encode()).rstrip(b"=").decode()
        r = victim.get(f"{base}/oauth/callback", params={"code": q["code"], "state": forged})
        assert r.status_code == 400 and "CSRF" in r.text
        # Garbage states.
        for bad in ("%%%", "e30", base64.urlsafe_b64encode(b'{"transactionId":"../x","csrfState":"a"}').decode()):
            assert victim.get(f"{base}/oauth/callback", params={"code": "c", "state": bad}).status_code == 400
    with httpx.Client() as browser:
        first = browser.get(f"{base}/app", headers=HTML)
        callback_url = httpx.get(first.headers["location"]).headers["location"]
        transaction = dict(browser.cookies)
        assert browser.get(callback_url).status_code == 302
        # Replayed with the transaction cookie kept: the code is spent.
        replay = httpx.get(callback_url, cookies=transaction)
        assert replay.status_code == 401


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"nonce": "not-the-one"}, "nonce"),
        ({"aud": "another-client"}, "audience"),
        ({"exp": 1}, "expired"),
        ({"iss": "http://evil.example"}, "issuer"),
    ],
)
def test_id_token_is_validated(gateway, upstream, idp, claims, why):
    base, _ = _start(gateway, upstream, idp)
    idp.id_token_claims = claims
    with httpx.Client() as browser:
        r = _login(browser, base)
        assert r.status_code == 401, (why, r.text)
        assert not any(c.name.startswith("agw_oidc_s_") for c in browser.cookies.jar)


def test_provider_error_and_open_redirects(gateway, upstream, idp):
    base, _ = _start(gateway, upstream, idp)
    idp.deny_next_login = True
    with httpx.Client() as browser:
        r = _login(browser, base)
        assert r.status_code == 401 and "access_denied" in r.text
    # The page to return to is a local path; absolute URLs in the target never become Location.
    with httpx.Client() as browser:
        first = browser.get(f"{base}/a/..//evil.example/x", headers=HTML)
        assert first.status_code in (302, 400)
        if first.status_code == 302:
            callback = browser.get(httpx.get(first.headers["location"]).headers["location"])
            assert callback.headers["location"].startswith("/") and not callback.headers["location"].startswith("//")


def test_explicit_endpoints_and_post_auth(gateway, upstream, idp, tmp_path):
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/cb"
    idp.register_client("gw2", "pw", [redirect], method="client_secret_post")
    up = upstream()
    oidc = {
        "issuer": idp.issuer,
        "clientId": "gw2",
        "clientSecret": "pw",
        "redirectURI": redirect,
        "authorizationEndpoint": f"{idp.issuer}/authorize",
        "tokenEndpoint": f"{idp.issuer}/token",
        "tokenEndpointAuth": "clientSecretPost",
        "jwks": {"url": idp.jwks_url},
    }
    gateway(
        binds(port, [{"policies": {"oidc": oidc}, "backends": [{"host": up.address}]}]),
        env={"SESSION_KEY": SESSION_KEY},
    )
    with httpx.Client() as browser:
        assert _login(browser, f"http://127.0.0.1:{port}", "/").status_code == 302
        assert browser.get(f"http://127.0.0.1:{port}/").status_code == 200
    form = idp.token_requests[-1]["form"]
    assert form["client_id"] == "gw2" and form["client_secret"] == "pw"


def _validate(tmp_path, config, env=None):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "agentgateway", "--validate-only", "-f", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, **(env or {})},
    )


def test_bad_oidc_configs(tmp_path, idp):
    base = {"issuer": idp.issuer, "clientId": "c", "clientSecret": "s", "redirectURI": "http://127.0.0.1:1/cb"}
    cases = [
        ({}, None, "session.key"),
        ({"redirectURI": "/cb"}, SESSION_KEY, "redirectURI"),
        ({"authorizationEndpoint": f"{idp.issuer}/authorize"}, SESSION_KEY, "all together"),
        ({"tokenEndpointAuth": "clientSecretPost"}, SESSION_KEY, "tokenEndpointAuth"),
        ({"logout": {"path": "//evil"}}, SESSION_KEY, "logout.path"),
        ({"scopes": ["a b"]}, SESSION_KEY, "scopes[0]"),
        ({"unknownKey": 1}, SESSION_KEY, "unknownKey"),
    ]
    for extra, key, expected in cases:
        config = binds(1, [{"policies": {"oidc": {**base, **extra}}, "backends": [{"host": "127.0.0.1:9"}]}])
        env = {"SESSION_KEY": key} if key else {"SESSION_KEY": ""}
        result = _validate(tmp_path, config, env)
        assert result.returncode != 0 and expected in (result.stdout + result.stderr), (extra, result.stderr)


def test_session_expires_with_the_id_token(gateway, upstream, idp):
    base, _ = _start(gateway, upstream, idp)
    idp.id_token_claims = {"exp": int(time.time()) + 2}
    with httpx.Client() as browser:
        assert _login(browser, base).status_code == 302
        session = next(c for c in browser.cookies.jar if c.name.startswith("agw_oidc_s_"))
        assert session.expires is not None and session.expires <= time.time() + 3
