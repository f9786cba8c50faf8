"""Streaming both ways with back-pressure: events pass one by one, large bodies in bounded memory."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import binds, free_port
from tests.support.upstream import PATTERN


def _rss_kib(pid: int, field: str = "VmHWM") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture
def streaming(gateway, upstream):
    up = upstream("s")
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    gw.port = port
    return gw


def test_sse_events_arrive_one_by_one(streaming):
    arrivals = []
    with httpx.stream("GET", f"http://127.0.0.1:{streaming.port}/sse?n=5&delay=0.3", timeout=10) as r:
        assert r.headers["content-type"] == "text/event-stream"
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.monotonic(), json.loads(line[6:])["i"]))
    assert [i for _, i in arrivals] == list(range(5))
    gaps = [b - a for (a, _), (b, _) in zip(arrivals, arrivals[1:], strict=False)]
    # Buffering would deliver the events together at the end; each must arrive ~0.3 s apart.
    assert all(g > 0.2 for g in gaps), gaps


GIB = 1 << 30


def _expected_sha256(n: int) -> str:
    h = hashlib.sha256()
    full, rest = divmod(n, len(PATTERN))
    for _ in range(full):
        h.update(PATTERN)
    h.update(PATTERN[:rest])
    return h.hexdigest()


@pytest.mark.slow
def test_one_gib_download_with_bounded_memory(streaming):
    (worker,) = streaming.worker_pids()
    before = _rss_kib(worker, "VmRSS")
    h = hashlib.sha256()
    total = 0
    with httpx.stream("GET", f"http://127.0.0.1:{streaming.port}/bytes?n={GIB}", timeout=60) as r:
        assert r.headers["content-length"] == str(GIB)
        for chunk in r.iter_raw(1 << 20):
            h.update(chunk)
            total += len(chunk)
    assert total == GIB
    assert h.hexdigest() == _expected_sha256(GIB)
    growth = _rss_kib(worker) - before
    assert growth < 64 * 1024, f"worker peak RSS grew by {growth} KiB for a 1 GiB download"


@pytest.mark.slow
def test_one_gib_upload_with_bounded_memory(streaming):
    (worker,) = streaming.worker_pids()
    before = _rss_kib(worker, "VmRSS")
    block = PATTERN * 16  # 1 MiB

    def body():
        for _ in range(GIB // len(block)):
            yield block

    r = httpx.post(f"http://127.0.0.1:{streaming.port}/echo", content=body(), timeout=120)
    data = r.json()
    assert data["body_length"] == GIB
    assert data["chunked"] is True  # httpx streams a generator with chunked encoding
    assert data["body_sha256"] == _expected_sha256(GIB)
    growth = _rss_kib(worker) - before
    assert growth < 64 * 1024, f"worker peak RSS grew by {growth} KiB for a 1 GiB upload"


def test_slow_reader_pauses_the_upstream(streaming):
    """A client that stops reading must not make the gateway buffer the whole response."""
    (worker,) = streaming.worker_pids()
    before = _rss_kib(worker, "VmRSS")
    s = socket.create_connection(("127.0.0.1", streaming.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(f"GET /bytes?n={256 << 20} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    s.recv(1000)
    time.sleep(2.0)  # the upstream could send 256 MiB in this time
    growth = _rss_kib(worker, "VmRSS") - before
    s.close()
    assert growth < 32 * 1024, f"worker RSS grew by {growth} KiB while the client was not reading"
    assert httpx.get(f"http://127.0.0.1:{streaming.port}/echo").status_code == 200
