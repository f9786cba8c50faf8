"""A minimal stdio MCP server (raw JSON-RPC, no SDK) whose tools/list pages: it offers
``--tools N`` tools, ``--page K`` per page, with opaque cursors of its own."""

from __future__ import annotations

import argparse
import json
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="pager")
    parser.add_argument("--tools", type=int, default=5)
    parser.add_argument("--page", type=int, default=2)
    args = parser.parse_args()
    tools = [{"name": f"t{i}", "description": f"tool {i} of {args.name}", "inputSchema": {"type": "object"}}
             for i in range(args.tools)]  # fmt: skip
    for line in sys.stdin:
        msg = json.loads(line)
        method, id_ = msg.get("method"), msg.get("id")
        if id_ is None:
            continue
        params = msg.get("params") or {}
        if method == "initialize":
            result = {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": args.name, "version": "1"},
            }
        elif method == "tools/list":
            cursor = params.get("cursor")
            if cursor is not None and not str(cursor).startswith(f"{args.name}-page-"):
                reply = {"jsonrpc": "2.0", "id": id_, "error": {"code": -32602, "message": f"bad cursor {cursor}"}}
                print(json.dumps(reply), flush=True)
                continue
            start = int(str(cursor).rsplit("-", 1)[1]) if cursor else 0
            page = tools[start : start + args.page]
            result = {"tools": page}
            if start + args.page < len(tools):
                result["nextCursor"] = f"{args.name}-page-{start + args.page}"
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": f"{args.name}:{params.get('name')}"}]}
        else:
            reply = {"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": "Method not found"}}
            print(json.dumps(reply), flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": id_, "result": result}), flush=True)


if __name__ == "__main__":
    main()
