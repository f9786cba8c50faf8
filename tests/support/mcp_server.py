"""A test MCP server built with the official SDK (``mcp`` 2.x), servable over every transport.

    python -m tests.support.mcp_server --name alpha --transport stdio
    python -m tests.support.mcp_server --name beta --transport http --port 9001   (streamable HTTP, /mcp)
    python -m tests.support.mcp_server --name gamma --transport sse --port 9002   (HTTP+SSE, /sse)

Every tool, prompt and resource mentions the server's name, so a test can tell which target
answered a call that went through the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel


class Confirmation(BaseModel):
    confirm: bool


def build(name: str, tools: int) -> MCPServer:
    server = MCPServer(name, instructions=f"Server {name}: tools for testing the gateway.")

    @server.tool(description=f"Echo the text back, from {name}")
    def echo(text: str) -> str:
        return f"{name}: {text}"

    @server.tool(description="Add two integers")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Name of the server that answered")
    def whoami() -> str:
        return name

    @server.tool(description="Report progress, then answer")
    async def count(steps: int, ctx: Context) -> str:
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            await ctx.info(f"{name} at step {i + 1}")
            await asyncio.sleep(0.05)
        return f"{name} counted {steps}"

    @server.tool(description="Sleep, then answer (cancellable)")
    async def sleep(seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            print(f"{name}: sleep cancelled", file=sys.stderr, flush=True)  # the tests look for this
            raise
        return f"{name} slept {seconds}"

    @server.tool(description="Ask the client to confirm (elicitation)")
    async def confirm(question: str, ctx: Context) -> str:
        answer = await ctx.elicit(question, Confirmation)
        if answer.action == "accept" and answer.data is not None:
            return f"{name}: confirmed={answer.data.confirm}"
        return f"{name}: {answer.action}"

    @server.tool(description="Exit the server process (a crash)")
    def crash() -> str:
        os._exit(3)

    @server.tool(description="The _meta this request arrived with (trace context), as JSON")
    def trace_meta(ctx: Context) -> str:
        return json.dumps(dict(ctx.request_context.meta or {}), default=str)

    @server.tool(description="Fail with a tool error")
    def fail(reason: str) -> str:
        raise ValueError(f"{name} failed: {reason}")

    for i in range(tools):

        def make(i: int):  # noqa: ANN202 - bind i per tool
            def extra() -> str:
                return f"{name} extra {i}"

            return extra

        server.tool(name=f"extra{i}", description=f"Extra tool {i} of {name}")(make(i))

    @server.prompt(description=f"Greeting from {name}")
    def greet(person: str) -> str:
        return f"{name} greets {person}"

    @server.resource(f"memo://{name}/info", description=f"About {name}")
    def info() -> str:
        return f"info of {name}"

    @server.resource("memo://{key}/value", description="A templated resource")
    def value(key: str) -> str:
        return f"{name} value of {key}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="alpha")
    parser.add_argument("--transport", choices=("stdio", "http", "sse"), default="stdio")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tools", type=int, default=0, help="extra tools (for listing tests)")
    args = parser.parse_args()
    server = build(args.name, args.tools)
    if args.transport == "stdio":
        print(f"{args.name} starting on stdio", file=sys.stderr, flush=True)
        server.run("stdio")
    elif args.transport == "http":
        server.run("streamable-http", host="127.0.0.1", port=args.port)
    else:
        server.run("sse", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
