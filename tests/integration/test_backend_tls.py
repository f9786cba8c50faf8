"""backendTLS with client certificates (mutual TLS) through the real daemon: TLS upstreams (the
test upstream, the gRPC authorization service) that require a certificate signed by their CA
(trustme), and refuse a gateway without one."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import trustme

from tests.support.gateway import ServerProcess, binds, free_port


class Pki:
    """A server CA (the upstream's certificate) and a client CA (the gateway's), as files."""

    def __init__(self, tmp_path) -> None:
        self.dir = tmp_path
        self.server_ca, self.client_ca = trustme.CA(), trustme.CA()
        self.root = self._write("server-ca.pem", self.server_ca.cert_pem)
        self.client_root = self._write("client-ca.pem", self.client_ca.cert_pem)
        server = self.server_ca.issue_cert("upstream.test", "127.0.0.1")
        self.server_cert = self._write("server.pem", server.private_key_and_cert_chain_pem)
        self.server_key = self._write("server-key.pem", server.private_key_pem)
        client = self.client_ca.issue_cert("gateway.test", common_name="gateway.test")
        self.client_cert = self._write("client.pem", client.cert_chain_pems[0])
        self.client_key = self._write("client-key.pem", client.private_key_pem)
        # A certificate from a CA the upstream does not trust.
        stranger = trustme.CA().issue_cert("stranger.test", common_name="stranger.test")
        self.stranger_cert = self._write("stranger.pem", stranger.cert_chain_pems[0])
        self.stranger_key = self._write("stranger-key.pem", stranger.private_key_pem)

    def _write(self, name, blob) -> str:
        path = self.dir / name
        blob.write_to_path(str(path))
        return str(path)

    def tls(self, cert: str | None = None, key: str | None = None) -> dict:
        out = {"root": self.root, "hostname": "upstream.test"}
        if cert:
            out.update(cert=cert, key=key)
        return out


def test_mutual_tls_upstream(gateway, upstream, tmp_path):
    pki = Pki(tmp_path)
    up = upstream("mtls", tls=(pki.server_cert, pki.server_key), client_ca=pki.client_root)
    port = free_port()
    config = binds(
        port,
        [
            {
                "name": "inline",
                "matches": [{"path": {"pathPrefix": "/inline"}}],
                "backends": [
                    {"host": up.address, "policies": {"backendTLS": pki.tls(pki.client_cert, pki.client_key)}}
                ],
            },
            {"name": "named", "matches": [{"path": {"pathPrefix": "/named"}}], "backends": [{"backend": "internal"}]},
            {
                "name": "none",
                "matches": [{"path": {"pathPrefix": "/none"}}],
                "backends": [{"host": up.address, "policies": {"backendTLS": pki.tls()}}],
            },
            {
                "name": "stranger",
                "matches": [{"path": {"pathPrefix": "/stranger"}}],
                "policies": {"backendTLS": pki.tls(pki.stranger_cert, pki.stranger_key)},
                "backends": [{"host": up.address}],
            },
        ],
    )
    # Inline PEM works as well as paths (an addition).
    config["backends"] = [
        {
            "name": "internal",
            "host": up.address,
            "policies": {"backendTLS": pki.tls(Path(pki.client_cert).read_text(), Path(pki.client_key).read_text())},
        }
    ]
    gateway(config)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=10) as client:
        for path in ("/inline", "/named"):
            r = client.get(f"{base}{path}/echo")
            assert r.status_code == 200, r.text
            # The upstream saw the certificate the gateway was configured with.
            assert r.headers["x-client-cert"] == "gateway.test"
        for path in ("/none", "/stranger"):
            r = client.get(f"{base}{path}/echo")
            assert r.status_code in (502, 503), r.text
        # The refused handshakes cost nothing else: the gateway keeps serving.
        assert client.get(f"{base}/inline/again").status_code == 200


def test_grpc_authorization_service_over_mutual_tls(gateway, upstream, tmp_path, processes):
    pki = Pki(tmp_path)
    up = upstream()
    authz_port = free_port()
    args = [sys.executable, "-m", "tests.support.extauthz", "--port", str(authz_port), "--mode", "grpc"]
    args += ["--cert", pki.server_cert, "--key", pki.server_key, "--client-ca", pki.client_root]
    processes.append(ServerProcess(args, tmp_path / "authz.log", authz_port, what="TLS authorizer"))
    port = free_port()
    target = f"127.0.0.1:{authz_port}"
    routes = [
        {
            "name": "mtls",
            "matches": [{"path": {"pathPrefix": "/mtls"}}],
            "policies": {
                "extAuthz": {"host": target, "policies": {"backendTLS": pki.tls(pki.client_cert, pki.client_key)}}
            },
            "backends": [{"host": up.address}],
        },
        {
            "name": "nocert",
            "matches": [{"path": {"pathPrefix": "/nocert"}}],
            "policies": {"extAuthz": {"host": target, "policies": {"backendTLS": pki.tls()}, "timeout": "1s"}},
            "backends": [{"host": up.address}],
        },
    ]
    gateway(binds(port, routes))
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=10) as client:
        r = client.get(f"{base}/mtls/echo", headers={"x-authz": "allow"})
        assert r.status_code == 200, r.text
        assert client.get(f"{base}/mtls/echo", headers={"x-authz": "deny"}).status_code == 401
        # Without a client certificate the service cannot be reached: failureMode deny.
        assert client.get(f"{base}/nocert/echo", headers={"x-authz": "allow"}).status_code == 403
