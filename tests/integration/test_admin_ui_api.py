"""The admin UI's endpoints through the real daemon, over raw sockets: the admin door's rules hold
on every one of them (foreign Host, cross-site, missing marker), a request a proxy relayed
cannot change anything (whatever address it names), the playground proxy reaches only routes of the running config,
the config editor never sends a secret and refuses stale or read-only edits."""

from __future__ import annotations

import json
import sys

import httpx
import pytest

from tests.support.gateway import Process, binds, free_port, python_stdio_target, raw_connection, read_response
from tests.support.gateway import wait_for as _wait_for

SECRET = "sk-ui-test-secret-0123456789abcdef"
MARKER = "x-agentgateway-admin: 1\r\n"
GET_ENDPOINTS = ["/ui", "/ui/", "/ui/app.js", "/ui/app.css", "/ui/api/overview", "/ui/api/traffic", "/ui/api/config"]
POST_ENDPOINTS = ["/ui/api/config/validate", "/ui/api/config/apply", "/ui/api/config/rollback", "/ui/api/call"]


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with raw_connection(port, 20) as s:
        s.sendall(request)
        return read_response(s)


def _request(method: str, path: str, host: str, extra: str = "", body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if method == "POST":
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
    return (head + extra + "\r\n").encode("latin-1") + body


def _post(port: int, path: str, payload: object, extra: str = MARKER) -> tuple[int, dict[str, str], bytes]:
    return _exchange(port, _request("POST", path, f"127.0.0.1:{port}", extra, json.dumps(payload).encode()))


def _config(port: int) -> dict:
    cfg = binds(
        port,
        [
            {
                "name": "web",
                "matches": [{"path": {"pathPrefix": "/web"}}],
                "policies": {"directResponse": {"status": 200, "body": "web"}},
            },
            {
                "name": "tools",
                "matches": [{"path": {"pathPrefix": "/tools/mcp"}}],
                "backends": [{"mcp": {"targets": [python_stdio_target("demo", "agentgateway.mcp.demo_server")]}}],
            },
        ],
    )
    cfg["llm"] = {
        "port": free_port(),
        "models": [
            {"name": "m", "provider": "openAI", "params": {"apiKey": SECRET, "baseUrl": "http://127.0.0.1:9/v1"}}
        ],
    }
    return cfg


@pytest.fixture
def gw(gateway):
    return gateway(_config(free_port()))


def test_every_ui_endpoint_refuses_a_foreign_host(gw):
    port = gw.admin_port
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", "127.0.0.1.evil.example"):
        for path in GET_ENDPOINTS:
            status, _, _ = _exchange(port, _request("GET", path, host))
            assert status == 403, (host, path, status)
        for path in POST_ENDPOINTS:
            status, _, _ = _exchange(port, _request("POST", path, host, MARKER, b"{}"))
            assert status == 403, (host, path, status)


def test_every_ui_change_needs_the_marker_and_no_foreign_origin(gw):
    port = gw.admin_port
    host = f"127.0.0.1:{port}"
    refused = [
        "",  # a form or a simple fetch: no marker
        "Content-Type: text/plain\r\n",
        MARKER + "Origin: http://evil.example\r\n",
        MARKER + "Origin: null\r\n",
        MARKER + f"Origin: http://{host}.evil.example\r\n",
        MARKER + "Sec-Fetch-Site: cross-site\r\n",
    ]
    before = gw.config_path.read_text()
    for path in POST_ENDPOINTS:
        for extra in refused:
            status, _, body = _exchange(port, _request("POST", path, host, extra, b'{"text": "binds: []"}'))
            assert status == 403, (path, extra, status, body)
    assert gw.config_path.read_text() == before
    # The page's own way: the marker and its own Origin.
    status, _, body = _exchange(
        port,
        _request(
            "POST", "/ui/api/config/validate", host, MARKER + f"Origin: http://{host}\r\n", b'{"text": "binds: []"}'
        ),
    )
    assert status == 200 and json.loads(body)["valid"] is True


def test_pages_forbid_framing_and_foreign_scripts(gw):
    port = gw.admin_port
    for path in ("/ui", "/ui/app.js", "/ui/api/overview"):
        status, headers, _ = _exchange(port, _request("GET", path, f"localhost:{port}"))
        assert status == 200
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert "access-control-allow-origin" not in headers
    # Nothing in the page or its script refers to another origin.
    for path in ("/ui", "/ui/app.js", "/ui/app.css"):
        text = httpx.get(gw.admin_url + path).text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, path


def test_a_change_relayed_by_a_proxy_is_refused(gw):
    """A proxy's other routes serve pages from the proxied UI's origin (tests/e2e/test_attack_ui.py):
    a change relayed by any proxy that says so is refused, a loopback client's included."""
    port = gw.admin_port
    for relayed in (
        "X-Forwarded-For: 10.1.2.3\r\n",
        "X-Forwarded-For: 127.0.0.1, 10.1.2.3\r\n",
        "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-For: 192.168.1.9\r\n",
        "X-Forwarded-For: not-an-address\r\n",
        "X-Real-IP: 203.0.113.9\r\n",
        "Forwarded: for=198.51.100.7\r\n",
        'Forwarded: for="[2001:db8::1]:4711"\r\n',
        "Forwarded: for=127.0.0.1, for=10.0.0.1\r\n",
        "X-Forwarded-For: 127.0.0.1\r\n",
        'Forwarded: for="[::1]:5000"\r\n',
        "X-Real-IP: ::ffff:127.0.0.1\r\n",
        "X-Forwarded-Host: localhost\r\n",
        "x-forwarded-for:\r\n",
    ):
        for path in (*POST_ENDPOINTS, "/quitquitquit"):
            status, _, body = _post(port, path, {"text": "binds: []"}, MARKER + relayed)
            assert status == 403 and b"only from this host" in body, (relayed, path, status, body)
    # Reads through a proxy are answered; the editor says it is read-only there.
    status, _, body = _exchange(
        port, _request("GET", "/ui/api/config", f"127.0.0.1:{port}", "X-Forwarded-For: 127.0.0.1\r\n")
    )
    assert status == 200 and json.loads(body)["editable"] is False and "proxy" in json.loads(body)["readOnlyReason"]
    status, _, body = _post(port, "/ui/api/config/validate", {"text": "binds: []"})
    assert status == 200, body
    assert httpx.get(gw.admin_url + "/ui/api/config").json()["editable"] is True


def test_the_ui_proxied_by_the_gateway_itself_is_read_only(gateway):
    """A route on the data plane forwarding /ui to the admin plane (as the default config does):
    the gateway writes the client's address in X-Forwarded-For, so every client (on this host or
    another, here named by a trusted proxy in front) sees the pages but cannot change anything."""
    port, admin = free_port(), free_port()
    cfg = binds(
        port,
        [
            {
                "name": "admin-ui",
                "matches": [{"path": {"pathPrefix": "/ui"}}],
                "backends": [{"host": f"127.0.0.1:{admin}"}],
            }
        ],
    )
    cfg["config"] = {"adminAddr": f"127.0.0.1:{admin}"}
    cfg["frontendPolicies"] = {"http": {"trustedProxies": ["127.0.0.1"]}}
    gateway(cfg)
    url = f"http://127.0.0.1:{port}/ui/api/config/validate"
    marker = {"x-agentgateway-admin": "1"}
    # From this host (a browser on the proxied page: its own Origin): refused, since any other
    # route of this port could serve a page with the same origin.
    r = httpx.post(url, json={"text": "binds: []"}, headers={**marker, "origin": f"http://127.0.0.1:{port}"})
    assert r.status_code == 403 and "only from this host" in r.text
    # A client elsewhere, as the proxy in front names it: pages yes, changes no.
    elsewhere = {"x-forwarded-for": "10.9.8.7"}
    current = httpx.get(f"http://127.0.0.1:{port}/ui/api/config", headers=elsewhere)
    assert current.status_code == 200 and current.json()["editable"] is False
    r = httpx.post(url, json={"text": "binds: []"}, headers={**marker, **elsewhere})
    assert r.status_code == 403 and "only from this host" in r.text
    r = httpx.post(f"http://127.0.0.1:{port}/ui/api/call", json={"route": "x"}, headers={**marker, **elsewhere})
    assert r.status_code == 403
    # At the admin address itself: changes are taken.
    r = httpx.post(f"http://127.0.0.1:{admin}/ui/api/config/validate", json={"text": "binds: []"}, headers=marker)
    assert r.status_code == 200 and r.json()["valid"] is True


def test_the_config_editor_never_sends_a_secret(gw):
    for path in ("/ui", "/ui/api/config", "/ui/api/overview"):
        assert SECRET not in httpx.get(gw.admin_url + path).text, path
    current = httpx.get(gw.admin_url + "/ui/api/config").json()
    assert "<redacted>" in current["text"] and current["editable"] is True
    # Validation errors and the diff do not quote it either.
    broken = current["text"].replace("provider: openAI", "provider: nope")
    r = httpx.post(
        gw.admin_url + "/ui/api/config/validate", json={"text": broken}, headers={"x-agentgateway-admin": "1"}
    )
    assert r.status_code == 200 and SECRET not in r.text
    answer = r.json()
    assert answer["valid"] is False and answer["errors"][0]["path"].startswith("llm.models[0].provider")
    line = answer["errors"][0]["line"]
    assert "provider: nope" in broken.splitlines()[line - 1]
    # A placeholder moved where there was no secret is refused at its line, the file untouched.
    before = gw.config_path.read_text()
    moved = current["text"].replace("baseUrl: http://127.0.0.1:9/v1", "baseUrl: <redacted>")
    r = httpx.post(
        gw.admin_url + "/ui/api/config/apply",
        json={"text": moved, "base": current["base"]},
        headers={"x-agentgateway-admin": "1"},
    )
    assert r.status_code == 422 and "type the value" in r.text and SECRET not in r.text
    assert gw.config_path.read_text() == before


def test_apply_refuses_a_stale_base_and_keeps_the_secret(gw):
    current = httpx.get(gw.admin_url + "/ui/api/config").json()
    edited = current["text"].replace("body: web", "body: changed")
    r = httpx.post(
        gw.admin_url + "/ui/api/config/apply",
        json={"text": edited, "base": "0" * 64},
        headers={"x-agentgateway-admin": "1"},
    )
    assert r.status_code == 409
    r = httpx.post(
        gw.admin_url + "/ui/api/config/apply",
        json={"text": edited, "base": current["base"]},
        headers={"x-agentgateway-admin": "1"},
    )
    assert r.status_code == 200 and r.json()["applied"] is True and r.json()["lastError"] is None
    assert SECRET in gw.config_path.read_text()
    status = httpx.get(gw.admin_url + "/config_dump").json()["status"]
    assert status["generation"] == 2
    rollback = gw.admin_url + "/ui/api/config/rollback"
    marker = {"x-agentgateway-admin": "1"}
    # Not over an edit the editor has not seen.
    r = httpx.post(rollback, json={"base": current["base"]}, headers=marker)
    assert r.status_code == 409 and "changed" in r.text
    base = httpx.get(gw.admin_url + "/ui/api/config").json()["base"]
    r = httpx.post(rollback, json={"base": base}, headers=marker)
    assert r.status_code == 200 and "body: web" in gw.config_path.read_text()
    base = httpx.get(gw.admin_url + "/ui/api/config").json()["base"]
    r = httpx.post(rollback, json={"base": base}, headers=marker)
    assert r.status_code == 409 and "no previous version" in r.text


def test_an_inline_config_is_read_only(tmp_path, processes):
    admin, port = free_port(), free_port()
    inline = json.dumps(
        {
            "config": {
                "adminAddr": f"127.0.0.1:{admin}",
                "statsAddr": f"127.0.0.1:{free_port()}",
                "readinessAddr": f"127.0.0.1:{free_port()}",
                "workers": 1,
            },
            "binds": [
                {
                    "port": port,
                    "listeners": [{"routes": [{"policies": {"directResponse": {"status": 200, "body": "x"}}}]}],
                }
            ],
        }
    )
    proc = Process([sys.executable, "-m", "agentgateway", "-c", inline], tmp_path / "inline.log")
    processes.append(proc)

    def answering() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{admin}/ui/api/config").status_code == 200
        except httpx.HTTPError:
            return False

    _wait_for(answering, 30, "the admin plane")
    current = httpx.get(f"http://127.0.0.1:{admin}/ui/api/config").json()
    assert current["editable"] is False and "-f" in current["readOnlyReason"]
    for path, payload in (
        ("/ui/api/config/apply", {"text": current["text"], "base": current["base"]}),
        ("/ui/api/config/rollback", {}),
    ):
        r = httpx.post(f"http://127.0.0.1:{admin}{path}", json=payload, headers={"x-agentgateway-admin": "1"})
        assert r.status_code == 409 and "read-only" in r.text


def _call(gw, payload: dict) -> httpx.Response:
    return httpx.post(gw.admin_url + "/ui/api/call", json=payload, headers={"x-agentgateway-admin": "1"}, timeout=30)


def test_the_playground_proxy_reaches_only_routes_of_the_running_config(gw):
    tools = "binds[0].listeners[0].routes[1]"
    refused = [
        ({"route": "binds[9].listeners[0].routes[0]"}, 404),
        ({"route": "http://127.0.0.1:22/"}, 404),
        ({"route": "binds[0].listeners[0].routes[0]"}, 400),  # a plain HTTP route has no playground
        ({"route": tools, "path": "/../../web"}, 400),
        ({"route": tools, "path": "/%2e%2e/web"}, 400),
        ({"route": tools, "path": "//evil.example/x"}, 400),
        ({"route": tools, "path": "@evil.example"}, 400),
        ({"route": tools, "path": "/x y"}, 400),
        ({"route": tools, "path": "/x\r\nHost: evil"}, 400),
        ({"route": tools, "headers": {"host": "evil.example"}}, 400),
        ({"route": tools, "headers": {"x-forwarded-for": "1.2.3.4"}}, 400),
        ({"route": tools, "headers": {"cookie": "a=b"}}, 400),
        ({"route": tools, "headers": {"authorization": "Bearer x\r\nX-Injected: 1"}}, 400),
        ({"route": tools, "method": "CONNECT"}, 400),
        ({"route": tools, "headers": "nope"}, 400),
    ]
    for payload, status in refused:
        r = _call(gw, payload)
        assert r.status_code == status, (payload, r.status_code, r.text)
    # The real thing: an MCP initialize through the route, answered as text with the upstream's type.
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    r = _call(
        gw,
        {
            "route": tools,
            "headers": {"accept": "application/json, text/event-stream", "content-type": "application/json"},
            "body": json.dumps(init),
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain") and r.headers["content-security-policy"] == "sandbox"
    assert r.headers["x-upstream-mcp-session-id"]
    upstream_type = r.headers["x-upstream-content-type"]
    text = r.text
    if upstream_type.startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    assert json.loads(text)["result"]["serverInfo"]["name"]


def test_traffic_and_overview_answer_json(gw):
    overview = httpx.get(gw.admin_url + "/ui/api/overview").json()
    names = [r["name"] for b in overview["topology"]["binds"] for ls in b["listeners"] for r in ls["routes"]]
    assert names == ["web", "tools", "llm"]
    assert overview["workers"][0]["index"] == 0 and "mcpSessions" in overview["workers"][0]
    traffic = httpx.get(gw.admin_url + "/ui/api/traffic?window=60").json()
    assert traffic["window"] == 60 and "requests" in traffic["charts"]
    assert httpx.get(gw.admin_url + "/ui/api/traffic?window=abc").status_code == 400
    assert httpx.get(gw.admin_url + "/ui/api/nope").status_code == 404
    assert httpx.get(gw.admin_url + "/ui/nope.js").status_code == 404
    r = httpx.post(gw.admin_url + "/ui/api/config/validate", content=b"{oops", headers={"x-agentgateway-admin": "1"})
    assert r.status_code == 400
