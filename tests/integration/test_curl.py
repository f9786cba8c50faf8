"""curl as a client: HEAD, chunked uploads, Expect: 100-continue, HTTPS with SNI via --resolve."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import trustme

from tests.support.gateway import binds, free_port

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by make test")


def _curl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--http1.1", *args], input=stdin, capture_output=True, timeout=60)


def test_curl_head_upload_and_continue(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    base = f"http://127.0.0.1:{port}"
    head = _curl("-I", f"{base}/head-length?n=777")
    assert head.returncode == 0 and b"content-length: 777" in head.stdout.lower()
    # Upload from stdin: curl sends it chunked.
    up_chunked = _curl("-T", "-", f"{base}/echo", stdin=b"z" * 300_000)
    data = json.loads(up_chunked.stdout)
    assert data["body_length"] == 300_000 and data["chunked"] is True
    # A body over 1 KiB makes curl send Expect: 100-continue and wait for the 100.
    big = _curl("-H", "Expect: 100-continue", "--data-binary", "@-", f"{base}/echo", stdin=b"y" * 5000)
    assert json.loads(big.stdout)["body_length"] == 5000
    missing = _curl("-w", "%{http_code}", "-o", "/dev/null", f"http://127.0.0.1:{port}/nothing", "-H", "Host: x")
    assert missing.stdout == b"200"


def test_curl_https_sni(gateway, upstream, tmp_path):
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    listeners = []
    for name in ("one.test", "two.test"):
        cert = ca.issue_cert(name)
        crt, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(crt))
        cert.private_key_pem.write_to_path(str(key))
        listeners.append(
            {
                "name": name,
                "hostname": name,
                "protocol": "HTTPS",
                "tls": {"cert": str(crt), "key": str(key)},
                "routes": [{"policies": {"directResponse": {"status": 200, "body": f"hello {name}"}}}],
            }
        )
    port = free_port()
    gateway({"binds": [{"port": port, "listeners": listeners}]})
    for name in ("one.test", "two.test"):
        r = _curl("--cacert", str(ca_path), "--resolve", f"{name}:{port}:127.0.0.1", f"https://{name}:{port}/")
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"hello {name}".encode()
