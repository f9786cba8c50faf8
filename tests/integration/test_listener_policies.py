"""Listener-level ``policies`` in the ``binds`` form (agentgateway's gateway-phase policies of a
listener), through the real daemon: they apply to every route of the listener; a route's own
authentication policy of a kind replaces the listener's, and authorization rules of both apply;
the other listener of the port is not affected; the attacker's tricks (the key in another header,
the wrong case, a second key) do not get through."""

from __future__ import annotations

import httpx

from tests.support.gateway import free_port, raw_connection, read_response


def _config(port: int, address: str) -> dict[str, object]:
    listener_policies = {
        "apiKey": {"mode": "strict", "keys": [{"key": "sk-listener", "metadata": {"team": "red"}}]},
        "authorization": {"rules": ['request.method != "DELETE"']},
    }
    return {
        "binds": [
            {
                "port": port,
                "listeners": [
                    {
                        "name": "guarded",
                        "hostname": "guarded.test",
                        "policies": listener_policies,
                        "routes": [
                            {
                                "name": "plain",
                                "matches": [{"path": {"pathPrefix": "/plain"}}],
                                "backends": [{"host": address}],
                            },
                            {
                                "name": "own",
                                "matches": [{"path": {"pathPrefix": "/own"}}],
                                "policies": {
                                    "apiKey": {"mode": "strict", "keys": [{"key": "sk-route"}]},
                                    "authorization": {"rules": ['request.path != "/own/secret"']},
                                },
                                "backends": [{"host": address}],
                            },
                        ],
                    },
                    {"name": "open", "routes": [{"backends": [{"host": address}]}]},
                ],
            }
        ]
    }


def _get(port: int, path: str, key: str | None = None, host: str = "guarded.test", method: str = "GET") -> int:
    headers = {"host": host}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return httpx.request(method, f"http://127.0.0.1:{port}{path}", headers=headers).status_code


def test_listener_policies_apply_to_every_route_of_the_listener(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(_config(port, up.address))
    assert _get(port, "/plain") == 401
    assert _get(port, "/plain", "sk-listener") == 200
    assert _get(port, "/plain", "sk-listener", method="DELETE") == 403  # the listener's rule
    # The route's own apiKey replaces the listener's; the rules of both apply.
    assert _get(port, "/own", "sk-listener") == 401
    assert _get(port, "/own", "sk-route") == 200
    assert _get(port, "/own/secret", "sk-route") == 403  # the route's rule
    assert _get(port, "/own", "sk-route", method="DELETE") == 403  # the listener's rule still applies
    # The other listener of the port has no policies.
    assert _get(port, "/plain", host="other.test") == 200
    assert gw.metric("agentgateway_requests_total", listener="guarded", route="plain") >= 3


def test_listener_policies_are_not_bypassed(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(_config(port, up.address))
    # The key elsewhere, in the wrong case, or twice: refused.
    assert (
        httpx.get(
            f"http://127.0.0.1:{port}/plain", headers={"host": "guarded.test", "x-api-key": "sk-listener"}
        ).status_code
        == 401
    )
    assert _get(port, "/plain", "SK-LISTENER") == 401
    assert _get(port, "/plain", "sk-listenerx") == 401
    # The Host header with a port, upper case, or a trailing dot still selects the listener.
    for host in ("guarded.test:80", "GUARDED.TEST", "guarded.test."):
        assert _get(port, "/plain", host=host) == 401, host
    # A raw request whose path tries to leave the route: still the listener's policies.
    with raw_connection(port) as s:
        s.sendall(b"GET /plain/../own HTTP/1.1\r\nhost: guarded.test\r\n\r\n")
        status, _, _ = read_response(s)
    assert status in (400, 401)
    assert up.requests() == []


def test_listener_cors_and_transformations_apply_unless_a_route_has_its_own(gateway, upstream):
    """``cors`` and ``transformations`` at the gateway level (a listener's ``policies``, a
    ``gateways`` entry): every route gets them; a route's own replaces them (one CORS answer)."""
    up = upstream()
    level = {
        "cors": {"allowOrigins": ["https://app.example"], "allowMethods": ["GET"]},
        "transformations": {"request": {"set": {"x-level": '"gateway"'}}},
    }
    routes = [
        {"matches": [{"path": {"pathPrefix": "/plain"}}], "backends": [{"host": up.address}]},
        {
            "matches": [{"path": {"pathPrefix": "/own"}}],
            "policies": {
                "cors": {"allowOrigins": ["https://other.example"], "allowMethods": ["GET"]},
                "transformations": {"request": {"set": {"x-level": '"route"'}}},
            },
            "backends": [{"host": up.address}],
        },
    ]
    bind_port, gw_port = free_port(), free_port()
    gateway(
        {
            "binds": [{"port": bind_port, "listeners": [{"policies": level, "routes": routes}]}],
            "gateways": {"default": {"port": gw_port, **level}},
            "routes": routes,
        }
    )
    for port in (bind_port, gw_port):
        base = f"http://127.0.0.1:{port}"
        preflight = {"origin": "https://app.example", "access-control-request-method": "GET"}
        r = httpx.options(f"{base}/plain", headers=preflight)
        assert r.headers.get("access-control-allow-origin") == "https://app.example"
        r = httpx.options(f"{base}/own", headers=preflight)
        assert "access-control-allow-origin" not in r.headers  # the route's own policy answers
        r = httpx.get(f"{base}/own", headers={"origin": "https://other.example"})
        assert r.headers.get_list("access-control-allow-origin") == ["https://other.example"]
    levels = [dict(q["headers"]).get("x-level") for q in up.requests()]
    assert levels == ["route", "route"], levels
    for port in (bind_port, gw_port):
        httpx.get(f"http://127.0.0.1:{port}/plain")
    assert [dict(q["headers"]).get("x-level") for q in up.requests()][2:] == ["gateway", "gateway"]
