"""Upstream behaviour: dead and misbehaving upstreams, pooling, HTTPS upstreams (backendTLS)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
import trustme

from tests.support.gateway import ResponseReader, binds, free_port, raw_connection


def test_dead_upstream_gets_a_quick_503_with_a_clear_body(gateway):
    dead = free_port()  # nothing listens here
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": f"127.0.0.1:{dead}"}]}]))
    start = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{port}/x")
    assert time.monotonic() - start < 1.0
    assert r.status_code == 503
    assert "upstream connect error" in r.text and str(dead) in r.text
    assert gw.metric("agentgateway_requests_total", status="503") == 1


def test_upstream_closing_without_answer_is_502(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    r = httpx.get(f"http://127.0.0.1:{port}/drop")
    assert r.status_code == 502
    assert "closed the connection" in r.text


def test_truncated_upstream_body_truncates_the_client_response(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://127.0.0.1:{port}/truncate?n=100000")
    assert httpx.get(f"http://127.0.0.1:{port}/echo").status_code == 200


def test_close_delimited_upstream_body(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with raw_connection(port) as s:
        reader = ResponseReader(s)
        s.sendall(b"GET /close-delimited?n=70000 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = reader.read()
        assert status == 200 and len(body) == 70000
        assert headers["transfer-encoding"] == "chunked"  # re-framed for the client
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")  # client connection still usable
        assert reader.read()[0] == 200


def test_restarted_upstream_does_not_fail_requests(gateway, upstream):
    """Pooled connections to an upstream that restarted are dead; the request is sent again on a
    fresh connection instead of failing."""
    port_up = free_port()
    up = upstream("first", port=port_up)
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with httpx.Client() as client:
        assert client.get(f"http://127.0.0.1:{port}/echo").headers["x-upstream"] == "first"
        up.stop()
        upstream("second", port=port_up)
        r = client.post(f"http://127.0.0.1:{port}/echo", content=b"payload")
        assert r.status_code == 200 and r.headers["x-upstream"] == "second"
        assert r.json()["body_length"] == 7


def _tls_upstream(upstream, tmp_path, ca, name="tls", client_ca=None):
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return upstream(name, tls=(str(cert_path), str(key_path)), client_ca=client_ca)


def test_https_upstream_with_root(gateway, upstream, tmp_path):
    ca = trustme.CA()
    up = _tls_upstream(upstream, tmp_path, ca)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "backends": [
                        {
                            "host": up.address,
                            "policies": {"backendTLS": {"root": str(ca_path), "hostname": "localhost"}},
                        }
                    ]
                }
            ],
        )
    )
    r = httpx.get(f"http://127.0.0.1:{port}/echo")
    assert r.status_code == 200 and r.headers["x-upstream"] == "tls"


def test_https_upstream_untrusted_is_refused_unless_insecure(gateway, upstream, tmp_path):
    up = _tls_upstream(upstream, tmp_path, trustme.CA())
    strict, insecure = free_port(), free_port()
    gateway(binds(strict, [{"backends": [{"host": up.address, "policies": {"backendTLS": {}}}]}]))
    r = httpx.get(f"http://127.0.0.1:{strict}/echo")
    assert r.status_code == 503 and "TLS" in r.text
    gateway(binds(insecure, [{"policies": {"backendTLS": {"insecure": True}}, "backends": [{"host": up.address}]}]))
    assert httpx.get(f"http://127.0.0.1:{insecure}/echo").status_code == 200


def test_https_upstream_with_client_certificate(gateway, upstream, tmp_path):
    server_ca, client_ca = trustme.CA(), trustme.CA()
    client_ca_path = tmp_path / "client-ca.pem"
    client_ca.cert_pem.write_to_path(str(client_ca_path))
    up = _tls_upstream(upstream, tmp_path, server_ca, client_ca=str(client_ca_path))
    root = tmp_path / "server-ca.pem"
    server_ca.cert_pem.write_to_path(str(root))
    client = client_ca.issue_cert("gateway.test")
    cert_path, key_path = tmp_path / "gw-cert.pem", tmp_path / "gw-key.pem"
    client.cert_chain_pems[0].write_to_path(str(cert_path))
    client.private_key_pem.write_to_path(str(key_path))
    with_cert, without = free_port(), free_port()
    tls = {"root": str(root), "hostname": "localhost"}
    gateway(
        binds(
            with_cert,
            [
                {
                    "backends": [
                        {
                            "host": up.address,
                            "policies": {"backendTLS": {**tls, "cert": str(cert_path), "key": str(key_path)}},
                        }
                    ]
                }
            ],
        )
    )
    assert httpx.get(f"http://127.0.0.1:{with_cert}/echo").status_code == 200
    gateway(binds(without, [{"backends": [{"host": up.address, "policies": {"backendTLS": tls}}]}]))
    r = httpx.get(f"http://127.0.0.1:{without}/echo")
    assert r.status_code in (502, 503)


def test_many_concurrent_clients(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]), workers=2)
    socks = []
    for i in range(100):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET /echo?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    for i, s in enumerate(socks):
        status, _, body = ResponseReader(s).read()
        assert status == 200 and f"/echo?i={i}".encode() in body
        s.close()


def test_connect_timeout(gateway):
    """An upstream whose accept queue is full drops new SYNs: the connect times out, quickly."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    held = []
    try:
        # Fill the accept queue (never accepted) so further connection attempts hang.
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(blackhole.getsockname())
            held.append(c)
        time.sleep(0.2)
        port = free_port()
        config = binds(port, [{"backends": [{"host": f"127.0.0.1:{blackhole.getsockname()[1]}"}]}])
        config["config"] = {"backend": {"connectTimeout": "500ms"}}
        gateway(config)
        start = time.monotonic()
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        elapsed = time.monotonic() - start
        assert r.status_code == 503 and "connect timeout" in r.text
        assert 0.4 < elapsed < 2.0
    finally:
        for c in held:
            c.close()
        blackhole.close()
