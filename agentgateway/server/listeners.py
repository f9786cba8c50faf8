"""Listening sockets (one per bind per worker, shared with SO_REUSEPORT) and TLS by SNI."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from agentgateway.config.ir import BindRuntime

LISTEN_BACKLOG = 4096


def listen_socket(port: int, host: str = "0.0.0.0") -> socket.socket:
    """A listening socket that other workers can bind too: the kernel spreads connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def set_keepalive(sock: socket.socket, keepalive: tuple[int, int, int] | None) -> None:
    """TCP keepalive on a listening socket: the connections it accepts inherit it (Linux copies
    the listener's options into each accepted socket). None: off."""
    if keepalive is None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        return
    idle, interval, count = keepalive
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


def check_port_free(port: int, host: str = "0.0.0.0") -> str | None:
    """Why ``port`` cannot be listened on by the workers, or None. Binds without listening, so
    no connection is ever queued on this probe socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror}"
    finally:
        sock.close()
    return None


def sni_selector(
    current: Callable[[], BindRuntime],
) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], None]:
    """An SNI callback that switches the handshake to the certificate of the listener the client
    named, reading the bind's *current* config so a reload changes certificates in place."""

    def select(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        runtime = current()
        listener = runtime.listeners.select(server_name.encode()) if server_name else None
        if listener is None or listener.ssl_context is None:
            listener = runtime.default_listener
        if listener.ssl_context is not None:
            sslobj.context = listener.ssl_context
        # Read back by the connection to pick the same listener for routing.
        sslobj.agw_sni = server_name  # type: ignore[attr-defined]

    return select
