"""HTTPS listeners: SNI picks the listener (and its certificate) by hostname."""

from __future__ import annotations

import socket
import ssl

import httpx
import trustme

from tests.support.gateway import ResponseReader, free_port


def _write_cert(ca, tmp_path, name):
    cert = ca.issue_cert(name)
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return str(cert_path), str(key_path)


def _handshake(port, ca, server_name):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    tls = ctx.wrap_socket(raw, server_hostname=server_name)
    return tls


def test_sni_selects_the_listener_and_certificate(gateway, upstream, tmp_path):
    ca = trustme.CA()
    a_cert, a_key = _write_cert(ca, tmp_path, "a.example.com")
    b_cert, b_key = _write_cert(ca, tmp_path, "b.example.com")
    up_a, up_b = upstream("a"), upstream("b")
    port = free_port()
    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {
                            "name": "a",
                            "hostname": "a.example.com",
                            "protocol": "HTTPS",
                            "tls": {"cert": a_cert, "key": a_key},
                            "routes": [{"backends": [{"host": up_a.address}]}],
                        },
                        {
                            "name": "b",
                            "hostname": "b.example.com",
                            "protocol": "HTTPS",
                            "tls": {"cert": b_cert, "key": b_key},
                            "routes": [{"backends": [{"host": up_b.address}]}],
                        },
                    ],
                }
            ]
        }
    )
    for name, expected in (("a.example.com", "a"), ("b.example.com", "b")):
        # The certificate verifies against the name only if the right one was served.
        with _handshake(port, ca, name) as s:
            peer = s.getpeercert()
            assert ("DNS", name) in peer["subjectAltName"]
            s.sendall(f"GET /echo HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
            status, headers, body = ResponseReader(s).read()
            assert status == 200 and headers["x-upstream"] == expected
            assert b'"x-forwarded-proto", "https"' in body


def test_https_listener_with_httpx(gateway, upstream, tmp_path):
    ca = trustme.CA()
    cert, key = _write_cert(ca, tmp_path, "localhost")
    up = upstream()
    port = free_port()
    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {
                            "protocol": "HTTPS",
                            "tls": {"cert": cert, "key": key, "minTLSVersion": "TLS_V1_2"},
                            "routes": [{"backends": [{"host": up.address}]}],
                        }
                    ],
                }
            ]
        }
    )
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with httpx.Client(verify=ctx) as client:
        for _ in range(3):
            r = client.get(f"https://localhost:{port}/echo")
            assert r.status_code == 200
    # Plain HTTP on the TLS port fails the handshake; the gateway keeps serving.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(100)
    with httpx.Client(verify=ctx) as client:
        assert client.get(f"https://localhost:{port}/echo").status_code == 200


def test_frontend_tls_versions_apply_to_listeners_without_their_own(gateway, upstream, tmp_path):
    """``frontendPolicies.tls.minVersion``: every HTTPS listener that sets no version of its own
    refuses older clients; a listener's own ``minTLSVersion`` wins."""
    ca = trustme.CA()
    cert, key = _write_cert(ca, tmp_path, "localhost")
    up = upstream()
    strict, own = free_port(), free_port()
    listener = {"protocol": "HTTPS", "routes": [{"backends": [{"host": up.address}]}]}
    gateway(
        {
            "frontendPolicies": {"tls": {"minVersion": "TLS_V1_3"}},
            "binds": [
                {"port": strict, "listeners": [{**listener, "tls": {"cert": cert, "key": key}}]},
                {
                    "port": own,
                    "listeners": [{**listener, "tls": {"cert": cert, "key": key, "minTLSVersion": "TLS_V1_2"}}],
                },
            ],
        }
    )

    def version(port: int, maximum: ssl.TLSVersion) -> str | None:
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        ctx.maximum_version = maximum
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                ctx.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                return tls.version()
        except ssl.SSLError:
            return None

    assert version(strict, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert version(strict, ssl.TLSVersion.TLSv1_2) is None
    assert version(own, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
