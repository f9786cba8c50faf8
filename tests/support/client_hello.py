"""A reference encoder of TLS ClientHellos, field by field (RFC 8446 §4.1.2, RFC 6066 §3), to
build well-formed and malformed hellos for the SNI parser's tests."""

from __future__ import annotations

import struct


def _vec(size: int, data: bytes) -> bytes:
    return len(data).to_bytes(size, "big") + data


def sni_extension(*names: tuple[int, bytes]) -> bytes:
    entries = b"".join(bytes([kind]) + _vec(2, name) for kind, name in names)
    return struct.pack(">H", 0) + _vec(2, _vec(2, entries))


def hello_body(extensions: list[bytes] | None, session_id: bytes = b"", suites: bytes = b"\x13\x01\x00\x2f") -> bytes:
    body = b"\x03\x03" + bytes(32) + _vec(1, session_id) + _vec(2, suites) + _vec(1, b"\x00")
    if extensions is not None:
        body += _vec(2, b"".join(extensions))
    return body


def records(body: bytes, cuts: list[int] | None = None, version: bytes = b"\x03\x01") -> bytes:
    """The handshake message ``body`` (a ClientHello) in handshake records cut at ``cuts``."""
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    points = sorted({c for c in (cuts or []) if 0 < c < len(message)})
    out = b""
    start = 0
    for end in [*points, len(message)]:
        fragment = message[start:end]
        while fragment:
            piece, fragment = fragment[: 1 << 14], fragment[1 << 14 :]
            out += b"\x16" + version + _vec(2, piece)
        start = end
    return out


def other_extension(kind: int, data: bytes) -> bytes:
    return struct.pack(">H", kind) + _vec(2, data)
