"""An upstream that fills the admin UI with hostile data (the UI attack tests, tests/e2e).

Run as ``python -m tests.support.hostile_ui_upstream --port N``. Every name, description and
text it gives holds ``MARK``: markup that would run script or add elements if the UI put it in
the page as HTML, so a test can look for the text shown literally and for no injected element.

- ``POST /mcp``: a streamable-HTTP MCP server written by hand (JSON answers), whose server
  info, instructions, tools (names, descriptions, input schemas with hostile property names,
  enums and defaults), prompts, resources, call results and errors are hostile; ``GET /mcp`` is
  405 (no notification stream);
- ``/agent/``: an A2A 1.0 agent whose card (name, description, skills, interface URLs such as
  ``javascript:``) and streamed events (an event kind of its own, texts) are hostile;
- ``POST /v1/chat/completions``: an OpenAI-style provider streaming a hostile answer, or (model
  ``fail``) a hostile HTML error body;
- ``FLOOD``: asked for (an MCP tool argument, an A2A message text, the model name), the server
  streams ``FLOOD_EVENTS`` events of ``FLOOD_CHARS`` characters each instead (a runaway or
  hostile upstream streaming for as long as the admin keeps the page open);
- ``GET /app/``: an HTML page with a script, as any web application behind the gateway may serve
  (a page that shares its origin with the admin UI when both are routes of one listener): it
  reads ``/ui/api/config`` and applies an edited config through ``/ui/api/config/apply``, and
  writes what happened in ``document.title``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MARK = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><svg onload="window.__pwned=3">'
JS_URL = "javascript:window.__pwned=4"
FLOOD = "flood"
FLOOD_EVENTS = 3000
FLOOD_CHARS = 10_000

TOOLS = [
    {
        "name": "evil" + MARK,
        "description": "desc " + MARK,
        "inputSchema": {
            "type": "object",
            "properties": {
                "field" + MARK: {"type": "string", "description": "prop " + MARK, "default": MARK},
                "choice": {"type": "string", "enum": [MARK, JS_URL]},
                "__proto__": {"type": "string", "description": "proto " + MARK},
            },
            "required": ["field" + MARK],
        },
    }
]


def _rpc(rpc_id: Any, result: Any = None, error: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id}
    if error is not None:
        body["error"] = error
    else:
        body["result"] = result
    return JSONResponse(body, headers={"mcp-session-id": "hostile-session"})


async def mcp(request: Request) -> Response:
    if request.method == "GET":
        return Response(status_code=405)
    if request.method == "DELETE":
        return Response(status_code=200)
    message = await request.json()
    method, rpc_id = message.get("method"), message.get("id")
    if rpc_id is None:
        return Response(status_code=202)
    if method == "initialize":
        return _rpc(
            rpc_id,
            {
                "protocolVersion": message["params"].get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
                "serverInfo": {"name": "server " + MARK, "version": MARK},
                "instructions": "instructions " + MARK,
            },
        )
    if method == "tools/list":
        return _rpc(rpc_id, {"tools": TOOLS})
    if method == "prompts/list":
        args = [{"name": "arg" + MARK, "description": MARK, "required": False}]
        return _rpc(rpc_id, {"prompts": [{"name": "prompt" + MARK, "description": MARK, "arguments": args}]})
    if method == "resources/list":
        return _rpc(rpc_id, {"resources": [{"uri": "file:///" + MARK, "name": "resource" + MARK}]})
    if method == "tools/call" and FLOOD in (message["params"].get("arguments") or {}).values():
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "data": "n" * FLOOD_CHARS},
        }
        result = {"content": [{"type": "text", "text": "flooded"}]}
        return _sse([note] * FLOOD_EVENTS + [{"jsonrpc": "2.0", "id": rpc_id, "result": result}])
    if method == "tools/call":
        content = [{"type": "text", "text": "result " + MARK}]
        return _rpc(rpc_id, {"content": content, "isError": True, "structuredContent": {MARK: MARK}})
    if method == "prompts/get":
        return _rpc(rpc_id, {"messages": [{"role": "user", "content": {"type": "text", "text": "prompt " + MARK}}]})
    if method == "resources/read":
        return _rpc(rpc_id, error={"code": -32000, "message": "error " + MARK})
    return _rpc(rpc_id, error={"code": -32601, "message": "no method " + MARK})


def _card(origin: str) -> dict[str, Any]:
    return {
        "name": "agent " + MARK,
        "description": "about " + MARK,
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": f"{origin}/agent/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            {"url": JS_URL, "protocolBinding": "JSONRPC" + MARK, "protocolVersion": MARK},
        ],
        "capabilities": {"streaming": True},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "s", "name": "skill " + MARK, "description": MARK, "tags": [MARK]}],
        "documentationUrl": JS_URL,
        "iconUrl": JS_URL,
    }


async def agent_card(request: Request) -> Response:
    return JSONResponse(_card(f"http://{request.headers.get('host', '127.0.0.1')}"))


def _sse(events: list[Any]) -> StreamingResponse:
    async def stream() -> Any:
        for event in events:
            yield f"data: {json.dumps(event)}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream")


async def agent(request: Request) -> Response:
    message = await request.json()
    rpc_id = message.get("id")
    if message["params"]["message"]["parts"][0].get("text") == FLOOD:
        event = {"jsonrpc": "2.0", "id": rpc_id, "result": {"message": {"parts": [{"text": "a" * FLOOD_CHARS}]}}}
        return _sse([event] * FLOOD_EVENTS)
    status = {"state": "TASK_STATE_COMPLETED" + MARK, "message": {"parts": [{"text": "status " + MARK}]}}
    return _sse(
        [
            {"jsonrpc": "2.0", "id": rpc_id, "result": {"message": {"parts": [{"text": "answer " + MARK}]}}},
            {"jsonrpc": "2.0", "id": rpc_id, "result": {"kind" + MARK: {"status": status}}},
            {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": MARK, "message": "failed " + MARK}},
        ]
    )


async def chat(request: Request) -> Response:
    body = await request.json()
    if body.get("model") == "fail":
        return HTMLResponse("<html><body>provider error " + MARK + "</body></html>", status_code=400)
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": body.get("model"),
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "answer " + MARK}, "finish_reason": None}],
    }
    done = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {**chunk, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    events = [chunk, done, usage]
    if body.get("model") == FLOOD:
        delta = {**chunk, "choices": [{"index": 0, "delta": {"content": "w" * FLOOD_CHARS}, "finish_reason": None}]}
        events = [delta] * FLOOD_EVENTS + [done, usage]

    async def stream() -> Any:
        for event in events:
            yield f"data: {json.dumps(event)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


# The page a web application behind the gateway serves: when it shares its origin with the admin
# UI, its script uses the UI's endpoints as the UI does.
APP_PAGE = """<!doctype html><html><head><title>app</title></head><body><p>an application</p>
<script>
(async () => {
  const marker = { "content-type": "application/json", "x-agentgateway-admin": "1" };
  try {
    const current = await (await fetch("/ui/api/config", { cache: "no-store" })).json();
    const text = current.text.replace("served by the gateway", "changed by a page of the upstream");
    const r = await fetch("/ui/api/config/apply", { method: "POST", headers: marker,
      body: JSON.stringify({ text, base: current.base }) });
    document.title = "apply " + r.status;
  } catch (e) {
    document.title = "failed " + e;
  }
})();
</script></body></html>"""


async def app_page(request: Request) -> Response:
    return HTMLResponse(APP_PAGE)


def build() -> Starlette:
    return Starlette(
        routes=[
            Route("/mcp", mcp, methods=["GET", "POST", "DELETE"]),
            Route("/agent/.well-known/agent-card.json", agent_card, methods=["GET"]),
            Route("/agent/", agent, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/app/", app_page, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
