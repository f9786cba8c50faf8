"""Servers on raw sockets for the attack tests: what a hostile or scripted peer writes, byte for
byte, where a library would normalize it."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.gateway import free_port


class RawServer:
    """A server on raw sockets, in a thread: accepts until ``close`` and hands each connection to
    ``serve`` (with ``threaded``, each in a thread of its own). Subclasses set their state before
    calling ``__init__``, which starts accepting."""

    threaded = False
    timeout = 10.0

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.sock.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(self.timeout)
            self._conns.append(conn)
            if self.threaded:
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
            else:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ValueError):
            self.serve(conn)
        if conn in self._conns:
            self._conns.remove(conn)

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class ScriptedProvider(RawServer):
    """An LLM provider that answers every request with ``answer`` (status, content type, body)
    and closes the connection after it; the last request's path and body are kept."""

    def __init__(self) -> None:
        self.answer: tuple[int, str, bytes] = (200, "application/json", b"{}")
        self.last_path = ""
        self.last_body = b""
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next((int(x.split(b":", 1)[1]) for x in lines if x.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            more = conn.recv(65536)
            if not more:
                return
            body += more
        self.last_path = lines[0].split(b" ")[1].decode()
        self.last_body = body
        status, content_type, data = self.answer
        head_out = f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n"
        conn.sendall(head_out.encode() + data)
