"""Typed stub of the native hot path (`native/src/py/`). Bytes in, bytes out."""

from typing import Final, Literal, final

__all__ = [
    "__version__",
    "BucketSpec",
    "JSONRPC_MAX_DEPTH",
    "JsonRpcEnvelope",
    "JsonRpcError",
    "SseComment",
    "SseDecoder",
    "SseError",
    "SseEvent",
    "SharedBuckets",
    "bucket_key",
    "encode_sse_comment",
    "encode_sse_event",
    "rewrite_jsonrpc_id",
    "scan_jsonrpc",
    "scan_jsonrpc_batch",
    "split_jsonrpc_batch",
]

__version__: Final[str]

# --- JSON-RPC 2.0 envelopes -------------------------------------------------------------------

JSONRPC_MAX_DEPTH: Final[int]
"""Deepest nesting of arrays and objects accepted in a message (deeper is a parse error)."""

_JsonRpcKind = Literal["request", "notification", "result", "error", "batch"]

class JsonRpcError(ValueError):
    """A message to answer with a JSON-RPC error instead of forwarding.

    `code` is -32700 (not JSON) or -32600 (not a valid message); `message` says precisely why;
    `id` holds the raw id bytes to answer with, or None when the id was unreadable (always None
    for parse errors). Raised by the scan functions; set only on instances they create.
    """

    code: int
    message: str
    id: bytes | None

@final
class JsonRpcEnvelope:
    """Kind and member locations of one scanned message; spans index `raw`."""

    @property
    def kind(self) -> _JsonRpcKind: ...
    @property
    def is_batch(self) -> bool: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def id(self) -> bytes | None:
        """Raw id text (b'"abc"', b'42'; b'null' in an error response with a null id)."""
    @property
    def id_span(self) -> tuple[int, int] | None: ...
    @property
    def method(self) -> str | None:
        """Decoded method name of a request or notification."""
    @property
    def params(self) -> bytes | None:
        """Raw params (object or array) of a request or notification."""
    @property
    def params_span(self) -> tuple[int, int] | None: ...
    @property
    def result(self) -> bytes | None: ...
    @property
    def result_span(self) -> tuple[int, int] | None: ...
    @property
    def error(self) -> bytes | None: ...
    @property
    def error_span(self) -> tuple[int, int] | None: ...
    @property
    def error_code(self) -> int | None: ...
    def with_id(self, new_id: bytes) -> bytes:
        """The message with its id replaced by raw JSON `new_id` (a string or integer token).

        Raises ValueError for a batch, a message without id, or an invalid `new_id`.
        """

def scan_jsonrpc(data: bytes) -> JsonRpcEnvelope:
    """Scan one message; a top-level array gives kind "batch". Raises JsonRpcError."""

def scan_jsonrpc_batch(data: bytes) -> list[JsonRpcEnvelope | JsonRpcError]:
    """Scan every batch element; invalid elements come back as (unraised) JsonRpcError.

    Raises JsonRpcError when the batch is not JSON or not a non-empty array.
    """

def split_jsonrpc_batch(data: bytes) -> list[bytes]:
    """Raw bytes of each batch element. Raises JsonRpcError like `scan_jsonrpc_batch`."""

def rewrite_jsonrpc_id(data: bytes, new_id: bytes) -> bytes:
    """`data` with its id replaced by raw JSON `new_id`, copied once.

    Raises JsonRpcError for an invalid message, ValueError for a batch, a message without id
    or an invalid `new_id`.
    """

# --- Server-sent events -----------------------------------------------------------------------

class SseError(ValueError):
    """A stream broke the decoder's max_event_size bound."""

@final
class SseEvent:
    def __new__(cls, data: bytes, event: str | None = None, id: str | None = None) -> SseEvent: ...
    @property
    def data(self) -> bytes:
        """Data lines joined with b"\\n", undecoded."""
    @property
    def event(self) -> str:
        """Event type, "message" by default."""
    @property
    def id(self) -> str | None:
        """Last event ID in effect at dispatch (persists across events); None if none."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class SseComment:
    def __new__(cls, text: bytes) -> SseComment: ...
    @property
    def text(self) -> bytes:
        """Comment without the leading ':' and one following space."""
    def __eq__(self, value: object, /) -> bool: ...

@final
class SseDecoder:
    """Incremental WHATWG event-stream decoder; feed chunks of any size."""

    def __new__(cls, max_event_size: int = 16777216, last_event_id: str = "") -> SseDecoder: ...
    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Events completed by `chunk`; comments dropped. Raises SseError past the size bound."""
    def feed_with_comments(self, chunk: bytes) -> list[SseEvent | SseComment]: ...
    def finish(self) -> bool:
        """End the stream, discarding an unfinished event; True if anything was discarded."""
    @property
    def last_event_id(self) -> str | None: ...
    @property
    def retry(self) -> int | None: ...
    @property
    def max_event_size(self) -> int: ...

def encode_sse_event(
    data: bytes, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One event; `data` is split on CRLF/CR/LF into data lines. ValueError on CR/LF in
    `event` or `id`, or NUL in `id`."""

def encode_sse_comment(text: bytes = b"") -> bytes:
    """Comment lines for `text`; b"" gives the keep-alive b":\\n"."""

# --- Shared token buckets (local rate limits across worker processes) ------------------------

@final
class BucketSpec:
    """How a bucket fills. ValueError when tokens_per_fill > max_tokens or the interval is 0."""

    def __new__(cls, max_tokens: int, tokens_per_fill: int, fill_interval_ns: int) -> BucketSpec: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def tokens_per_fill(self) -> int: ...
    @property
    def fill_interval_ns(self) -> int: ...

@final
class SharedBuckets:
    """Token buckets in memory shared by every process that maps the table (a memfd)."""

    @staticmethod
    def anonymous(slots: int) -> SharedBuckets:
        """A table private to this process."""
    @staticmethod
    def initialize(fd: int, slots: int) -> SharedBuckets:
        """Size the empty file `fd` for `slots` buckets and map it (OSError on failure)."""
    @staticmethod
    def attach(fd: int) -> SharedBuckets:
        """Map a table initialized by another process; ValueError if `fd` holds none."""
    @property
    def slots(self) -> int: ...
    @property
    def evictions(self) -> int:
        """Buckets dropped while in use because their probe window was full."""
    def acquire(self, key: int, spec: BucketSpec, cost: int = 1) -> tuple[bool, int, int]:
        """Take `cost` tokens: (allowed, tokens remaining, nanoseconds until the next fill)."""
    def available(self, key: int, spec: BucketSpec) -> int: ...
    def amend(self, key: int, spec: BucketSpec, delta: int) -> int:
        """Remove `delta` tokens (give back when negative); returns the tokens left."""

def bucket_key(identity: bytes, key: bytes) -> int:
    """Table key of a bucket: its identity and the per-request key value (never 0)."""
