"""Audit 20: A2A behind the gateway, attacked by clients and by agents, through the running daemon.

- Cards: a hostile agent's card names its interfaces and links under other spellings of the
  members the rewrite reads (``supported_interfaces``, ``SupportedInterfaces``, ``icon_url``);
  clients read those (the SDK's ProtoJSON parser takes proto field names, Go's encoding/json any
  case), so every spelling is rewritten. Held: odd URLs (userinfo, ports, ``//`` and ``..``
  paths, IDN, tabs) never send a client anywhere but the gateway; a card deep or large is a 502.
- Policies: the facts CEL reads (``a2a.method``, ``a2a.task.id``) are the ones the agent acts on:
  ids by their proto names (``task_id``), a REST path's task over the body's, REST paths with a
  trailing slash. Held: batches, non-string methods, look-alike methods.
- Streams: an agent that never ends, floods, writes ``id:``/``retry:`` fields or other ids;
  push-notification configs pointing at the gateway's own ports.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import Message, Part, Role, SendMessageRequest

from tests.integration.test_attack_encodings import _chunk
from tests.integration.test_attack_framing import Seen, raw_upstream  # noqa: F401
from tests.support.gateway import binds, free_port, wait_for

CARD = "/.well-known/agent-card.json"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeAgent:
    """An A2A agent on 127.0.0.1 that serves ``card`` (a dict, or a function of the agent's own
    origin) at any ``…/.well-known/agent-card.json`` and answers every JSON-RPC call with a
    message saying ``who`` it is. It records what reached it (method, path, body)."""

    def __init__(self, who: str, card: Any = None, headers: dict[str, str] | None = None) -> None:
        self.who = who
        self.card = card
        self.headers = headers or {}
        self.seen: list[tuple[str, str, bytes]] = []
        agent = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                for name, value in agent.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                agent.seen.append(("GET", self.path, b""))
                card = agent.card(agent.origin) if callable(agent.card) else agent.card
                self._answer(card if isinstance(card, bytes) else json.dumps(card).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                agent.seen.append(("POST", self.path, body))
                try:
                    rpc_id = json.loads(body).get("id")
                except ValueError:
                    rpc_id = None
                message = {"messageId": "r-1", "role": "ROLE_AGENT", "parts": [{"text": f"from {agent.who}"}]}
                self._answer(json.dumps({"jsonrpc": "2.0", "id": rpc_id, "result": {"message": message}}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_agent() -> Iterator[Any]:
    started: list[FakeAgent] = []

    def start(who: str, card: Any = None, headers: dict[str, str] | None = None) -> FakeAgent:
        agent = FakeAgent(who, card, headers)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def _card(interfaces: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "name": "hostile agent",
        "description": "points clients elsewhere",
        "version": "1.0.0",
        "supportedInterfaces": interfaces,
        "capabilities": {},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [],
        **extra,
    }


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _message(text: str) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    )


# ------------------------------------------------------------------------------- card spellings


@pytest.mark.anyio
async def test_sdk_client_follows_no_proto_named_interface_around_the_gateway(gateway, fake_agent) -> None:
    """A hostile agent kept the ``supportedInterfaces`` the gateway rewrites and added
    ``supported_interfaces``, its proto field name, pointing elsewhere. The gateway read only the
    first; the SDK's card parser (ProtoJSON: JSON and proto names alike, the last one counts) took
    the second, so the official client sent its call, with whatever credentials it carries for
    the gateway, straight to the other server. Every spelling is now rewritten: the call goes
    through the gateway to the agent."""
    evil = fake_agent("evil")

    def card(origin: str) -> dict[str, Any]:
        return _card(
            [{"url": f"{origin}/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            supported_interfaces=[{"url": f"{evil.origin}/", "protocol_binding": "JSONRPC", "protocol_version": "1.0"}],
        )

    agent = fake_agent("agent", card)
    port = free_port()
    gateway(binds(port, [{"policies": {"a2a": {}}, "backends": [{"host": agent.address}]}]))
    async with httpx.AsyncClient(timeout=10) as http:
        config = ClientConfig(streaming=False, supported_protocol_bindings=["JSONRPC"], httpx_client=http)
        client = await create_client(f"http://127.0.0.1:{port}", client_config=config)
        texts = []
        async for answer in client.send_message(_message("hello")):
            texts.append(answer.message.parts[0].text)
    assert texts == ["from agent"]
    assert evil.seen == []
    assert [m for m, _, _ in agent.seen] == ["GET", "POST"]


HOSTILE_SPELLINGS = {
    # Go's encoding/json takes any case of a member name (the last match wins).
    "go-case": {"SupportedInterfaces": [{"URL": "{evil}/", "protocolBinding": "JSONRPC"}]},
    "go-case-url": {"supportedInterfaces": [{"url": "{agent}/", "Url": "{evil}/", "protocolBinding": "JSONRPC"}]},
    "go-fold": {"ſupportedInterfaces": [{"url": "{evil}/", "protocolBinding": "JSONRPC"}]},
    # ProtoJSON parsers (1.0) and the 0.3 SDK's models take proto field names.
    "proto-interface": {"supported_interfaces": [{"url": "{evil}/", "protocol_binding": "JSONRPC"}]},
    "proto-0.3": {
        "URL": "{evil}/",
        "additional_interfaces": [{"url": "{evil}/", "transport": "JSONRPC"}],
    },
    "proto-links": {
        "documentation_url": "javascript:alert(1)",
        "icon_url": "file:///etc/passwd",
        "Provider": {"organization": "x", "URL": "javascript:alert(2)"},
    },
    "proto-security": {
        "security_schemes": {
            "oidc": {"open_id_connect_security_scheme": {"open_id_connect_url": "javascript:alert(3)"}},
            "oauth": {
                "oauth2_security_scheme": {
                    "flows": {
                        "authorization_code": {
                            "authorization_url": "http://{evilhost}/authorize",
                            "token_url": "https://idp.example/token",
                        }
                    },
                    "oauth2_metadata_url": "http://{evilhost}/meta",
                }
            },
        }
    },
    "signatures": {"Signatures": [{"protected": "e30", "signature": "c2ln"}]},
}


@pytest.mark.parametrize("kind", list(HOSTILE_SPELLINGS))
def test_card_members_are_rewritten_in_every_spelling(gateway, fake_agent, kind: str) -> None:
    """Interfaces, links, security endpoints and signatures under another spelling of their name
    (a case Go reads, the proto field name ProtoJSON and the 0.3 SDK read) passed as the agent
    wrote them: interfaces at the agent's or another server, ``javascript:`` links, plain-http
    token endpoints, signatures that no longer verify. Each spelling is now treated as the name:
    interfaces point at the gateway, the rest is kept only when safe."""
    evil = fake_agent("evil")

    def card(origin: str) -> dict[str, Any]:
        text = json.dumps(HOSTILE_SPELLINGS[kind])
        text = text.replace("{evil}", evil.origin).replace("{agent}", origin)
        text = text.replace("{evilhost}", evil.address)
        extra = json.loads(text)
        base = _card([{"url": f"{origin}/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}])
        base.update(extra)
        return base

    agent = fake_agent("agent", card)
    port = free_port()
    gateway(binds(port, [{"policies": {"a2a": {}}, "backends": [{"host": agent.address}]}]))
    r = httpx.get(f"http://127.0.0.1:{port}{CARD}", timeout=10)
    assert r.status_code == 200, r.text
    strings = list(_strings(r.json()))
    assert not [s for s in strings if evil.address in s or agent.address in s], r.text
    assert not [s for s in strings if "javascript:" in s], r.text
    assert not [s for s in strings if s.casefold().replace("_", "") == "signatures"], r.text
    if kind.startswith("go") or kind == "proto-interface":
        # The interface is kept, at the gateway.
        urls = [s for s in strings if s.startswith("http://")]
        assert urls and all(u.startswith(f"http://127.0.0.1:{port}/") for u in urls), r.text
    if kind == "proto-security":
        schemes = r.json()["security_schemes"]
        assert "oidc" not in schemes
        assert schemes["oauth"]["oauth2_security_scheme"] == {"flows": {}}


# ------------------------------------------------------------------------------------ policy facts

DENY_VICTIM = {"deny": "has(a2a.task) && a2a.task.id == 'victim'"}
DENY_CANCEL = {"deny": "a2a.method in ['CancelTask', 'tasks/cancel']"}
V1 = {"content-type": "application/json", "a2a-version": "1.0"}


def _policed(gateway, upstream, *rules: dict[str, str]) -> tuple[str, Any]:
    up = upstream()
    port = free_port()
    route = {"policies": {"a2a": {}, "authorization": {"rules": list(rules)}}, "backends": [{"host": up.address}]}
    gateway(binds(port, [route]))
    return f"http://127.0.0.1:{port}", up


def _send(task: dict[str, str]) -> bytes:
    message = {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "go on"}], **task}
    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": {"message": message}}).encode()


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (_send({"task_id": "victim"}), "/"),
        (
            b'{"jsonrpc":"2.0","id":7,"method":"GetTaskPushNotificationConfig","params":{"task_id":"victim","id":"c"}}',
            "/",
        ),
        (
            b'{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"x"}],"task_id":"victim"}}',
            "/message:send",
        ),
    ],
    ids=["jsonrpc-message", "jsonrpc-push-config", "rest-message"],
)
def test_ids_by_their_proto_name_are_the_facts(gateway, upstream, body: bytes, path: str) -> None:
    """A2A 1.0 is ProtoJSON: the SDK's agent parses params with ParseDict, which takes
    ``task_id`` as it takes ``taskId`` (Go's protojson and the 0.3 SDK's models as well). The
    facts read only ``taskId``: a call naming the task ``task_id`` had no ``a2a.task.id`` (a
    push-config call's config ``id`` stood in for it), so a rule on the task let it reach the
    agent, which acted on that task. The proto names are read now."""
    base, up = _policed(gateway, upstream, DENY_VICTIM)
    r = httpx.post(base + path, content=body, headers=V1)
    assert r.status_code == 403, r.text
    assert up.requests() == []


@pytest.mark.parametrize(
    ("body", "path", "status"),
    [
        (_send({"taskId": "a-1", "task_id": "victim"}), "/", 200),
        (_send({"task_id": "victim", "taskId": "a-1"}), "/", 200),
        (
            b'{"jsonrpc":"2.0","id":7,"method":"tasks/pushNotificationConfig/get","params":{"taskId":"a-1","task_id":"victim"}}',
            "/",
            200,
        ),
        (
            b'{"message":{"messageId":"m","role":"ROLE_USER","parts":[],"taskId":"a-1","task_id":"victim"}}',
            "/message:send",
            400,
        ),
    ],
    ids=["jsonrpc-proto-last", "jsonrpc-proto-first", "jsonrpc-push-config", "rest-message"],
)
def test_an_id_named_twice_by_its_two_names_is_refused(gateway, upstream, body: bytes, path: str, status: int) -> None:
    """``taskId`` and ``task_id`` in one object: the SDK's 1.0 parser keeps the last, its 0.3
    models the JSON name; the gateway cannot know which the agent acts on. Refused (-32602, or
    400 on HTTP+JSON) and not forwarded; before, the facts read ``a-1`` and the agent could act on
    ``victim``."""
    base, up = _policed(gateway, upstream, DENY_VICTIM)
    r = httpx.post(base + path, content=body, headers=V1)
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json()["error"]["code"] == -32602, r.text
    else:
        assert r.json()["error"]["status"] == "INVALID_ARGUMENT", r.text
    assert up.requests() == []
    # The same call with one name passes.
    ok = body.replace(b',"task_id":"victim"', b"").replace(b'"task_id": "victim", ', b"")
    ok = ok.replace(b', "task_id": "victim"', b"")
    assert httpx.post(base + path, content=ok, headers=V1).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/tasks/victim:cancel", b'{"id":"a-1"}'),
        ("POST", "/tasks/victim:subscribe", b'{"id":"a-1"}'),
        ("POST", "/tasks/victim/pushNotificationConfigs", b'{"id":"a-1","url":"https://hook.example/"}'),
        ("GET", "/tasks/victim/pushNotificationConfigs/a-1", b'{"id":"a-1"}'),
    ],
    ids=["cancel", "subscribe", "push-config-create", "push-config-get"],
)
def test_the_rest_path_names_the_task(gateway, upstream, method: str, path: str, body: bytes) -> None:
    """An HTTP+JSON operation on a task takes the task from the path (the SDK's handlers read
    ``request.path_params['id']`` and never the body). The facts took the path's task, then let
    the body's ``id`` replace it: ``POST /tasks/victim:cancel`` with ``{"id":"a-1"}`` was a cancel
    of ``a-1`` to a rule and of ``victim`` to the agent. The path's task stays the fact."""
    base, up = _policed(gateway, upstream, DENY_VICTIM)
    r = httpx.request(method, base + path, content=body, headers=V1)
    assert r.status_code == 403, r.text
    assert up.requests() == []


def test_a_rest_body_naming_another_task_than_its_path_is_refused(gateway, upstream) -> None:
    """A push config whose body names (``taskId``) another task than its path: an agent that
    reads the body would act on that one. 400, not forwarded; the same task in both passes."""
    base, up = _policed(gateway, upstream, DENY_VICTIM)
    body = b'{"taskId":"victim","url":"https://hook.example/"}'
    r = httpx.post(f"{base}/tasks/a-1/pushNotificationConfigs", content=body, headers=V1)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT", r.text
    assert up.requests() == []
    body = b'{"taskId":"a-1","url":"https://hook.example/"}'
    assert httpx.post(f"{base}/tasks/a-1/pushNotificationConfigs", content=body, headers=V1).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/tasks/t-1:cancel/",
        "/v1/tasks/t-1:cancel/",
        "/tasks/t-1%3Acancel/",
        "/tasks/t-1:cancel;x/",
        "/T/TASKS/t-1:CANCEL/",
    ],
)
def test_a_rest_operation_with_a_trailing_slash_is_read(gateway, upstream, path: str) -> None:
    """Express (the JS SDK's server) and others route ``/tasks/t-1:cancel/`` as
    ``/tasks/t-1:cancel`` (agentgateway's own classifier splits segments and ignores it too). To
    the gateway it was no operation, so the body was read as a JSON-RPC call whose method the
    client chose (``GetTask``): a rule denying CancelTask let the cancel through."""
    base, up = _policed(gateway, upstream, DENY_CANCEL)
    body = b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t-1"}}'
    r = httpx.post(base + path, content=body, headers=V1)
    assert r.status_code == 403, r.text
    assert up.requests() == []
    # Other operations with a trailing slash are what they are without it.
    send = b'{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"x"}]}}'
    assert httpx.post(f"{base}/message:send/", content=send, headers=V1).status_code == 200
    assert httpx.get(f"{base}/tasks/t-1/", headers=V1).status_code == 200


# ------------------------------------------------------------------------- card URLs and caches

ODD_INTERFACE_URLS = [
    "https://gw@evil.example/",
    "https://gw:pw@evil.example:8443/x",
    "http://evil.example\\@agent/",
    "http://agent/\tx",
    "http://agent\n.evil.example/",
    "https://xn--80ak6aa92e.com/",
    "https://exämple.com/",
    "http://agent:8443/x",
    "http://agent//evil.example/x",
    "http://agent/@evil.example/",
    "//evil.example/x",
    "///evil.example/x",
    "/../../admin",
    "http://agent/a/../../../admin",
    "HTTP://EVIL.EXAMPLE/",
    "http:/evil.example/x",
    "http:evil.example",
    "http://[::1]:99/",
    "http://evil.example:99999/",
    "http://[evil.example/",
    "https://evil.example?x=@y",
    "https://evil.example#@y",
]


def test_odd_interface_urls_point_at_the_gateway_or_go(gateway, fake_agent) -> None:
    """Held: an interface URL with userinfo, a backslash, whitespace inside, an IDN host, a port,
    a ``//`` or ``..`` path, an upper-case scheme: every interface left in the card has the
    gateway's scheme, host and port, as a client's URL parser reads it (httpx here); the rest
    are dropped (the required 0.3 ``url`` falls back to the gateway's address of the agent)."""
    interfaces = [{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"} for url in ODD_INTERFACE_URLS]
    legacy = [{"url": url, "transport": "JSONRPC"} for url in ODD_INTERFACE_URLS]
    agent = fake_agent("agent", _card(interfaces, url=ODD_INTERFACE_URLS[2], additionalInterfaces=legacy))
    port = free_port()
    gateway(binds(port, [{"policies": {"a2a": {}}, "backends": [{"host": agent.address}]}]))
    r = httpx.get(f"http://127.0.0.1:{port}{CARD}", timeout=10)
    assert r.status_code == 200, r.text
    card = r.json()
    urls = [card["url"]] + [i["url"] for i in card["supportedInterfaces"] + card["additionalInterfaces"]]
    assert len(urls) > 3
    for url in urls:
        parsed = httpx.URL(url)
        assert (parsed.scheme, parsed.host, parsed.port, parsed.userinfo) == ("http", "127.0.0.1", port, b""), url


@pytest.mark.parametrize("kind", ["deep", "huge"])
def test_a_deep_or_huge_card_is_a_502(gateway, fake_agent, kind: str) -> None:
    """Held: a card nested past the JSON reader's depth, or larger than maxBufferSize, is answered
    502 with the reason, quickly; the worker serves the next request."""
    if kind == "deep":
        body = b'{"name":"deep","description":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    else:
        body = json.dumps(_card([], description="x" * 200_000)).encode()
    agent = fake_agent("agent", body)
    port = free_port()
    gateway(
        {
            "frontendPolicies": {"http": {"maxBufferSize": 128 * 1024}},
            **binds(port, [{"policies": {"a2a": {}}, "backends": [{"host": agent.address}]}]),
        }
    )
    for _ in range(2):
        r = httpx.get(f"http://127.0.0.1:{port}{CARD}", timeout=10)
        assert r.status_code == 502, r.text
        assert ("not valid JSON" if kind == "deep" else "maxBufferSize") in r.text


def test_a_forwarded_scheme_shapes_the_card_and_its_answer_says_so(gateway, fake_agent) -> None:
    """The card's URLs take a trusted proxy's ``X-Forwarded-Proto``, and the answer kept the
    agent's ``Cache-Control: public``: a shared cache in front keyed on the URL (as CDNs do by
    default) served the card fetched over http, with http interface URLs, to https clients, whose
    calls then went in the clear. The answer now carries ``Vary: x-forwarded-proto``. Held: an
    untrusted client's ``X-Forwarded-Proto`` does not shape the card."""

    def card(origin: str) -> dict[str, Any]:
        return _card([{"url": f"{origin}/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}])

    agent = fake_agent("agent", card, {"cache-control": "public, max-age=300", "vary": "accept-language"})
    trusted, untrusted = free_port(), free_port()
    route = [{"policies": {"a2a": {}}, "backends": [{"host": agent.address}]}]
    config = {
        "frontendPolicies": {"http": {"trustedProxies": ["127.0.0.1"]}},
        "binds": [binds(trusted, route)["binds"][0]],
    }
    gateway(config)
    for proto in ("https", "http"):
        r = httpx.get(f"http://127.0.0.1:{trusted}{CARD}", headers={"x-forwarded-proto": proto}, timeout=10)
        assert r.status_code == 200
        assert r.json()["supportedInterfaces"][0]["url"].startswith(f"{proto}://127.0.0.1:{trusted}/")
        assert r.headers["cache-control"] == "public, max-age=300"
        vary = [v.strip().lower() for v in r.headers.get_list("vary") for v in v.split(",")]
        assert "x-forwarded-proto" in vary and "accept-language" in vary, r.headers
        etag = r.headers["etag"]
        again = httpx.get(
            f"http://127.0.0.1:{trusted}{CARD}",
            headers={"x-forwarded-proto": proto, "if-none-match": etag},
            timeout=10,
        )
        assert again.status_code == 304 and "x-forwarded-proto" in again.headers.get("vary", "")
    gateway(binds(untrusted, route))
    r = httpx.get(f"http://127.0.0.1:{untrusted}{CARD}", headers={"x-forwarded-proto": "https"}, timeout=10)
    assert r.json()["supportedInterfaces"][0]["url"].startswith(f"http://127.0.0.1:{untrusted}/")


# ------------------------------------------------------------------------ methods the agent runs


def test_look_alike_methods_are_not_run_by_the_sdk_agent(gateway, tmp_path) -> None:
    """Held: ``a2a.method`` is the method as sent; a rule naming both versions' names
    (``CancelTask``, ``tasks/cancel``) covers what the SDK's agent runs. Its dispatcher matches
    names exactly: another case, blanks around the name, are ``-32601`` there, never a cancel.
    An escaped name is read decoded (denied). A method that is no string, a batch: ``-32600``
    from the gateway, not forwarded."""
    from tests.integration.test_a2a import A2aAgent

    agent = A2aAgent(tmp_path)
    try:
        port = free_port()
        route = {
            "policies": {"a2a": {}, "authorization": {"rules": [DENY_CANCEL]}},
            "backends": [{"host": f"127.0.0.1:{agent.port}"}],
        }
        gateway(binds(port, [route]))
        base = f"http://127.0.0.1:{port}/"

        def call(method: bytes, version: str = "1.0") -> httpx.Response:
            body = b'{"jsonrpc":"2.0","id":3,"method":%s,"params":{"id":"t-1"}}' % method
            return httpx.post(base, content=body, headers={**V1, "a2a-version": version}, timeout=10)

        for method, version in [
            (b'"CancelTask"', "1.0"),
            (b'"tasks/cancel"', "0.3"),
            (b'"tasks\\/cancel"', "0.3"),
            (b'"Cancel\\u0054ask"', "1.0"),
        ]:
            assert call(method, version).status_code == 403, method
        for method in (
            b'"cancelTask"',
            b'"CANCELTASK"',
            b'" CancelTask"',
            b'"CancelTask\\n"',
            b'"Tasks/Cancel"',
            b'"tasks/cancel "',
        ):
            for version in ("1.0", "0.3"):
                r = call(method, version)
                assert r.status_code == 200 and r.json()["error"]["code"] == -32601, (method, version, r.text)
        for method in (b"5", b'["CancelTask"]', b"null", b'{"m":"CancelTask"}'):
            r = call(method)
            assert r.status_code == 200 and r.json()["error"]["code"] == -32600, (method, r.text)
        batch = b'[{"jsonrpc":"2.0","id":1,"method":"CancelTask","params":{"id":"t-1"}}]'
        r = httpx.post(base, content=batch, headers=V1, timeout=10)
        assert r.json()["error"]["code"] == -32600
    finally:
        agent.stop()


def test_push_notification_urls_pass_to_the_agent(gateway, upstream) -> None:
    """Held, and documented: a push-notification config is the agent's to call; the gateway
    passes its URL as written (agentgateway does too), an address on the gateway's own host or
    its admin port included, and never fetches it itself. The agent's own network reach is what
    such a URL can use; an agent that calls what clients name must check it."""
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"policies": {"a2a": {}}, "backends": [{"host": up.address}]}]))
    hook = f"http://127.0.0.1:{gw.admin_port}/config_dump"
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "CreateTaskPushNotificationConfig",
            "params": {"taskId": "t-1", "url": hook},
        }
    ).encode()
    r = httpx.post(f"http://127.0.0.1:{port}/", content=body, headers=V1, timeout=10)
    assert r.status_code == 200
    seen = up.requests()
    assert len(seen) == 1 and seen[0]["body_sha256"] == hashlib.sha256(body).hexdigest(), seen


# ------------------------------------------------------------------------------------------ streams


def test_a_hostile_stream_is_relayed_as_written_with_keepalives_only_between_events(gateway, raw_upstream) -> None:  # noqa: F811
    """Held: an agent's stream with ``id:`` and ``retry:`` fields, an event larger than
    maxBufferSize (written in pieces, slowly), an answer carrying another call's id, then never
    ending. The client gets the agent's bytes unchanged; the gateway's ``: keep-alive`` comments
    go only between events (never inside the large one while it is paused); when the client
    leaves, the exchange ends (access log) although the agent never did. The gateway stops
    reading (not relaying) at the event past maxBufferSize, so the log shows what came before.
    The answer with another call's id is the agent's to give: the gateway keeps no state of
    its own per task, so there is nothing of another caller's it could mix in."""
    big = b"data: " + b"x" * 200_000 + b"\n\n"
    events = [
        b'id: 7\nretry: 1\ndata: {"jsonrpc":"2.0","id":1,"result":{"kind":"status-update","taskId":"t1",'
        b'"contextId":"c","status":{"state":"working"},"final":false}}\n\n',
        big[:100_000],
        big[100_000:],
        b'data: {"jsonrpc":"2.0","id":"someone-else","result":{"kind":"task","id":"t9","contextId":"c",'
        b'"status":{"state":"completed"}}}\n\n',
        b"event: end\ndata: {}\n\n",
    ]

    def script(seen: Seen) -> list[object]:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        steps: list[object] = [head]
        for event in events:
            steps += [_chunk(event), 0.5]
        return [*steps, 30.0]  # and never ends

    agent = raw_upstream(script)
    port = free_port()
    gw = gateway(
        {
            "config": {"logging": {"format": "json"}},
            "frontendPolicies": {"http": {"maxBufferSize": 64 * 1024}},
            **binds(
                port, [{"policies": {"a2a": {"keepAliveInterval": "100ms"}}, "backends": [{"host": agent.address}]}]
            ),
        }
    )
    body = b'{"jsonrpc":"2.0","id":1,"method":"message/stream","params":{"message":{"role":"user","parts":[],"messageId":"m"}}}'
    sent = b"".join(events)
    keepalive = b": keep-alive\n"  # a comment line
    got = b""
    with httpx.stream(
        "POST", f"http://127.0.0.1:{port}/", content=body, headers={"content-type": "application/json"}, timeout=10
    ) as r:
        assert r.status_code == 200
        deadline = time.monotonic() + 15  # keep-alives keep the read alive: bounded here
        for chunk in r.iter_raw():
            got += chunk
            assert time.monotonic() < deadline, got[-300:]
            if got.replace(keepalive, b"").endswith(events[-1]) and got.endswith(keepalive):
                break
    assert got.replace(keepalive, b"") == sent
    # Each comment where an event may start: at the start, after a blank line or another comment.
    pos = got.find(keepalive)
    assert pos >= 0
    while pos >= 0:
        assert pos == 0 or got[:pos].endswith((b"\n\n", keepalive)), got[pos - 40 : pos + 20]
        pos = got.find(keepalive, pos + 1)

    def logged() -> list[dict[str, Any]]:
        return [json.loads(line) for line in gw.access_lines()]

    records = wait_for(logged, 10, "the stream's access log line")
    # Events past the one larger than maxBufferSize are relayed, not read (the reader stops).
    assert records[0].get("a2a.stream.events") == 1 and records[0].get("a2a.task.id") == "t1", records
