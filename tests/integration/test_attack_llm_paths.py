"""Attacks on LLM provider paths and credentials through the daemon (raw sockets, so nothing
normalizes the path or the headers on the way): a client path cannot leave a provider's
``pathPrefix``/``baseUrl`` path, and no client header (any case, repeated) replaces or joins the
key the gateway injects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gateway import Gateway, free_port, raw_connection, read_response
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY

CLIENT_KEY = "sk-client-must-not-leak"
CHAT = json.dumps({"model": "", "messages": [{"role": "user", "content": "x"}]})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, FakeProvider]]]:
    tmp = tmp_path_factory.mktemp("llm-attack")
    procs: list[Any] = []
    try:
        fakes = {k: FakeProvider(tmp, k) for k in ("compat", "anthropic")}
        procs += fakes.values()
        compat = f"127.0.0.1:{fakes['compat'].port}"
        models = [
            {
                "name": "prefixed",
                "provider": "openAI",
                "params": {"apiKey": API_KEY, "hostOverride": compat, "pathPrefix": "/team-a/v1"},
            },
            {
                "name": "based",
                "provider": "openAI",
                "params": {"apiKey": API_KEY, "baseUrl": f"http://{compat}/base/v1"},
            },
            {
                "name": "claude",
                "provider": "anthropic",
                "params": {"apiKey": API_KEY, "baseUrl": fakes["anthropic"].base},
            },
        ]
        port = free_port()
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, {"llm": {"port": port, "models": models}})
        procs.append(gw)
        yield port, fakes
    finally:
        for proc in reversed(procs):
            proc.stop()


def _post(port: int, path: bytes, model: str, headers: bytes = b"") -> int:
    body = CHAT.replace('"model": ""', f'"model": "{model}"').encode()
    with raw_connection(port, timeout=15) as sock:
        sock.sendall(
            b"POST " + path + b" HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n" % len(body) + headers + b"\r\n" + body
        )
        return read_response(sock)[0]


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/chat/completions",
        b"/v1/../../admin/v1/chat/completions",
        b"/v1/%2e%2e/%2E%2E/admin/v1/chat/completions",
        b"/v1/./chat/completions",
        b"//v1//chat/completions",
    ],
)
def test_client_path_stays_under_the_prefix(setup, path: bytes) -> None:
    port, fakes = setup
    for model, prefix in (("prefixed", "/team-a/v1/"), ("based", "/base/v1/")):
        before = fakes["compat"].count()
        status = _post(port, path, model)
        assert status == 200 or path != b"/v1/chat/completions"
        if status == 200:
            seen = fakes["compat"].last()
            assert seen["path"].startswith(prefix) and ".." not in seen["path"], (model, path, seen["path"])
        else:
            assert status in (400, 404) and fakes["compat"].count() == before


@pytest.mark.parametrize(
    "path",
    [
        b"/v1%2F..%2F..%2Fadmin/chat/completions",
        b"/v1/..;/admin/chat/completions",
        b"/v1/%c0%ae%c0%ae/chat/completions",
    ],
)
def test_encoded_escapes_are_refused(setup, path: bytes) -> None:
    port, fakes = setup
    before = fakes["compat"].count()
    assert _post(port, path, "prefixed") == 400
    assert fakes["compat"].count() == before


@pytest.mark.parametrize(
    "headers",
    [
        b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n",
        b"AUTHORIZATION: Bearer " + CLIENT_KEY.encode() + b"\r\nauthorization: Bearer " + CLIENT_KEY.encode() + b"\r\n",
        b"X-Api-Key: " + CLIENT_KEY.encode() + b"\r\napi-key: " + CLIENT_KEY.encode() + b"\r\n",
        b"x-goog-api-key: " + CLIENT_KEY.encode() + b"\r\nProxy-Authorization: " + CLIENT_KEY.encode() + b"\r\n",
    ],
)
def test_client_headers_never_replace_the_injected_key(setup, headers: bytes) -> None:
    port, fakes = setup
    assert _post(port, b"/v1/chat/completions", "prefixed", headers) == 200
    seen = fakes["compat"].last()
    assert seen["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert CLIENT_KEY not in json.dumps(seen["headers"])
    status = _post(port, b"/v1/chat/completions", "claude", headers + b"anthropic-beta: x\r\n")
    assert status == 200
    seen = fakes["anthropic"].last()
    assert seen["headers"]["x-api-key"] == API_KEY
    assert CLIENT_KEY not in json.dumps(seen["headers"])


@pytest.fixture
def google_routes(gateway, upstream) -> tuple[int, Any]:
    """Vertex and native Gemini route backends with no ``model``: the client's model goes into
    the provider's path (``…/publishers/google/models/<model>:generateContent``)."""
    up = upstream()
    port = free_port()

    def route(prefix: str, provider: dict) -> dict:
        return {
            "name": prefix,
            "matches": [{"path": {"pathPrefix": f"/{prefix}"}}],
            "backends": [{"ai": {"name": prefix, "hostOverride": up.address, "provider": provider}}],
            "policies": {"backendAuth": {"key": "gw-token"}},
        }

    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {
                            "routes": [
                                route("vertex", {"vertex": {"projectId": "proj-1", "region": "us-central1"}}),
                                route("gemini", {"gemini": {"nativeApi": True}}),
                            ]
                        }
                    ],
                }
            ]
        }
    )
    return port, up


@pytest.mark.parametrize(
    "model",
    [
        "../../../../../projects/victim/locations/x/publishers/google/models/m",
        "publishers/google/models/../../../../../../projects/victim/x",
        "a/./b",
        "m:generateContent?alt=x#",
        "m?key=other",
        "m#x",
        "m%2F..%2Fx",
        "m/",
        "/m",
        "m x",
        "",
    ],
)
def test_a_client_model_cannot_leave_the_providers_path(google_routes, model: str) -> None:
    port, up = google_routes
    for prefix in ("vertex", "gemini"):
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}]}).encode()
        with raw_connection(port, timeout=15) as sock:
            sock.sendall(
                b"POST /%s/v1/chat/completions HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (prefix.encode(), len(body)) + body
            )
            assert read_response(sock)[0] == 400, (prefix, model)
    assert up.requests() == []


def test_model_names_google_uses_still_reach_it(google_routes) -> None:
    port, up = google_routes
    for model in ("gemini-2.0-flash", "publishers/google/models/gemini-2.0-flash", "claude-3-5@20240620"):
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}]}).encode()
        with raw_connection(port, timeout=15) as sock:
            sock.sendall(
                b"POST /vertex/v1/chat/completions HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            read_response(sock)  # the echo upstream is no provider: its answer is not one
    targets = [r["target"] for r in up.requests()]
    base = "/v1/projects/proj-1/locations/us-central1/publishers/google/models/"
    assert targets == [
        base + "gemini-2.0-flash:generateContent",
        base + "gemini-2.0-flash:generateContent",
        base + "claude-3-5@20240620:generateContent",
    ]
