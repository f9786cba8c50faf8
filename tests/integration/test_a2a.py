"""A2A agents behind the real daemon: the official ``a2a-sdk`` client and an ``a2a-sdk`` agent
(``tests/support/a2a_agent.py``), both protocol versions (1.0, and 0.3 through the SDK's
compatibility layer) on both HTTP bindings (JSON-RPC, HTTP+JSON).

The client only ever gets the gateway's address: it resolves the agent card through the
gateway, and the rewritten card sends it back through the gateway for every call.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)
from google.protobuf.json_format import MessageToJson

from tests.support.a2a_agent import ODD_ANSWERS
from tests.support.gateway import Gateway, Process, ResponseReader, free_port, raw_connection, wait_for

CARD = "/.well-known/agent-card.json"
LEGACY_CARD = "/.well-known/agent.json"
MAX_BUFFER = 64 * 1024
KEEPALIVE = 0.2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class A2aAgent(Process):
    def __init__(self, tmp: Path, base_path: str = "") -> None:
        self.port = free_port()
        self.base_path = base_path
        args = [sys.executable, "-m", "tests.support.a2a_agent", "--port", str(self.port), "--base-path", base_path]
        super().__init__(args, tmp / f"a2a-agent-{self.port}.log")

        def listening() -> bool:
            assert self.alive(), self.output()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
            return False

        wait_for(listening, 30, "the A2A agent")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"


class StalledAgent:
    """An agent that never finishes its card: on ``/head/…`` it sends nothing, on ``/body/…`` the
    head and part of the body. Connections are held until ``stop``."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            conn.settimeout(5)
            try:
                head = conn.recv(65536)
            except OSError:
                continue
            if b" /body/" in head.split(b"\r\n", 1)[0]:
                conn.sendall(
                    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"name": "sta'
                )

    def stop(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()
        self.thread.join(5)


class Env:
    def __init__(self, gateway: Gateway, port: int, agent: A2aAgent, sub_agent: A2aAgent) -> None:
        self.gateway = gateway
        self.port = port
        self.agent = agent
        self.sub_agent = sub_agent

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access(self, **match: Any) -> list[dict[str, Any]]:
        """Access-log records (JSON lines) that have every ``match`` field."""
        out = []
        for line in self.gateway.access_lines():
            record = json.loads(line)
            if all(record.get(k) == v for k, v in match.items()):
                out.append(record)
        return out

    def wait_access(self, **match: Any) -> list[dict[str, Any]]:
        return wait_for(lambda: self.access(**match), 10, f"access log line with {match}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("a2a")
    started: list[Process] = []
    stalled = StalledAgent()
    try:
        agent = A2aAgent(tmp)
        started.append(agent)
        sub_agent = A2aAgent(tmp, "/agents/tock")
        started.append(sub_agent)
        port = free_port()
        a2a = {"keepAliveInterval": f"{int(KEEPALIVE * 1000)}ms"}
        config = {
            "config": {"logging": {"format": "json"}},
            "frontendPolicies": {"http": {"maxBufferSize": MAX_BUFFER}},
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {
                            "routes": [
                                {
                                    # The agent lives under /agents/tock on its server; the
                                    # gateway publishes it under /a2a/tick.
                                    "name": "tick",
                                    "matches": [{"path": {"pathPrefix": "/a2a/tick"}}],
                                    "policies": {"a2a": a2a, "urlRewrite": {"path": {"prefix": "/agents/tock"}}},
                                    "backends": [{"host": f"127.0.0.1:{sub_agent.port}"}],
                                },
                                {
                                    # Policies after a2a read a2a.* (CEL): one token per method.
                                    "name": "limited",
                                    "matches": [{"path": {"pathPrefix": "/limited"}}],
                                    "policies": {
                                        "a2a": {},
                                        "urlRewrite": {"path": {"prefix": "/"}},
                                        "localRateLimit": [
                                            {
                                                "maxTokens": 1,
                                                "tokensPerFill": 1,
                                                "fillInterval": "1h",
                                                "key": "a2a.method",
                                            }
                                        ],
                                    },
                                    "backends": [{"host": f"127.0.0.1:{agent.port}"}],
                                },
                                {
                                    # authorization reads a2a.* too: this route may not cancel.
                                    "name": "readonly",
                                    "matches": [{"path": {"pathPrefix": "/readonly"}}],
                                    "policies": {
                                        "a2a": {},
                                        "urlRewrite": {"path": {"prefix": "/"}},
                                        "authorization": {
                                            "rules": [{"deny": "a2a.method in ['CancelTask', 'tasks/cancel']"}]
                                        },
                                    },
                                    "backends": [{"host": f"127.0.0.1:{agent.port}"}],
                                },
                                {
                                    # Card fetches from a stalled agent: the route's timeout.
                                    "name": "stalled",
                                    "matches": [{"path": {"pathPrefix": "/stalled"}}],
                                    "policies": {
                                        "a2a": {},
                                        "urlRewrite": {"path": {"prefix": "/"}},
                                        "timeout": {"requestTimeout": "1s"},
                                    },
                                    "backends": [{"host": f"127.0.0.1:{stalled.port}"}],
                                },
                                {
                                    # ... and without one, the default (10 s).
                                    "name": "stalled-default",
                                    "matches": [{"path": {"pathPrefix": "/untimed"}}],
                                    "policies": {"a2a": {}, "urlRewrite": {"path": {"prefix": "/"}}},
                                    "backends": [{"host": f"127.0.0.1:{stalled.port}"}],
                                },
                                {
                                    "name": "agent",
                                    "policies": {
                                        "a2a": a2a,
                                        "transformations": {
                                            "response": {
                                                "set": {
                                                    "x-a2a-method": "a2a.method",
                                                    "x-a2a-task": "a2a.task.id",
                                                    "x-a2a-version": "a2a.version",
                                                }
                                            }
                                        },
                                    },
                                    "backends": [{"host": f"127.0.0.1:{agent.port}"}],
                                },
                            ]
                        }
                    ],
                }
            ],
        }
        gateway = Gateway(tmp, config, workers=2)
        started.append(gateway)
        yield Env(gateway, port, agent, sub_agent)
    finally:
        for proc in reversed(started):
            proc.stop()
        stalled.stop()


def _message(text: str) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    )


VERSIONS = {"1.0": CARD, "0.3": LEGACY_CARD}
BINDINGS = ["JSONRPC", "HTTP+JSON"]


@pytest.mark.anyio
@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize("version", list(VERSIONS))
async def test_sdk_client_through_gateway(env: Env, version: str, binding: str) -> None:
    """Card resolution, send, stream, get and cancel: the client reaches the agent only
    through the gateway, with the transport of the version the card offers."""
    async with httpx.AsyncClient(timeout=30) as http:
        config = ClientConfig(streaming=False, supported_protocol_bindings=[binding], httpx_client=http)
        client = await create_client(env.base, client_config=config, relative_card_path=VERSIONS[version])
        transport = client._transport  # which interface the card made it choose
        assert transport.url.rstrip("/") == env.base, transport.url
        assert ("Compat" in type(transport).__name__) == (version == "0.3")

        events = [e async for e in client.send_message(_message("abc"))]
        assert len(events) == 1 and events[0].HasField("task")
        task = events[0].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.artifacts[0].parts[0].text == "echo: abc"
        assert (await client.get_task(GetTaskRequest(id=task.id))).status.state == TaskState.TASK_STATE_COMPLETED

        # A reply without a task.
        events = [e async for e in client.send_message(_message("hello there"))]
        assert events[0].message.parts[0].text == "hi: hello there"

        streaming = await create_client(
            env.base,
            client_config=ClientConfig(streaming=True, supported_protocol_bindings=[binding], httpx_client=http),
            relative_card_path=VERSIONS[version],
        )
        kinds = [e.WhichOneof("payload") async for e in streaming.send_message(_message("slow 0.05 2"))]
        assert kinds[0] == "task" and kinds[-1] == "status_update" and "artifact_update" in kinds

        # A task that waits: subscribed to from a second stream, then canceled.
        async for event in streaming.send_message(_message("wait")):
            waiting = event.task.id if event.HasField("task") else event.status_update.task_id
            break
        subscribed = streaming.subscribe(SubscribeToTaskRequest(id=waiting))
        first = await anext(subscribed)
        assert first.task.id == waiting
        canceled = await client.cancel_task(CancelTaskRequest(id=waiting))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        rest = [e async for e in subscribed]
        assert rest and rest[-1].status_update.status.state == TaskState.TASK_STATE_CANCELED
        await client.close()
        await streaming.close()

    # Every call went through the gateway, and was understood there.
    names = {
        ("1.0", "JSONRPC"): ("SendMessage", "SendStreamingMessage", "GetTask", "CancelTask", "SubscribeToTask"),
        ("0.3", "JSONRPC"): ("message/send", "message/stream", "tasks/get", "tasks/cancel", "tasks/resubscribe"),
    }.get((version, binding), ("SendMessage", "SendStreamingMessage", "GetTask", "CancelTask", "SubscribeToTask"))
    send, stream, get, cancel, subscribe = names
    record = env.wait_access(**{"a2a.method": get, "a2a.task.id": task.id})[0]
    assert record["a2a.task.state"] == "completed" and record["route"] == "agent"
    assert env.wait_access(**{"a2a.method": cancel, "a2a.task.id": waiting})[0]["a2a.task.state"] == "canceled"
    # The stream the client left after its first event: what it had seen by then.
    streams = env.wait_access(**{"a2a.method": stream, "a2a.task.id": waiting})
    assert streams[0]["a2a.task.state"] in ("submitted", "working", "canceled") and streams[0]["a2a.stream.events"] >= 1
    resubscribed = env.wait_access(**{"a2a.method": subscribe, "a2a.task.id": waiting})
    assert resubscribed[0]["a2a.task.state"] == "canceled"
    assert env.wait_access(**{"a2a.method": send, "a2a.task.state": "completed"})


@pytest.mark.anyio
async def test_client_through_rewritten_path(env: Env) -> None:
    """An agent under /agents/tock on its server, published as /a2a/tick: its card points at
    the gateway path, and the client talks through it."""
    card = httpx.get(f"{env.base}/a2a/tick{CARD}", timeout=10).json()
    urls = [i["url"] for i in card["supportedInterfaces"]]
    assert urls == [f"{env.base}/a2a/tick/", f"{env.base}/a2a/tick", f"{env.base}/a2a/tick/"]
    assert card["url"] == f"{env.base}/a2a/tick/"
    legacy = httpx.get(f"{env.base}/a2a/tick{LEGACY_CARD}", timeout=10).json()
    assert legacy["url"] == f"{env.base}/a2a/tick/"
    assert [i["url"] for i in legacy["additionalInterfaces"]] == [f"{env.base}/a2a/tick/", f"{env.base}/a2a/tick"]

    async with httpx.AsyncClient(timeout=30) as http:
        for binding in BINDINGS:
            config = ClientConfig(streaming=True, supported_protocol_bindings=[binding], httpx_client=http)
            client = await create_client(f"{env.base}/a2a/tick", client_config=config)
            events = [e async for e in client.send_message(_message("via tick"))]
            assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
            await client.close()
    assert env.wait_access(route="tick", **{"a2a.method": "SendStreamingMessage", "a2a.task.state": "completed"})


def test_card_rewrite(env: Env) -> None:
    direct = httpx.get(env.agent.url + CARD, timeout=10)
    assert direct.json()["signatures"] and direct.headers["etag"].startswith('W/"')
    r = httpx.get(env.base + CARD, timeout=10)
    assert r.status_code == 200
    card = r.json()
    assert "signatures" not in card
    assert {i["url"].rstrip("/") for i in card["supportedInterfaces"]} == {env.base}
    assert card["url"] == env.base + "/"
    # Everything else is the agent's.
    assert {k: v for k, v in card.items() if k not in ("supportedInterfaces", "url")} == {
        k: v for k, v in direct.json().items() if k not in ("supportedInterfaces", "url", "signatures")
    }
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.headers["cache-control"] == "public, max-age=300"
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag != direct.headers["etag"]
    # The gateway's own ETag validates: 304 without a body; a stale one gets the card.
    again = httpx.get(env.base + CARD, headers={"if-none-match": etag}, timeout=10)
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=300"
    stale = httpx.get(env.base + CARD, headers={"if-none-match": direct.headers["etag"]}, timeout=10)
    assert stale.status_code == 200 and stale.headers["etag"] == etag
    # The host the client used is the host in the card.
    named = httpx.get(env.base + CARD, headers={"host": f"agents.example.com:{env.port}"}, timeout=10).json()
    assert named["url"] == f"http://agents.example.com:{env.port}/"
    # A client that accepts compressed answers still gets a card the gateway could rewrite.
    gz = httpx.get(env.base + LEGACY_CARD, headers={"accept-encoding": "gzip"}, timeout=10)
    assert "signatures" not in gz.json() and gz.json()["url"] == env.base + "/"


UNSAFE = ("javascript:", "file:", "data:", "grpc:", '"//', "http://idp.example")


@pytest.mark.anyio
@pytest.mark.parametrize("version", list(VERSIONS))
async def test_card_urls_a_client_must_not_follow(env: Env, version: str) -> None:
    """A card whose URLs are protocol-relative, javascript:, file:, data:, gRPC, or plain-http
    OAuth endpoints: interfaces point at the gateway or are dropped, security endpoints stay only
    as https, links only as http(s); the SDK client still reaches the agent through the gateway."""
    raw = httpx.get(f"{env.base}/hostile{VERSIONS[version]}", timeout=10)
    assert raw.status_code == 200
    for unsafe in UNSAFE:
        assert unsafe not in raw.text, (unsafe, raw.text)
    card = raw.json()
    if version == "1.0":
        assert [i["url"] for i in card["supportedInterfaces"]] == [f"{env.base}/"]
        # A URL the schema requires takes its object with it: the provider, the flow whose
        # token endpoint is plain http, the OpenID Connect scheme.
        assert "provider" not in card
        assert "documentationUrl" not in card and "iconUrl" not in card
        oauth = card["securitySchemes"]["oauth"]["oauth2SecurityScheme"]
        assert oauth["flows"] == {}
        assert oauth["oauth2MetadataUrl"] == "https://idp.example/.well-known/oauth-authorization-server"
        assert "oidc" not in card["securitySchemes"]
    else:
        assert card["url"] == f"{env.base}/"
        assert card["additionalInterfaces"] == [{"url": f"{env.base}/", "transport": "JSONRPC"}]
        assert "documentationUrl" not in card and card["iconUrl"] == "https://cdn.example/icon.png"
    async with httpx.AsyncClient(timeout=30) as http:
        config = ClientConfig(streaming=False, supported_protocol_bindings=["JSONRPC"], httpx_client=http)
        client = await create_client(f"{env.base}/hostile", client_config=config, relative_card_path=VERSIONS[version])
        assert client._transport.url.rstrip("/") == env.base
        events = [e async for e in client.send_message(_message("through the gateway"))]
        assert events[0].task.artifacts[0].parts[0].text == "echo: through the gateway"
        await client.close()


def _safe(env: Env, text: str) -> None:
    """Nothing a client must not follow, and not the agent's own address."""
    for unsafe in UNSAFE:
        assert unsafe not in text, (unsafe, text)
    assert f":{env.agent.port}" not in text, text


def _extended_card_call_path(base: str, version: str, binding: str) -> str:
    if binding == "JSONRPC":
        return base + "/"
    return base + ("/extendedAgentCard" if version == "1.0" else "/v1/card")


def _extended_card_call(env: Env, version: str, binding: str, base: str = "/extended") -> httpx.Response:
    """The extended card asked for as the SDK asks in each version and binding."""
    headers = {"a2a-version": "1.0"} if version == "1.0" else {}
    url = env.base + _extended_card_call_path(base, version, binding)
    if binding == "JSONRPC":
        name = "GetExtendedAgentCard" if version == "1.0" else "agent/getAuthenticatedExtendedCard"
        body = json.dumps({"jsonrpc": "2.0", "id": "ext-1", "method": name, "params": {}}).encode()
        return _raw_jsonrpc(url, body, **headers)
    return httpx.get(url, headers=headers, timeout=10)


@pytest.mark.anyio
@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize("version", list(VERSIONS))
async def test_extended_card_urls_a_client_must_not_follow(env: Env, version: str, binding: str) -> None:
    """The extended card of an agent (the hostile card) is rewritten like the public one, in both
    versions and both bindings: the SDK client that asks for it gets only gateway URLs and safe
    links, and can go on calling the agent through the gateway."""
    async with httpx.AsyncClient(timeout=30) as http:
        config = ClientConfig(streaming=False, supported_protocol_bindings=[binding], httpx_client=http)
        client = await create_client(f"{env.base}/extended", client_config=config, relative_card_path=VERSIONS[version])
        assert client._transport.url.rstrip("/") == f"{env.base}/extended"
        card = await client.get_extended_agent_card(GetExtendedAgentCardRequest())
        _safe(env, MessageToJson(card))
        urls = [i.url for i in card.supported_interfaces]
        assert urls and all(url.startswith(env.base + "/") for url in urls), urls
        if version == "1.0":
            assert urls == [f"{env.base}/", f"{env.base}/extended/"]
        else:
            # The SDK's 0.3 card: the required url (javascript: at the agent) is the gateway's.
            assert urls[0] == f"{env.base}/extended/"
        assert not card.HasField("provider") and not card.documentation_url and not card.icon_url
        oauth = card.security_schemes["oauth"].oauth2_security_scheme
        assert not oauth.flows.HasField("authorization_code") and "oidc" not in card.security_schemes
        # The client goes on through the gateway.
        events = [e async for e in client.send_message(_message("after the extended card"))]
        assert events[0].task.artifacts[0].parts[0].text == "echo: after the extended card"
        await client.close()

    # What went over the wire: the whole answer, as any client would read it.
    r = _extended_card_call(env, version, binding)
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    _safe(env, r.text)
    direct = httpx.get(env.agent.url + "/extended/v1/card", timeout=10)
    assert "javascript:" in direct.text  # the agent's own answer is hostile
    method = (
        "agent/getAuthenticatedExtendedCard" if (version, binding) == ("0.3", "JSONRPC") else "GetExtendedAgentCard"
    )
    path = _extended_card_call_path("/extended", version, binding)
    assert env.wait_access(**{"a2a.method": method, "http.path": path, "http.status": 200})


def test_extended_card_answers_are_rewritten_whatever_they_look_like(env: Env) -> None:
    """HTTP+JSON (and the public card): an answer that passes for a card (203, compressed) is
    rewritten and gets a gateway ETag that validates; the agent's errors pass as it wrote them. JSON-RPC: a result is
    a card whatever the HTTP status; errors, and HTTP errors that are not JSON-RPC, pass."""
    for kind in ("gzip", "accepted"):
        for operation in ("/extendedAgentCard", "/v1/card", "/agent/authenticatedExtendedCard", CARD):
            r = httpx.get(f"{env.base}/odd/{kind}{operation}", headers={"accept-encoding": "gzip"}, timeout=10)
            assert r.status_code == ODD_ANSWERS[kind][0], r.text
            _safe(env, r.text)
            assert [i["url"] for i in r.json()["supportedInterfaces"]] == [f"{env.base}/"]
        again = httpx.get(f"{env.base}/odd/{kind}/v1/card", headers={"if-none-match": r.headers["etag"]}, timeout=10)
        assert again.status_code == 304 and again.content == b""
        r = _raw_jsonrpc(
            f"{env.base}/odd/{kind}/", b'{"jsonrpc":"2.0","id":3,"method":"GetExtendedAgentCard","params":{}}'
        )
        assert r.status_code == ODD_ANSWERS[kind][0] and r.json()["id"] == 3 and "etag" not in r.headers
        _safe(env, r.text)
    failed = _raw_jsonrpc(
        f"{env.base}/odd/failed/", b'{"jsonrpc":"2.0","id":4,"method":"agent/getAuthenticatedExtendedCard"}'
    )
    assert failed.status_code == 500 and failed.json()["result"]["name"] == "gateway test agent"
    _safe(env, failed.text)
    for kind in ("error", "html"):
        direct = _raw_jsonrpc(
            f"{env.agent.url}/odd/{kind}/", b'{"jsonrpc":"2.0","id":5,"method":"GetExtendedAgentCard"}'
        )
        through = _raw_jsonrpc(f"{env.base}/odd/{kind}/", b'{"jsonrpc":"2.0","id":5,"method":"GetExtendedAgentCard"}')
        assert (through.status_code, through.content) == (direct.status_code, direct.content)
        direct = httpx.get(f"{env.agent.url}/odd/{kind}/extendedAgentCard", timeout=10)
        through = httpx.get(f"{env.base}/odd/{kind}/extendedAgentCard", timeout=10)
        assert (through.status_code, through.content) == (direct.status_code, direct.content)
    assert env.wait_access(
        **{"a2a.method": "GetExtendedAgentCard", "http.path": "/odd/error/", "a2a.response.error_code": "-32007"}
    )


def test_card_paths_are_recognized_however_spelled(env: Env) -> None:
    """Spellings the agent's router takes for a card path (percent-encoded), an escaped JSON-RPC
    method name, a notification: they reach the same cards, and no hostile URL comes back."""
    for url, version in (
        (f"{env.base}/hostile/.well-known/agent-card%2Ejson", "1.0"),
        (f"{env.base}/hostile/%2Ewell-known/agent-card.json", "1.0"),
        (f"{env.base}/extended/%65xtendedAgentCard", "1.0"),
        (f"{env.base}/extended/v1/c%61rd", ""),
    ):
        r = httpx.get(url, headers={"a2a-version": version}, timeout=10)
        assert r.status_code == 200 and r.json()["name"] == "gateway test agent", (url, r.text)
        _safe(env, r.text)
    r = _raw_jsonrpc(
        f"{env.base}/extended/",
        b'{"jsonrpc":"2.0","id":6,"method":"GetExtended\\u0041gentCard","params":{}}',
        **{"a2a-version": "1.0"},
    )
    assert r.status_code == 200 and r.json()["result"]["name"] == "gateway test agent", r.text
    _safe(env, r.text)
    # A notification (no id): the SDK agent answers it all the same, with a result whose id is
    # null, which JSON-RPC allows only in errors: refused, not passed.
    r = _raw_jsonrpc(
        f"{env.base}/extended/", b'{"jsonrpc":"2.0","method":"GetExtendedAgentCard"}', **{"a2a-version": "1.0"}
    )
    assert r.status_code == 200 and r.json()["error"]["code"] == -32006 and r.json()["id"] is None, r.text
    _safe(env, r.text)


def _odd_card(env: Env, kind: str, version: str, binding: str) -> AgentCard:
    """A card that sends the SDK client to ``/odd/<kind>`` for the extended card."""
    url = f"{env.base}/odd/{kind}" + ("/" if binding == "JSONRPC" else "")
    return AgentCard(
        name="odd",
        description="answers the extended card call oddly",
        version="1",
        supported_interfaces=[AgentInterface(url=url, protocol_binding=binding, protocol_version=version)],
        capabilities=AgentCapabilities(extended_agent_card=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
    )


@pytest.mark.anyio
@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize("version", list(VERSIONS))
async def test_an_extended_card_that_cannot_be_rewritten_is_an_error(env: Env, version: str, binding: str) -> None:
    """Larger than maxBufferSize, not JSON, not an object, an event stream: the client gets an
    invalid-agent-response error naming the problem (never the agent's bytes), and the gateway
    keeps serving."""
    malformed = "not a JSON-RPC response" if binding == "JSONRPC" else "not valid JSON"
    reasons = {
        "big": "maxBufferSize",
        "broken": malformed,
        "scalar": "a JSON str where an object was expected",
        "stream": malformed,  # no binding streams the extended card
    }
    async with httpx.AsyncClient(timeout=30) as http:
        for kind, reason in reasons.items():
            config = ClientConfig(streaming=False, supported_protocol_bindings=[binding], httpx_client=http)
            client = await create_client(_odd_card(env, kind, version, binding), client_config=config)
            with pytest.raises(Exception) as raised:
                await client.get_extended_agent_card(GetExtendedAgentCardRequest())
            await client.close()
            if (version, binding) == ("0.3", "HTTP+JSON"):
                # The SDK's 0.3 REST transport does not read error bodies: it names the status.
                assert "502" in str(raised.value), (kind, repr(raised.value))
            else:
                assert type(raised.value).__name__ == "InvalidAgentResponseError", repr(raised.value)
                assert reason in str(raised.value), (kind, repr(raised.value))
            assert "javascript:" not in str(raised.value)

            r = _extended_card_call(env, version, binding, f"/odd/{kind}")
            assert reason in r.text and "extended agent card" in r.text, r.text
            assert "javascript:" not in r.text and str(env.agent.port) not in r.text
            if binding == "JSONRPC":
                assert r.status_code == 200 and r.json()["id"] == "ext-1"
                assert r.json()["error"]["code"] == -32006
            else:
                error = r.json()["error"]
                assert r.status_code == 502 and error["code"] == 502
                assert error["details"][0]["reason"] == "INVALID_AGENT_RESPONSE"
    code = "-32006" if binding == "JSONRPC" else "INVALID_AGENT_RESPONSE"
    path = _extended_card_call_path("/odd/big", version, binding)
    record = env.wait_access(**{"http.path": path, "a2a.response.error_code": code})
    assert "maxBufferSize" in record[-1]["error"]
    # The gateway keeps serving, cards and calls alike.
    assert httpx.get(env.base + CARD, timeout=10).status_code == 200
    assert _extended_card_call(env, version, binding).status_code == 200
    assert env.gateway.alive()


@pytest.mark.parametrize("where", ["head", "body"])
def test_a_stalled_card_is_bounded_by_the_route_timeout(env: Env, where: str) -> None:
    """The card is held until its last byte: a route timeout bounds the head and the body."""
    r = httpx.get(f"{env.base}/stalled/{where}{CARD}", timeout=30)
    assert r.status_code == 504, r.text
    assert "1s" in r.text
    assert env.wait_access(route="stalled", **{"http.status": 504})


def test_a_stalled_card_without_a_route_timeout_gets_the_default(env: Env) -> None:
    r = httpx.get(f"{env.base}/untimed/body{CARD}", timeout=30)
    assert r.status_code == 504 and "10s" in r.text, r.text


def _raw_jsonrpc(url: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers}, timeout=10)


def test_authorization_rules_on_the_a2a_method(env: Env) -> None:
    """``authorization`` runs after ``a2a`` read the body: a rule on ``a2a.method`` refuses a
    cancel in either protocol version and lets every other call reach the agent."""
    url = env.base + "/readonly/"
    for body, headers in [
        (b'{"jsonrpc":"2.0","id":1,"method":"CancelTask","params":{"id":"t"}}', {"a2a-version": "1.0"}),
        (b'{"jsonrpc":"2.0","id":2,"method":"tasks/cancel","params":{"id":"t"}}', {}),
    ]:
        r = _raw_jsonrpc(url, body, **headers)
        assert r.status_code == 403, r.text
    r = _raw_jsonrpc(
        url, b'{"jsonrpc":"2.0","id":3,"method":"GetTask","params":{"id":"missing"}}', **{"a2a-version": "1.0"}
    )
    assert r.status_code == 200 and r.json()["id"] == 3 and "error" in r.json(), r.text  # the agent's own answer
    assert env.wait_access(route="readonly", **{"a2a.method": "CancelTask", "http.status": 403})


def test_agent_errors_pass_through(env: Env) -> None:
    """Unknown methods and the agent's own errors reach the client as the agent wrote them."""
    cases = [
        (b'{"jsonrpc":"2.0","id":7,"method":"NoSuchMethod","params":{}}', {"a2a-version": "1.0"}),
        (b'{"jsonrpc":"2.0","id":"x","method":"tasks/unknown","params":{}}', {}),
        (b'{"jsonrpc":"2.0","id":8,"method":"GetTask","params":{"id":"missing"}}', {"a2a-version": "1.0"}),
        (b'{"jsonrpc":"2.0","id":9,"method":"tasks/get","params":{"id":"missing"}}', {}),
    ]
    for body, headers in cases:
        direct = _raw_jsonrpc(env.agent.url + "/", body, **headers)
        through = _raw_jsonrpc(env.base + "/", body, **headers)
        assert through.status_code == direct.status_code
        assert through.json() == direct.json(), body
    assert env.wait_access(**{"a2a.method": "NoSuchMethod", "a2a.response.error_code": "-32601"})
    assert env.wait_access(**{"a2a.method": "tasks/get", "a2a.response.error_code": "-32001"})
    direct = httpx.get(env.agent.url + "/tasks/missing", headers={"a2a-version": "1.0"}, timeout=10)
    through = httpx.get(env.base + "/tasks/missing", headers={"a2a-version": "1.0"}, timeout=10)
    assert (through.status_code, through.json()) == (direct.status_code, direct.json()) and through.status_code == 404
    assert env.wait_access(
        **{"a2a.method": "GetTask", "a2a.task.id": "missing", "a2a.response.error_code": "TASK_NOT_FOUND"}
    )


def test_keepalives_in_a_long_stream(env: Env) -> None:
    """The agent is quiet for 0.9 s between events: comment lines keep the stream alive, only
    between events, and every event arrives whole and in order."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": "k",
            "method": "SendStreamingMessage",
            "params": {"message": {"messageId": "k1", "role": "ROLE_USER", "parts": [{"text": "slow 0.9 2"}]}},
        }
    )
    lines: list[tuple[float, str]] = []
    start = time.monotonic()
    with httpx.stream(
        "POST",
        env.base + "/",
        content=body,
        headers={"content-type": "application/json", "a2a-version": "1.0"},
        timeout=30,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            lines.append((time.monotonic() - start, line))
    keepalives = [t for t, line in lines if line.startswith(":")]
    events = [json.loads(line[5:]) for _, line in lines if line.startswith("data:")]
    assert len(keepalives) >= 4, lines
    states = [e["result"].get("statusUpdate", {}).get("status", {}).get("state") for e in events]
    assert "task" in events[0]["result"] and states[-1] == "TASK_STATE_COMPLETED"
    assert all(e["id"] == "k" for e in events)
    # Keep-alives come while the agent is quiet, not in a burst at the end.
    assert keepalives[0] < 0.9 and keepalives[-1] < lines[-1][0] - 0.05


@pytest.mark.anyio
async def test_sdk_client_reads_streams_with_keepalives(env: Env) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for card in (CARD, LEGACY_CARD):
            client = await create_client(
                env.base, client_config=ClientConfig(httpx_client=http), relative_card_path=card
            )
            kinds = [e.WhichOneof("payload") async for e in client.send_message(_message("slow 0.5 1"))]
            assert kinds[0] == "task" and kinds[-1] == "status_update"
            await client.close()


def test_bad_input_gets_clear_errors(env: Env) -> None:
    url = env.base + "/"
    r = _raw_jsonrpc(url, b"this is not json")
    assert r.status_code == 200 and r.json()["error"]["code"] == -32700 and r.json()["id"] is None
    r = _raw_jsonrpc(url, b'{"jsonrpc":"2.0","id":3}')
    assert r.json()["error"]["code"] == -32600 and r.json()["id"] == 3
    r = _raw_jsonrpc(url, b'[{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"a"}}]')
    assert r.json()["error"]["code"] == -32600 and "batch" in r.json()["error"]["message"]
    r = _raw_jsonrpc(url, b"")
    assert r.json()["error"]["code"] == -32700
    r = _raw_jsonrpc(env.base + "/message:send", b"{oops", **{"a2a-version": "1.0"})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    # Larger than maxBufferSize: by Content-Length, and chunked (no length known up front).
    big = b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"text":"' + b"x" * MAX_BUFFER + b'"}}}'
    r = _raw_jsonrpc(url, big)
    assert r.status_code == 413 and "maxBufferSize" in r.text
    r = httpx.post(
        url, content=iter([big[:1000], big[1000:]]), headers={"content-type": "application/json"}, timeout=10
    )
    assert r.status_code == 413
    # An agent whose card is not JSON: 502 naming the problem.
    r = httpx.get(env.base + "/broken" + CARD, timeout=10)
    assert r.status_code == 502 and "not valid JSON" in r.text
    # The client is told what is wrong; the log also names the backend.
    assert str(env.agent.port) not in r.text
    error = env.wait_access(**{"http.path": "/broken" + CARD, "http.status": 502})[0]["error"]
    assert error.startswith(r.text.strip()) and str(env.agent.port) in error
    # The gateway keeps serving.
    assert httpx.get(env.base + CARD, timeout=10).status_code == 200
    ok = _raw_jsonrpc(
        url, b'{"jsonrpc":"2.0","id":5,"method":"GetTask","params":{"id":"missing"}}', **{"a2a-version": "1.0"}
    )
    assert ok.json()["error"]["code"] == -32001
    assert env.gateway.alive()


def test_cel_metrics_and_log(env: Env) -> None:
    """a2a.* reaches the CEL of the policies after a2a (a response transformation, a rate limit
    keyed by the method), the metrics and the access log."""
    body = b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t-42"}}'
    r = _raw_jsonrpc(env.base + "/", body, **{"a2a-version": "1.0"})
    assert r.headers["x-a2a-method"] == "GetTask" and r.headers["x-a2a-task"] == "t-42"
    assert r.headers["x-a2a-version"] == "1.0"
    r = httpx.get(env.base + "/tasks/t-43", headers={"a2a-version": "1.0"}, timeout=10)
    assert r.headers["x-a2a-method"] == "GetTask" and r.headers["x-a2a-task"] == "t-43"
    r = _raw_jsonrpc(env.base + "/", body.replace(b"GetTask", b"tasks/get"))
    assert r.headers["x-a2a-method"] == "tasks/get" and r.headers["x-a2a-version"] == "0.3"

    # One token per method on /limited: a second GetTask is limited, a CancelTask is not.
    first = _raw_jsonrpc(env.base + "/limited/", body, **{"a2a-version": "1.0"})
    assert first.status_code == 200 and first.json()["error"]["code"] == -32001
    assert _raw_jsonrpc(env.base + "/limited/", body, **{"a2a-version": "1.0"}).status_code == 429
    cancel = body.replace(b"GetTask", b"CancelTask")
    assert _raw_jsonrpc(env.base + "/limited/", cancel, **{"a2a-version": "1.0"}).status_code == 200

    record = env.wait_access(route="limited", **{"a2a.method": "GetTask", "http.status": 429})[0]
    assert record["a2a.task.id"] == "t-42"

    def counted() -> float:
        return env.gateway.metric(
            "agentgateway_a2a_requests_total", route="limited", method="GetTask", error_code="-32001"
        )

    wait_for(lambda: counted() == 1.0, 10, "the a2a metric")
    metrics = env.gateway.metrics_text()
    assert "agentgateway_a2a_requests_total{" in metrics
    assert (
        env.gateway.metric("agentgateway_a2a_requests_total", route="limited", method="GetTask", error_code="429")
        == 1.0
    )


def test_body_read_after_100_continue(env: Env) -> None:
    """A client that waits for 100 Continue gets it before the gateway reads the call."""
    body = b'{"jsonrpc":"2.0","id":11,"method":"GetTask","params":{"id":"missing"}}'
    head = (
        b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\na2a-version: 1.0\r\n"
        b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    with raw_connection(env.port) as sock:
        sock.sendall(head)
        reader = ResponseReader(sock)
        status, _, _ = reader.read(head_only=True)
        assert status == 100
        sock.sendall(body)
        status, headers, answer = reader.read()
    assert status == 200 and json.loads(answer)["error"]["code"] == -32001
    assert headers["x-a2a-task"] == "missing"
