"""Relative file paths in the config resolve as agentgateway resolves them, from the working
directory of the gateway, for every kind of file reference (htpasswd, JWKS, TLS certificates and
keys, secrets); a path that is not there is looked up next to the config file (our addition). When
both exist, the working directory's file is the one used."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from pathlib import Path

import httpx
import trustme
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.gateway import Gateway, Process, free_port


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _htpasswd(user: str, password: str) -> str:
    return f"{user}:{{SHA}}{base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()}\n"


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()


def _start(tmp: Path, processes: list[Process], config: dict[str, object], cwd: Path) -> Gateway:
    gw = Gateway(tmp, config, wait=False, cwd=cwd)
    processes.append(gw)
    gw.wait_ready()
    return gw


def test_the_working_directory_wins_then_the_config_directory(tmp_path, processes, upstream):
    up = upstream()
    run, conf = tmp_path / "run", tmp_path / "conf"
    run.mkdir()
    conf.mkdir()
    # The same relative name in both places, with different users.
    (run / "users.htpasswd").write_text(_htpasswd("cwd-user", "pw"))
    (conf / "users.htpasswd").write_text(_htpasswd("conf-user", "pw"))
    # Only next to the config: found there.
    (conf / "backend.key").write_text("from-the-config-dir\n")
    port = free_port()
    route = {
        "policies": {
            "basicAuth": {"mode": "strict", "htpasswd": {"file": "users.htpasswd"}},
            "backendAuth": {"key": {"file": "backend.key"}},
        },
        "backends": [{"host": up.address}],
    }
    _start(conf, processes, {"binds": [{"port": port, "listeners": [{"routes": [route]}]}]}, cwd=run)
    url = f"http://127.0.0.1:{port}/"
    assert httpx.get(url, headers=_basic("conf-user", "pw")).status_code == 401
    r = httpx.get(url, headers=_basic("cwd-user", "pw"))
    assert r.status_code == 200
    assert ["authorization", "Bearer from-the-config-dir"] in r.json()["headers"]


def test_tls_and_jwks_files_resolve_from_the_working_directory(tmp_path, processes, upstream):
    up = upstream()
    run, conf = tmp_path / "run", tmp_path / "conf"
    (run / "tls").mkdir(parents=True)
    (conf / "tls").mkdir(parents=True)
    good, decoy = trustme.CA(), trustme.CA()
    for ca, where in ((good, run), (decoy, conf)):
        cert = ca.issue_cert("localhost")
        cert.cert_chain_pems[0].write_to_path(str(where / "tls" / "cert.pem"))
        cert.private_key_pem.write_to_path(str(where / "tls" / "key.pem"))
    good.cert_pem.write_to_path(str(tmp_path / "good-ca.pem"))
    # A valid key set from the working directory; the config directory's has no key (an error if read).
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "kid": "k", "x": _b64(key.x), "y": _b64(key.y)}
    (run / "keys.json").write_text(json.dumps({"keys": [jwk]}))
    (conf / "keys.json").write_text(json.dumps({"keys": []}))
    port = free_port()
    listener = {
        "protocol": "HTTPS",
        "tls": {"cert": "tls/cert.pem", "key": "tls/key.pem"},
        "routes": [
            {
                "policies": {
                    "jwtAuth": {"mode": "optional", "issuer": "https://idp.test", "jwks": {"file": "keys.json"}}
                },
                "backends": [{"host": up.address}],
            }
        ],
    }
    _start(conf, processes, {"binds": [{"port": port, "listeners": [listener]}]}, cwd=run)
    # The certificate served is the working directory's (signed by the good CA).
    with httpx.Client(verify=ssl.create_default_context(cafile=str(tmp_path / "good-ca.pem"))) as client:
        assert client.get(f"https://localhost:{port}/").status_code == 200
