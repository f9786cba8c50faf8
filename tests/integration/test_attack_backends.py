"""Audit 8: A2A, OpenAPI and LLM provider paths, the shared rate-limit table and extAuthz,
attacked as an outsider would, through the running daemon."""

from __future__ import annotations

import httpx
import pytest

from agentgateway._native import bucket_key
from agentgateway.policy.buckets import DEFAULT_SLOTS
from tests.support.gateway import binds, free_port

# ---------------------------------------------------------------- localRateLimit shared table

_HOUR_NS = 3_600_000_000_000


def _limit(max_tokens: int, key: str | None = None) -> dict[str, object]:
    cfg: dict[str, object] = {"maxTokens": max_tokens, "tokensPerFill": 1, "fillInterval": "1h"}
    if key is not None:
        cfg["key"] = key
    return cfg


def _identity(port: int, route: str, max_tokens: int, key: str | None) -> bytes:
    # How a route's bucket is named in the table (policy/local_rate_limit.py): the table key of a
    # value is a public hash of this and the value, so anyone who knows (or guesses) the route
    # names knows where a bucket lives.
    return b"bind/%d/listener0/%s#0|%d|1|%d|requests|%s" % (
        port,
        route.encode(),
        max_tokens,
        _HOUR_NS,
        (key or "").encode(),
    )


def _values_landing_at(identity: bytes, slot: int, count: int) -> list[bytes]:
    found: list[bytes] = []
    i = 0
    while len(found) < count:
        value = b"k%d" % i
        i += 1
        if bucket_key(identity, value) % DEFAULT_SLOTS == slot:
            found.append(value)
    return found


@pytest.mark.parametrize(
    ("victim_key", "victim_value"),
    [(None, b""), ("source.address", b"127.0.0.1")],
    ids=["route-limit", "per-ip-limit"],
)
def test_a_flood_of_chosen_keys_does_not_reset_another_rules_bucket(gateway, upstream, victim_key, victim_value):
    """Every localRateLimit bucket lives in one table of 65,536 slots; a key is placed in a
    window of 16 slots from its hash, and a new key that found its window full evicted the least
    recently used bucket there, which came back full on its next request. A client that may
    choose a rule's key (`request.headers["x-k"]`) could therefore send 16 requests whose keys
    land in the window of its own spent bucket of another rule (a login route's limit, its
    per-IP limit) and have that bucket reset: unlimited, at 16 requests per reset. A flood of
    one rule's keys now evicts only that rule's buckets."""
    up = upstream()
    port = free_port()
    flood_key = 'request.headers["x-k"]'
    routes = [
        {
            "name": "login",
            "matches": [{"path": {"exact": "/login"}}],
            "policies": {"localRateLimit": [_limit(2, victim_key)]},
            "backends": [{"host": up.address}],
        },
        {
            "name": "flood",
            "matches": [{"path": {"exact": "/flood"}}],
            "policies": {"localRateLimit": [_limit(100, flood_key)]},
            "backends": [{"host": up.address}],
        },
    ]
    gateway(binds(port, routes))
    base = f"http://127.0.0.1:{port}"
    victim = bucket_key(_identity(port, "login", 2, victim_key), victim_value)
    values = _values_landing_at(_identity(port, "flood", 100, flood_key), victim % DEFAULT_SLOTS, 16)
    with httpx.Client() as client:
        assert [client.post(f"{base}/login").status_code for _ in range(3)] == [200, 200, 429]
        # 15 keys fill the rest of the window, the 16th finds it full.
        assert [client.get(f"{base}/flood", headers={"x-k": v.decode()}).status_code for v in values] == [200] * 16
        assert client.post(f"{base}/login").status_code == 429
        # The flood's own keys are still served (they evict one another), as are new ones.
        more = _values_landing_at(_identity(port, "flood", 100, flood_key), victim % DEFAULT_SLOTS, 20)[16:]
        assert [client.get(f"{base}/flood", headers={"x-k": v.decode()}).status_code for v in more] == [200] * 4
        assert client.get(f"{base}/flood", headers={"x-k": values[0].decode()}).status_code == 200
        assert client.post(f"{base}/login").status_code == 429


# ---------------------------------------------------------------- A2A facts


@pytest.mark.parametrize(
    "path",
    [
        "/tasks/t-1%3Acancel",  # Starlette (the Python SDK), Express and others decode the path
        "/tasks/t-1%3acancel",
        "/v1/tasks/t-1%3Acancel",
        "/tasks/t-1:cancel;x=1",  # servlet containers drop segment parameters
        "/TASKS/t-1:CANCEL",  # ASP.NET Core (the .NET SDK) routes in any case
    ],
)
def test_an_http_json_operation_is_read_as_the_agent_routes_it(gateway, upstream, path):
    """The HTTP+JSON operation (CancelTask, …) was read from the path as it came, while the card
    paths were read as an agent's router sees them. `POST /tasks/t-1%3Acancel` was no HTTP+JSON
    operation to the gateway, so it took the body as a JSON-RPC call, whose method the client
    names (`GetTask`): a rule denying CancelTask let it through, and the agent, decoding the
    path, cancelled t-1."""
    up = upstream()
    port = free_port()
    route = {
        "policies": {
            "a2a": {},
            "authorization": {"rules": [{"deny": "a2a.method in ['CancelTask', 'tasks/cancel']"}]},
        },
        "backends": [{"host": up.address}],
    }
    gateway(binds(port, [route]))
    body = b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t-1"}}'
    headers = {"content-type": "application/json", "a2a-version": "1.0"}
    r = httpx.post(f"http://127.0.0.1:{port}{path}", content=body, headers=headers)
    assert r.status_code == 403
    assert not [q for q in up.requests() if "cancel" in q["path"].lower()]
    # The plain spelling, and an ordinary JSON-RPC GetTask, as before.
    assert httpx.post(f"http://127.0.0.1:{port}/tasks/t-1:cancel", headers=headers).status_code == 403
    assert httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=headers).status_code == 200
