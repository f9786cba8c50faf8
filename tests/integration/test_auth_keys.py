"""apiKey and basicAuth through the real daemon, with their metadata in CEL."""

from __future__ import annotations

import base64
import hashlib
import subprocess

import bcrypt
import httpx

from tests.support.gateway import binds, free_port


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_api_keys_plain_hashed_and_bcrypt(gateway, upstream):
    up = upstream()
    port = free_port()
    route = {
        "policies": {
            "apiKey": {
                "mode": "strict",
                "keys": [
                    {"key": "sk-plain-1", "metadata": {"team": "red", "tier": 1}},
                    {
                        "keyHash": "sha256:" + hashlib.sha256(b"sk-hashed-2").hexdigest(),
                        "metadata": {"team": "blue", "tier": 2},
                    },
                    # $ is written $$ in the config file ($NAME expands from the environment)
                    {
                        "keyHash": bcrypt.hashpw(b"sk-bcrypt-3", bcrypt.gensalt(4)).decode().replace("$", "$$"),
                        "metadata": {"team": "green"},
                    },
                ],
            },
            "authorization": {"rules": [{"require": 'apiKey.team != "blue" || request.method == "GET"'}, "true"]},
            "transformations": {"request": {"set": {"x-team": "apiKey.team"}}},
        },
        "backends": [{"host": up.address}],
    }
    gateway(binds(port, [route]))
    url = f"http://127.0.0.1:{port}/echo"

    for key, team in (
        ("sk-plain-1", "red"),
        ("sk-hashed-2", "blue"),
        ("sk-bcrypt-3", "green"),
        ("sk-bcrypt-3", "green"),
    ):
        r = httpx.get(url, headers={"authorization": f"Bearer {key}"}, timeout=10)
        assert r.status_code == 200, r.text
        headers = dict(r.json()["headers"])
        assert headers["x-team"] == team
        assert "authorization" not in headers  # the key is removed once accepted
    assert httpx.post(url, headers={"authorization": "Bearer sk-hashed-2"}, timeout=10).status_code == 403
    missing = httpx.get(url, timeout=10)
    assert missing.status_code == 401 and "no API key" in missing.text
    for wrong in ("sk-plain-2", "sk-bcrypt-33", "SK-PLAIN-1", "sk-plain-1x"):
        r = httpx.get(url, headers={"authorization": f"Bearer {wrong}"}, timeout=10)
        assert r.status_code == 401, (wrong, r.text)
    assert all(dict(req["headers"]).get("x-team") for req in up.requests())


def test_api_key_modes_and_header_location(gateway, upstream):
    up = upstream()
    optional, permissive = free_port(), free_port()

    def route(mode: str) -> dict:
        keys = [{"key": "k1", "metadata": {"user": "ann"}}]
        policy = {"mode": mode, "keys": keys, "location": {"header": {"name": "x-api-key"}}}
        return {"policies": {"apiKey": policy}, "backends": [{"host": up.address}]}

    gateway(
        {
            "binds": [
                {"port": optional, "listeners": [{"routes": [route("optional")]}]},
                {"port": permissive, "listeners": [{"routes": [route("permissive")]}]},
            ]
        }
    )
    assert httpx.get(f"http://127.0.0.1:{optional}/", timeout=10).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{optional}/", headers={"x-api-key": "nope"}, timeout=10).status_code == 401
    r = httpx.get(f"http://127.0.0.1:{optional}/", headers={"x-api-key": "k1"}, timeout=10)
    assert r.status_code == 200 and "x-api-key" not in dict(r.json()["headers"])
    assert httpx.get(f"http://127.0.0.1:{permissive}/", headers={"x-api-key": "nope"}, timeout=10).status_code == 200


def test_basic_auth_htpasswd_schemes(gateway, upstream, tmp_path):
    up = upstream()
    port = free_port()
    apr1 = subprocess.run(
        ["openssl", "passwd", "-apr1", "-salt", "s4ltS4lt", "apr-pass"], capture_output=True, text=True, check=True
    ).stdout.strip()
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"sha-pass").digest()).decode()
    bcrypted = bcrypt.hashpw(b"bcrypt-pass", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    htpasswd = tmp_path / "users.htpasswd"
    htpasswd.write_text(f"# users\nann:{bcrypted}\nbob:{apr1}\n\ncid:{sha}\n")
    route = {
        "policies": {
            "basicAuth": {"mode": "strict", "realm": "gateway tests", "htpasswd": {"file": str(htpasswd)}},
            "authorization": {"rules": ['basicAuth.username != "cid" || request.path == "/echo"']},
        },
        "backends": [{"host": up.address}],
    }
    gateway(binds(port, [route]))
    url = f"http://127.0.0.1:{port}/echo"
    for user, password in (("ann", "bcrypt-pass"), ("ann", "bcrypt-pass"), ("bob", "apr-pass"), ("cid", "sha-pass")):
        r = httpx.get(url, headers=_basic(user, password), timeout=10)
        assert r.status_code == 200, (user, r.text)
        assert "authorization" not in dict(r.json()["headers"])
    assert httpx.get(f"http://127.0.0.1:{port}/other", headers=_basic("cid", "sha-pass"), timeout=10).status_code == 403
    for user, password in (("ann", "wrong"), ("bob", "sha-pass"), ("nobody", "bcrypt-pass"), ("cid", "")):
        r = httpx.get(url, headers=_basic(user, password), timeout=10)
        assert r.status_code == 401, (user, r.text)
        assert r.headers["www-authenticate"] == 'Basic realm="gateway tests"'
    garbage = httpx.get(url, headers={"authorization": "Basic %%%"}, timeout=10)
    assert garbage.status_code == 401
    assert httpx.get(url, timeout=10).status_code == 401


def test_basic_auth_inline_optional(gateway, upstream):
    up = upstream()
    port = free_port()
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
    route = {"policies": {"basicAuth": {"htpasswd": f"dee:{sha}\n"}}, "backends": [{"host": up.address}]}
    gateway(binds(port, [route]))
    url = f"http://127.0.0.1:{port}/"
    assert httpx.get(url, timeout=10).status_code == 200  # optional: no credentials, let through
    r = httpx.get(url, headers=_basic("dee", "nope"), timeout=10)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="Restricted"'
    assert httpx.get(url, headers=_basic("dee", "pw"), timeout=10).status_code == 200
