"""The command line, the embedded default config and the management planes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.gateway import REPO, Process, binds, free_port, wait_for


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "agentgateway", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


def test_version():
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("agentgateway ")


def test_validate_only(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("binds: [{port: 8080, listeners: [{routes: [{backends: [{host: 127.0.0.1:9000}]}]}]}]\n")
    r = _cli("-f", str(good), "--validate-only")
    assert r.returncode == 0 and "valid" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - {}\n    - {}\n    - policies: {extProc: {host: x}}\n"
    )
    r = _cli("-f", str(bad), "--validate-only")
    assert r.returncode == 1
    assert r.stderr.strip() == "error: binds[0].listeners[0].routes[2].policies.extProc: not supported"
    r = _cli("-f", str(tmp_path / "missing.yaml"), "--validate-only")
    assert r.returncode == 1 and "cannot read config file" in r.stderr
    r = _cli("-c", "binds: [{port: 1, listeners: [{}]}]", "--validate-only")
    assert r.returncode == 0
    assert _cli("--validate-only").returncode == 0  # the embedded default


def test_inline_config_serves(tmp_path, processes):
    port, ready = free_port(), free_port()
    inline = (
        f"config: {{adminAddr: 'off', statsAddr: 'off', readinessAddr: '127.0.0.1:{ready}', workers: 1}}\n"
        f"binds: [{{port: {port}, listeners: [{{routes: [{{policies: {{directResponse: {{status: 201, body: inline}}}}}}]}}]}}]"
    )
    proc = Process([sys.executable, "-m", "agentgateway", "-c", inline], tmp_path / "inline.log")
    processes.append(proc)
    wait_for(lambda: _ok(f"http://127.0.0.1:{ready}/healthz/ready"), 20, "readiness")
    r = httpx.get(f"http://127.0.0.1:{port}/")
    assert (r.status_code, r.text) == (201, "inline")


def _ok(url):
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_default_config_shows_admin_page_and_demo_route(tmp_path, processes):
    for port in (8080, 3000, 15000, 15020, 15021):
        assert not _ok(f"http://127.0.0.1:{port}/"), f"port {port} is busy; the default config needs it"
    proc = Process([sys.executable, "-m", "agentgateway"], tmp_path / "default.log")
    processes.append(proc)
    wait_for(lambda: _ok("http://127.0.0.1:15021/healthz/ready"), 30, "readiness")
    demo = httpx.get("http://127.0.0.1:8080/")
    assert demo.status_code == 200 and "agentgateway is running" in demo.text
    page = httpx.get("http://127.0.0.1:15000/ui")
    assert page.status_code == 200 and "<h1>agentgateway" in page.text and "welcome" in page.text
    proxied = httpx.get("http://127.0.0.1:8080/ui")
    assert proxied.status_code == 200 and "<h1>agentgateway" in proxied.text
    assert "agentgateway_requests_total" in httpx.get("http://127.0.0.1:15020/metrics").text
    # The MCP endpoint on port 3000 federates the built-in demo server.
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    accept = {"accept": "application/json, text/event-stream"}
    r = httpx.post("http://127.0.0.1:3000/mcp", json=init, headers=accept, timeout=20)
    assert r.json()["result"]["serverInfo"]["name"] == "agentgateway"
    session = {**accept, "mcp-session-id": r.headers["mcp-session-id"], "accept": "application/json"}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}
    r = httpx.post("http://127.0.0.1:3000/mcp", json=call, headers=session, timeout=20)
    assert r.json()["result"]["content"][0]["text"] == "5"


def test_management_planes(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"name": "r1", "backends": [{"host": up.address}]}]))
    httpx.get(f"http://127.0.0.1:{port}/echo")
    dump = httpx.get(gw.admin_url + "/config_dump").json()
    assert dump["config"]["binds"][0]["port"] == port
    assert dump["effective"]["workers"] == 1
    assert dump["effective"]["limits"]["maxHeaderSize"] == 65536
    assert dump["status"]["ready"] is True and dump["status"]["lastError"] is None
    assert httpx.get(gw.ready_url).text == "ready\n"
    text = gw.metrics_text()
    assert f'agentgateway_requests_total{{backend="{up.address}"' in text
    assert "agentgateway_build_info" in text
    assert httpx.get(gw.admin_url + "/nope").status_code == 404
    assert httpx.get(gw.admin_url + "/quitquitquit").status_code == 405


def test_json_access_log(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway({**binds(port, [{"backends": [{"host": up.address}]}]), "config": {"logging": {"format": "json"}}})
    httpx.get(f"http://127.0.0.1:{port}/echo?a=1", headers={"host": "h.test"})
    import json

    lines = wait_for(lambda: gw.access_lines(), 5, "an access log line")
    entry = json.loads(lines[-1])
    assert entry["http.path"] == "/echo?a=1" and entry["http.status"] == 200
    assert entry["http.host"] == "h.test" and entry["endpoint"] == up.address
    assert entry["route"] == "route0" and entry["http.method"] == "GET"


def test_workers_ignore_an_agentgateway_folder_in_the_working_directory(tmp_path):
    """Started from a directory holding a folder named agentgateway (a checkout, a folder of
    configs), the workers still import the installed package: they run with -P, so the working
    directory is not on their sys.path."""
    bogus = tmp_path / "agentgateway"
    (bogus / "server").mkdir(parents=True)
    (bogus / "__init__.py").write_text("raise ImportError('the bogus agentgateway folder was imported')\n")
    (bogus / "server" / "__init__.py").write_text("")
    (bogus / "server" / "worker.py").write_text("raise SystemExit('the bogus worker ran')\n")
    port, ready = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"config: {{adminAddr: 'off', statsAddr: 'off', readinessAddr: '127.0.0.1:{ready}', workers: 2}}\n"
        f"binds: [{{port: {port}, listeners: [{{routes: [{{policies: {{directResponse: {{status: 200, body: real}}}}}}]}}]}}]\n"
    )
    # The installed console script, as an operator runs it (its own directory, not the working
    # one, is first on the supervisor's sys.path).
    script = str(Path(sys.executable).parent / "agentgateway")
    log_path = tmp_path / "gateway.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [script, "-f", "config.yaml"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for(lambda: proc.poll() is not None or _ok(f"http://127.0.0.1:{ready}/healthz/ready"), 30, "ready")
            assert proc.poll() is None, log_path.read_text()
            for _ in range(10):
                r = httpx.get(f"http://127.0.0.1:{port}/")
                assert (r.status_code, r.text) == (200, "real")
            assert "bogus" not in log_path.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
