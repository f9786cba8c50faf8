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
    if "mcp" in config:
        ports[config["mcp"].get("port", 3000)] = config["mcp"]["port"] = free_port()
    if "llm" in config:
        ports[config["llm"].get("port", 4000)] = config["llm"]["port"] = free_port()
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
            # example whose every route asks for credentials answers 401.
            assert r.status_code in (200, 401, 404, 503), r.text
    assert gw.alive()
