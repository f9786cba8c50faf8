"""The AWS event-stream decoder against botocore's own parser (differential), split feeds and
corrupted frames."""

from __future__ import annotations

import zlib

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgateway.llm.eventstream import EventStreamDecoder, EventStreamError, encode_frame

HEADERS = st.dictionaries(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz:-", min_size=1, max_size=20),
    st.text(max_size=40),
    max_size=4,
)


def botocore_frames(data: bytes) -> list[tuple[dict[str, object], bytes]]:
    buf = EventStreamBuffer()
    buf.add_data(data)
    return [(dict(m.headers), m.payload) for m in buf]


@settings(max_examples=150, deadline=None)
@given(frames=st.lists(st.tuples(HEADERS, st.binary(max_size=300)), min_size=1, max_size=5), cut=st.integers(1, 50))
def test_matches_botocore(frames: list[tuple[dict[str, str], bytes]], cut: int) -> None:
    data = b"".join(encode_frame(h, p) for h, p in frames)
    expected = botocore_frames(data)
    decoder = EventStreamDecoder()
    got = []
    for i in range(0, len(data), cut):  # any split of the byte stream
        got += [(f.headers, f.payload) for f in decoder.feed(data[i : i + cut])]
    assert got == expected
    assert decoder.pending == 0


def test_typed_headers_from_botocore_vectors() -> None:
    # A frame with int32, bool, bytes and timestamp headers, encoded by hand per the spec.
    import struct

    head = (
        b"\x05int32"
        + b"\x04"
        + struct.pack(">i", -7)
        + b"\x04flag"
        + b"\x00"
        + b"\x03raw"
        + b"\x06"
        + struct.pack(">H", 3)
        + b"abc"
        + b"\x02ts"
        + b"\x08"
        + struct.pack(">q", 1700000000000)
    )
    payload = b'{"x":1}'
    total = 16 + len(head) + len(payload)
    prelude = struct.pack(">II", total, len(head))
    start = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    data = start + struct.pack(">I", zlib.crc32(start))
    [frame] = EventStreamDecoder().feed(data)
    assert frame.headers == {"int32": -7, "flag": True, "raw": b"abc", "ts": 1700000000000}
    assert frame.payload == payload
    [(bh, bp)] = botocore_frames(data)
    assert bh["int32"] == -7 and bh["flag"] is True and bp == payload


def test_crc_errors() -> None:
    data = bytearray(encode_frame({":event-type": "x"}, b"{}"))
    bad_payload = bytes(data[:-5]) + b"X" + bytes(data[-4:])
    with pytest.raises(EventStreamError, match="message CRC"):
        EventStreamDecoder().feed(bad_payload)
    bad_prelude = bytes([data[0] ^ 1]) + bytes(data[1:])
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bad_prelude)
