"""An MCP server (official SDK, streamable HTTP at /mcp) that shows how a gateway sends it calls.

    python -m tests.support.inflight_server --port 9001

- ``rendezvous(key, group)``: counts the calls of ``key`` in flight and holds each until ``group``
  of them are in flight at once, then answers ``met <group>``; a call that waits longer than
  ``HOLD_S`` answers ``alone: <most seen at once>`` instead (so a gateway that sends one call at a
  time fails the test instead of hanging it). Either way `` via <port>`` follows: ``peer()``.
- ``peer()``: the TCP port the call's connection came from (the gateway's end of its upstream
  connection): which connection carried it.
- ``most(key)``: the most calls of ``key`` that were in flight at once.
- ``order(key, step)``: records ``step`` under ``key``; ``steps(key)`` lists them as they came.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

HOLD_S = 20.0


class Group:
    __slots__ = ("in_flight", "most", "met")

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.met = asyncio.Event()


def _peer(ctx: Context) -> str:
    request: Any = ctx.request_context.request
    client = getattr(request, "client", None)
    return str(client.port) if client is not None else "unknown"


def build() -> MCPServer:
    server = MCPServer("inflight")
    groups: dict[str, Group] = {}
    orders: dict[str, list[int]] = {}

    @server.tool(description="Hold until `group` calls of `key` are in flight at once")
    async def rendezvous(key: str, group: int, ctx: Context) -> str:
        via = f" via {_peer(ctx)}"
        state = groups.setdefault(key, Group())
        state.in_flight += 1
        state.most = max(state.most, state.in_flight)
        if state.in_flight >= group:
            state.met.set()
        try:
            await asyncio.wait_for(state.met.wait(), HOLD_S)
        except TimeoutError:
            return f"alone: {state.most}{via}"
        finally:
            state.in_flight -= 1
        return f"met {group}{via}"

    @server.tool(description="The client port of the connection this call came on")
    def peer(ctx: Context) -> str:
        return _peer(ctx)

    @server.tool(description="The most calls of `key` in flight at once")
    def most(key: str) -> str:
        state = groups.get(key)
        return str(state.most if state is not None else 0)

    @server.tool(description="Record a step under a key")
    def order(key: str, step: int) -> str:
        orders.setdefault(key, []).append(step)
        return "ok"

    @server.tool(description="The steps recorded under a key, in the order they came")
    def steps(key: str) -> str:
        return ",".join(str(step) for step in orders.get(key, []))

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    build().run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
