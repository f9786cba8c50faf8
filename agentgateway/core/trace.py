"""W3C trace context (``traceparent``, ``tracestate``) of one request as the gateway continues
it, and the spans it records while serving it.

A request carries one ``RequestTrace`` (``RequestCtx.trace``) when tracing is configured. The
gateway's own span for the request (the server span) has the id ``span_id``; work the gateway
does on its own (the upstream call, an ext_authz call, an MCP target, an LLM provider) is a
child ``Span`` of it, whose id is what the called service sees as its parent. Spans are recorded
only for sampled requests; an unsampled request still carries ids, so the trace continues
downstream with the sampled flag cleared.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable

# OTLP span kinds (opentelemetry.proto.trace.v1.Span.SpanKind).
INTERNAL, SERVER, CLIENT = 1, 2, 3
# OTLP status codes: unset, ok, error.
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"

# version-traceid-parentid-flags, lower-case hex only (W3C Trace Context §3.2). A version other
# than 00 may append fields after the flags, which a 00 parser ignores.
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?")

# A tracestate list member (W3C Trace Context §3.3.1): a key (lower case; ``tenant@system`` for
# multi-tenant vendors) and a value of printable ASCII other than ``,`` and ``=``, not ending
# in a space.
_TRACESTATE_MEMBER = re.compile(
    rb"[a-z0-9][a-z0-9_\-*/]{0,255}(?:@[a-z][a-z0-9_\-*/]{0,13})?=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
).fullmatch
TRACESTATE_MAX_MEMBERS = 32
TRACESTATE_MAX_LENGTH = 512

_bits = random.getrandbits


def parse_tracestate(values: list[bytes]) -> bytes | None:
    """The tracestate a request's ``tracestate`` fields make (joined, as W3C §3.3.1 reads
    several), as the gateway records it on its spans: None when a member breaks the grammar
    (a client's bytes of any form would reach the collector, where a protobuf string that is
    not UTF-8 fails the whole batch); at most 32 members and 512 bytes, members dropped from the
    right (the oldest) beyond them."""
    members: list[bytes] = []
    size = -1
    for value in values:
        for member in value.split(b","):
            member = member.strip(b" \t")
            if not member:
                continue
            if _TRACESTATE_MEMBER(member) is None:
                return None
            if len(members) < TRACESTATE_MAX_MEMBERS and size + 1 + len(member) <= TRACESTATE_MAX_LENGTH:
                members.append(member)
                size += 1 + len(member)
            else:
                size = TRACESTATE_MAX_LENGTH  # full: later (older) members are dropped
    return b",".join(members) or None


def parse_traceparent(value: bytes) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a valid ``traceparent``; None when it is not one
    (the gateway then starts a new trace, as the spec asks)."""
    m = _TRACEPARENT.fullmatch(value.strip(b" \t"))
    if m is None:
        return None
    version = m.group(1)
    if version == b"ff" or (version == b"00" and m.group(5) is not None):
        return None
    trace_id = int(m.group(2), 16)
    parent_id = int(m.group(3), 16)
    if not trace_id or not parent_id:
        return None
    return trace_id, parent_id, int(m.group(4), 16)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    return b"00-%032x-%016x-%s" % (trace_id, span_id, b"01" if sampled else b"00")


def new_span_id() -> int:
    span_id = _bits(64)
    return span_id or 1


class Span:
    """A span the gateway records (a finished one has ``end_ns``)."""

    __slots__ = (
        "name",
        "kind",
        "span_id",
        "parent_id",
        "start_ns",
        "end_ns",
        "attributes",
        "status",
        "message",
        "on_end",
    )

    def __init__(self, name: str, kind: int, span_id: int, parent_id: int, attributes: dict[str, object]) -> None:
        self.name = name
        self.kind = kind
        self.span_id = span_id
        self.parent_id = parent_id
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.attributes = attributes
        self.status = STATUS_UNSET
        self.message = ""
        # Completes the span when the request ends before its call's code did (the response was
        # written from inside the call): called once, then the span ends with the request.
        self.on_end: Callable[[], None] | None = None

    def end(self, error: str = "") -> None:
        """Ended now; ``error`` (a short reason) marks it failed."""
        if not self.end_ns:
            self.end_ns = time.time_ns()
        # on_end usually closes over this span: a cycle that only the garbage collector would
        # free, holding what the call referenced (an LLM call's request and answer) till then.
        self.on_end = None
        if error:
            self.status = STATUS_ERROR
            self.message = error


class RequestTrace:
    """The trace context of one request: ids, the sampling decision, the spans recorded."""

    __slots__ = ("trace_id", "span_id", "parent_id", "sampled", "state", "spans", "sampled_by_client")

    def __init__(self, trace_id: int, span_id: int, parent_id: int, sampled: bool, state: bytes | None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id  # the server span's id
        self.parent_id = parent_id  # the client's span (0: the trace starts here)
        self.sampled = sampled
        self.state = state  # the client's tracestate, passed on unchanged
        self.spans: list[Span] = []
        self.sampled_by_client = False

    def child(self, name: str, kind: int, attributes: dict[str, object], parent: Span | None = None) -> Span:
        """A new span under the server span (or under ``parent``); callers check ``sampled``."""
        span = Span(name, kind, new_span_id(), parent.span_id if parent is not None else self.span_id, attributes)
        self.spans.append(span)
        return span

    def traceparent(self, span: Span | None = None) -> bytes:
        """The ``traceparent`` a called service gets: the child span's id when the call is a
        recorded span, else the server span's."""
        return format_traceparent(self.trace_id, span.span_id if span is not None else self.span_id, self.sampled)

    @property
    def trace_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_hex(self) -> str:
        return f"{self.span_id:016x}"
