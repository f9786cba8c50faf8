"""A TCP echo server in a thread on 127.0.0.1: it echoes every byte, and when its client
half-closes it finishes echoing and half-closes too (so a relay's half-close is visible). With
``banner`` it speaks first. With ``tls`` (a server ``SSLContext``) it terminates TLS first."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        owner = self.server.owner
        owner.connections += 1
        try:
            if owner.tls is not None:
                sock = owner.tls.wrap_socket(sock, server_side=True)
                owner.server_names.append(getattr(sock, "agw_test_sni", None))
            if owner.banner:
                sock.sendall(owner.banner)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                owner.received += len(data)
                sock.sendall(data)
            if isinstance(sock, ssl.SSLSocket):
                sock = sock.unwrap()
            sock.shutdown(socket.SHUT_WR)
            owner.half_closes += 1
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: TcpEchoServer


class TcpEchoServer:
    def __init__(self, banner: bytes = b"", tls: ssl.SSLContext | None = None) -> None:
        self.banner = banner
        self.tls = tls
        self.connections = 0
        self.received = 0
        self.half_closes = 0
        self.server_names: list[str | None] = []
        if tls is not None:
            tls.sni_callback = self._sni
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @staticmethod
    def _sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sslobj.agw_test_sni = name  # type: ignore[attr-defined]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
