"""The token-bucket table of this process: shared with the other workers of the host when the
supervisor handed one over (a memfd), private otherwise (a worker run alone, a config check)."""

from __future__ import annotations

import os

from agentgateway._native import SharedBuckets

# Buckets the table holds; a bucket is one (policy, key value). 128 bytes each, so the default
# table is 8 MiB of shared memory, of which only the pages holding buckets are ever touched.
DEFAULT_SLOTS = 65536

_table: SharedBuckets | None = None


def create_shared(slots: int = DEFAULT_SLOTS) -> int:
    """Make a table in a new memfd (done by the supervisor); returns its descriptor, which the
    workers inherit."""
    fd = os.memfd_create("agentgateway-ratelimit", os.MFD_CLOEXEC)
    SharedBuckets.initialize(fd, slots)
    return fd


def attach(fd: int) -> None:
    """Use the table the supervisor made (done once by a worker at start)."""
    global _table
    _table = SharedBuckets.attach(fd)


def table() -> SharedBuckets:
    global _table
    if _table is None:
        _table = SharedBuckets.anonymous(DEFAULT_SLOTS)
    return _table
