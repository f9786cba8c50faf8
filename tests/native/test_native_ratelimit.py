"""The shared token buckets through the Python API, across real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agentgateway._native import BucketSpec, SharedBuckets, bucket_key

HOUR_NS = 3600 * 10**9

_CHILD = """
import sys
from agentgateway._native import BucketSpec, SharedBuckets, bucket_key
table = SharedBuckets.attach(int(sys.argv[1]))
spec = BucketSpec(int(sys.argv[2]), 1, 3600 * 10**9)
key = bucket_key(b"route", b"")
print(sum(table.acquire(key, spec)[0] for _ in range(int(sys.argv[3]))))
"""


def test_exact_across_processes():
    fd = os.memfd_create("agw-test")
    try:
        SharedBuckets.initialize(fd, 1024)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(fd), "500", "400"], stdout=subprocess.PIPE, pass_fds=(fd,)
            )
            for _ in range(4)
        ]
        allowed = [int(p.communicate(timeout=60)[0]) for p in procs]
    finally:
        os.close(fd)
    assert sum(allowed) == 500
    assert sum(a > 0 for a in allowed) >= 2  # each takes at most 400 of the 500


def test_acquire_reports_remaining_and_reset():
    table = SharedBuckets.anonymous(16)
    spec = BucketSpec(2, 1, HOUR_NS)
    key = bucket_key(b"r", b"")
    allowed, remaining, reset_ns = table.acquire(key, spec)
    assert allowed and remaining == 1 and 0 < reset_ns <= HOUR_NS
    assert table.acquire(key, spec)[:2] == (True, 0)
    assert table.acquire(key, spec)[:2] == (False, 0)
    assert table.available(key, spec) == 0
    assert table.amend(key, spec, -1) == 1


def test_keys_and_specs():
    assert bucket_key(b"a", b"x") != bucket_key(b"a", b"y") != 0
    with pytest.raises(ValueError):
        BucketSpec(1, 2, HOUR_NS)
    with pytest.raises(ValueError):
        BucketSpec(1, 1, 0)
    fd = os.memfd_create("not-a-table")
    try:
        os.ftruncate(fd, 8192)
        with pytest.raises(ValueError):
            SharedBuckets.attach(fd)
    finally:
        os.close(fd)
