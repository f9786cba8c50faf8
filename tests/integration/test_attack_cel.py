"""CEL rules over values the client chooses, through the running daemon: what one request can
make a rule cost."""

from __future__ import annotations

import time

import httpx

from tests.support.gateway import binds, free_port


def test_a_rule_that_searches_one_header_for_another_costs_their_lengths_added(gateway):
    """`indexOf`/`lastIndexOf` of the `cel` crate compared the needle at every window of the
    text: a client that wrote both (a needle of n `a`s and a `b`, in 2n `a`s) made the rule cost
    n² character comparisons, over a minute of the worker's CPU at these sizes, during which
    every other client of the worker waited. The search is linear now."""
    port = free_port()
    rule = (
        'request.headers["x-text"].indexOf(request.headers["x-needle"]) < 0 && '
        'request.headers["x-text"].lastIndexOf(request.headers["x-needle"]) < 0'
    )
    # Answered by the gateway: no upstream takes heads this large.
    policies = {"authorization": {"rules": [rule]}, "directResponse": {"status": 200, "body": "ok"}}
    config = binds(port, [{"policies": policies}])
    config["frontendPolicies"] = {"http": {"maxHeaderSize": 4 << 20}}
    gateway(config)
    url = f"http://127.0.0.1:{port}/echo"
    n = 500_000
    headers = {"x-text": "a" * (2 * n), "x-needle": "a" * n + "b"}
    started = time.monotonic()
    with httpx.Client(timeout=60) as client:
        assert client.get(url, headers=headers).status_code == 200
        # Found: the rule denies, and the worker still answers the next client.
        assert client.get(url, headers={**headers, "x-text": headers["x-text"] + "b"}).status_code == 403
        assert client.get(url, headers={"x-text": "abc", "x-needle": "z"}).status_code == 200
    # Not a speed measurement: the quadratic search took minutes here, the linear one
    # milliseconds; the bound only keeps a regression from passing.
    assert time.monotonic() - started < 20
