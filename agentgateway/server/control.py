"""Supervisor ⇄ worker messages: length-prefixed JSON frames over a Unix socketpair."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson

_HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message)
    return _HEADER.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None when the other side has gone."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME:
            raise ValueError(f"control frame of {size} bytes")
        body = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message = orjson.loads(body)
    assert isinstance(message, dict)
    return message
