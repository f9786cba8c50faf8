"""cors and csrf through the real daemon."""

from __future__ import annotations

import httpx

from tests.support.gateway import binds, free_port

ORIGIN = "https://app.example.com"


def _cors_gateway(gateway, up, **extra):
    port = free_port()
    cors = {
        "allowOrigins": ["https://*.example.com", "http://localhost:3000"],
        "allowMethods": ["GET", "POST", "DELETE"],
        "allowHeaders": ["content-type", "x-token"],
        "exposeHeaders": ["x-upstream"],
        "maxAge": "1h",
        "allowCredentials": True,
    }
    routes = [
        {
            "name": "api",
            "matches": [{"path": {"pathPrefix": "/api"}}],
            "policies": {"cors": cors, **extra},
            "backends": [{"host": up.address}],
        },
        {
            "name": "local",
            "matches": [{"path": {"pathPrefix": "/local"}}],
            "policies": {"cors": cors, "directResponse": {"status": 418, "body": "teapot"}},
        },
    ]
    gateway(binds(port, routes))
    return port


def test_preflight_is_answered_by_the_gateway(gateway, upstream):
    up = upstream()
    port = _cors_gateway(gateway, up)
    r = httpx.options(
        f"http://127.0.0.1:{port}/api/items",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "DELETE",
            "access-control-request-headers": "x-token",
        },
    )
    assert r.status_code == 200 and r.content == b""
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-methods"] == "GET,POST,DELETE"
    assert r.headers["access-control-allow-headers"] == "content-type,x-token"
    assert r.headers["access-control-max-age"] == "3600"
    assert r.headers["access-control-allow-credentials"] == "true"
    # An origin that is not allowed: a bare 200 the browser refuses; never forwarded either.
    r = httpx.options(
        f"http://127.0.0.1:{port}/api/items",
        headers={"origin": "https://evil.org", "access-control-request-method": "DELETE"},
    )
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert [q for q in up.requests() if q["method"] == "OPTIONS"] == []


def test_actual_requests_are_marked(gateway, upstream):
    up = upstream()
    port = _cors_gateway(gateway, up)
    with httpx.Client() as client:
        r = client.post(f"http://127.0.0.1:{port}/api/items", headers={"origin": "http://localhost:3000"}, content=b"x")
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["access-control-expose-headers"] == "x-upstream"
        assert r.headers["x-upstream"] == "up"
        # Not allowed, or not cross-origin at all: proxied untouched.
        for headers in ({"origin": "http://localhost:3001"}, {}):
            r = client.get(f"http://127.0.0.1:{port}/api/items", headers=headers)
            assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        # The gateway's own answers are marked too (a browser can read the error).
        r = client.get(f"http://127.0.0.1:{port}/local", headers={"origin": ORIGIN})
        assert r.status_code == 418 and r.headers["access-control-allow-origin"] == ORIGIN


def test_csrf(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {"csrf": {"additionalOrigins": ["https://trusted.example"]}},
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    base = f"http://127.0.0.1:{port}"
    with httpx.Client() as client:
        assert client.post(f"{base}/echo", content=b"x").status_code == 200  # not a browser
        assert client.get(f"{base}/echo", headers={"origin": "https://evil.example"}).status_code == 200
        same = client.post(f"{base}/echo", headers={"origin": base}, content=b"x")
        assert same.status_code == 200
        r = client.post(f"{base}/echo", headers={"origin": "https://evil.example"}, content=b"x")
        assert r.status_code == 403 and "Cross-origin request detected" in r.text
        r = client.delete(f"{base}/echo", headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403 and "Sec-Fetch-Site" in r.text
        r = client.put(
            f"{base}/echo", headers={"sec-fetch-site": "cross-site", "origin": "https://trusted.example"}, content=b"x"
        )
        assert r.status_code == 200
        assert client.post(f"{base}/echo", headers={"sec-fetch-site": "same-origin"}, content=b"x").status_code == 200
    # The refused requests never reached the backend.
    assert len([q for q in up.requests() if q["method"] != "GET"]) == 4
