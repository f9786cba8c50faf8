"""The AWS event-stream binary framing (``application/vnd.amazon.eventstream``), incrementally.

A frame: total length (u32), headers length (u32), CRC32 of those 8 bytes (the prelude CRC),
headers, payload, and a CRC32 of everything before it (the message CRC); integers big-endian.
A header: name length (u8), name, value type (u8), value. Bedrock's ConverseStream sends events
with the headers ``:event-type``, ``:message-type`` (``event`` or ``exception``) and
``:content-type``, and a JSON payload.
"""

from __future__ import annotations

import struct
import zlib

_PRELUDE = struct.Struct(">III")
_MAX_FRAME = 16 * 1024 * 1024
_MIN_FRAME = 16  # prelude + message CRC

HeaderValue = bool | int | bytes | str


class EventStreamError(ValueError):
    """A frame that is malformed or fails its CRC; the stream cannot be trusted past it."""


class Frame:
    __slots__ = ("headers", "payload")

    def __init__(self, headers: dict[str, HeaderValue], payload: bytes) -> None:
        self.headers = headers
        self.payload = payload

    def header(self, name: str) -> str:
        value = self.headers.get(name)
        return value if isinstance(value, str) else ""

    def __repr__(self) -> str:
        return f"Frame({self.headers!r}, {self.payload!r})"


def _headers(data: bytes) -> dict[str, HeaderValue]:
    """A frame's header block. The CRCs only say the frame arrived as the provider wrote it: a
    value that runs past the block, or a name or string that is not UTF-8, is malformed."""
    try:
        return _read_headers(data)
    except (struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed headers: {exc}") from None


def _read_headers(data: bytes) -> dict[str, HeaderValue]:
    out: dict[str, HeaderValue] = {}
    i = 0
    n = len(data)
    while i < n:
        name_len = data[i]
        i += 1
        name = data[i : i + name_len].decode("utf-8")
        i += name_len
        if i >= n:
            raise EventStreamError("header without a value type")
        kind = data[i]
        i += 1
        value: HeaderValue
        if kind == 0:
            value = True
        elif kind == 1:
            value = False
        elif kind == 2:
            value = struct.unpack_from(">b", data, i)[0]
            i += 1
        elif kind == 3:
            value = struct.unpack_from(">h", data, i)[0]
            i += 2
        elif kind == 4:
            value = struct.unpack_from(">i", data, i)[0]
            i += 4
        elif kind in (5, 8):  # int64, timestamp (ms since the epoch)
            value = struct.unpack_from(">q", data, i)[0]
            i += 8
        elif kind in (6, 7):  # bytes, string: u16 length then the bytes
            (length,) = struct.unpack_from(">H", data, i)
            i += 2
            raw = data[i : i + length]
            if len(raw) != length:
                raise EventStreamError("header value runs past the headers")
            i += length
            value = raw.decode("utf-8") if kind == 7 else bytes(raw)
        elif kind == 9:  # uuid
            value = bytes(data[i : i + 16])
            i += 16
        else:
            raise EventStreamError(f"unknown header value type {kind}")
        if i > n:
            raise EventStreamError("header value runs past the headers")
        out[name] = value
    return out


class EventStreamDecoder:
    """Bytes in (any split), whole frames out; CRCs checked."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        while len(buf) >= 12:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, 0)
            if zlib.crc32(bytes(buf[:8])) != prelude_crc:
                raise EventStreamError("prelude CRC mismatch")
            if total < _MIN_FRAME or total > _MAX_FRAME or headers_len > total - _MIN_FRAME:
                raise EventStreamError(f"invalid frame length {total} (headers {headers_len})")
            if len(buf) < total:
                break
            frame = bytes(buf[:total])
            del buf[:total]
            (message_crc,) = struct.unpack_from(">I", frame, total - 4)
            if zlib.crc32(frame[:-4]) != message_crc:
                raise EventStreamError("message CRC mismatch")
            headers = _headers(frame[12 : 12 + headers_len])
            frames.append(Frame(headers, frame[12 + headers_len : -4]))
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One frame with string headers (what a provider sends; used by tests and fakes)."""
    head = b"".join(
        bytes([len(k.encode())]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
        for k, v in headers.items()
    )
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    start = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return start + struct.pack(">I", zlib.crc32(start))
