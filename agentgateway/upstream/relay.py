"""Relaying requests between the workers of one gateway.

Some state cannot move between processes: a stdio MCP server belongs to the worker that started
it, an HTTP+SSE client session to the worker holding its event stream. A request for such a
session that the kernel hands to another worker is proxied, unchanged, to the owner over a Unix
socket in the run's private directory. The owner serves it as if it had arrived on the port named
in ``x-agentgateway-bind`` (a header trusted only on that socket), for the client identity named
in ``x-agentgateway-identity`` (what the relaying worker's authentication policies proved, hex).
"""

from __future__ import annotations

import os
from pathlib import Path

from agentgateway.upstream.target import HttpTarget

RUNTIME_DIR_ENV = "AGENTGATEWAY_RUNTIME_DIR"
BIND_HEADER = b"x-agentgateway-bind"
IDENTITY_HEADER = b"x-agentgateway-identity"
# The CEL variables the relaying worker's policies learned (jwt claims, apiKey metadata, ...), as
# base64 JSON: the owner does not run the request policies again, its MCP rules still read them.
CEL_VARS_HEADER = b"x-agentgateway-cel-vars"
# The trace context of a relayed request (trace id, server span id, parent span id, sampled), so
# that the owner records the request's server span as the one the relaying worker propagated.
TRACE_HEADER = b"x-agentgateway-trace"
_RELAY_CONNECT_TIMEOUT = 5.0


def runtime_dir() -> Path | None:
    value = os.environ.get(RUNTIME_DIR_ENV)
    return Path(value) if value else None


def worker_socket(owner: str) -> Path | None:
    """Where the worker ``owner`` (its pid) listens for relayed requests."""
    base = runtime_dir()
    # A pid: ASCII digits, as many as a pid has. The owner comes from a client (a legacy SSE
    # ``?sessionId=``): 5,000 digits made a file name the stat below refused (a 500 a request).
    if base is None or not (0 < len(owner) <= 10 and owner.isascii() and owner.isdigit()):
        return None
    return base / f"worker-{owner}.sock"


def relay_target(owner: str) -> HttpTarget | None:
    """An upstream target for the owner's socket, or None if that worker is gone."""
    path = worker_socket(owner)
    if path is None or not path.exists():
        return None
    return HttpTarget(f"unix:{path}", 0, None, f"worker {owner}", _RELAY_CONNECT_TIMEOUT)
