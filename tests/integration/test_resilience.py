"""Timeouts, retries, request mirroring and backend health through the real daemon, with test
upstreams that count and time what they receive."""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import httpx

from tests.support.gateway import binds, free_port, wait_for


def _route(*backends, **policies):
    return {"policies": policies, "backends": [{"host": b} for b in backends]}


# ---------------------------------------------------------------- timeouts


def test_request_timeout_is_a_504_within_the_bound_and_frees_the_connection(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [_route(up.address, timeout={"requestTimeout": "300ms"})]))
    start = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{port}/hang", timeout=10)
    elapsed = time.monotonic() - start
    assert r.status_code == 504 and "request timeout" in r.text
    assert 0.25 < elapsed < 1.5
    # The upstream connection the request waited on is closed, not left behind or pooled.
    wait_for(lambda: up.open_connections() == 0, 5, "the upstream connection to close")
    assert gw.metric("agentgateway_requests_total", status="504") == 1
    # A fast request on the same route is unaffected.
    assert httpx.get(f"http://127.0.0.1:{port}/echo").status_code == 200


def test_backend_request_timeout_bounds_each_attempt(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                _route(
                    up.address,
                    timeout={"backendRequestTimeout": "200ms", "requestTimeout": "5s"},
                    retry={"attempts": 3},
                )
            ],
        )
    )
    start = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{port}/hang", timeout=10)
    elapsed = time.monotonic() - start
    assert r.status_code == 504 and "upstream request timeout" in r.text
    # Three attempts of 200 ms each, then the answer.
    assert 0.55 < elapsed < 2.0
    hangs = [q for q in up.requests() if q["target"] == "/hang"]
    assert len(hangs) == 3
    wait_for(lambda: up.open_connections() == 0, 5, "the upstream connections to close")


def test_request_timeout_covers_retries_and_backoff(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                _route(
                    up.address,
                    timeout={"requestTimeout": "600ms"},
                    retry={"attempts": 10, "backoff": "200ms", "codes": [503]},
                )
            ],
        )
    )
    start = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{port}/status?code=503", timeout=10)
    assert r.status_code == 504
    assert time.monotonic() - start < 1.5
    assert 2 <= len(up.requests()) <= 4


# ---------------------------------------------------------------- retries


def test_retry_on_status_codes_with_backoff(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [_route(up.address, retry={"attempts": 3, "backoff": "100ms", "codes": [503]})]))
    r = httpx.get(f"http://127.0.0.1:{port}/fail?key=a&times=2&code=503")
    assert r.status_code == 200 and r.json()["attempt"] == 3
    times = [q["time"] for q in up.requests()]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.09 and times[2] - times[1] >= 0.09
    # Out of attempts: the last answer is relayed.
    r = httpx.get(f"http://127.0.0.1:{port}/fail?key=b&times=5&code=503")
    assert r.status_code == 503
    # Codes not listed are not retried.
    up_before = len(up.requests())
    assert httpx.get(f"http://127.0.0.1:{port}/fail?key=c&times=1&code=500").status_code == 500
    assert len(up.requests()) == up_before + 1
    assert gw.metric("agentgateway_retries_total") == 4


def test_retry_replays_the_request_body(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [_route(up.address, retry={"attempts": 2, "codes": [503]})]))
    body = bytes(range(256)) * 200  # 51,200 bytes: within the replay bound
    r = httpx.post(f"http://127.0.0.1:{port}/fail?key=body&times=1", content=body)
    assert r.status_code == 200 and r.json()["attempt"] == 2
    seen = up.requests()
    assert [q["body_length"] for q in seen] == [len(body), len(body)]
    assert seen[1]["body_sha256"] == hashlib.sha256(body).hexdigest()
    # Chunked bodies are replayed too.
    r = httpx.post(
        f"http://127.0.0.1:{port}/fail?key=chunked&times=1", content=iter([b"a" * 1000, b"b" * 1000])
    )
    assert r.status_code == 200
    assert [q["body_length"] for q in up.requests()[2:]] == [2000, 2000]


def test_bodies_past_the_replay_bound_are_not_retried(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [_route(up.address, retry={"attempts": 3, "codes": [503]})]))
    r = httpx.post(f"http://127.0.0.1:{port}/fail?key=big&times=1", content=b"x" * 200_000)
    assert r.status_code == 503
    assert len(up.requests()) == 1


def test_retry_on_connection_failure_moves_to_another_backend(gateway, upstream):
    up = upstream()
    dead = f"127.0.0.1:{free_port()}"
    port = free_port()
    gw = gateway(binds(port, [_route(dead, up.address, retry={"attempts": 2})]))
    for _ in range(20):
        r = httpx.post(f"http://127.0.0.1:{port}/echo", content=b"payload")
        assert r.status_code == 200 and r.json()["body_length"] == 7
    assert gw.metric("agentgateway_retries_total") >= 1


def test_no_retry_once_a_non_idempotent_request_got_part_of_an_answer(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [_route(up.address, retry={"attempts": 3})]))
    # The upstream starts its answer then dies: a POST is not sent again...
    assert httpx.post(f"http://127.0.0.1:{port}/partial", content=b"x").status_code == 502
    assert len(up.requests()) == 1
    # ...a GET is.
    assert httpx.get(f"http://127.0.0.1:{port}/partial").status_code == 502
    assert len(up.requests()) == 4
    # Closing before any byte of an answer is retried for any method.
    assert httpx.post(f"http://127.0.0.1:{port}/drop", content=b"x").status_code == 502
    assert len(up.requests()) == 7


# ---------------------------------------------------------------- mirror


def test_mirror_gets_a_copy_with_the_body_and_does_not_slow_the_primary(gateway, upstream):
    primary, mirror = upstream("primary"), upstream("mirror")
    port = free_port()
    gateway(
        binds(
            port,
            [_route(primary.address, requestMirror={"backend": {"host": mirror.address}, "percentage": 1.0})],
        )
    )
    body = b"m" * 30_000
    r = httpx.post(f"http://127.0.0.1:{port}/echo?x=1", content=body, headers={"x-test": "t"})
    assert r.status_code == 200 and r.headers["x-upstream"] == "primary"
    wait_for(lambda: mirror.requests(), 5, "the mirrored request")
    copy = mirror.requests()[0]
    assert copy["target"] == "/echo?x=1" and copy["method"] == "POST"
    assert copy["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert ["x-test", "t"] in copy["headers"]
    # A mirror that never answers does not delay the primary.
    start = time.monotonic()
    for _ in range(5):
        assert httpx.get(f"http://127.0.0.1:{port}/echo").status_code == 200
    assert time.monotonic() - start < 2.0


def test_mirror_percentage_and_dead_mirror(gateway, upstream):
    primary, mirror = upstream("primary"), upstream("mirror")
    port, port_dead = free_port(), free_port()
    gateway(
        binds(
            port,
            [_route(primary.address, requestMirror={"backend": {"host": mirror.address}, "percentage": 0.3})],
        )
    )
    for _ in range(100):
        assert httpx.get(f"http://127.0.0.1:{port}/echo").status_code == 200
    wait_for(lambda: len(primary.requests()) == 100, 5, "the primary requests")
    time.sleep(0.3)
    assert 10 <= len(mirror.requests()) <= 55
    gateway(
        binds(
            port_dead,
            [
                _route(
                    primary.address,
                    requestMirror={"backend": {"host": f"127.0.0.1:{free_port()}"}, "percentage": 1.0},
                )
            ],
        )
    )
    assert httpx.get(f"http://127.0.0.1:{port_dead}/echo").status_code == 200


# ---------------------------------------------------------------- health


def test_failing_backend_is_evicted_and_comes_back(gateway, upstream):
    good = upstream("good")
    flaky_port = free_port()
    port = free_port()
    health = {"eviction": {"duration": "3s", "consecutiveFailures": 2}}
    gateway(
        binds(
            port,
            [
                {
                    "backends": [
                        {"host": good.address, "policies": {"health": health}},
                        {"host": f"127.0.0.1:{flaky_port}", "policies": {"health": health}},
                    ]
                }
            ],
        )
    )
    url = f"http://127.0.0.1:{port}/echo"
    # The second backend is down: after two failures it is evicted and every request succeeds
    # (the eviction outlasts these requests even on a loaded machine).
    with httpx.Client() as client:
        statuses = [client.get(url).status_code for _ in range(30)]
    assert statuses.count(503) <= 2
    assert statuses[-15:] == [200] * 15
    # It comes back once the eviction is over (it is healthy again by then).
    upstream("flaky", port=flaky_port)
    time.sleep(3.2)
    seen = {httpx.get(url).headers["x-upstream"] for _ in range(40)}
    assert seen == {"good", "flaky"}


def test_all_backends_evicted_still_serves(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {"health": {"eviction": {"duration": "10s"}}},
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(url + "/status?code=500").status_code == 500  # evicts the only backend
    assert httpx.get(url + "/echo").status_code == 200  # used anyway


def test_slow_client_upload_with_timeout_and_retry_armed(gateway, upstream):
    """Policies armed on a streaming upload do not break back-pressure or the body."""
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [_route(up.address, retry={"attempts": 2, "codes": [503]}, timeout={"requestTimeout": "20s"})],
        )
    )
    s = socket.create_connection(("127.0.0.1", port))
    total = 3 * 1024 * 1024
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total)
    sent = 0

    def feed():
        nonlocal sent
        chunk = b"z" * 65536
        while sent < total:
            s.sendall(chunk)
            sent += len(chunk)

    t = threading.Thread(target=feed)
    t.start()
    t.join(30)
    data = b""
    while b"}" not in data:
        data += s.recv(65536)
    s.close()
    assert b"200" in data.split(b"\r\n")[0]
    assert b'"body_length": %d' % total in data
