"""An MCP server over stdio that serves files as ``file://`` resources the way file servers read
URIs: the scheme in any case, escapes decoded, the path normalized (``..``, ``.``, ``//``, a
trailing ``/``), the query and fragment ignored. Many spellings thus name one file, which is what
an authorization rule about one URI has to cope with.

    python -m tests.support.file_server

Plain JSON-RPC lines (no SDK): initialize, ping, resources/list, resources/read.
"""

from __future__ import annotations

import posixpath
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

FILES = {"/srv/public.txt": "public text", "/srv/secret.txt": "secret text"}


def read(uri: str) -> dict[str, Any]:
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        raise LookupError(f"not a file URI: {uri}")
    path = posixpath.normpath(unquote(parts.path)).rstrip("/")
    if path.startswith("//"):
        path = path[1:]
    if path not in FILES:
        raise LookupError(f"no such file: {path}")
    return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": FILES[path]}]}


def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion") or "2025-06-18",
            "capabilities": {"resources": {}},
            "serverInfo": {"name": "files", "version": "1"},
        }
    if method == "ping":
        return {}
    if method == "resources/list":
        return {"resources": [{"uri": f"file://{p}", "name": posixpath.basename(p)} for p in FILES]}
    if method == "resources/read":
        return read(str(params.get("uri")))
    raise NotImplementedError(method)


def main() -> None:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
            continue
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        try:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "result": answer(str(msg["method"]), params)}
        except NotImplementedError:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "Method not found"}}
        except LookupError as exc:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32002, "message": str(exc)}}
        out.write(orjson.dumps(reply) + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
