from __future__ import annotations

import httpx

from tests.support.gateway import binds, free_port


def test_proxies_to_upstream(gateway, upstream):
    up = upstream("a")
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    r = httpx.get(f"http://127.0.0.1:{port}/echo?x=1", headers={"x-test": "yes"})
    assert r.status_code == 200
    body = r.json()
    assert body["target"] == "/echo?x=1"
    headers = dict(body["headers"])
    assert headers["x-test"] == "yes"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == f"127.0.0.1:{port}"
    assert gw.metric("agentgateway_requests_total", status="200") == 1
