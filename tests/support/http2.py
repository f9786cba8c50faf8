"""HTTP/2 test helpers: the HTTP/2-only upstream and the gRPC server as processes, and a raw
HTTP/2 client over a blocking socket (the ``h2`` state machine, so a test controls every frame:
resets, windows, stream counts)."""

from __future__ import annotations

import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes

from tests.support.gateway import Process, free_port, wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2UpstreamServer(Process):
    """``tests/support/h2_upstream.py``: speaks HTTP/2 only."""

    def __init__(self, tmp: Path, tls: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "tests.support.h2_upstream", "--port", str(self.port)]
        if tls:
            args += ["--cert", tls[0], "--key", tls[1]]
        super().__init__(args, tmp / f"h2-upstream-{self.port}.log")
        wait_for(lambda: "ready" in self.output() or not self.alive(), 15, "the HTTP/2 upstream")
        if not self.alive():
            raise RuntimeError(f"HTTP/2 upstream failed:\n{self.output()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class GrpcServer(Process):
    """``tests/support/grpc_server.py``: grpcio's server, h2c."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "tests.support.grpc_server", "--port", str(self.port)]
        super().__init__(args, tmp / f"grpc-{self.port}.log")
        wait_for(lambda: "ready" in self.output() or not self.alive(), 20, "the gRPC server")
        if not self.alive():
            raise RuntimeError(f"gRPC server failed:\n{self.output()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    ended: bool = False
    reset: int | None = None  # the error code of a RST_STREAM from the server


class _ClientConnection(H2Connection):
    """h2's client connection, reading on after a graceful GOAWAY (h2 alone treats every frame
    after any GOAWAY as an error, also those of the streams the GOAWAY lets finish)."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        if frame.error_code == 0:
            self.state_machine.state = state
        return result


class _UnlimitedConnection(_ClientConnection):
    """Opens streams past the server's SETTINGS_MAX_CONCURRENT_STREAMS (a misbehaving client)."""

    @property
    def open_outbound_streams(self) -> int:
        super().open_outbound_streams  # noqa: B018 - its cleanup of closed streams
        return 0


class RawH2Client:
    """An HTTP/2 client on a blocking socket, with h2's default windows (64 KiB). ``auto_ack=False``
    reopens them only when told (``ack``): a client that stops reading."""

    def __init__(
        self,
        port: int,
        tls: ssl.SSLContext | None = None,
        server_name: str = "localhost",
        auto_ack: bool = True,
        timeout: float = 10.0,
        respect_stream_limit: bool = True,
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = tls.wrap_socket(raw, server_hostname=server_name) if tls else raw
        connection = _ClientConnection if respect_stream_limit else _UnlimitedConnection
        self.conn = connection(H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.auto_ack = auto_ack
        self.responses: dict[int, Response] = {}
        self.server_settings: dict[int, int] = {}
        self.goaway: ConnectionTerminated | None = None
        self.closed = False
        self.unacked: dict[int, int] = {}
        self.flush()

    def __enter__(self) -> RawH2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        path: str,
        method: str = "GET",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        authority: str = "localhost",
        end: bool = True,
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
        fields += headers or []
        encoded = [(k.encode(), v.encode()) for k, v in fields]
        self.conn.send_headers(stream_id, encoded, end_stream=end and not body)
        self.responses[stream_id] = Response()
        if body:
            self.send(stream_id, body, end=end)
        self.flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """Sends ``data`` as the windows allow (reading meanwhile)."""
        while data:
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.read_once()
                continue
            chunk, data = data[:window], data[window:]
            self.conn.send_data(stream_id, chunk, end_stream=end and not data)
            self.flush()

    def end(self, stream_id: int) -> None:
        self.conn.end_stream(stream_id)
        self.flush()

    def reset(self, stream_id: int, code: int = 8) -> None:
        self.conn.reset_stream(stream_id, code)
        self.flush()

    def ack(self, stream_id: int) -> None:
        """Reopen the windows for what was received on ``stream_id`` (with ``auto_ack=False``)."""
        size = self.unacked.pop(stream_id, 0)
        if size:
            self.conn.acknowledge_received_data(size, stream_id)
            self.flush()

    def read_once(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            raise ConnectionError("the server closed the connection")
        for event in self.conn.receive_data(data):
            self._event(event)
        self.flush()

    def _event(self, event: Any) -> None:
        if isinstance(event, ResponseReceived):
            r = self.responses.setdefault(event.stream_id, Response())
            for k, v in event.headers:
                if k == b":status":
                    r.status = int(v)
                else:
                    r.headers[k.decode()] = v.decode()
        elif isinstance(event, InformationalResponseReceived):
            pass
        elif isinstance(event, DataReceived):
            self.responses.setdefault(event.stream_id, Response()).body += event.data
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                self.unacked[event.stream_id] = self.unacked.get(event.stream_id, 0) + event.flow_controlled_length
        elif isinstance(event, TrailersReceived):
            self.responses[event.stream_id].trailers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, StreamEnded):
            self.responses[event.stream_id].ended = True
        elif isinstance(event, StreamReset):
            self.responses.setdefault(event.stream_id, Response()).reset = int(event.error_code)
        elif isinstance(event, RemoteSettingsChanged):
            for code, change in event.changed_settings.items():
                self.server_settings[int(code)] = change.new_value
        elif isinstance(event, ConnectionTerminated):
            self.goaway = event

    def wait(self, predicate: Any, timeout: float = 10.0, what: str = "the server") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                self.read_once()
            except TimeoutError:
                continue

    def response(self, stream_id: int, timeout: float = 10.0) -> Response:
        r = self.responses[stream_id]
        self.wait(lambda: r.ended or r.reset is not None, timeout, f"the response on stream {stream_id}")
        return r

    def fetch(self, path: str, **kwargs: Any) -> Response:
        return self.response(self.request(path, **kwargs))

    @property
    def max_concurrent_streams(self) -> int | None:
        return self.server_settings.get(int(SettingCodes.MAX_CONCURRENT_STREAMS))
