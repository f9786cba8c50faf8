"""extAuthz through the real daemon: a gRPC authorization service (grpcio, Envoy's protocol) and an
HTTP authorizer, both written in tests/support/extauthz.py and run as processes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.support.gateway import REPO, ResponseReader, ServerProcess, binds, free_port


def checks(proc: ServerProcess) -> list[dict]:
    return [json.loads(line[6:]) for line in proc.output().splitlines() if line.startswith("CHECK ")]


def _gateway_and_process(gateway, up, ext_authz, extra_policies=None):
    port = free_port()
    policies = {"extAuthz": ext_authz, **(extra_policies or {})}
    gw = gateway(binds(port, [{"policies": policies, "backends": [{"host": up.address}]}]))
    return f"http://127.0.0.1:{port}", gw


def _gateway(gateway, up, ext_authz, extra_policies=None):
    return _gateway_and_process(gateway, up, ext_authz, extra_policies)[0]


def test_grpc_allow_applies_the_services_mutations(gateway, upstream, authz):
    up, svc = upstream(), authz("grpc")
    base, gw = _gateway_and_process(
        gateway,
        up,
        {"host": f"127.0.0.1:{svc.port}", "protocol": {"grpc": {"context": {"tenant": "t1"}}}},
        # Policies after extAuthz see what it learned (CEL variable extauthz).
        {"transformations": {"request": {"set": {"x-meta-user": "extauthz.user"}}}},
    )
    r = httpx.get(
        f"{base}/echo?drop=1&keep=2",
        headers={"x-authz": "allow", "x-remove-me": "secret", "x-added": "client", "x-authz-user": "mallory"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-authz-resp"] == "yes"
    seen = r.json()
    headers = seen["headers"]
    values = lambda name: [v for k, v in headers if k == name]  # noqa: E731
    assert values("x-authz-user") == ["alice"]  # overwritten
    assert values("x-added") == ["client", "from-authz"]  # appended
    assert values("x-remove-me") == []
    assert values("x-meta-user") == ["alice"]
    assert seen["target"] == "/echo?keep=2&checked=yes"
    check = checks(svc)[-1]["attributes"]
    http = check["request"]["http"]
    assert http["method"] == "GET" and http["path"] == "/echo?drop=1&keep=2"
    assert http["headers"][":method"] == "GET" and http["headers"]["x-remove-me"] == "secret"
    assert check["contextExtensions"] == {"tenant": "t1"}
    assert check["source"]["address"]["socketAddress"]["address"] == "127.0.0.1"
    assert gw.metric("agentgateway_ext_authz_decisions_total", route="route0", result="allowed") == 1


def test_grpc_denial_reaches_the_client(gateway, upstream, authz):
    up, svc = upstream(), authz("grpc")
    base = _gateway(gateway, up, {"host": f"127.0.0.1:{svc.port}", "includeRequestHeaders": ["x-authz", ":path"]})
    r = httpx.post(f"{base}/echo", headers={"x-authz": "deny", "x-private": "p"}, content=b"payload")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="test"' and r.headers["x-reason"] == "no-token"
    assert r.text == "denied by the test authorizer\n"
    r = httpx.get(f"{base}/echo", headers={"x-authz": "deny-bare"})
    assert r.status_code == 403
    assert up.requests() == []
    # Only the named headers were sent.
    assert checks(svc)[-1]["attributes"]["request"]["http"]["headers"] == {"x-authz": "deny-bare", ":path": "/echo"}


def test_grpc_request_body(gateway, upstream, authz):
    up, svc = upstream(), authz("grpc")
    target = f"127.0.0.1:{svc.port}"
    port = free_port()
    route = lambda name, body: {  # noqa: E731
        "name": name,
        "matches": [{"path": {"pathPrefix": f"/{name}"}}],
        "policies": {"extAuthz": {"host": target, "includeRequestBody": body}},
        "backends": [{"host": up.address}],
    }
    gateway(
        binds(
            port,
            [
                route("whole", {"maxRequestBytes": 64}),
                route("head8", {"maxRequestBytes": 8, "allowPartialMessage": True}),
                route("raw", {"packAsBytes": True}),
            ],
        )
    )
    base = f"http://127.0.0.1:{port}"
    allow = {"x-authz": "allow"}
    r = httpx.post(f"{base}/whole", headers=allow, content=b"hello authz")
    assert r.status_code == 200 and r.json()["body_length"] == 11
    http = checks(svc)[-1]["attributes"]["request"]["http"]
    assert http["body"] == "hello authz" and http["size"] == "11"
    # Larger than maxRequestBytes: refused before any check.
    n = len(checks(svc))
    r = httpx.post(f"{base}/whole", headers=allow, content=b"x" * 65)
    assert r.status_code == 413 and len(checks(svc)) == n
    # Partial: the first 8 bytes go to the service, the whole body to the backend (chunked too).
    body = b"0123456789" * 1000
    r = httpx.post(f"{base}/head8", headers=allow, content=iter([body[:5000], body[5000:]]))
    assert r.status_code == 200 and r.json()["body_length"] == len(body) and r.json()["chunked"]
    assert checks(svc)[-1]["attributes"]["request"]["http"]["body"] == "01234567"
    r = httpx.post(f"{base}/raw", headers=allow, content=b"\x00\xff")
    assert r.status_code == 200
    assert checks(svc)[-1]["attributes"]["request"]["http"]["rawBody"] == "AP8="  # base64 of the bytes


def test_expect_continue_with_body_check(gateway, upstream, authz):
    """A client that waits for 100 Continue gets it from the gateway while the check waits for
    the body, and only once."""
    up, svc = upstream(), authz("grpc")
    base = _gateway(gateway, up, {"host": f"127.0.0.1:{svc.port}", "includeRequestBody": {}})
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nhost: x\r\nx-authz: allow\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n"
        )
        reader = ResponseReader(s)
        status, _, _ = reader.read(head_only=True)
        assert status == 100
        s.sendall(b"abcd")
        status, _, body = reader.read()
        assert status == 200 and json.loads(body)["body_length"] == 4


@pytest.mark.parametrize(("mode", "status"), [("deny", 403), ("allow", 200), ({"denyWithStatus": 503}, 503)])
def test_service_down_follows_failure_mode(gateway, upstream, mode, status):
    up = upstream()
    base = _gateway(gateway, up, {"host": f"127.0.0.1:{free_port()}", "failureMode": mode})
    for _ in range(2):  # the gateway keeps serving
        r = httpx.get(f"{base}/echo", headers={"x-authz": "allow"}, timeout=10)
        assert r.status_code == status, r.text


def test_slow_service_times_out(gateway, upstream, authz):
    up, svc = upstream(), authz("grpc")
    base = _gateway(gateway, up, {"host": f"127.0.0.1:{svc.port}", "timeout": "300ms"})
    start = time.monotonic()
    r = httpx.get(f"{base}/echo", headers={"x-authz": "slow"}, timeout=10)
    assert r.status_code == 403 and time.monotonic() - start < 2.5
    assert httpx.get(f"{base}/echo", headers={"x-authz": "allow"}).status_code == 200


def test_http_authorizer(gateway, upstream, authz):
    up, svc = upstream(), authz("http")
    target = f"127.0.0.1:{svc.port}"
    base = _gateway(
        gateway,
        up,
        {
            "host": target,
            "protocol": {
                "http": {
                    "includeResponseHeaders": ["x-authz-user"],
                    "addRequestHeaders": {"x-authz": 'request.headers["x-authz"]', "x-original-path": "request.path"},
                }
            },
        },
    )
    r = httpx.get(f"{base}/echo/a?b=1", headers={"x-authz": "allow", "authorization": "Bearer t", "x-private": "no"})
    assert r.status_code == 200, r.text
    headers = dict(r.json()["headers"])
    assert headers["x-authz-user"] == "alice" and "x-not-copied" not in headers
    check = checks(svc)[-1]
    assert check["method"] == "GET" and check["path"] == "/echo/a?b=1"
    assert check["headers"]["authorization"] == "Bearer t" and "x-private" not in check["headers"]
    assert check["headers"]["x-original-path"] == "/echo/a"
    # A denial is relayed as the authorizer wrote it.
    r = httpx.post(f"{base}/echo", headers={"x-authz": "deny"}, content=b"x")
    assert r.status_code == 401 and r.headers["x-reason"] == "no-token"
    assert r.headers["www-authenticate"] == 'Bearer realm="http"'
    assert r.text == "denied by the http authorizer\n"
    assert [q["method"] for q in up.requests()] == ["GET"]


def test_http_authorizer_body_and_redirect(gateway, upstream, authz):
    up, svc = upstream(), authz("http")
    base = _gateway(
        gateway,
        up,
        {
            "host": f"127.0.0.1:{svc.port}",
            "includeRequestHeaders": ["x-authz"],
            "includeRequestBody": {"maxRequestBytes": 4, "allowPartialMessage": True},
            "protocol": {"http": {"redirect": '"https://login.example/?from=" + request.path'}},
        },
    )
    r = httpx.post(f"{base}/echo", headers={"x-authz": "allow"}, content=b"abcdefgh")
    assert r.status_code == 200 and r.json()["body_length"] == 8
    check = checks(svc)[-1]
    assert check["body"] == "abcd" and check["headers"]["x-envoy-auth-partial-body"] == "true"
    r = httpx.post(f"{base}/echo", headers={"x-authz": "allow"}, content=b"ab")
    assert checks(svc)[-1]["headers"]["x-envoy-auth-partial-body"] == "false"
    r = httpx.get(f"{base}/echo", headers={"x-authz": "deny-bare"})
    assert r.status_code == 302 and r.headers["location"] == "https://login.example/?from=/echo"


def test_http_authorizer_down(gateway, upstream):
    up = upstream()
    base = _gateway(gateway, up, {"host": f"127.0.0.1:{free_port()}", "protocol": {"http": {}}})
    r = httpx.get(f"{base}/echo", timeout=10)
    assert r.status_code == 403 and r.text == "external authorization failed\n"


def test_bad_configs_are_refused(tmp_path):
    cases = [
        ({"host": "127.0.0.1:1", "protocol": {"grpc": {}, "http": {}}}, "extAuthz.protocol"),
        ({"host": "127.0.0.1:1", "includeRequestHeaders": ["bad header"]}, "includeRequestHeaders[0]"),
        ({"host": "127.0.0.1:1", "failureMode": {"denyWithStatus": 42}}, "denyWithStatus"),
        ({"host": "127.0.0.1:1", "protocol": {"http": {"path": "request.("}}}, "protocol.http.path"),
        ({"backend": "nope"}, "extAuthz.backend"),
        ({"host": "127.0.0.1:1", "cache": {"key": []}}, "extAuthz.cache"),
    ]
    for i, (ext_authz, expected) in enumerate(cases):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(
            yaml.safe_dump(binds(8080, [{"policies": {"extAuthz": ext_authz}, "backends": [{"host": "127.0.0.1:1"}]}]))
        )
        r = subprocess.run(
            [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert r.returncode != 0 and expected in r.stderr, (ext_authz, r.stderr)


# ---------------------------------------------------------------- HTTP metadata, cache


def test_http_metadata_reaches_later_policies(gateway, upstream, authz):
    up, svc = upstream(), authz("http")
    base = _gateway(
        gateway,
        up,
        {
            "host": f"127.0.0.1:{svc.port}",
            "protocol": {
                "http": {
                    "metadata": {
                        "user": "json(response.body).user",
                        "group": "json(response.body).groups[1]",
                        "header": 'response.headers["x-authz-user"]',
                        "code": "response.code",
                        "method": "request.method",
                        "missing": "json(response.body).nope",
                    }
                }
            },
            "includeRequestHeaders": ["x-authz", "x-user"],
        },
        {
            "transformations": {
                "request": {
                    "set": {
                        "x-meta-user": "extauthz.user",
                        "x-meta-group": "extauthz.group",
                        "x-meta-code": "string(extauthz.code)",
                        "x-meta-method": "extauthz.method",
                        "x-meta-missing": 'has(extauthz.missing) ? "yes" : "no"',
                    }
                }
            }
        },
    )
    r = httpx.get(f"{base}/echo", headers={"x-authz": "allow-json", "x-user": "bob"})
    assert r.status_code == 200, r.text
    headers = dict(r.json()["headers"])
    assert headers["x-meta-user"] == "bob" and headers["x-meta-group"] == "b"
    assert headers["x-meta-code"] == "200" and headers["x-meta-method"] == "GET"
    assert headers["x-meta-missing"] == "no"


def test_bad_metadata_expressions_are_config_errors(tmp_path):
    for expression, expected in (("response.headers.x", "response"), ("size(response.body) > 1", "response")):
        config = binds(
            1,
            [
                {
                    "policies": {
                        "extAuthz": {"host": "127.0.0.1:1", "protocol": {"http": {"metadata": {"m": expression}}}}
                    },
                    "backends": [{"host": "127.0.0.1:9"}],
                }
            ],
        )
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        result = subprocess.run(
            [sys.executable, "-m", "agentgateway", "--validate-only", "-f", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and "metadata.m" in result.stderr and expected in result.stderr


@pytest.mark.parametrize("mode", ["http", "grpc"])
def test_cache_by_key_and_identity(gateway, upstream, authz, idp, mode):
    up, svc = upstream(), authz(mode)
    protocol = {"http": {"metadata": {"user": "json(response.body).user"}}} if mode == "http" else {"grpc": {}}
    base = _gateway(
        gateway,
        up,
        {
            "host": f"127.0.0.1:{svc.port}",
            "protocol": protocol,
            "includeRequestHeaders": ["x-authz", "x-user"],
            "cache": {"key": ['request.headers["x-user"]'], "ttl": "1m", "maxEntries": 2},
        },
        {
            "jwtAuth": {"mode": "optional", "issuer": idp.issuer, "jwks": {"url": idp.jwks_url}},
            "transformations": {"request": {"set": {"x-meta-user": "extauthz.user"}}},
        },
    )
    allow = "allow-json" if mode == "http" else "allow"

    def call(user: str, token: str | None = None, decision: str = allow) -> httpx.Response:
        headers = {"x-authz": decision, "x-user": user}
        if token:
            headers["authorization"] = f"Bearer {token}"
        return httpx.get(f"{base}/echo", headers=headers)

    first = call("u1")
    assert first.status_code == 200
    assert len(checks(svc)) == 1
    again = call("u1", decision="deny")  # the key does not include x-authz: the cached decision holds
    assert again.status_code == 200 and len(checks(svc)) == 1
    # The replayed decision changes the request as the first one did.
    assert dict(again.json()["headers"]).get("x-authz-user") == dict(first.json()["headers"]).get("x-authz-user")
    if mode == "http":
        assert dict(again.json()["headers"])["x-meta-user"] == "u1"
    # Another key: a new check, whose denial is cached too.
    assert call("u2", decision="deny").status_code == 401
    assert call("u2").status_code == 401 and len(checks(svc)) == 2
    # Another caller (the identity jwtAuth proved) never shares a decision, whatever the key says.
    assert call("u1", idp.mint(sub="mallory"), decision="deny").status_code == 401
    assert len(checks(svc)) == 3
    # Bounded: u1 was pushed out (two entries at most).
    call("u3")
    assert call("u1").status_code == 200 and len(checks(svc)) == 5


def test_cache_key_failure_is_not_cached(gateway, upstream, authz):
    up, svc = upstream(), authz("http")
    base = _gateway(
        gateway,
        up,
        {
            "host": f"127.0.0.1:{svc.port}",
            "protocol": {"http": {}},
            "includeRequestHeaders": ["x-authz"],
            "cache": {"key": ['request.headers["x-user"]'], "ttl": "1m"},
        },
    )
    for _ in range(2):
        assert httpx.get(f"{base}/echo", headers={"x-authz": "allow"}).status_code == 200
    assert len(checks(svc)) == 2  # no x-user: no key, never cached


# ---------------------------------------------------------------- gateway level


def test_gateway_level_ext_authz_checks_every_route_and_a_routes_own_too(gateway, upstream, authz):
    """``extAuthz`` on a gateway (``gateways`` form) and on a listener's ``policies`` (``binds``
    form): every route of it is checked, one with no policies included; a route's own extAuthz
    runs besides it (agentgateway's gateway phase, then its route phase)."""
    up, svc = upstream(), authz("http")
    forward = {"x-authz": 'request.headers["x-authz"]'}
    check = {"host": f"127.0.0.1:{svc.port}", "protocol": {"http": {"addRequestHeaders": forward}}}
    gw_port, bind_port = free_port(), free_port()
    routes = [
        {"matches": [{"path": {"pathPrefix": "/open"}}], "backends": [{"host": up.address}]},
        {
            "matches": [{"path": {"pathPrefix": "/own"}}],
            "policies": {
                "extAuthz": {**check, "protocol": {"http": {"addRequestHeaders": forward, "path": '"/route-check"'}}}
            },
            "backends": [{"host": up.address}],
        },
    ]
    gateway(
        {
            "gateways": {"default": {"port": gw_port, "extAuthz": check}},
            "routes": routes,
            "binds": [{"port": bind_port, "listeners": [{"policies": {"extAuthz": check}, "routes": routes}]}],
        }
    )
    for port in (gw_port, bind_port):
        before = len(checks(svc))
        assert httpx.get(f"http://127.0.0.1:{port}/open").status_code == 401  # no x-authz: denied
        assert httpx.get(f"http://127.0.0.1:{port}/open", headers={"x-authz": "allow"}).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/own", headers={"x-authz": "allow"}).status_code == 200
        paths = [c["path"] for c in checks(svc)[before:]]
        assert paths == ["/open", "/open", "/own", "/route-check"], paths
    assert [q["target"] for q in up.requests()] == ["/open", "/own", "/open", "/own"]
