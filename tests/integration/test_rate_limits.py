"""Local rate limits (shared across worker processes) and remote ones (Envoy's rate limit
service over gRPC, and Redis shared by two gateway processes)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.gateway import binds, free_port, wait_for


def _limited(max_tokens, fill="1", interval="1h", **extra):
    return {"maxTokens": max_tokens, "tokensPerFill": int(fill), "fillInterval": interval, **extra}


def test_local_limit_is_exact_across_workers(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(
        binds(port, [{"policies": {"localRateLimit": [_limited(50)]}, "backends": [{"host": up.address}]}]),
        workers=3,
    )
    url = f"http://127.0.0.1:{port}/echo"

    def one(_):
        # A fresh connection each time, so the kernel spreads them over the workers.
        return httpx.get(url, headers={"connection": "close"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses.count(200) == 50
    assert statuses.count(429) == 150
    assert len(up.requests()) == 50
    assert gw.metric("agentgateway_rate_limit_decisions_total", type="local", result="limited") == 150
    assert gw.metric("agentgateway_rate_limit_decisions_total", type="local", result="allowed") == 50


def test_local_limit_headers_and_refill(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {"localRateLimit": [_limited(2, fill="2", interval="600ms")]},
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    url = f"http://127.0.0.1:{port}/echo"
    with httpx.Client() as client:
        first, second, third = (client.get(url) for _ in range(3))
        assert first.status_code == 200 and first.headers["x-ratelimit-limit"] == "2"
        assert first.headers["x-ratelimit-remaining"] == "1"
        assert second.headers["x-ratelimit-remaining"] == "0"
        assert third.status_code == 429 and third.text == "rate limit exceeded\n"
        assert third.headers["x-ratelimit-limit"] == "2" and third.headers["x-ratelimit-remaining"] == "0"
        assert third.headers["x-ratelimit-reset"] == "0"  # under a second to the next fill
        time.sleep(0.7)
        assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]


def test_local_limit_keyed_by_a_request_value(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {"localRateLimit": [_limited(2, key='request.headers["x-user"]')]},
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    url = f"http://127.0.0.1:{port}/echo"

    def statuses(user):
        headers = {"x-user": user} if user else {}
        return [httpx.get(url, headers=headers).status_code for _ in range(3)]

    assert statuses("alice") == [200, 200, 429]
    assert statuses("bob") == [200, 200, 429]
    assert statuses(None) == [200, 200, 429]  # requests without the value share one bucket


def test_local_limit_survives_reloads_until_it_changes(gateway, upstream):
    up = upstream()
    port = free_port()

    def config(max_tokens, extra_path):
        return binds(
            port,
            [
                {"policies": {"localRateLimit": [_limited(max_tokens)]}, "backends": [{"host": up.address}]},
                {
                    "name": "other",
                    "matches": [{"path": {"exact": extra_path}}],
                    "backends": [{"host": up.address}],
                },
            ],
        )

    gw = gateway(config(2, "/a"), workers=2)
    url = f"http://127.0.0.1:{port}/echo"
    assert [httpx.get(url).status_code for _ in range(3)] == [200, 200, 429]
    gw.write_config(config(2, "/b"))
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/b").status_code == 200, 5, "the reload")
    assert httpx.get(url).status_code == 429  # same limit: same bucket
    gw.write_config(config(3, "/c"))
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/c").status_code == 200, 5, "the second reload")
    assert [httpx.get(url).status_code for _ in range(4)] == [200, 200, 200, 429]


def _remote(**kwargs):
    return {
        "domain": "api",
        "descriptors": [{"entries": [{"key": "user", "value": 'request.headers["x-user"]'}]}],
        **kwargs,
    }


def test_remote_rate_limit_service(gateway, upstream, rls):
    up = upstream()
    service = rls(limit=3, headers={"x-rls-user": "seen"})
    port = free_port()
    gw = gateway(
        binds(
            port,
            [
                {
                    "policies": {"remoteRateLimit": _remote(host=service.address)},
                    "backends": [{"host": up.address}],
                }
            ],
        ),
        workers=2,
    )
    url = f"http://127.0.0.1:{port}/echo"
    results = [httpx.get(url, headers={"x-user": "alice"}) for _ in range(4)]
    assert [r.status_code for r in results] == [200, 200, 200, 429]
    assert results[0].headers["x-rls"] == "checked"
    assert ["x-rls-user", "seen"] in results[0].json()["headers"]
    limited = results[3]
    assert limited.headers["x-ratelimit-limit"] == "3" and limited.headers["x-ratelimit-remaining"] == "0"
    # Another value is another counter; no value means no check at all.
    assert httpx.get(url, headers={"x-user": "bob"}).status_code == 200
    assert all(httpx.get(url).status_code == 200 for _ in range(5))
    assert gw.metric("agentgateway_rate_limit_decisions_total", type="remote", result="limited") == 1


def test_remote_rate_limit_failure_modes(gateway, upstream):
    up = upstream()
    dead = f"127.0.0.1:{free_port()}"
    closed, opened = free_port(), free_port()
    for port, mode in ((closed, "failClosed"), (opened, "failOpen")):
        gateway(
            binds(
                port,
                [
                    {
                        "policies": {
                            "remoteRateLimit": _remote(host=dead, failureMode=mode, timeout="300ms")
                        },
                        "backends": [{"host": up.address}],
                    }
                ],
            )
        )
    r = httpx.get(f"http://127.0.0.1:{closed}/echo", headers={"x-user": "a"})
    assert r.status_code == 500 and "rate limit service unavailable" in r.text
    assert httpx.get(f"http://127.0.0.1:{opened}/echo", headers={"x-user": "a"}).status_code == 200


def test_remote_check_keeps_pipelining_order_and_the_body(gateway, upstream, rls):
    """A request waiting on the service keeps its body, and pipelined requests stay in order."""
    import socket

    from tests.support.gateway import ResponseReader

    up = upstream()
    service = rls(limit=100, delay=0.05)
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {"remoteRateLimit": _remote(host=service.address)},
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    s = socket.create_connection(("127.0.0.1", port))
    reqs = b""
    for i in range(5):
        body = b"b" * (1000 * (i + 1))
        reqs += b"POST /echo?i=%d HTTP/1.1\r\nHost: x\r\nx-user: u\r\nContent-Length: %d\r\n\r\n%s" % (
            i,
            len(body),
            body,
        )
    s.sendall(reqs)
    reader = ResponseReader(s)
    for i in range(5):
        status, _, body = reader.read()
        assert status == 200
        assert b"/echo?i=%d" % i in body and b'"body_length": %d' % (1000 * (i + 1)) in body
    s.close()


def test_redis_limit_shared_by_two_gateways(gateway, upstream, redis_server):
    up = upstream()
    redis = redis_server()
    limit = {
        "domain": "shared",
        "redis": {"url": redis.url},
        "descriptors": [
            {
                "entries": [{"key": "route", "value": '"api"'}],
                "limit": {"requestsPerUnit": 5, "unit": "day"},
            }
        ],
    }
    ports = [free_port(), free_port()]
    for port in ports:
        gateway(binds(port, [{"policies": {"remoteRateLimit": limit}, "backends": [{"host": up.address}]}]))
    results = [httpx.get(f"http://127.0.0.1:{ports[i % 2]}/echo") for i in range(12)]
    statuses = [r.status_code for r in results]
    assert statuses.count(200) == 5 and statuses.count(429) == 7
    assert results[0].headers["x-ratelimit-limit"] == "5"
    assert results[0].headers["x-ratelimit-remaining"] == "4"
    assert results[-1].headers["x-ratelimit-remaining"] == "0"
    assert len(up.requests()) == 5


def test_redis_down(gateway, upstream, redis_server):
    up = upstream()
    redis = redis_server()
    port_closed, port_open = free_port(), free_port()
    for port, mode in ((port_closed, "failClosed"), (port_open, "failOpen")):
        limit = {
            "domain": "d",
            "redis": {"url": redis.url, "timeout": "300ms"},
            "failureMode": mode,
            "descriptors": [
                {
                    "entries": [{"key": "k", "value": '"v"'}],
                    "limit": {"requestsPerUnit": 100, "unit": "minute"},
                }
            ],
        }
        gateway(binds(port, [{"policies": {"remoteRateLimit": limit}, "backends": [{"host": up.address}]}]))
    assert httpx.get(f"http://127.0.0.1:{port_closed}/echo").status_code == 200
    redis.stop()
    assert httpx.get(f"http://127.0.0.1:{port_closed}/echo").status_code == 500
    assert httpx.get(f"http://127.0.0.1:{port_open}/echo").status_code == 200


def test_request_timeout_bounds_a_slow_rate_limit_service(gateway, upstream, rls):
    up = upstream()
    service = rls(limit=100, delay=1.0)
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {
                        "remoteRateLimit": _remote(host=service.address, timeout="5s"),
                        "timeout": {"requestTimeout": "300ms"},
                    },
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    start = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{port}/echo", headers={"x-user": "u"}, timeout=10)
    assert r.status_code == 504 and time.monotonic() - start < 0.9
    assert up.requests() == []


def test_client_leaving_during_a_remote_check(gateway, upstream, rls):
    import socket
    import struct

    up = upstream()
    service = rls(limit=100, delay=0.5)
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {"remoteRateLimit": _remote(host=service.address)},
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nx-user: gone\r\n\r\n")
    time.sleep(0.1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # a reset: the client is gone (a plain close is a half-close, still answered)
    time.sleep(0.8)
    assert up.requests() == []  # the request was dropped with its client
    assert httpx.get(f"http://127.0.0.1:{port}/echo", headers={"x-user": "u"}).status_code == 200
