"""PROXY protocol (HAProxy's, v1 text and v2 binary) on accepted connections, for
``frontendPolicies.proxyProtocol``: a load balancer in front writes one header naming the client's
address before the client's own bytes, and the gateway takes that address as the client's.

The header is read from the socket before the event loop gets it, byte-exact: it is peeked
first and only its own bytes are consumed, so what follows (a ClientHello, an HTTP request)
reaches TLS or HTTP untouched and TLS can start on the same socket. Bounded: a v1 line of at most
107 bytes, a v2 header of at most 16 + 512 bytes, within ``HEADER_TIMEOUT`` seconds.

- ``strict`` (the default): a connection without a header is closed. ``optional``: a connection
  whose first bytes cannot start a header is served as it is.
- ``version`` ``v2`` (default), ``v1`` or ``all``: another version is refused.
- A v2 ``LOCAL`` header (a health check of the balancer itself), ``UNKNOWN`` (v1) or an address
  family other than IPv4/IPv6: the connection keeps its real peer address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentgateway.config.settings import ProxyProtocolSettings

log = logging.getLogger("agentgateway.proxy_protocol")

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX = b"PROXY"
V1_MAX = 107
V2_MAX_BODY = 512
HEADER_TIMEOUT = 5.0

Address = tuple[str, int]


class ProxyHeaderError(ValueError):
    """Not a valid PROXY header (or one of a version the policy refuses)."""


def header_length(data: bytes, allow_v1: bool, allow_v2: bool) -> int | None:
    """How many bytes at the start of ``data`` are the PROXY header: None while more are needed
    (``data`` is a prefix of a header), 0 when ``data`` cannot start one."""
    if data[:12] == V2_SIGNATURE[: len(data[:12])]:
        if len(data) < 16:
            return None
        if not allow_v2:
            raise ProxyHeaderError("a PROXY protocol v2 header, but the policy accepts v1 only")
        if data[12] >> 4 != 2:
            raise ProxyHeaderError(f"unknown PROXY protocol version {data[12] >> 4}")
        if data[12] & 0x0F > 1:
            raise ProxyHeaderError(f"unknown PROXY protocol v2 command {data[12] & 0x0F}")
        body = int.from_bytes(data[14:16], "big")
        if body > V2_MAX_BODY:
            raise ProxyHeaderError(f"PROXY protocol v2 header of {body} bytes exceeds {V2_MAX_BODY}")
        return 16 + body
    if data[:5] == _V1_PREFIX[: len(data[:5])]:
        if len(data) >= 5 and not allow_v1:
            raise ProxyHeaderError("a PROXY protocol v1 header, but the policy accepts v2 only")
        end = data.find(b"\r\n", 0, V1_MAX)
        if end >= 0:
            return end + 2
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"PROXY protocol v1 header longer than {V1_MAX} bytes")
        return None
    return 0


def parse_header(header: bytes) -> Address | None:
    """The client address a complete header names; None when it names none to use (v2 LOCAL,
    v1 UNKNOWN, families other than IPv4 and IPv6)."""
    if header.startswith(V2_SIGNATURE):
        return _parse_v2(header)
    return _parse_v1(header)


def _parse_v2(header: bytes) -> Address | None:
    if header[12] & 0x0F == 0:
        return None  # LOCAL: the balancer's own connection
    family, transport = header[13] >> 4, header[13] & 0x0F
    body = header[16:]
    if family in (1, 2) and transport != 1:
        raise ProxyHeaderError("PROXY protocol v2 header for a transport other than a stream")
    if family == 1:
        if len(body) < 12:
            raise ProxyHeaderError("truncated PROXY protocol v2 IPv4 addresses")
        return str(ipaddress.IPv4Address(body[:4])), int.from_bytes(body[8:10], "big")
    if family == 2:
        if len(body) < 36:
            raise ProxyHeaderError("truncated PROXY protocol v2 IPv6 addresses")
        return _address(ipaddress.IPv6Address(body[:16])), int.from_bytes(body[32:34], "big")
    if family in (0, 3):
        return None  # unspecified, or a Unix socket: no IP address to use
    raise ProxyHeaderError(f"unknown PROXY protocol v2 address family {family}")


def _parse_v1(header: bytes) -> Address | None:
    try:
        text = header[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY protocol v1 header is not ASCII") from None
    parts = text.split(" ")
    if parts[0] != "PROXY" or len(parts) < 2:
        raise ProxyHeaderError("malformed PROXY protocol v1 header")
    if parts[1] == "UNKNOWN":
        return None
    if parts[1] not in ("TCP4", "TCP6") or len(parts) != 6:
        raise ProxyHeaderError("malformed PROXY protocol v1 header")
    kind = ipaddress.IPv4Address if parts[1] == "TCP4" else ipaddress.IPv6Address
    try:
        source = kind(parts[2])
        kind(parts[3])
    except ValueError:
        raise ProxyHeaderError("invalid address in PROXY protocol v1 header") from None
    if isinstance(source, ipaddress.IPv6Address) and source.scope_id is not None:
        raise ProxyHeaderError("invalid address in PROXY protocol v1 header")
    ports = parts[4:6]
    for port in ports:
        if not port.isdigit() or len(port) > 5 or (len(port) > 1 and port[0] == "0") or int(port) > 65535:
            raise ProxyHeaderError("invalid port in PROXY protocol v1 header")
    return _address(source), int(ports[0])


def _address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The client address as the gateway writes it: an IPv4-mapped IPv6 address (a dual-stack
    balancer's IPv4 client) as the IPv4 address, as X-Forwarded-For entries are read, so CEL
    ``source.address``, rate-limit keys and the access log name one client one way."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class ProxyProtocolListener:
    """Accepts connections on a listening socket itself, reads each one's PROXY header, then
    gives the socket to the event loop (TLS started there when ``ssl_context`` is set) with the
    protocol ``factory`` makes for the client address the header named."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[Address | None], asyncio.Protocol],
        settings: Callable[[], ProxyProtocolSettings | None],
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float | None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.settings = settings
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self.pending: set[_HeaderReader] = set()
        self._handovers: set[asyncio.Task[None]] = set()
        self.closed = False
        loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for reader in list(self.pending):
            reader.fail("")

    def _accept(self) -> None:
        for _ in range(64):  # a burst at most per wakeup, then the loop's other work
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            conn.setblocking(False)
            _HeaderReader(self, conn).start()

    def start_hand_over(self, conn: socket.socket, client: Address | None) -> None:
        task = self.loop.create_task(self.hand_over(conn, client))
        self._handovers.add(task)
        task.add_done_callback(self._handovers.discard)

    async def hand_over(self, conn: socket.socket, client: Address | None) -> None:
        try:
            await self.loop.connect_accepted_socket(
                lambda: self.factory(client),
                conn,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.handshake_timeout if self.ssl_context is not None else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(OSError):
                conn.close()


class _HeaderReader:
    __slots__ = ("owner", "conn", "read", "timer", "done")

    def __init__(self, owner: ProxyProtocolListener, conn: socket.socket) -> None:
        self.owner = owner
        self.conn = conn
        self.read = b""  # header bytes consumed so far
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def start(self) -> None:
        owner = self.owner
        owner.pending.add(self)
        self.timer = owner.loop.call_later(HEADER_TIMEOUT, self.fail, "no PROXY protocol header in time")
        owner.loop.add_reader(self.conn.fileno(), self.readable)

    def readable(self) -> None:
        settings = self.owner.settings()
        if settings is None:
            self.finish(None)  # the policy was removed by a reload: serve as is
            return
        try:
            peeked = self.conn.recv(V1_MAX + 16 + V2_MAX_BODY - len(self.read), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(f"reading the PROXY protocol header: {exc}")
            return
        if not peeked:
            self.fail("the connection closed before its PROXY protocol header")
            return
        data = self.read + peeked
        try:
            length = header_length(data, settings.allow_v1, settings.allow_v2)
            if length == 0:
                if self.read or settings.strict:
                    raise ProxyHeaderError("the connection does not start with a PROXY protocol header")
                self.finish(None)  # optional: not a header; every byte is still unread
                return
            if length is None:
                if settings.strict or data.startswith((V2_SIGNATURE, _V1_PREFIX)):
                    # Everything peeked is header: consume it, so the socket is not readable
                    # again for the same bytes.
                    self.read += self.conn.recv(len(peeked))
                else:
                    # Optional, and a few bytes that may yet be the client's own ("P" of POST):
                    # leave them unread and look again shortly.
                    self._look_again()
                return
            self.read += self.conn.recv(length - len(self.read))
            if len(self.read) != length:
                return  # (cannot happen after a peek; read on)
            client = parse_header(self.read)
        except ProxyHeaderError as exc:
            self.fail(str(exc))
            return
        except OSError as exc:
            self.fail(f"reading the PROXY protocol header: {exc}")
            return
        self.finish(client)

    def _look_again(self) -> None:
        loop = self.owner.loop
        loop.remove_reader(self.conn.fileno())
        loop.call_later(0.01, self._rearm)

    def _rearm(self) -> None:
        if not self.done:
            self.owner.loop.add_reader(self.conn.fileno(), self.readable)

    def _stop(self) -> None:
        self.done = True
        owner = self.owner
        owner.pending.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        with contextlib.suppress(OSError, ValueError):
            owner.loop.remove_reader(self.conn.fileno())

    def finish(self, client: Address | None) -> None:
        if self.done:
            return
        self._stop()
        self.owner.start_hand_over(self.conn, client)

    def fail(self, reason: str) -> None:
        if self.done:
            return
        self._stop()
        if reason:
            peer = "?"
            with contextlib.suppress(OSError):
                host, port = self.conn.getpeername()[:2]
                peer = f"{host}:{port}"
            log.warning("connection from %s refused: %s", peer, reason)
        with contextlib.suppress(OSError):
            self.conn.close()
