"""A bounded loopback load test: traffic with retries, outlier detection and a local rate limit
armed, while the config is reloaded 20 times and a backend replica is killed and restarted.
No client request may fail except the ones the rate limit is meant to refuse."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.gateway import binds, free_port, wait_for

LIMIT = 30


def _config(port, a, b, generation):
    health = {"eviction": {"duration": "1s", "consecutiveFailures": 1}}
    return binds(
        port,
        [
            {
                "name": "api",
                "matches": [{"path": {"pathPrefix": "/api"}}],
                "policies": {
                    "retry": {"attempts": 3, "codes": [502, 503]},
                    "timeout": {"requestTimeout": "10s"},
                    "requestHeaderModifier": {"set": {"x-generation": str(generation)}},
                    "urlRewrite": {"path": {"prefix": "/echo"}},
                },
                "backends": [
                    {"host": a, "policies": {"health": health}},
                    {"host": b, "policies": {"health": health}},
                ],
            },
            {
                "name": "limited",
                "matches": [{"path": {"pathPrefix": "/limited"}}],
                "policies": {
                    "localRateLimit": [{"maxTokens": LIMIT, "tokensPerFill": 1, "fillInterval": "1h"}]
                },
                "backends": [{"host": a}],
            },
            {
                "name": f"extra{generation}",
                "matches": [{"path": {"exact": f"/x{generation}"}}],
                "backends": [{"host": a}],
            },
        ],
    )


@pytest.mark.slow
def test_reloads_and_a_dying_replica_under_load(gateway, upstream):
    a = upstream("a")
    b_port = free_port()
    b = upstream("b", port=b_port)
    port = free_port()
    gw = gateway(_config(port, a.address, b.address, 0), workers=2)
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    failures: list[str] = []
    counts = {"api": 0, "limited_ok": 0, "limited_429": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + 90  # bound: the test stops by itself

    def client(i):
        keep_alive = i % 2 == 0
        with httpx.Client(timeout=15, headers={} if keep_alive else {"connection": "close"}) as c:
            n = 0
            while not stop.is_set() and time.monotonic() < deadline:
                n += 1
                try:
                    if n % 7 == 0:
                        r = c.get(base + "/limited")
                        with lock:
                            if r.status_code == 200:
                                counts["limited_ok"] += 1
                            elif r.status_code == 429:
                                counts["limited_429"] += 1
                            else:
                                failures.append(f"limited {r.status_code} {r.text[:100]}")
                        continue
                    if n % 2:
                        r = c.post(base + f"/api/{i}/{n}", content=b"p" * (100 * (n % 50)))
                        ok = r.status_code == 200 and r.json()["body_length"] == 100 * (n % 50)
                    else:
                        r = c.get(base + f"/api/{i}/{n}")
                        ok = r.status_code == 200 and r.json()["target"] == f"/echo/{i}/{n}"
                    with lock:
                        if ok:
                            counts["api"] += 1
                        else:
                            failures.append(f"api {r.status_code} {r.text[:100]}")
                except httpx.HTTPError as exc:
                    with lock:
                        failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    b2 = None
    try:
        for generation in range(1, 21):
            time.sleep(0.25)
            if generation == 6:
                b.stop(9)  # SIGKILL: in-flight requests and pooled connections die with it
            if generation == 12:
                b2 = upstream("b", port=b_port)
            gw.write_config(_config(port, a.address, b.address, generation))
            wait_for(
                lambda g=generation: gw.metric("agentgateway_config_reloads_total", result="success") >= g,
                15,
                f"reload {generation}",
            )
        time.sleep(1.5)  # the restarted replica's eviction is over: it takes traffic again
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == [], failures[:10]
    assert counts["api"] > 300
    assert counts["limited_ok"] == LIMIT
    assert counts["limited_429"] > 0
    assert b2 is not None and len(b2.requests()) > 0  # the replica came back
    assert gw.metric("agentgateway_config_reloads_total", result="failure") == 0
