"""The server name (SNI) of a TLS ClientHello, read from the raw bytes without terminating TLS.

A TLS-passthrough listener routes a connection by the name its client asks for, before a single
byte goes to a backend, so it reads the first handshake message itself (RFC 8446 §4.1.2, RFC 5246
§7.4.1.2) and the ``server_name`` extension (RFC 6066 §3). The parser is strict and bounded:

- the hello may be split over several handshake records (as TLS allows), each at most 2^14
  bytes, and the whole message at most ``MAX_HELLO`` bytes; anything larger is refused without
  waiting for it; the records are read as they arrive (``HelloReader``), each byte once;
- every length must fit inside its parent; a record of another type before the hello, a
  handshake message that is not a ClientHello, SSLv2-style hellos, a repeated extension, a name
  list with two host names, an empty or invalid host name: all are malformed;
- a ClientHello without the extension has no name (``server_name`` is None).

``parse_client_hello`` returns None while more bytes are needed, the parsed hello once complete,
and raises ``HelloError`` as soon as the bytes cannot be a valid one.
"""

from __future__ import annotations

import re

# The largest ClientHello accepted (the handshake message, headers excluded). Browsers send
# 0.5-2 KiB (post-quantum key shares included); session tickets and PSKs add a few KiB.
MAX_HELLO = 16 * 1024
_MAX_RECORD = 1 << 14
_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_SERVER_NAME = 0x0000
_HOST_NAME = 0x00
# A DNS name as SNI carries it (RFC 6066: ASCII, no trailing dot); underscores are tolerated as
# TLS libraries do. Compared in lower case.
_LABEL = rb"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"
_VALID_NAME = re.compile(_LABEL + rb"(?:\." + _LABEL + rb")*").fullmatch


class HelloError(ValueError):
    """The bytes are not a valid TLS ClientHello (the message says why)."""


class ClientHello:
    """What routing needs of a complete ClientHello: the server name, lower-cased (None without
    the extension), and how many bytes of the stream its records took."""

    __slots__ = ("server_name", "length")

    def __init__(self, server_name: bytes | None, length: int) -> None:
        self.server_name = server_name
        self.length = length


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello at the start of ``data``; None while it is incomplete."""
    return HelloReader().feed(data)


class HelloReader:
    """Reads the ClientHello at the start of a stream as its bytes arrive. Each ``feed`` looks
    only at the bytes it brings: records already read are not read again, so a hello cut into
    thousands of one-byte records (which TLS allows) and sent one record per packet costs time
    in proportion to its size. (Parsing the whole buffer again on each read cost its size times
    the number of reads: a client dripping tiny records kept a worker's CPU busy.)"""

    __slots__ = ("_buf", "_consumed", "_message", "_needed")

    def __init__(self) -> None:
        self._buf = bytearray()  # bytes after the last complete record
        self._consumed = 0  # stream bytes of the complete records
        self._message = bytearray()  # the handshake message, from the records' fragments
        self._needed = -1  # the handshake message's length, once its header has been read

    def feed(self, data: bytes) -> ClientHello | None:
        """The hello once ``data`` completes it, None while more is needed; HelloError as soon
        as the bytes read so far cannot be a valid one."""
        buf = self._buf
        buf += data
        while True:
            first = self._consumed == 0
            if len(buf) < 5:
                if first and buf and buf[0] != _HANDSHAKE:
                    raise HelloError(_not_tls(bytes(buf)))
                return None
            kind, major, length = buf[0], buf[1], int.from_bytes(buf[3:5], "big")
            if kind != _HANDSHAKE:
                raise HelloError(_not_tls(bytes(buf)) if first else "a non-handshake record inside the ClientHello")
            if major != 3:
                raise HelloError(f"unknown record version {major}.{buf[2]}")
            if length == 0 or length > _MAX_RECORD:
                raise HelloError(f"invalid handshake record length {length}")
            if first and length >= 4 and len(buf) >= 9:
                # Refuse an oversized or foreign message from its header, before waiting for it.
                _check_header(bytes(buf[5:9]))
            if len(buf) - 5 < length:
                return None
            message = self._message
            message += buf[5 : 5 + length]
            del buf[: 5 + length]
            self._consumed += 5 + length
            needed = self._needed
            if needed < 0 and len(message) >= 4:
                needed = self._needed = _check_header(bytes(message[:4]))
            if needed >= 0 and len(message) >= 4 + needed:
                return ClientHello(_server_name(memoryview(bytes(message))[4 : 4 + needed]), self._consumed)


def _not_tls(data: bytes) -> str:
    if data[:1] == b"\x80" or data[:1] == b"\x00":
        return "not a TLS handshake (an SSLv2-style hello is not supported)"
    return "not a TLS handshake"


def _check_header(header: bytes) -> int:
    if header[0] != _CLIENT_HELLO:
        raise HelloError(f"the first handshake message is of type {header[0]}, not ClientHello")
    needed = int.from_bytes(header[1:4], "big")
    if needed > MAX_HELLO:
        raise HelloError(f"ClientHello of {needed} bytes exceeds the limit of {MAX_HELLO}")
    return needed


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if n > len(self.data) - self.pos:
            raise HelloError(f"truncated ClientHello ({what})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, size: int, what: str) -> memoryview:
        return self.take(self.number(size, what), what)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _server_name(body: memoryview) -> bytes | None:
    r = _Reader(body)
    version = r.number(2, "version")
    if version >> 8 != 3:
        raise HelloError(f"unknown client version {version:#06x}")
    r.take(32, "random")
    if len(r.vector(1, "session id")) > 32:
        raise HelloError("session id longer than 32 bytes")
    suites = r.vector(2, "cipher suites")
    if not suites or len(suites) % 2:
        raise HelloError("invalid cipher suite list")
    if not r.vector(1, "compression methods"):
        raise HelloError("empty compression method list")
    if r.left == 0:
        return None  # no extensions at all
    extensions = _Reader(r.vector(2, "extensions"))
    if r.left:
        raise HelloError("bytes after the extensions")
    seen: set[int] = set()
    name: bytes | None = None
    while extensions.left:
        kind = extensions.number(2, "extension type")
        data = extensions.vector(2, "extension data")
        if kind in seen:
            raise HelloError(f"extension {kind} appears twice")
        seen.add(kind)
        if kind == _SERVER_NAME:
            name = _host_name(data)
    return name


def _host_name(data: memoryview) -> bytes | None:
    r = _Reader(data)
    names = _Reader(r.vector(2, "server name list"))
    if r.left:
        raise HelloError("bytes after the server name list")
    host: bytes | None = None
    while names.left:
        kind = names.number(1, "server name type")
        value = bytes(names.vector(2, "server name"))
        if kind != _HOST_NAME:
            continue  # a name type this gateway does not route by (none is defined today)
        if host is not None:
            raise HelloError("two host names in the server name extension")
        if len(value) > 255 or _VALID_NAME(value) is None:
            raise HelloError("invalid host name in the server name extension")
        host = value.lower()
    if host is None and not data[2:]:
        raise HelloError("empty server name list")
    return host
