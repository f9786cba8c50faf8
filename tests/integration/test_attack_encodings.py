"""Audit 10: compressed and encoded bodies against the policies that read or write bodies, through
the daemon with raw sockets on both sides (a client library would decompress, or add its own
``Accept-Encoding``). The lesson of the earlier audits again: a policy is bypassed, or an answer
broken, where the gateway reads (or writes) bytes that the peer reads under another encoding.

- A2A event streams: the gateway writes keep-alive comments into the stream it relays; into a
  stream the agent compressed (the client's ``Accept-Encoding`` reaches the agent) plain bytes
  corrupt the coding for the client.
- ``transformations`` that replace a body: the replacement is the gateway's own plain bytes, so
  the coding the client (or the upstream) declared for the original must not stay on it.
"""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from tests.integration.test_attack_framing import RawUpstream, Script, Seen, raw_upstream  # noqa: F401
from tests.support.gateway import binds, free_port, raw_connection, read_response, wait_for

# ---------------------------------------------------------------------------------- A2A streams

_STREAM_CALL = (
    b'{"jsonrpc":"2.0","id":1,"method":"message/stream","params":{"message":{"role":"user",'
    b'"parts":[{"kind":"text","text":"hi"}],"messageId":"m1"}}}'
)
_EVENTS = [
    b'data: {"jsonrpc":"2.0","id":1,"result":{"kind":"status-update","taskId":"t1","contextId":"c",'
    b'"status":{"state":"working"},"final":false}}\n\n',
    b'data: {"jsonrpc":"2.0","id":1,"result":{"kind":"status-update","taskId":"t1","contextId":"c",'
    b'"status":{"state":"completed"},"final":true}}\n\n',
]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _gzip_stream(pause: float) -> Script:
    """An agent behind a compressing server: its event stream in gzip (each event flushed), the
    head first and each event after ``pause`` seconds (a task that takes a while)."""

    def script(seen: Seen) -> list[object]:
        coder = zlib.compressobj(6, zlib.DEFLATED, 31)
        first = coder.compress(_EVENTS[0]) + coder.flush(zlib.Z_SYNC_FLUSH)
        last = coder.compress(_EVENTS[1]) + coder.flush()
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        return [head, pause, _chunk(first), pause, _chunk(last) + b"0\r\n\r\n"]

    return script


def test_a2a_keepalives_never_go_into_a_compressed_event_stream(gateway, raw_upstream) -> None:  # noqa: F811
    """The client asks for gzip (browsers always do), the agent compresses its event stream and
    takes longer than the keep-alive interval to speak. Before: ``: keep-alive`` comments were
    written as plain bytes ahead of (and between) the gzip data, and no client could decode the
    stream. A compressed stream is relayed as the agent wrote it; its events are still read
    (from a decoded copy) for the access log."""
    agent = raw_upstream(_gzip_stream(0.8))
    port = free_port()
    config = binds(port, [{"backends": [{"host": agent.address}], "policies": {"a2a": {"keepAliveInterval": "200ms"}}}])
    config["config"] = {"logging": {"format": "json"}}
    gw = gateway(config)
    with raw_connection(port, timeout=15) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: agent.test\r\nAccept-Encoding: gzip\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(_STREAM_CALL), _STREAM_CALL)
        )
        status, headers, body = read_response(sock)
    assert status == 200
    assert headers.get("content-encoding") == "gzip"
    assert gzip.decompress(body) == b"".join(_EVENTS), body[:80]
    record = wait_for(lambda: [json.loads(x) for x in gw.access_lines()], 10, "the access log line")[-1]
    assert record.get("a2a.task.state") == "completed" and record.get("a2a.stream.events") == 2, record


def test_a2a_keepalives_still_go_into_a_plain_event_stream(gateway, raw_upstream) -> None:  # noqa: F811
    """The counterpart: an uncompressed stream that is quiet gets its comments."""

    def script(seen: Seen) -> list[object]:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        return [head, 0.8, _chunk(_EVENTS[0]), _chunk(_EVENTS[1]) + b"0\r\n\r\n"]

    agent = raw_upstream(script)
    port = free_port()
    gateway(
        binds(
            port,
            [{"backends": [{"host": agent.address}], "policies": {"a2a": {"keepAliveInterval": "200ms"}}}],
        )
    )
    with raw_connection(port, timeout=15) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: agent.test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(_STREAM_CALL), _STREAM_CALL)
        )
        status, _, body = read_response(sock)
    assert status == 200
    assert body.startswith(b": keep-alive\n")
    assert body.endswith(b"".join(_EVENTS))


# ---------------------------------------------------------------------------------- transformations


def _gzip_answer(seen: Seen) -> bytes:
    body = gzip.compress(b'{"internal":"detail"}')
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
        b"content-md5: aGVsbG8=\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )


@pytest.fixture
def transformed(gateway, raw_upstream) -> tuple[int, RawUpstream]:  # noqa: F811
    up = raw_upstream(_gzip_answer)
    port = free_port()
    routes = [
        {
            "name": "request-body",
            "matches": [{"path": {"pathPrefix": "/request"}}],
            "backends": [{"host": up.address}],
            "policies": {"transformations": {"request": {"body": '"the gateway\'s body"'}}},
        },
        {
            "name": "response-body",
            "matches": [{"path": {"pathPrefix": "/response"}}],
            "backends": [{"host": up.address}],
            "policies": {"transformations": {"response": {"body": '"replaced"'}}},
        },
        {
            "name": "own-coding",
            "matches": [{"path": {"pathPrefix": "/own"}}],
            "backends": [{"host": up.address}],
            "policies": {
                "transformations": {"response": {"body": '"replaced"', "set": {"content-encoding": '"identity"'}}}
            },
        },
    ]
    gateway(binds(port, routes))
    return port, up


def _send(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with raw_connection(port, timeout=10) as sock:
        sock.sendall(request)
        return read_response(sock)


def test_response_body_transformation_drops_the_upstreams_coding(transformed) -> None:
    """The client asked for gzip, the upstream compressed its answer, a response transformation
    replaced the body with plain text. Before: the plain text went out as ``content-encoding:
    gzip`` (and the original's ``content-md5``), which no client can read."""
    port, _ = transformed
    status, headers, body = _send(port, b"GET /response HTTP/1.1\r\nHost: gw.test\r\nAccept-Encoding: gzip\r\n\r\n")
    assert status == 200
    assert body == b"replaced"
    assert "content-encoding" not in headers, headers
    assert "content-md5" not in headers, headers


def test_request_body_transformation_drops_the_clients_coding(transformed) -> None:
    """A client declared its body gzip; a request transformation replaced it. Before: the
    upstream got the gateway's plain body labelled gzip (and failed to decode it, or decoded
    something else)."""
    port, up = transformed
    status, _, _ = _send(
        port,
        b"POST /request HTTP/1.1\r\nHost: gw.test\r\nContent-Encoding: gzip\r\nContent-MD5: aGVsbG8=\r\n"
        b"Content-Length: 5\r\n\r\nhello",
    )
    assert status == 200
    seen = up.seen[-1]
    assert seen.body == b"the gateway's body"
    assert seen.header("content-encoding") == [], seen.head
    assert seen.header("content-md5") == [], seen.head


def test_transformation_may_set_its_own_coding(transformed) -> None:
    """A coding the transformation sets itself is the operator's word and stays."""
    port, _ = transformed
    status, headers, body = _send(port, b"GET /own HTTP/1.1\r\nHost: gw.test\r\nAccept-Encoding: gzip\r\n\r\n")
    assert status == 200 and body == b"replaced"
    assert headers.get("content-encoding") == "identity"


# ---------------------------------------------------------------------------------- LLM answers

_USAGE = {"prompt_tokens": 500, "completion_tokens": 500, "total_tokens": 1000}
_COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": _USAGE,
}


def _compressing_provider(always: bool) -> Script:
    """A provider behind a compressing server: gzip when the request names no coding (RFC 9110
    §12.5.3 lets a server pick any), or always (``always``, a server that ignores the request)."""

    def script(seen: Seen) -> bytes:
        body = json.dumps(_COMPLETION).encode()
        extra = b""
        if always or not seen.header("accept-encoding"):
            body, extra = gzip.compress(body), b"content-encoding: gzip\r\n"
        return (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + extra
            + b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )

    return script


def _llm(gateway, address: str) -> int:  # noqa: ANN001
    port = free_port()
    params = {"apiKey": "sk-provider", "baseUrl": f"http://{address}/v1"}
    # 2,500 tokens an hour; each call reports 1,000 used, so the third cannot be covered.
    budget = [{"type": "tokens", "maxTokens": 2500, "tokensPerFill": 1, "fillInterval": "1h"}]
    routes = {"/v1/chat/completions": "completions", "*": "detect"}
    config = {
        "llm": {
            "port": port,
            "models": [{"name": "*", "provider": "openAI", "params": params}],
            "policies": {"ai": {"routes": routes}, "localRateLimit": budget},
        }
    }
    gateway(config)
    return port


_CALL = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'


def _post(port: int, path: bytes) -> tuple[int, dict[str, str], bytes]:
    return _send(
        port,
        b"POST " + path + b" HTTP/1.1\r\nHost: llm.test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(_CALL), _CALL),
    )


@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v1/other"])
def test_llm_provider_is_asked_for_an_uncompressed_answer(gateway, raw_upstream, path: bytes) -> None:  # noqa: F811
    """The gateway reads every provider answer (usage for budgets, guards, translation), so it
    asks for ``Accept-Encoding: identity``. Before, it named no coding: a provider that then
    compressed got its completion refused as invalid JSON (502), and a ``detect`` answer reached
    the client as gzip bytes without their ``content-encoding`` while its usage went unread, so
    the token budget charged nothing (the third call here passed a budget that covers two)."""
    provider = raw_upstream(_compressing_provider(always=False))
    port = _llm(gateway, provider.address)
    statuses = []
    for _ in range(3):
        status, _, body = _post(port, path)
        statuses.append(status)
        if status == 200:
            assert json.loads(body)["usage"]["total_tokens"] == 1000
    assert statuses == [200, 200, 429], statuses
    assert provider.seen[0].header("accept-encoding") == ["identity"]


def test_llm_detect_answer_compressed_all_the_same(gateway, raw_upstream) -> None:  # noqa: F811
    """A provider that compresses although asked not to: the ``detect`` answer is relayed with
    its ``content-encoding`` (so the client can read it) and its usage read from a decoded copy."""
    provider = raw_upstream(_compressing_provider(always=True))
    port = _llm(gateway, provider.address)
    statuses = []
    for _ in range(3):
        status, headers, body = _post(port, b"/v1/other")
        statuses.append(status)
        if status == 200:
            assert headers.get("content-encoding") == "gzip"
            assert json.loads(gzip.decompress(body))["usage"]["total_tokens"] == 1000
    assert statuses == [200, 200, 429], statuses


# ---------------------------------------------------------------------------------- held: request codings

_GZIP_CALL = gzip.compress(_STREAM_CALL)


def test_a2a_compressed_call_is_not_forwarded_unread(gateway, raw_upstream) -> None:  # noqa: F811
    """A JSON-RPC call the gateway cannot read (gzip, which an agent with a decompressing
    middleware would read) is answered as a parse error and never reaches the agent (held)."""
    agent = raw_upstream(lambda seen: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": agent.address}], "policies": {"a2a": {}}}]))
    status, _, body = _send(
        port,
        b"POST / HTTP/1.1\r\nHost: agent.test\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(_GZIP_CALL), _GZIP_CALL),
    )
    assert status == 200 and json.loads(body)["error"]["code"] == -32700
    assert agent.seen == []


def test_llm_compressed_request_is_refused_or_goes_without_its_coding(gateway, raw_upstream) -> None:  # noqa: F811
    """A gzip LLM request: a completions route cannot read it (400, nothing sent); a ``detect``
    route sends the bytes on without the client's ``Content-Encoding`` (the gateway builds the
    provider's headers), so no provider decodes a model or prompt the gateway never saw (held)."""
    provider = raw_upstream(_compressing_provider(always=False))
    port = _llm(gateway, provider.address)
    body = gzip.compress(b'{"model":"pricey","messages":[{"role":"user","content":"hi"}]}')

    def post(path: bytes) -> int:
        return _send(
            port,
            b"POST " + path + b" HTTP/1.1\r\nHost: llm.test\r\nContent-Encoding: gzip\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        )[0]

    assert post(b"/v1/chat/completions") == 400
    assert provider.seen == []
    post(b"/v1/other")
    assert all(not seen.header("content-encoding") for seen in provider.seen)
