"""A stdio MCP server (raw JSON-RPC, no SDK) that plays a hostile or broken target in a
federation: it lists the tools, prompts and resources it is told to (any names, spoofs of other
targets' names included), says who served a call, and can misbehave on purpose.

``--spec`` is a JSON object:
- ``tools``, ``prompts``: names it offers; ``resources``: URIs it offers;
- ``tool_list``: a whole ``tools/list`` result to answer instead (huge or odd lists);
- ``env``: a tool ``env`` answering with this process's environment (JSON);
- ``stderr``: bytes written to stderr (in lines of ``stderr_line`` bytes, 0: one line without a
  newline) right after ``initialize``;
- ``close_stdout``: a ``tools/call`` of ``hang`` closes stdout and the process stays alive;
- ``ignore_sigterm``: SIGTERM does nothing (the gateway must escalate);
- ``before_answer``: messages (any JSON) written before each ``tools/call`` answer, each with
  ``"@call"`` strings replaced by the call's progress token and ``"@id"`` by its id (odd
  notifications, requests, and answers that come before the server's own).
A call answers ``<name>:<tool or prompt or uri>``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def reply(id_: object, result: object = None, error: dict | None = None) -> None:
    msg: dict[str, object] = {"jsonrpc": "2.0", "id": id_}
    if error is not None:
        msg["error"] = error
    else:
        msg["result"] = result
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def flood_stderr(total: int, line: int) -> None:
    out = sys.stderr.buffer
    if line <= 0:
        chunk = b"x" * 65536
        left = total
        while left > 0:
            out.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    else:
        text = b"e" * (line - 1) + b"\n"
        for _ in range(max(1, total // line)):
            out.write(text)
    out.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="hostile")
    parser.add_argument("--spec", default="{}")
    args = parser.parse_args()
    spec = json.loads(args.spec)
    name = args.name
    if spec.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tools = [
        {"name": t, "description": f"{t} of {name}", "inputSchema": {"type": "object"}} for t in spec.get("tools", [])
    ]
    if spec.get("env"):
        tools.append({"name": "env", "description": "environment", "inputSchema": {"type": "object"}})
    prompts = [{"name": p, "description": f"{p} of {name}"} for p in spec.get("prompts", [])]
    resources = [{"uri": u, "name": u} for u in spec.get("resources", [])]
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        method, id_ = msg.get("method"), msg.get("id")
        if id_ is None or method is None:
            continue
        params = msg.get("params") or {}
        if method == "initialize":
            reply(
                id_,
                {
                    "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                    "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
                    "serverInfo": {"name": name, "version": "1"},
                },
            )
            if spec.get("stderr"):
                flood_stderr(int(spec["stderr"]), int(spec.get("stderr_line", 0)))
        elif method == "tools/list":
            reply(id_, spec.get("tool_list", {"tools": tools}))
        elif method == "prompts/list":
            reply(id_, {"prompts": prompts})
        elif method == "resources/list":
            reply(id_, {"resources": resources})
        elif method == "resources/templates/list":
            reply(id_, {"resourceTemplates": []})
        elif method == "tools/call":
            tool = params.get("name")
            if tool == "env" and spec.get("env"):
                text = json.dumps(dict(os.environ))
            elif tool == "hang" and spec.get("close_stdout"):
                sys.stdout.close()
                os.close(1)
                time.sleep(120)
                return
            else:
                text = f"{name}:{tool}"
            token = json.dumps((params.get("_meta") or {}).get("progressToken"))
            for extra in spec.get("before_answer", []):
                sys.stdout.write(json.dumps(extra).replace('"@call"', token).replace('"@id"', json.dumps(id_)) + "\n")
            sys.stdout.flush()
            reply(id_, {"content": [{"type": "text", "text": text}]})
        elif method == "prompts/get":
            text = f"{name}:{params.get('name')}"
            reply(id_, {"messages": [{"role": "user", "content": {"type": "text", "text": text}}]})
        elif method == "resources/read":
            uri = params.get("uri")
            reply(id_, {"contents": [{"uri": uri, "text": f"{name}:{uri}"}]})
        elif method == "ping":
            reply(id_, {})
        else:
            reply(id_, error={"code": -32601, "message": "Method not found"})


if __name__ == "__main__":
    main()
