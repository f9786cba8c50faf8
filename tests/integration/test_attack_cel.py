"""CEL rules and prompt-guard patterns over values the client chooses, through the running
daemon: what one request can make a rule or a pattern cost."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.gateway import binds, free_port
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY


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


@pytest.mark.parametrize("action", ["mask", "reject"])
def test_the_email_guard_costs_a_prompt_its_length(gateway, tmp_path, action):
    """The builtin `email` pattern ran on Python's `re`, which retries the unbounded local part
    from every word start: a prompt of `a.a.a.` (no `@` anywhere) cost the worker its length
    squared, 0.6 s at 20,000 characters and minutes at the 400,000 here, while its other clients
    waited. The builtins without look-around run on the regex crate now (linear), and what they
    find is unchanged."""
    fake = FakeProvider(tmp_path, "openai")
    try:
        port = free_port()
        guard = {"request": [{"regex": {"action": action, "rules": [{"builtin": "email"}]}}]}
        model = {"name": "m", "provider": "openAI", "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1"}}
        gateway({"llm": {"port": port, "models": [model], "policies": {"ai": {"promptGuard": guard}}}})
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        started = time.monotonic()
        with httpx.Client(timeout=60) as client:
            prompt = "a." * 200_000
            r = client.post(url, json={"model": "m", "messages": [{"role": "user", "content": prompt}]})
            assert r.status_code == 200, r.text
            r = client.post(url, json={"model": "m", "messages": [{"role": "user", "content": "mail bob@example.com"}]})
            if action == "mask":
                assert r.status_code == 200
                sent = fake.last()["body"]
                assert "bob@example.com" not in str(sent) and "<EMAIL_ADDRESS>" in str(sent)
            else:
                assert r.status_code == 403, r.text
        # Not a speed measurement: minutes before, milliseconds now; the bound only keeps a
        # regression from passing.
        assert time.monotonic() - started < 20
    finally:
        fake.stop()
