"""Every example in config/ validates, and serves on free ports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.gateway import REPO, free_port

EXAMPLES = sorted((REPO / "config").glob("*.yaml"))
ENV = {"UPSTREAM": "127.0.0.1:9000"}


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path: Path):
    r = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **ENV},
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_serves(path: Path, gateway):
    text = path.read_text().replace("tls/", f"{REPO / 'config' / 'tls'}/")
    config = yaml.safe_load(text.replace("${PORT:-8080}", "8080"))
    ports = {}
    for bind in config.get("binds", []):
        ports[bind["port"]] = bind["port"] = free_port()
    for gw in config.get("gateways", {}).values():
        ports[gw["port"]] = gw["port"] = free_port()
    for key, default in (("mcp", 3000), ("llm", 4000)):
        shortcut = config.get(key)
        # on a port of its own unless it attaches to a gateway (its `gateways`, or `default`)
        if shortcut is not None and (
            "port" in shortcut or ("gateways" not in shortcut and "default" not in config.get("gateways", {}))
        ):
            ports[shortcut.get("port", default)] = shortcut["port"] = free_port()
    config.setdefault("config", {})
    for key in ("adminAddr", "statsAddr", "readinessAddr"):
        config["config"].pop(key, None)
    # `$UPSTREAM` survives the YAML round trip and is expanded by the gateway from its environment.
    gw = gateway(config, env=ENV)
    for port in ports.values():
        for name in ("localhost", "a.example.com", "b.example.com"):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": name}, timeout=5)
            except httpx.HTTPError:
                break  # an HTTPS bind: covered by the TLS tests; the process is up and ready
            # The upstreams of the examples are not running: the gateway answers 503 itself; an
            # example whose every route asks for credentials answers 401; an MCP endpoint (every
            # path of the mcp shortcut's own port) answers a plain GET with 405, or 403 to a Host
            # that is not local from a loopback client (dnsRebindingProtection).
            assert r.status_code in (200, 401, 403, 404, 405, 503), r.text
    assert gw.alive()
