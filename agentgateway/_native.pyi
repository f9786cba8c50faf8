"""Typed stub of the native hot path (`native/src/py/`). Bytes in, bytes out."""

from collections.abc import Container, Sequence
from typing import Final, Literal, TypeAlias, final

__all__ = [
    "__version__",
    "BucketSpec",
    "CelCompileError",
    "CelEvaluationError",
    "CelProgram",
    "CelRules",
    "JSONRPC_MAX_DEPTH",
    "JsonRpcEnvelope",
    "JsonRpcError",
    "ListResultError",
    "Pattern",
    "SESSION_KEY_LEN",
    "SessionCipher",
    "SessionTokenError",
    "SseComment",
    "SseDecoder",
    "SseError",
    "SseEvent",
    "SharedBuckets",
    "bucket_key",
    "encode_span",
    "encode_sse_comment",
    "encode_sse_event",
    "json_duplicate_member",
    "list_item_keys",
    "merge_list_results",
    "rewrite_jsonrpc_id",
    "rewrite_request",
    "scan_jsonrpc",
    "scan_jsonrpc_batch",
    "session_key_from_hex",
    "split_jsonrpc_batch",
    "split_prefixed_name",
    "split_prefixed_uri",
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

def json_duplicate_member(data: bytes, nested: bool = False) -> str | None:
    """The first member name the top-level object of `data` repeats (escapes decoded: `"model"`
    and `"mod\\u0065l"` are one name); None when none repeats or `data` is not a JSON object.
    With `nested`, the first name any object in `data` repeats (`data` any JSON text). Raises
    ValueError when the text cannot be scanned to its end (malformed, or nested past the
    scanner's depth limit): never "none repeats" for text the search did not see."""

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

def encode_sse_event(data: bytes, event: str | None = None, id: str | None = None, retry: int | None = None) -> bytes:
    """One event; `data` is split on CRLF/CR/LF into data lines. ValueError on CR/LF in
    `event` or `id`, or NUL in `id`."""

def encode_sse_comment(text: bytes = b"") -> bytes:
    """Comment lines for `text`; b"" gives the keep-alive b":\\n"."""

# --- CEL -----------------------------------------------------------------------------------

_CelRequest: TypeAlias = tuple[bytes, bytes, bytes, bytes, bytes, str, Sequence[tuple[bytes, bytes]] | None]
"""(method, scheme, host, path, path_and_query, version, headers): `request`'s parts. Header
names lower-case; a repeated header's values are joined with ","; str is accepted for bytes."""

_CelSource: TypeAlias = tuple[str, int]
"""(address, port) of the peer: `source`."""

_CelVariables: TypeAlias = dict[str, object]

class CelCompileError(ValueError):
    """A CEL expression that cannot be compiled (syntax, an unknown variable, request field or
    function, an invalid literal `matches` pattern). `index` is the rule's position in a
    `CelRules`, None for a `CelProgram`."""

    message: str
    line: int
    column: int
    expression: str
    index: int | None

class CelEvaluationError(ValueError):
    """An evaluation that failed, or a value that has no Python equivalent."""

@final
class CelProgram:
    """One expression. `variables`: the top-level variables it reads; `request_fields`: the
    fields of `request` it reads; `needs_headers`: whether it reads `request.headers`."""

    def __new__(cls, expression: str) -> CelProgram: ...
    @property
    def expression(self) -> str: ...
    @property
    def variables(self) -> frozenset[str]: ...
    @property
    def request_fields(self) -> frozenset[str]: ...
    @property
    def needs_headers(self) -> bool: ...
    @property
    def header_names(self) -> frozenset[str] | None:
        """Lower-case names of the request headers read; None when the map is read as a whole."""
    def evaluate(
        self,
        request: _CelRequest | None = None,
        source: _CelSource | None = None,
        variables: _CelVariables | None = None,
    ) -> object:
        """The value (bool, int, float, str, bytes, None, list, dict; an IP or CIDR as text).

        `request` and `source` come from their tuples when given, else from `variables`, which
        holds the other variables; only what the expression reads is converted. Raises
        CelEvaluationError, and TypeError/ValueError for a variable of an unsupported type."""

@final
class CelRules:
    """An authorization rule set: (kind, expression) with kind "allow", "deny" or "require"."""

    def __new__(cls, rules: Sequence[tuple[str, str]]) -> CelRules: ...
    def __len__(self) -> int: ...
    @property
    def variables(self) -> frozenset[str]: ...
    @property
    def request_fields(self) -> frozenset[str]: ...
    @property
    def needs_headers(self) -> bool: ...
    @property
    def header_names(self) -> frozenset[str] | None:
        """Lower-case names of the request headers read; None when one rule reads the map as a
        whole."""
    def evaluate(
        self,
        request: _CelRequest | None = None,
        source: _CelSource | None = None,
        variables: _CelVariables | None = None,
    ) -> int:
        """The index of the rule that decided; -1: allowed with no rule deciding (no rules, or
        no deny/require rule applied), -2: denied with none deciding (no allow rule matched)."""
    def explain(
        self,
        request: _CelRequest | None = None,
        source: _CelSource | None = None,
        variables: _CelVariables | None = None,
    ) -> list[bool | str]:
        """Each rule's result in order: True, False, or the message of its error."""

# --- Shared token buckets (local rate limits across worker processes) ------------------------

@final
class BucketSpec:
    """How a bucket fills. ValueError when tokens_per_fill > max_tokens or the interval is 0."""

    def __new__(cls, max_tokens: int, tokens_per_fill: int, fill_interval_ns: int, rule: int = 0) -> BucketSpec:
        """`rule`: a hash naming the policy whose buckets these are (its keys give up one
        another's buckets first when the table is crowded)."""
    @property
    def max_tokens(self) -> int: ...
    @property
    def tokens_per_fill(self) -> int: ...
    @property
    def fill_interval_ns(self) -> int: ...
    @property
    def rule(self) -> int: ...

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

# --- Regular expressions of the config (the `regex` crate) ---------------------------------------

@final
class Pattern:
    """A regex run by the `regex` crate, as agentgateway runs its config's regexes: its syntax
    (no look-around, no back-references) and time linear in the input."""

    def __new__(cls, pattern: str) -> Pattern:
        """ValueError with the crate's reason when `pattern` does not compile."""
    @property
    def pattern(self) -> str: ...
    def whole(self, value: bytes) -> bool:
        """Whether the leftmost match spans all of `value` (agentgateway's route matches);
        bytes that are not UTF-8 match nothing."""
    def spans(self, text: str) -> list[tuple[int, int]]:
        """The non-overlapping matches, leftmost first, as (start, end) string indices."""

# --- MCP federation -----------------------------------------------------------------------------

SESSION_KEY_LEN: Final[int]
"""Bytes of a session key (32: AES-256)."""

class SessionTokenError(ValueError):
    """A session token that is malformed, tampered with, or sealed under another key or aad."""

@final
class SessionCipher:
    """Seals and opens self-contained Mcp-Session-Id tokens with AES-256-GCM.

    A token is base64url without padding of nonce (12 random bytes) || ciphertext || tag (16),
    so it holds only visible ASCII. `aad` is authenticated, not stored: open with the same bytes
    (e.g. the identity that created the session) or the token does not open.
    """

    def __new__(cls, key: bytes) -> SessionCipher:
        """ValueError unless `key` is exactly 32 bytes."""
    def seal(self, plaintext: bytes, aad: bytes = b"") -> str:
        """Encrypt under a fresh random nonce (OSError if the OS random source fails)."""
    def open(self, token: str, aad: bytes = b"") -> bytes:
        """Decrypt; SessionTokenError for a malformed, tampered or foreign token."""

def session_key_from_hex(text: str) -> bytes:
    """The 32-byte key from exactly 64 hex digits (`openssl rand -hex 32`); ValueError otherwise."""

_ListKind = Literal["tools", "prompts", "resources", "resourceTemplates"]

class ListResultError(ValueError):
    """An upstream */list result that cannot be merged; `target` names it, `index` is its
    position in `results` (to skip it when failing open)."""

    target: str
    index: int

def merge_list_results(
    kind: _ListKind,
    results: Sequence[tuple[str, bytes]],
    *,
    prefix: bool,
    delimiter: str = "_",
    dedupe: bool = False,
    allowed: Container[str] | None = None,
    next_cursor: str | None = None,
) -> bytes:
    """Merge each (target, raw result object) into one result object.

    Items keep target order and their bytes; with `prefix`, tool and prompt names become
    `<target><delimiter><name>` and URIs with a scheme `<target>+<uri>`. `dedupe` drops exposed
    names served by several targets (decided before `allowed`). `allowed` keeps only items whose
    `"<target>\x00<original name or uri>"` it contains. Output members: the list, `nextCursor`
    if given, `ttlMs` (minimum; inputs without it count as 0; omitted if none has it),
    `cacheScope` ("public" only if all inputs say so and `allowed` is None; omitted if none has
    it). Raises ValueError for an unknown kind, ListResultError for a malformed result.
    """

def list_item_keys(kind: _ListKind, results: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """(target, original name or URI) of every item, in order. Raises like merge_list_results."""

def split_prefixed_name(name: str, targets: Sequence[str], delimiter: str = "_") -> tuple[int, str] | None:
    """(target index, original name) for `<target><delimiter><name>`; the longest target wins."""

def split_prefixed_uri(uri: str, targets: Sequence[str]) -> tuple[int, str] | None:
    """(target index, original URI) for `<target>+<uri>` where `<uri>` has a scheme; the
    longest target wins."""

def rewrite_request(
    message: bytes,
    *,
    new_id: bytes | None = None,
    param: str | None = None,
    value: str | None = None,
) -> bytes:
    """`message` with its id replaced by raw JSON `new_id` and/or the string at
    `params.<param>` (one or two dotted names, e.g. "name", "ref.uri") replaced by `value`.

    Raises JsonRpcError for an invalid message; ValueError for a batch, a missing id, an
    invalid `new_id`, `param` without `value` (or the reverse), or a path that is absent,
    repeated, or not a string.
    """

def encode_span(trace_id: int, span: object, state: bytes | None) -> bytes:
    """A finished span (``agentgateway.core.trace.Span``) of the trace ``trace_id`` (the
    client's ``state``, or None) as the ``ScopeSpans.spans`` field of an OTLP export request;
    attributes whose value is None are left out."""
