"""W3C traceparent parsing: what is continued, what starts a new trace."""

from __future__ import annotations

import pytest

from agentgateway.core.trace import format_traceparent, parse_traceparent

VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_valid_and_round_trip():
    trace_id, parent, flags = parse_traceparent(VALID)  # type: ignore[misc]
    assert (trace_id, parent, flags) == (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 1)
    assert format_traceparent(trace_id, parent, True) == VALID
    assert format_traceparent(trace_id, parent, False).endswith(b"-00")


def test_future_version_may_carry_more_fields():
    assert parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever") is not None


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        b"0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736 -00f067aa0ba902b7-01",
        "00-４bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".encode(),
    ],
)
def test_invalid(value: bytes):
    assert parse_traceparent(value) is None
