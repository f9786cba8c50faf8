"""HTTP/1.1 counterparts of the HTTP/2 attacks (test_attack_http2.py), through the daemon with
raw sockets."""

from __future__ import annotations

import pytest

from tests.support.gateway import binds, free_port, raw_connection, read_response


@pytest.mark.xfail(
    strict=True,
    reason="server/http1.py keeps the received Host field in the request's headers when an "
    "absolute-form target names another host: routing takes the target's authority, CEL "
    "request.headers['host'] the field (fix in on_headers_complete: refuse a Host that differs "
    "from the authority, or replace the field's value with it, RFC 9112 §3.2.2)",
)
def test_absolute_form_target_and_host_that_disagree_over_http1(gateway, upstream):
    """The HTTP/1.1 twin of the :authority case: an absolute-form target names the host routing
    uses (RFC 9112 §3.2.2) while ``request.headers["host"]`` still reads the Host field."""
    internal = upstream("internal")
    port = free_port()
    rule = 'request.headers["host"] == "admin.example"'
    gateway(
        binds(
            port,
            [
                {
                    "hostnames": ["internal.example"],
                    "backends": [{"host": internal.address}],
                    "policies": {"authorization": {"rules": [rule]}},
                }
            ],
        )
    )
    with raw_connection(port) as sock:
        sock.sendall(b"GET http://internal.example/x HTTP/1.1\r\nHost: admin.example\r\n\r\n")
        status = read_response(sock)[0]
    assert status in (400, 403), status
    assert internal.requests() == []
