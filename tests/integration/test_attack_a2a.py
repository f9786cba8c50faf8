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

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import Message, Part, Role, SendMessageRequest

from tests.support.gateway import binds, free_port

CARD = "/.well-known/agent-card.json"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeAgent:
    """An A2A agent on 127.0.0.1 that serves ``card`` (a dict, or a function of the agent's own
    origin) at any ``…/.well-known/agent-card.json`` and answers every JSON-RPC call with a
    message saying ``who`` it is. It records what reached it (method, path, body)."""

    def __init__(self, who: str, card: Any = None) -> None:
        self.who = who
        self.card = card
        self.seen: list[tuple[str, str, bytes]] = []
        agent = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                agent.seen.append(("GET", self.path, b""))
                card = agent.card(agent.origin) if callable(agent.card) else agent.card
                self._answer(json.dumps(card).encode())

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

    def start(who: str, card: Any = None) -> FakeAgent:
        agent = FakeAgent(who, card)
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
