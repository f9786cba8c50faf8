"""Workers, supervision, metrics over workers, graceful drain."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import httpx

from tests.support.gateway import ResponseReader, binds, free_port, wait_for


def test_metrics_are_summed_over_workers(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"name": "r", "backends": [{"host": up.address}]}]), workers=2)
    assert len(gw.worker_pids()) == 2
    # New connections are spread over the workers by the kernel (SO_REUSEPORT).
    for _ in range(60):
        assert httpx.get(f"http://127.0.0.1:{port}/echo").status_code == 200
    assert gw.metric("agentgateway_requests_total", route="r", status="200", method="GET") == 60
    assert gw.metric("agentgateway_request_duration_seconds_count", route="r") == 60
    assert gw.metric("agentgateway_workers") == 2
    # Access-log lines are written every tick (0.1 s): they may lag the metrics a little.
    wait_for(lambda: gw.access_lines(), 5, "access log lines")


def test_killed_worker_is_replaced(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]), workers=2)
    first = gw.worker_pids()
    for _ in range(10):
        httpx.get(f"http://127.0.0.1:{port}/echo")
    before = gw.metric("agentgateway_requests_total")
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: len(gw.worker_pids()) == 2 and first[0] not in gw.worker_pids(), 15, "a replacement worker")
    gw.wait_ready()
    failures = 0
    for _ in range(30):
        failures += httpx.get(f"http://127.0.0.1:{port}/echo").status_code != 200
    assert failures == 0
    assert gw.metric("agentgateway_worker_restarts_total") == 1
    # Counters never go down when a worker dies (its last scraped counts are kept).
    assert gw.metric("agentgateway_requests_total") >= before


def test_sigterm_drains_in_flight_requests(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]), workers=2)
    workers = gw.worker_pids()
    results = {}

    def slow(i):
        r = httpx.get(f"http://127.0.0.1:{port}/slow?delay=1.5", timeout=10)
        results[i] = (r.status_code, r.text)

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # requests are in flight
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # No new connections once draining started.
    refused = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            refused = s.recv(100) == b""
    except OSError:
        refused = True
    assert refused
    for t in threads:
        t.join(10)
    assert results == {i: (200, "slow done\n") for i in range(4)}
    assert gw.proc.wait(15) == 0
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} outlived the supervisor"


def test_keep_alive_connection_is_closed_cleanly_on_drain(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /slow?delay=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    gw.proc.send_signal(signal.SIGTERM)
    status, headers, body = ResponseReader(s).read()
    assert status == 200 and body == b"slow done\n"
    assert headers.get("connection") == "close"
    assert s.recv(10) == b""
    s.close()
    assert gw.proc.wait(15) == 0


def test_idle_keep_alive_connections_do_not_hold_the_drain(gateway, upstream):
    """Connections that served a request and wait for the next are closed as soon as the drain
    starts: the gateway stops in well under the termination deadline (10 s), not at it."""
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]), workers=2)
    sockets = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ResponseReader(s).read()[0] == 200
        sockets.append(s)
    started = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    for s in sockets:
        assert s.recv(10) == b""  # closed by the gateway (the read times out after 5 s otherwise)
        s.close()
    assert gw.proc.wait(15) == 0
    assert time.monotonic() - started < 5


def test_port_in_use_is_a_clear_startup_error(gateway):
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("0.0.0.0", port))
    blocker.listen()
    try:
        gw = gateway(binds(port, [{"backends": [{"host": "127.0.0.1:1"}]}]), wait=False)
        assert gw.proc.wait(20) == 1
        assert "cannot listen on" in gw.output() and str(port) in gw.output()
    finally:
        blocker.close()


def test_workers_exit_when_the_supervisor_is_killed(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]), workers=2)
    workers = gw.worker_pids()
    assert len(workers) == 2
    os.kill(gw.pid, signal.SIGKILL)
    gw.proc.wait(5)
    # Workers notice the closed control channel, drain and exit: no orphans.
    wait_for(
        lambda: not any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in workers),
        20,
        "workers to exit",
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
