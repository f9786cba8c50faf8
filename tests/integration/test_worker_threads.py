"""agentgateway's ``config.workerThreads`` (its proxy threads: a count or a percentage of the
cores) mapped to worker processes, through the real daemon: ``WORKER_THREADS`` overrides it (as in
agentgateway) and ``config.workers`` (ours) wins over both."""

from __future__ import annotations

import math
import os

from tests.support.gateway import binds, free_port, wait_for


def _workers(gw) -> int:
    wait_for(lambda: gw.metric("agentgateway_workers") > 0, 15, "the workers metric")
    return int(gw.metric("agentgateway_workers"))


def test_worker_threads_is_the_number_of_worker_processes(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway({"config": {"workerThreads": 2}, **binds(port, [{"backends": [{"host": up.address}]}])}, workers=None)
    assert len(gw.worker_pids()) == 2
    assert _workers(gw) == 2


def test_a_percentage_of_the_cores_rounded_up(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(
        {"config": {"workerThreads": "50%"}, **binds(port, [{"backends": [{"host": up.address}]}])}, workers=None
    )
    expected = max(1, math.ceil(len(os.sched_getaffinity(0)) * 0.5))
    assert len(gw.worker_pids()) == expected


def test_the_environment_overrides_it_and_workers_wins_over_both(gateway, upstream):
    up = upstream()
    config = {"config": {"workerThreads": 2}, **binds(free_port(), [{"backends": [{"host": up.address}]}])}
    gw = gateway(config, workers=None, env={"WORKER_THREADS": "1"})
    assert len(gw.worker_pids()) == 1
    explicit = {
        "config": {"workerThreads": 2, "workers": 1},
        **binds(free_port(), [{"backends": [{"host": up.address}]}]),
    }
    gw = gateway(explicit, workers=None, env={"WORKER_THREADS": "2"})
    assert len(gw.worker_pids()) == 1
