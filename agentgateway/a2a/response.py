"""What the gateway does with an A2A agent's answers (``ResponseProcessor``s of the ``a2a`` policy).

- ``CardResponse``: an agent card (the well-known card, the extended card of either binding),
  the one kind of answer held whole (bounded by ``maxBufferSize``): rewritten (``a2a.card``),
  sent with its new length and, when fetched with ``GET``, a strong ETag of the bytes sent (a
  matching ``If-None-Match`` is answered 304 by the gateway).
- ``StreamResponse``: an event stream, relayed chunk by chunk as it arrives; each event is read
  (a copy, through the native SSE decoder) for the task id and state, and a comment line is
  written when the stream has been quiet for the keep-alive interval, only between events.
- ``JsonResponse``: a JSON answer, relayed as it arrives; a bounded copy is read at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from typing import TYPE_CHECKING

import orjson

from agentgateway._native import JsonRpcError, SseDecoder, SseError, encode_sse_comment, scan_jsonrpc
from agentgateway.a2a.card import CardError, CardPaths, rewrite_card
from agentgateway.a2a.facts import JSONRPC
from agentgateway.proxy.forward import response_fields

if TYPE_CHECKING:
    from agentgateway.a2a.facts import A2aFacts, CardRequest
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.exchange import ResponseWriter

Headers = list[tuple[bytes, bytes]]

KEEPALIVE = encode_sse_comment(b"keep-alive")
# A2A's InvalidAgentResponseError: what a client is told when the agent's card cannot be rewritten.
INVALID_AGENT_RESPONSE = -32006
_JSON = (b"content-type", b"application/json")
# The card's own validators no longer describe what is sent; framing is the connection's.
_CARD_DROPPED = frozenset((b"etag", b"content-encoding", b"content-md5", b"digest"))
# The bytes that end an event (a blank line after a line), whatever the line endings.
_EVENT_ENDS = (b"\n\n", b"\n\r\n", b"\r\r\n")


def _loads(data: bytes) -> object:
    """The JSON value, or None when ``data`` is not JSON (the agent's business, not ours)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _observe_jsonrpc(facts: A2aFacts, data: bytes) -> None:
    try:
        envelope = scan_jsonrpc(data)
    except JsonRpcError:
        return
    if envelope.kind == "error":
        code = envelope.error_code
        facts.error_code = "" if code is None else str(code)
    elif envelope.kind == "result":
        result = envelope.result
        if result is not None:
            facts.observe_result(_loads(result))


def _etag_matches(header: bytes, etag: bytes) -> bool:
    """If-None-Match's weak comparison (RFC 9110 §13.1.2)."""
    bare = etag.removeprefix(b"W/")
    for candidate in header.split(b","):
        candidate = candidate.strip()
        if candidate == b"*" or candidate.removeprefix(b"W/") == bare:
            return True
    return False


def _decode(body: bytes, encoding: bytes, limit: int) -> bytes:
    """An answer the agent compressed (a card although the gateway asked for ``identity``)."""
    name = encoding.strip().lower()
    if name in (b"", b"identity"):
        return body
    if name in (b"gzip", b"x-gzip", b"deflate"):
        decoder = zlib.decompressobj(zlib.MAX_WBITS | (16 if name != b"deflate" else 0))
        try:
            out = decoder.decompress(body, limit + 1)
        except zlib.error as exc:
            raise CardError(f"not valid {name.decode('latin-1')} data ({exc})") from None
        if len(out) > limit:
            raise CardError(f"larger than frontendPolicies.http.maxBufferSize ({limit} bytes) once decompressed")
        return out
    raise CardError(f"compressed with {name.decode('latin-1')}, which the gateway cannot read")


class CardResponse:
    """An agent card answer, held whole (bounded by ``maxBufferSize``) and rewritten before
    anything is sent: the well-known card or the HTTP+JSON extended card (the body is the card),
    or a JSON-RPC extended card call (the card is the ``result``; an ``error``, or an HTTP error
    that is not JSON-RPC, passes as the agent wrote it). What cannot be rewritten is answered by
    the gateway as an error of the card's kind: 502 with the reason (the well-known card), 502
    with an ``INVALID_AGENT_RESPONSE`` error (HTTP+JSON), a JSON-RPC ``-32006`` error."""

    __slots__ = ("conn", "ctx", "facts", "status", "headers", "paths", "card", "limit", "jsonrpc", "_chunks", "_size")

    def __init__(
        self,
        conn: ResponseWriter,
        ctx: RequestCtx,
        status: int,
        headers: Headers,
        paths: CardPaths,
        card: CardRequest,
        limit: int,
        facts: A2aFacts,
    ) -> None:
        self.conn = conn
        self.ctx = ctx
        self.facts = facts
        self.status = status
        self.headers = headers
        self.paths = paths
        self.card = card
        self.limit = limit
        self.jsonrpc = facts.binding == JSONRPC
        self._chunks: list[bytes] = []
        self._size = 0

    def _fail(self, why: str) -> None:
        """The gateway answers instead of the agent. The client is told what is wrong with the
        answer; the access log also says which backend wrote it."""
        extended = self.facts.extended_card is not None
        message = f"{'extended agent card' if extended else 'agent card'} from the agent is {why}"
        ctx = self.ctx
        ctx.error = f"{message} ({ctx.backend})"
        conn = self.conn
        if not extended:
            conn.reply(ctx, 502, message)
            return
        if self.jsonrpc:
            self.facts.error_code = str(INVALID_AGENT_RESPONSE)
            status = 200  # as the agent's endpoint answers its errors
            body = b'{"jsonrpc":"2.0","id":%s,"error":%s}' % (
                self.card.request_id or b"null",
                orjson.dumps({"code": INVALID_AGENT_RESPONSE, "message": message}),
            )
        else:
            self.facts.error_code = "INVALID_AGENT_RESPONSE"
            status = 502
            body = orjson.dumps(
                {
                    "error": {
                        "code": 502,
                        "status": "INTERNAL",
                        "message": message,
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": "INVALID_AGENT_RESPONSE",
                                "domain": "a2a-protocol.org",
                            }
                        ],
                    }
                }
            )
        ctx.reason = message
        conn.send_head(status, (_JSON,), len(body), True)
        conn.send_body(body)
        conn.end_response()

    def body(self, chunk: bytes) -> bool:
        self._size += len(chunk)
        if self._size > self.limit:
            self._fail(f"larger than frontendPolicies.http.maxBufferSize ({self.limit} bytes)")
            return False
        self._chunks.append(chunk)
        return True

    def _rewrite_result(self, answer: bytes) -> bytes:
        """A JSON-RPC answer with its ``result`` rewritten as a card; other answers as they are."""
        if self.card.request_id is None and not answer.strip():
            return answer  # a notification, rightly not answered
        try:
            envelope = scan_jsonrpc(answer)
        except JsonRpcError as exc:
            if 200 <= self.status < 300:
                raise CardError(f"not a JSON-RPC response ({exc.message})") from None
            return answer  # an HTTP error (from the agent, or a proxy in front of it)
        if envelope.kind == "error":
            code = envelope.error_code
            self.facts.error_code = "" if code is None else str(code)
            return answer
        span = envelope.result_span
        if envelope.kind != "result" or span is None:
            if 200 <= self.status < 300:
                raise CardError(f"a JSON-RPC {envelope.kind} where a response was expected")
            return answer
        start, end = span
        return answer[:start] + rewrite_card(answer[start:end], self.paths) + answer[end:]

    def end(self) -> bool:
        encoding = b""
        kept: Headers = []
        for name, value in self.headers:
            if name == b"content-encoding":
                encoding = value
            if name not in _CARD_DROPPED:
                kept.append((name, value))
        if self.card.forwarded:
            # The scheme of every interface URL is the proxy's X-Forwarded-Proto: a cache in front
            # that keys on the URL alone would hand an http card (and clients' calls in the
            # clear) to https clients, for the agent's Cache-Control.
            kept.append((b"vary", b"x-forwarded-proto"))
        try:
            answer = _decode(b"".join(self._chunks), encoding, self.limit)
            out = self._rewrite_result(answer) if self.jsonrpc else rewrite_card(answer, self.paths)
        except CardError as exc:
            self._fail(str(exc))
            return False
        fields, _ = response_fields(kept)
        conn = self.conn
        if self.jsonrpc:
            conn.send_head_fields(self.status, fields, len(out), True)
            conn.send_body(out)
            return True
        etag = b'"%s"' % hashlib.sha256(out).hexdigest()[:32].encode()
        fields += b"etag: " + etag + b"\r\n"
        if_none_match = self.card.if_none_match
        if if_none_match is not None and _etag_matches(if_none_match, etag):
            conn.send_head_fields(304, fields, None, False)
        else:
            conn.send_head_fields(self.status, fields, len(out), True)
            conn.send_body(out)
        return True

    def close(self) -> None:
        self._chunks = []


def _content_coding(headers: Headers) -> bytes:
    """The answer's ``Content-Encoding`` (every field, joined), lower case; empty for none or
    ``identity``."""
    codings = [v.strip().lower() for k, v in headers if k == b"content-encoding"]
    coding = b", ".join(c for c in codings if c)
    return b"" if coding == b"identity" else coding


def _inflater(coding: bytes) -> zlib._Decompress | None:
    """A decoder for a copy of a compressed answer the gateway reads (gzip, deflate), or None."""
    if coding in (b"gzip", b"x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if coding == b"deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    return None


class StreamResponse:
    """An event stream, relayed as it arrives. A stream the agent compressed (the client asked
    for it) goes as it came: no keep-alive comment is written into it (plain bytes inside a
    coding the client decodes would corrupt the stream), and its events are read from a
    decoded copy (gzip and deflate; others are not read)."""

    __slots__ = (
        "conn",
        "facts",
        "jsonrpc",
        "decoder",
        "inflater",
        "interval",
        "loop",
        "timer",
        "last",
        "tail",
        "closed",
    )

    def __init__(self, conn: ResponseWriter, facts: A2aFacts, status: int, headers: Headers, interval: float) -> None:
        self.conn = conn
        self.facts = facts
        self.jsonrpc = facts.binding == JSONRPC
        coding = _content_coding(headers)
        self.inflater = _inflater(coding) if coding else None
        readable = not coding or self.inflater is not None
        self.decoder: SseDecoder | None = SseDecoder(conn.max_buffer_size) if readable else None
        self.interval = interval
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.last = self.loop.time()
        self.tail = b""
        self.closed = False
        fields, content_length = response_fields(headers)
        conn.send_head_fields(status, fields, content_length, True)
        if interval > 0 and content_length is None and not coding:
            self.timer = self.loop.call_later(interval, self._tick)

    def body(self, chunk: bytes) -> bool:
        self.conn.send_body(chunk)
        self.last = self.loop.time()
        self.tail = (self.tail + chunk[-4:])[-4:]
        decoder = self.decoder
        if decoder is not None:
            inflater = self.inflater
            try:
                if inflater is not None:
                    chunk = inflater.decompress(chunk, self.conn.max_buffer_size)
                    if inflater.unconsumed_tail:  # one chunk decoded past the bound
                        self.decoder = None
                        return True
                events = decoder.feed(chunk)
            except (SseError, zlib.error):
                self.decoder = None  # an event past the bound, a broken coding: still relayed, no longer read
                return True
            facts = self.facts
            for event in events:
                facts.events += 1
                if self.jsonrpc:
                    _observe_jsonrpc(facts, event.data)
                else:
                    facts.observe_result(_loads(event.data))
        return True

    def _tick(self) -> None:
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        idle = now - self.last
        wait = self.interval - idle
        if wait <= 0.001:
            # Quiet for the whole interval. A comment goes only where an event may start (never
            # inside one the agent is still writing), and not to a client that is not reading.
            tail = self.tail
            if (not tail or tail.endswith(_EVENT_ENDS)) and not self.conn.write_paused:
                self.conn.send_body(KEEPALIVE)
                self.conn.flush()
                self.last = now
            wait = self.interval
        self.timer = self.loop.call_later(wait, self._tick)

    def end(self) -> bool:
        if self.decoder is not None:
            self.decoder.finish()
        return True

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class JsonResponse:
    """A JSON answer, relayed as it arrives; a bounded copy is read at the end (decoded first
    when the agent compressed it with gzip or deflate)."""

    __slots__ = ("facts", "conn", "status", "limit", "coding", "_chunks", "_size")

    def __init__(self, conn: ResponseWriter, facts: A2aFacts, status: int, headers: Headers, limit: int) -> None:
        self.conn = conn
        self.facts = facts
        self.status = status
        self.limit = limit
        self.coding = _content_coding(headers)
        self._chunks: list[bytes] | None = []
        self._size = 0
        fields, content_length = response_fields(headers)
        conn.send_head_fields(status, fields, content_length, True)

    def body(self, chunk: bytes) -> bool:
        self.conn.send_body(chunk)
        chunks = self._chunks
        if chunks is not None:
            self._size += len(chunk)
            if self._size > self.limit:
                self._chunks = None  # too large to read; relayed all the same
            else:
                chunks.append(chunk)
        return True

    def end(self) -> bool:
        chunks = self._chunks
        if chunks:
            body = b"".join(chunks)
            if self.coding:
                try:
                    body = _decode(body, self.coding, self.limit)
                except CardError:
                    return True  # a coding the gateway does not read: relayed, not read
            facts = self.facts
            if facts.binding == JSONRPC:
                _observe_jsonrpc(facts, body)
            else:
                decoded = _loads(body)
                if decoded is None:
                    return True
                if self.status >= 400:
                    facts.observe_rest_error(decoded, self.status)
                else:
                    facts.observe_result(decoded)
        return True

    def close(self) -> None:
        self._chunks = None
