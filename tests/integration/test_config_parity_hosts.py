"""Hosts, listeners and rewrites mean what they mean in agentgateway, through the real daemon:
the Host an upstream named by DNS gets (agentgateway rewrites it to the backend's name unless a
policy says otherwise: the client does not choose the virtual host behind the gateway), hostnames
of the config in the spelling requests are matched in, and the authority sent to an IPv6 backend."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.gateway import binds, free_port, raw_connection, read_response


def _echo(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return dict(r.json())


def _header(echo: dict[str, Any], name: str) -> str | None:
    for k, v in echo["headers"]:
        if k.lower() == name:
            return str(v)
    return None


# ------------------------------------------------------------------------ hostnames of the config


def test_config_hostnames_are_matched_in_the_requests_spelling(gateway):
    """A request's host is matched without its trailing dot (``admin.example.`` is
    ``admin.example``); a route or listener hostname written with one never matched, so its
    requests went to the catch-all route instead of the route (and policies) meant for them."""
    port = free_port()
    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {
                            "routes": [
                                {
                                    "name": "admin",
                                    "hostnames": ["Admin.Example."],
                                    "policies": {"directResponse": {"status": 200, "body": "admin"}},
                                },
                                {"name": "other", "policies": {"directResponse": {"status": 200, "body": "other"}}},
                            ]
                        }
                    ],
                }
            ]
        }
    )
    for host in ("admin.example", "ADMIN.example.", f"admin.example:{port}"):
        r = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": host}, timeout=10)
        assert r.text == "admin", host
    assert httpx.get(f"http://127.0.0.1:{port}/", headers={"host": "x.example"}, timeout=10).text == "other"


def test_listener_hostname_with_trailing_dot_takes_its_hosts(gateway):
    port = free_port()
    direct = {"policies": {"directResponse": {"status": 200, "body": "admin"}}}
    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {"name": "admin", "hostname": "*.Admin.Example.", "routes": [direct]},
                        {
                            "name": "other",
                            "routes": [{"policies": {"directResponse": {"status": 200, "body": "other"}}}],
                        },
                    ],
                }
            ]
        }
    )
    r = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": "a.admin.example"}, timeout=10)
    assert r.text == "admin"


@pytest.mark.parametrize("hostname", ["bücher.example", "*.bücher.example", "%61dmin.example", "..", "*.a.*.example"])
def test_config_hostname_no_request_can_name_is_refused(tmp_path: Path, hostname: str):
    """A hostname no valid Host can spell (non-ASCII: requests carry IDNs in punycode; a
    percent-encoding, which requests may not carry; dots alone) matched nothing, silently: a
    config error now, naming the key."""
    file = tmp_path / "c.yaml"
    route = {"hostnames": [hostname], "policies": {"directResponse": {"status": 200, "body": "x"}}}
    file.write_text(yaml.safe_dump(binds(free_port(), [route]), allow_unicode=True), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(file), "--validate-only"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "hostnames[0]" in out.stderr + out.stdout
