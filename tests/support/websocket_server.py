"""A WebSocket server made with the ``websockets`` library, run in a thread on 127.0.0.1.

Paths: ``/echo`` echoes every message as it came (text or binary); ``/headers`` first sends the
handshake request's headers as JSON, then echoes; ``/close`` closes with code 4001 after the
first message (a close the server starts); ``/refuse`` answers 403 to the handshake. What each
handshake carried and how each connection closed are recorded for the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tests.support.gateway import free_port


class WebSocketServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.handshakes: list[dict[str, str]] = []
        self.closes: list[tuple[int | None, str | None]] = []
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="websocket-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WebSocket server did not start")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", self.port, max_size=None, process_request=self._process_request):
            self._ready.set()
            await self._stop.wait()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        # Recorded before the 101 is written: ``_handle`` runs after it, so a test that read the
        # handshake as soon as its client had the 101 could find it missing.
        self.handshakes.append({k.lower(): v for k, v in request.headers.raw_items()})
        if request.path.startswith("/refuse"):
            return connection.respond(HTTPStatus.FORBIDDEN, "no WebSocket here\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        request = ws.request
        assert request is not None
        path = request.path
        try:
            if path.startswith("/headers"):
                await ws.send(json.dumps(_as_dict(request.headers)))
            if path.startswith("/close"):
                await ws.recv()
                await ws.close(4001, "server says bye")
                return
            async for message in ws:
                await ws.send(message)
        finally:
            with contextlib.suppress(Exception):
                await ws.wait_closed()
            self.closes.append((ws.close_code, ws.close_reason))


def _as_dict(headers: Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.raw_items()}
