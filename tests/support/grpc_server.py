"""A gRPC test server (grpcio, generic handlers over raw bytes: no generated code).

Run as ``python -m tests.support.grpc_server --port P``; prints ``ready`` once serving (h2c).

Service ``test.Echo``, messages are raw bytes:
  Unary         echoes the request; ``error:<code>:<message>`` fails with that status code,
                ``sleep:<seconds>`` answers after that long (and records a cancellation),
                ``meta`` answers the request metadata as JSON
  ServerStream  ``<n>[:<delay>]``: n messages ``0``..``n-1``, ``delay`` seconds apart;
                ``error:<code>:<message>`` sends two messages, then fails
  ClientStream  the messages joined with ``,``
  Bidi          each message echoed as it arrives, upper-cased
  Events        JSON: what the server saw end early (``cancelled:<method>``)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

EVENTS: list[str] = []
_LOCK = threading.Lock()


def _record(event: str) -> None:
    with _LOCK:
        EVENTS.append(event)


def _fail_if_asked(request: bytes, context: Any) -> None:
    if request.startswith(b"error:"):
        _, code, message = request.decode().split(":", 2)
        context.abort(grpc.StatusCode[code], message)


def _watch(context: Any, method: str) -> list[bool]:
    """Records ``cancelled:<method>`` if the call ends before its handler says it is done
    (``done[0] = True``): a cancellation (RST_STREAM) or a deadline."""
    done = [False]

    def ended() -> None:
        if not done[0]:
            _record(f"cancelled:{method}")

    context.add_callback(ended)
    return done


def _sleep(seconds: float, context: Any) -> bool:
    """Sleeps unless the call ends first; False when it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not context.is_active():
            return False
        time.sleep(0.02)
    return True


def unary(request: bytes, context: Any) -> bytes:
    _fail_if_asked(request, context)
    if request.startswith(b"sleep:"):
        done = _watch(context, "Unary")
        if not _sleep(float(request[6:]), context):
            return b""
        done[0] = True
        return b"slept"
    if request == b"meta":
        return json.dumps(sorted([k, v] for k, v in context.invocation_metadata())).encode()
    context.set_trailing_metadata((("x-trailer", "t1"),))
    return request


def server_stream(request: bytes, context: Any) -> Iterator[bytes]:
    if request.startswith(b"error:"):
        yield b"first"
        yield b"second"
        _fail_if_asked(request, context)
        return
    n_text, _, delay_text = request.decode().partition(":")
    delay = float(delay_text or 0)
    done = _watch(context, "ServerStream")
    for i in range(int(n_text)):
        if delay and not _sleep(delay, context):
            return
        yield str(i).encode()
    done[0] = True


def client_stream(requests: Iterator[bytes], context: Any) -> bytes:
    parts = []
    for message in requests:
        _fail_if_asked(message, context)
        parts.append(message)
    return b",".join(parts)


def bidi(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    for message in requests:
        _fail_if_asked(message, context)
        yield message.upper()


def events(request: bytes, context: Any) -> bytes:
    with _LOCK:
        return json.dumps(EVENTS).encode()


def _identity(data: bytes) -> bytes:
    return data


def handlers() -> grpc.GenericRpcHandler:
    kinds = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, _identity, _identity),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, _identity, _identity),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, _identity, _identity),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, _identity, _identity),
        "Events": grpc.unary_unary_rpc_method_handler(events, _identity, _identity),
    }
    return grpc.method_handlers_generic_handler("test.Echo", kinds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handlers(),))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.wait_for_termination()
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
