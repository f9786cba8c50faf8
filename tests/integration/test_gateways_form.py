"""The new-style config form: ``gateways`` + top-level ``routes``, alone and next to ``binds``."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import yaml

from tests.support.gateway import REPO, binds, free_port


def test_default_gateway_and_routes(gateway, upstream):
    a, b = upstream("a"), upstream("b")
    port = free_port()
    gw = gateway(
        {
            "gateways": {"default": {"port": port}},
            "routes": [
                {
                    "name": "api",
                    "matches": [{"path": {"pathPrefix": "/api"}}],
                    "policies": {"requestHeaderModifier": {"set": {"x-gw": "new-style"}}},
                    "backends": [{"host": a.address}],
                },
                {"name": "rest", "backends": [{"host": b.address}]},
            ],
        }
    )
    url = f"http://127.0.0.1:{port}"
    r = httpx.get(url + "/api/x")
    assert r.headers["x-upstream"] == "a" and ["x-gw", "new-style"] in r.json()["headers"]
    assert httpx.get(url + "/other").headers["x-upstream"] == "b"
    assert gw.metric("agentgateway_requests_total", listener="default", route="api") == 1


def test_named_listeners_and_both_forms_in_one_file(gateway, upstream):
    a, b, c = upstream("a"), upstream("b"), upstream("c")
    new_port, old_port = free_port(), free_port()
    gateway(
        {
            "gateways": {
                "edge": {
                    "port": new_port,
                    "listeners": [
                        {"name": "api", "hostname": "api.example.com"},
                        {"name": "web"},
                    ],
                }
            },
            "routes": [
                {"name": "api", "gateways": "edge/api", "backends": [{"host": a.address}]},
                {"name": "web", "gateways": ["edge/web"], "backends": [{"host": b.address}]},
            ],
            **binds(old_port, [{"backends": [{"host": c.address}]}]),
        }
    )
    url = f"http://127.0.0.1:{new_port}/"
    assert httpx.get(url, headers={"host": "api.example.com"}).headers["x-upstream"] == "a"
    assert httpx.get(url, headers={"host": "www.example.com"}).headers["x-upstream"] == "b"
    assert httpx.get(f"http://127.0.0.1:{old_port}/").headers["x-upstream"] == "c"


def test_a_route_attached_to_a_whole_gateway_serves_every_listener(gateway, upstream):
    a = upstream("a")
    port = free_port()
    gateway(
        {
            "gateways": {"edge": {"port": port, "listeners": [{"name": "x", "hostname": "x.test"}, {"name": "any"}]}},
            "routes": [{"gateways": "edge", "backends": [{"host": a.address}]}],
        }
    )
    for host in ("x.test", "y.test"):
        assert httpx.get(f"http://127.0.0.1:{port}/", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    ("config", "path", "reason"),
    [
        ({"routes": [{"backends": [{"host": "h:1"}]}]}, "routes[0].gateways", "must be set"),
        (
            {
                "gateways": {"g": {"port": 18001}},
                "routes": [{"gateways": "nope", "backends": [{"host": "h:1"}]}],
            },
            "routes[0].gateways[0]",
            "no gateway or listener 'nope'",
        ),
        ({"gateways": {"g": {}}}, "gateways.g.port", "is required"),
        (
            {"gateways": {"g": {"port": 18002}}, "binds": [{"port": 18002, "listeners": [{}]}]},
            "gateways.g.port",
            "also used by binds[0]",
        ),
        ({"gateways": {"g": {"port": 18003, "protocol": "HTTPS"}}}, "gateways.g.tls", "requires tls"),
        (
            {
                "gateways": {"g": {"port": 18004}},
                "routes": [{"gateways": "g", "policies": {"retry": {"attempts": 0}}}],
            },
            "routes[0].policies.retry.attempts",
            "must be 1-255",
        ),
        ({"gateways": {"g": {"port": 18005, "extProc": {}}}}, "gateways.g.extProc", "not supported"),
        ({"gateways": {"g": {"port": 18006, "jwtAuth": {}}}}, "gateways.g.jwtAuth", "issuer and jwks are required"),
    ],
)
def test_errors_name_paths_in_the_file(tmp_path, config, path, reason):
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump(config))
    r = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(file), "--validate-only"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 1
    assert f"{path}: " in r.stderr and reason in r.stderr, r.stderr
