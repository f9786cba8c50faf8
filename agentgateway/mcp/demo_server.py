"""A small MCP server over stdio, shipped so the embedded default config has something to federate.

    python -m agentgateway.mcp.demo_server

It speaks plain JSON-RPC lines (no SDK needed): initialize, ping, tools (echo, add, time), one
prompt and one resource. Enough for a first ``tools/call`` through the gateway.
"""

from __future__ import annotations

import datetime
import sys
from typing import Any

import orjson

VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")

TOOLS = [
    {
        "name": "echo",
        "description": "Echo the text back",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
    {
        "name": "add",
        "description": "Add two numbers",
        "inputSchema": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
    {
        "name": "time",
        "description": "The current time in UTC (ISO 8601)",
        "inputSchema": {"type": "object", "properties": {}},
    },
]
PROMPTS = [
    {
        "name": "greeting",
        "description": "A greeting for someone",
        "arguments": [{"name": "name", "description": "Who to greet", "required": True}],
    }
]
RESOURCES = [{"uri": "demo://about", "name": "about", "description": "What this server is", "mimeType": "text/plain"}]
ABOUT = "The demo MCP server of agentgateway's default config. Replace it with your servers in `mcp.targets`."


class ToolError(Exception):
    pass


def call_tool(name: str, args: dict[str, Any]) -> str:
    if name == "echo":
        return str(args.get("text", ""))
    if name == "add":
        try:
            return str(float(args["a"]) + float(args["b"])).removesuffix(".0")
        except (KeyError, TypeError, ValueError):
            raise ToolError("add needs two numbers, a and b") from None
    if name == "time":
        return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    raise KeyError(name)


def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
    if method == "initialize":
        requested = params.get("protocolVersion")
        return {
            "protocolVersion": requested if requested in VERSIONS else VERSIONS[-1],
            "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
            "serverInfo": {"name": "agentgateway-demo", "version": "1.0"},
            "instructions": "A demo server: echo, add and time tools, a greeting prompt, an about resource.",
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        name = str(params.get("name"))
        try:
            text = call_tool(name, params.get("arguments") or {})
        except ToolError as exc:
            return {"content": [{"type": "text", "text": str(exc)}], "isError": True}
        return {"content": [{"type": "text", "text": text}]}
    if method == "prompts/list":
        return {"prompts": PROMPTS}
    if method == "prompts/get":
        who = (params.get("arguments") or {}).get("name", "there")
        return {"messages": [{"role": "user", "content": {"type": "text", "text": f"Say hello to {who}."}}]}
    if method == "resources/list":
        return {"resources": RESOURCES}
    if method == "resources/read":
        if params.get("uri") != "demo://about":
            raise LookupError(f"no resource {params.get('uri')}")
        return {"contents": [{"uri": "demo://about", "mimeType": "text/plain", "text": ABOUT}]}
    raise NotImplementedError(method)


def main() -> None:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
            continue  # notifications and answers need no reply
        raw_params = msg.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        try:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "result": answer(str(msg["method"]), params)}
        except NotImplementedError:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "Method not found"}}
        except KeyError as exc:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32602, "message": f"Unknown tool: {exc}"}}
        except LookupError as exc:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32002, "message": str(exc)}}
        out.write(orjson.dumps(reply) + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
