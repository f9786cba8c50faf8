"""A listener's ``tls.root`` (agentgateway's mTLS): clients must present a certificate that chains
to those roots, through the real daemon; no certificate, or one from another CA, fails the
handshake and never reaches a route."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trustme

from tests.support.gateway import free_port


def _client(ca: trustme.CA, cert: trustme.LeafCert | None) -> httpx.Client:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    return httpx.Client(verify=ctx)


def test_client_certificates_are_required_and_verified(gateway, upstream, tmp_path):
    up = upstream()
    server_ca, client_ca, stranger_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    client_ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    port = free_port()
    tls = {"cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem"), "root": str(tmp_path / "clients.pem")}
    listener = {"protocol": "HTTPS", "tls": tls, "routes": [{"backends": [{"host": up.address}]}]}
    gateway({"binds": [{"port": port, "listeners": [listener]}]})
    url = f"https://localhost:{port}/"
    with _client(server_ca, client_ca.issue_cert("client.test")) as client:
        assert client.get(url).status_code == 200
    for cert in (None, stranger_ca.issue_cert("client.test")):
        with _client(server_ca, cert) as client, pytest.raises(httpx.HTTPError):
            client.get(url)
    assert len(up.requests()) == 1
