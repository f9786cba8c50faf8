"""``parse_tracestate``: the client's tracestate as spans record it (W3C Trace Context §3.3)."""

from __future__ import annotations

import pytest

from agentgateway.core.trace import parse_tracestate


def test_members_are_joined_over_fields_and_kept_in_order() -> None:
    assert parse_tracestate([b"a=1,b=2", b" c=3 "]) == b"a=1,b=2,c=3"
    assert parse_tracestate([b"a=1,,  ,b=2"]) == b"a=1,b=2"
    assert parse_tracestate([b"tenant@vendor=x y", b"k/v*_-=1"]) == b"tenant@vendor=x y,k/v*_-=1"
    assert parse_tracestate([b""]) is None


@pytest.mark.parametrize(
    "value",
    [b"v=\xff", b"V=1", b"a", b"a=", b"=1", b"a=b=c", b"a=x\x00", b"a=\t1", b"a=" + b"x" * 257],
)
def test_a_malformed_member_drops_the_whole_state(value: bytes) -> None:
    assert parse_tracestate([b"ok=1," + value]) is None


def test_bounds_drop_members_from_the_right() -> None:
    many = b",".join(b"k%d=v" % i for i in range(40))
    kept = parse_tracestate([many])
    assert kept is not None and kept.split(b",") == [b"k%d=v" % i for i in range(32)]
    long = [b"a%d=" % i + b"x" * 200 for i in range(5)]
    kept = parse_tracestate([b",".join(long)])
    assert kept == b",".join(long[:2]) and len(kept) <= 512
