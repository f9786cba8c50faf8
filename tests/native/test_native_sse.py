"""The native SSE decoder and encoder: API behaviour, and differential tests against `reference`
over every way of splitting a stream into chunks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgateway._native import (
    SseComment,
    SseDecoder,
    SseError,
    SseEvent,
    encode_sse_comment,
    encode_sse_event,
)
from tests.native import reference
from tests.native.reference import RefComment, RefEvent, RefSseResult

# --- API ---------------------------------------------------------------------------------------


def test_feed_and_state() -> None:
    decoder = SseDecoder()
    assert decoder.max_event_size == 16 * 1024 * 1024
    assert (decoder.last_event_id, decoder.retry) == (None, None)
    assert decoder.feed(b"event: endpoint\ndata: /messages?session_id=1\n\n: ping\nid: 7\nretry: 1500\nda") == [
        SseEvent(b"/messages?session_id=1", "endpoint")
    ]
    assert decoder.retry == 1500
    assert decoder.last_event_id is None  # "id: 7" takes effect at the next blank line
    (event,) = decoder.feed(b"ta: {}\r\n\r\n")
    assert (event.data, event.event, event.id) == (b"{}", "message", "7")
    assert decoder.last_event_id == "7"
    assert repr(event) == "SseEvent(data=b'{}', event='message', id='7')"


def test_priming_event_without_data_updates_id_only() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"id: prime-1\nretry: 3000\n\n") == []
    assert (decoder.last_event_id, decoder.retry) == ("prime-1", 3000)


def test_comments_are_opt_in() -> None:
    decoder = SseDecoder()
    assert decoder.feed_with_comments(b": keep-alive\n\ndata: x\n\n") == [
        SseComment(b"keep-alive"),
        SseEvent(b"x"),
    ]
    assert decoder.feed(b":keep-alive\n\n") == []
    assert repr(SseComment(b"a")) == "SseComment(text=b'a')"


def test_finish_reports_discarded_event_and_resets_stream() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"id: 1\n\ndata: half") == []
    assert decoder.finish() is True
    assert decoder.finish() is False
    # A new stream (reconnection) may start with a BOM and keeps the last event id.
    assert decoder.feed(b"\xef\xbb\xbfdata: next\n\n") == [SseEvent(b"next", id="1")]


def test_seeded_last_event_id() -> None:
    decoder = SseDecoder(last_event_id="41")
    assert decoder.last_event_id == "41"
    assert decoder.feed(b"data: a\n\n") == [SseEvent(b"a", id="41")]


def test_size_bound() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        SseDecoder(max_event_size=15)
    decoder = SseDecoder(max_event_size=32)
    assert decoder.feed(b"data: " + b"x" * 26 + b"\n") == []
    with pytest.raises(SseError, match=r"max_event_size \(32 bytes"):
        decoder.feed(b"data: y\n\n")
    with pytest.raises(SseError):  # the stream stays failed
        decoder.feed(b"\n")
    decoder.finish()
    assert decoder.feed(b"data: ok\n\n") == [SseEvent(b"ok")]
    endless = SseDecoder(max_event_size=16)
    with pytest.raises(SseError):
        for _ in range(100):
            endless.feed(b"xxxxxxxx")


def test_event_equality() -> None:
    assert SseEvent(b"a") == SseEvent(b"a", "message", None)
    assert SseEvent(b"a") != SseEvent(b"a", "other")
    assert SseEvent(b"a", id="1") != SseEvent(b"a")
    assert SseEvent(b"a") != "a"


def test_encode() -> None:
    assert encode_sse_event(b'{"jsonrpc":"2.0"}') == b'data: {"jsonrpc":"2.0"}\n\n'
    assert encode_sse_event(b"a\r\nb\rc\n", event="message", id="9", retry=0) == (
        b"event: message\nid: 9\nretry: 0\ndata: a\ndata: b\ndata: c\ndata:\n\n"
    )
    assert encode_sse_comment() == b":\n"
    assert encode_sse_comment(b"ping\nagain") == b": ping\n: again\n"
    for kwargs in [{"event": "a\nb"}, {"id": "a\rb"}, {"id": "a\0b"}]:
        with pytest.raises(ValueError):
            encode_sse_event(b"x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        encode_sse_event(b"x", retry=-1)


# --- Differential tests against the reference ----------------------------------------------------

field_names = st.sampled_from([b"data", b"data", b"event", b"id", b"retry", b"", b"dat", b"Data", b"x"])
value_pieces = st.sampled_from(
    [b"a", b" ", b":", b"1", b"90", b"\0", b"\xff", b"\xc3", b"\xa9", b"\xef\xbb\xbf", b"\xe2\x82", b"{}"]
)
values = st.lists(value_pieces, max_size=4).map(b"".join)
lines = st.one_of(
    st.just(b""),
    st.tuples(field_names, st.sampled_from([b":", b": ", b""]), values).map(b"".join),
)
terminators = st.sampled_from([b"\n", b"\r", b"\r\n"])


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    bom = draw(st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xef\xbb"]))
    body = b"".join(line + end for line, end in draw(st.lists(st.tuples(lines, terminators), max_size=12)))
    tail = draw(st.sampled_from([b"", b"", b"data: tail"]))
    return bom + body + tail


max_sizes = st.sampled_from([16, 24, 40, 1 << 24])


def as_items(items: list[SseEvent | SseComment]) -> list[RefEvent | RefComment]:
    return [
        RefComment(item.text) if isinstance(item, SseComment) else RefEvent(item.data, item.event, item.id)
        for item in items
    ]


def native_decode(chunks: list[bytes], max_event_size: int) -> RefSseResult:
    decoder = SseDecoder(max_event_size=max_event_size)
    items: list[SseEvent | SseComment] = []
    for chunk in chunks:
        try:
            items.extend(decoder.feed_with_comments(chunk))
        except SseError:
            return RefSseResult(as_items(items), True, False, decoder.last_event_id, decoder.retry)
    state = (decoder.last_event_id, decoder.retry)
    discarded = decoder.finish()
    return RefSseResult(as_items(items), False, discarded, *state)


def check_same(got: RefSseResult, expected: RefSseResult) -> None:
    if expected.too_large:
        # Events completed in the chunk that broke the bound are lost with it.
        assert got.too_large
        assert got.items == expected.items[: len(got.items)]
    else:
        assert got == expected


def chunkings(stream: bytes) -> list[list[bytes]]:
    whole = [[stream], [b"", stream, b""], [bytes([b]) for b in stream]]
    return whole + [[stream[:i], stream[i:]] for i in range(1, len(stream))]


@settings(max_examples=200, deadline=None)
@given(sse_streams(), max_sizes)
def test_decoder_matches_reference_at_every_split(stream: bytes, max_event_size: int) -> None:
    expected = reference.decode_sse(stream, max_event_size)
    for chunks in chunkings(stream):
        check_same(native_decode(chunks, max_event_size), expected)


@settings(max_examples=200, deadline=None)
@given(sse_streams(), st.lists(st.integers(0, 200), max_size=8), max_sizes)
def test_decoder_matches_reference_on_random_chunks(stream: bytes, cuts: list[int], max_event_size: int) -> None:
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    check_same(native_decode(chunks, max_event_size), reference.decode_sse(stream, max_event_size))


no_line_breaks = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=40) | st.lists(st.sampled_from([b"a", b"\r", b"\n", b" ", b":"]), max_size=10).map(b"".join),
    st.none() | no_line_breaks,
    st.none() | no_line_breaks.filter(lambda s: "\0" not in s),
    st.none() | st.integers(0, 2**64 - 1),
)
def test_encoder_matches_reference_and_round_trips(
    data: bytes, event: str | None, id: str | None, retry: int | None
) -> None:
    encoded = encode_sse_event(data, event=event, id=id, retry=retry)
    assert encoded == reference.encode_sse(data, event, id, retry)
    decoded = reference.decode_sse(encoded)
    normalized = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert decoded.items == [RefEvent(normalized, event or "message", id or None)]
    assert decoded.retry == retry
    assert not decoded.discarded
