"""An A2A agent built on the official ``a2a-sdk`` server, for the A2A gateway tests.

Run as ``python -m tests.support.a2a_agent --port N [--base-path /agents/tock]``. One process
serves both protocol versions on both HTTP bindings: JSON-RPC at ``<base>/`` (1.0, and 0.3
through the SDK's compatibility layer), HTTP+JSON at ``<base>/message:send`` … (1.0) and
``<base>/v1/message:send`` … (0.3). Cards:

- ``<base>/.well-known/agent-card.json``: the SDK's card (1.0 ``supportedInterfaces`` with the
  0.3 fields merged in by the SDK), signed with a placeholder ``signatures`` entry;
- ``<base>/.well-known/agent.json``: a card in the 0.3 shape only (``url``,
  ``preferredTransport``, ``additionalInterfaces``, ``protocolVersion: 0.3.0``), as 0.3 agents
  serve it;
- ``<base>/broken/.well-known/agent-card.json``: not JSON (a broken agent);
- ``<base>/hostile/.well-known/agent-card.json`` (1.0) and ``…/agent.json`` (0.3): cards whose
  URLs are protocol-relative (``//host/``: the agent's JSON-RPC endpoint), ``javascript:``,
  ``file:``, ``data:``, gRPC, and OAuth / OpenID Connect endpoints over http and https.

Extended cards:

- ``<base>/extended/…``: the same agent (its own SDK request handler) whose cards announce an
  extended card (1.0 ``capabilities.extendedAgentCard``, 0.3
  ``supportsAuthenticatedExtendedCard``), and whose extended card is the hostile 1.0 card, served
  by the SDK on every binding: JSON-RPC ``GetExtendedAgentCard`` and
  ``agent/getAuthenticatedExtendedCard`` at ``<base>/extended/``, ``GET
  <base>/extended/extendedAgentCard`` and ``GET <base>/extended/v1/card``;
- ``<base>/odd/<kind>/`` (JSON-RPC, any method) and ``<base>/odd/<kind>/extendedAgentCard``,
  ``…/v1/card``, ``…/agent/authenticatedExtendedCard`` (HTTP+JSON), and
  ``…/.well-known/agent-card.json``: card answers an agent should not give (``ODD_ANSWERS``).

What the agent does depends on the text of the message:

- ``hello …``: answers with a single message (no task);
- ``slow <seconds> <steps>``: a task that works ``steps`` times, sleeping ``seconds`` between
  status updates, then completes with an artifact (long streams, keep-alive tests);
- ``wait``: a task that stays ``working`` until it is canceled;
- anything else: a task that completes at once with the artifact ``echo: <text>``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json

import uvicorn
from a2a.helpers import get_message_text, new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentCardSignature, AgentInterface, AgentSkill, Role
from google.protobuf.json_format import MessageToDict, ParseDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route


class GatewayTestAgent(AgentExecutor):
    def __init__(self) -> None:
        self._cancel: dict[str, asyncio.Event] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None
        text = get_message_text(message)
        if text.startswith("hello"):
            await event_queue.enqueue_event(
                new_text_message(f"hi: {text}", context_id=context.context_id, role=Role.ROLE_AGENT)
            )
            return
        task = context.current_task or new_task_from_user_message(message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        words = text.split()
        if words and words[0] == "slow":
            seconds = float(words[1]) if len(words) > 1 else 1.0
            steps = int(words[2]) if len(words) > 2 else 2
            for i in range(steps):
                await asyncio.sleep(seconds)
                await updater.start_work(
                    new_text_message(f"step {i + 1}", context_id=task.context_id, task_id=task.id, role=Role.ROLE_AGENT)
                )
        elif words and words[0] == "wait":
            stop = self._cancel.setdefault(task.id, asyncio.Event())
            await asyncio.wait_for(stop.wait(), 60)
            return
        await updater.add_artifact(
            [new_text_message(f"echo: {text}").parts[0]],
            name="echo",
        )
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ""
        self._cancel.setdefault(task_id, asyncio.Event()).set()
        updater = TaskUpdater(event_queue, task_id, context.context_id or "")
        await updater.cancel()


def agent_card(origin: str, base: str) -> AgentCard:
    url = f"{origin}{base}/"
    card = AgentCard(
        name="gateway test agent",
        description="echoes, streams slowly, waits to be canceled",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=f"{origin}{base}", protocol_binding="HTTP+JSON", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="echoes the text", tags=["test"])],
    )
    card.signatures.append(AgentCardSignature(protected="eyJhbGciOiJFUzI1NiJ9", signature="c2lnbmF0dXJl"))
    return card


def legacy_card(origin: str, base: str) -> dict[str, object]:
    """A card as 0.3 agents write it (no supportedInterfaces)."""
    return {
        "protocolVersion": "0.3.0",
        "name": "gateway test agent (0.3 card)",
        "description": "the same agent, described in the 0.3 shape",
        "version": "1.0.0",
        "url": f"{origin}{base}/",
        "preferredTransport": "JSONRPC",
        "additionalInterfaces": [
            {"url": f"{origin}{base}/", "transport": "JSONRPC"},
            {"url": f"{origin}{base}", "transport": "HTTP+JSON"},
        ],
        "capabilities": {"streaming": True},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "echo", "description": "echoes the text", "tags": ["test"]}],
        "signatures": [{"protected": "eyJhbGciOiJFUzI1NiJ9", "signature": "c2lnbmF0dXJl"}],
    }


def hostile_card(origin: str, base: str) -> dict[str, object]:
    """The 1.0 card with URLs a gateway must not pass on as they are."""
    netloc = origin.split("//", 1)[1]
    card = MessageToDict(agent_card(origin, base))
    card.pop("signatures", None)
    card["supportedInterfaces"] = [
        {"url": "javascript:alert(document.cookie)", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
        {"url": f"grpc://{netloc}", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
        {"url": f"//{netloc}{base}/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
    ]
    card["provider"] = {"organization": "hostile", "url": "javascript:void(0)"}
    card["documentationUrl"] = "file:///etc/passwd"
    card["iconUrl"] = "data:image/svg+xml,<svg onload=alert(1)>"
    card["securitySchemes"] = {
        "oauth": {
            "oauth2SecurityScheme": {
                "flows": {
                    "authorizationCode": {
                        "authorizationUrl": "https://idp.example/authorize",
                        "tokenUrl": "http://idp.example/token",
                        "refreshUrl": "//idp.example/refresh",
                        "scopes": {"read": "read"},
                    }
                },
                "oauth2MetadataUrl": "https://idp.example/.well-known/oauth-authorization-server",
            }
        },
        "oidc": {"openIdConnectSecurityScheme": {"openIdConnectUrl": "javascript:alert(1)"}},
    }
    return card


def hostile_legacy_card(origin: str, base: str) -> dict[str, object]:
    netloc = origin.split("//", 1)[1]
    card = legacy_card(origin, base)
    card.pop("signatures", None)
    card["url"] = f"//{netloc}{base}/"
    card["additionalInterfaces"] = [
        {"url": "javascript:alert(1)", "transport": "HTTP+JSON"},
        {"url": f"//{netloc}{base}/", "transport": "JSONRPC"},
        {"url": f"file://{netloc}/", "transport": "JSONRPC"},
    ]
    card["documentationUrl"] = "javascript:alert(2)"
    card["iconUrl"] = "https://cdn.example/icon.png"
    return card


def extended_routes(origin: str, base: str) -> list[Route | Mount]:
    """The agent under ``<base>/extended``, with the hostile card as its extended card."""
    mount = f"{base}/extended"
    card = agent_card(origin, mount)
    card.capabilities.extended_agent_card = True
    hostile = hostile_card(origin, base)
    # 0.3 clients get the card converted by the SDK, from its 0.3 interfaces.
    hostile["supportedInterfaces"] += [
        {"url": "javascript:alert(3)", "protocolBinding": "HTTP+JSON", "protocolVersion": "0.3"},
        {"url": f"{origin}{mount}/", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
    ]
    extended = ParseDict(hostile, AgentCard())
    handler = DefaultRequestHandler(
        agent_executor=GatewayTestAgent(),
        task_store=InMemoryTaskStore(),
        agent_card=card,
        extended_agent_card=extended,
    )
    legacy = legacy_card(origin, mount)
    legacy["supportsAuthenticatedExtendedCard"] = True
    return [
        *create_agent_card_routes(card),
        Route("/.well-known/agent.json", lambda request: JSONResponse(legacy), methods=["GET"]),
        *create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True),
        *create_rest_routes(handler, enable_v0_3_compat=True),
    ]


# Extended card answers an agent should not give, by kind: HTTP status, content type, body
# (None: the hostile card), whether it is wrapped as a JSON-RPC result when the call is JSON-RPC,
# and whether it is gzip-compressed (although the gateway asks for no compression).
ODD_ANSWERS: dict[str, tuple[int, str, bytes | None, bool, bool]] = {
    "broken": (200, "application/json", b'{"name": "broken agent", "url": ', False, False),
    "big": (200, "application/json", None, True, False),  # a card of 200 KiB
    "scalar": (200, "application/json", b'"javascript:alert(1)"', True, False),
    "stream": (200, "text/event-stream", None, True, False),  # the card as an event
    "gzip": (200, "application/json", None, True, True),
    "accepted": (203, "application/json", None, True, False),  # a card all the same
    "failed": (500, "application/json", None, True, False),  # JSON-RPC: a result with an HTTP error
    "html": (401, "text/html", b"<html>log in first</html>", False, False),  # a proxy in front
    "error": (400, "application/json", b'{"code": -32007, "message": "not configured"}', False, False),
}


def odd_routes(origin: str, base: str) -> list[Route]:
    def answer(kind: str, rpc_id: object) -> Response:
        status, content_type, data, wrapped, compressed = ODD_ANSWERS[kind]
        if data is None:
            card = hostile_card(origin, base)
            if kind == "big":
                card["description"] = "x" * 200 * 1024
            data = json.dumps(card).encode()
        if rpc_id is not None:
            if wrapped:
                data = b'{"jsonrpc": "2.0", "id": %s, "result": %s}' % (json.dumps(rpc_id).encode(), data)
            elif kind == "error":
                data = b'{"jsonrpc": "2.0", "id": %s, "error": %s}' % (json.dumps(rpc_id).encode(), data)
        elif kind == "error":
            data = b'{"error": %s}' % data
        if kind == "stream":
            data = b"data: " + data + b"\n\n"
        if compressed:
            return Response(gzip.compress(data), status, {"content-encoding": "gzip"}, media_type=content_type)
        return Response(data, status, media_type=content_type)

    async def jsonrpc(request: Request) -> Response:
        return answer(request.path_params["kind"], (await request.json()).get("id"))

    async def rest(request: Request) -> Response:
        return answer(request.path_params["kind"], None)

    return [
        Route("/odd/{kind}/", jsonrpc, methods=["POST"]),
        *(
            Route(f"/odd/{{kind}}/{path}", rest, methods=["GET"])
            for path in (
                "extendedAgentCard",
                "v1/card",
                "agent/authenticatedExtendedCard",
                ".well-known/agent-card.json",
            )
        ),
    ]


def build_app(origin: str, base: str) -> Starlette:
    card = agent_card(origin, base)
    handler = DefaultRequestHandler(agent_executor=GatewayTestAgent(), task_store=InMemoryTaskStore(), agent_card=card)

    async def legacy(request: Request) -> Response:
        return JSONResponse(legacy_card(origin, base), headers={"cache-control": "max-age=60"})

    async def broken(request: Request) -> Response:
        return Response(b'{"name": "broken agent", "url": ', media_type="application/json")

    async def raw_json_echo(request: Request) -> Response:
        return Response(json.dumps({"path": request.url.path}), media_type="application/json")

    routes = [
        *create_agent_card_routes(card, cache_control="public, max-age=300"),
        Route("/.well-known/agent.json", legacy, methods=["GET"]),
        Route("/broken/.well-known/agent-card.json", broken, methods=["GET"]),
        Route(
            "/hostile/.well-known/agent-card.json",
            lambda request: JSONResponse(hostile_card(origin, base)),
            methods=["GET"],
        ),
        Route(
            "/hostile/.well-known/agent.json",
            lambda request: JSONResponse(hostile_legacy_card(origin, base)),
            methods=["GET"],
        ),
        Route("/debug/path", raw_json_echo, methods=["GET", "POST"]),
        # Before the HTTP+JSON routes: they take /{tenant}/… too.
        Mount("/extended", routes=extended_routes(origin, base)),
        *odd_routes(origin, base),
        *create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True),
        *create_rest_routes(handler, enable_v0_3_compat=True),
    ]
    if base:
        return Starlette(routes=[Mount(base, routes=routes)])
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-path", default="")
    args = parser.parse_args()
    origin = f"http://127.0.0.1:{args.port}"
    app = build_app(origin, args.base_path.rstrip("/"))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
