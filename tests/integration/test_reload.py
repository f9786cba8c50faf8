"""Hot reload: edits apply within a second, broken edits keep the old config, nothing is dropped."""

from __future__ import annotations

import threading
import time

import httpx

from tests.support.gateway import binds, free_port, wait_for


def _config(port, upstream_address, path="/v1", extra_routes=()):
    return binds(
        port,
        [
            {
                "name": "main",
                "matches": [{"path": {"pathPrefix": path}}],
                "backends": [{"host": upstream_address}],
            },
            *extra_routes,
        ],
    )


def test_edit_applies_within_a_second(gateway, upstream):
    a, b = upstream("a"), upstream("b")
    port = free_port()
    gw = gateway(_config(port, a.address), workers=2)
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(url + "/v1/x").headers["x-upstream"] == "a"
    assert httpx.get(url + "/v2/x").status_code == 404
    gw.write_config(_config(port, b.address, path="/v2"))
    start = time.monotonic()
    wait_for(lambda: httpx.get(url + "/v2/x").status_code == 200, 5, "the new route")
    assert time.monotonic() - start < 1.0
    # Every worker serves the new config (fresh connections land on both).
    for _ in range(20):
        r = httpx.get(url + "/v2/x")
        assert r.headers["x-upstream"] == "b"
        assert httpx.get(url + "/v1/x").status_code == 404
    assert gw.metric("agentgateway_config_reloads_total", result="success") == 1


def test_broken_edit_keeps_the_old_config(gateway, upstream):
    a = upstream("a")
    port = free_port()
    gw = gateway(_config(port, a.address))
    url = f"http://127.0.0.1:{port}/v1/x"
    gw.write_config(
        gw.render(_config(port, a.address)).replace("pathPrefix: /v1", "pathPrefix: /v1\n          extProc: {}")
    )
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") == 1, 5, "the reload failure")
    assert gw.metric("agentgateway_config_synchronized") == 0
    assert "config reload rejected" in gw.output() and "extProc" in gw.output()
    dump = httpx.get(gw.admin_url + "/config_dump").json()
    assert "extProc" in dump["status"]["lastError"]
    assert httpx.get(url).status_code == 200  # still serving the previous config
    # Garbage YAML is rejected the same way.
    gw.write_config("binds: [ {port: ")
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") == 2, 5, "second failure")
    assert httpx.get(url).status_code == 200
    # Fixing the file recovers.
    gw.write_config(_config(port, a.address, path="/fixed"))
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/fixed").status_code == 200, 5, "recovery")
    assert gw.metric("agentgateway_config_synchronized") == 1


def test_reload_adds_and_removes_binds(gateway, upstream):
    a = upstream("a")
    first, second = free_port(), free_port()
    gw = gateway(_config(first, a.address))
    config = _config(second, a.address)
    gw.write_config(config)
    wait_for(lambda: _status(f"http://127.0.0.1:{second}/v1/x") == 200, 5, "the new bind")
    wait_for(lambda: _status(f"http://127.0.0.1:{first}/v1/x") is None, 5, "the old bind to close")


def _status(url):
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None


def test_reload_under_load_drops_nothing(gateway, upstream):
    a, b = upstream("a"), upstream("b")
    port = free_port()
    gw = gateway(_config(port, a.address), workers=2)
    url = f"http://127.0.0.1:{port}/v1/echo"
    stop = threading.Event()
    failures: list[str] = []
    counts = {"ok": 0}

    def hammer(keep_alive):
        client = httpx.Client(timeout=10) if keep_alive else None
        try:
            hammer_with(client)
        finally:
            if client:
                client.close()

    def hammer_with(client):
        while not stop.is_set():
            try:
                if client:
                    r = client.post(url, content=b"x" * 1000)
                else:
                    r = httpx.post(url, content=b"x" * 1000, timeout=10)
                if r.status_code != 200 or r.json()["body_length"] != 1000:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    counts["ok"] += 1
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(i % 2 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            # Alternate upstreams and add/remove an unrelated route each time.
            extra = [
                {
                    "name": f"x{i}",
                    "matches": [{"path": {"exact": f"/x{i}"}}],
                    "backends": [{"host": b.address}],
                }
            ]
            gw.write_config(_config(port, (a if i % 2 else b).address, extra_routes=extra))
            wait_for(
                lambda i=i: gw.metric("agentgateway_config_reloads_total", result="success") >= i + 1,
                10,
                f"reload {i + 1}",
            )
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert failures == [], failures[:5]
    assert counts["ok"] > 100
