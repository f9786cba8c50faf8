"""The native JSON-RPC scanner: API behaviour, and differential tests against `reference`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgateway import _native
from agentgateway._native import JsonRpcEnvelope, JsonRpcError
from tests.native import reference
from tests.native.reference import ABSENT, INVALID_REQUEST, PARSE_ERROR

# --- API ---------------------------------------------------------------------------------------


def test_request_attributes() -> None:
    data = b' {"jsonrpc": "2.0", "id": "c-1", "method": "tools/call", "params": {"name": "x"}}\n'
    env = _native.scan_jsonrpc(data)
    assert env.kind == "request"
    assert not env.is_batch
    assert env.raw is data
    assert env.id == b'"c-1"'
    assert env.id_span is not None and data[slice(*env.id_span)] == b'"c-1"'
    assert env.method == "tools/call"
    assert env.params == b'{"name": "x"}'
    assert env.params_span is not None and data[slice(*env.params_span)] == env.params
    assert (env.result, env.result_span, env.error, env.error_span, env.error_code) == (None,) * 5
    assert repr(env) == "JsonRpcEnvelope(kind='request', id=b'\"c-1\"', method='tools/call')"


def test_kinds() -> None:
    note = _native.scan_jsonrpc(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    assert (note.kind, note.id, note.params) == ("notification", None, None)
    result = _native.scan_jsonrpc(b'{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}')
    assert (result.kind, result.id, result.result, result.method) == ("result", b"7", b'{"tools":[]}', None)
    error = _native.scan_jsonrpc(b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}')
    assert (error.kind, error.id, error.error_code) == ("error", b"null", -32700)
    assert error.error == b'{"code":-32700,"message":"x"}'
    batch = _native.scan_jsonrpc(b'[{"jsonrpc":"2.0","method":"a"}]')
    assert (batch.kind, batch.is_batch, batch.id, batch.method) == ("batch", True, None, None)
    assert repr(batch) == "JsonRpcEnvelope(kind='batch')"


def test_escaped_method_is_decoded() -> None:
    env = _native.scan_jsonrpc(b'{"jsonrpc":"2.0","id":1,"method":"tools\\/c\\u0061ll \\ud83d\\ude00"}')
    assert env.method == "tools/call \U0001f600"


def test_parse_error() -> None:
    with pytest.raises(JsonRpcError) as info:
        _native.scan_jsonrpc(b'{"jsonrpc":"2.0","id":1,"method":"m",}')
    e = info.value
    assert isinstance(e, ValueError)
    assert (e.code, e.id) == (PARSE_ERROR, None)
    assert e.message == "Parse error: expected a string key at byte 37, found '}'"
    assert str(e) == e.message


def test_invalid_request_keeps_readable_id() -> None:
    with pytest.raises(JsonRpcError) as info:
        _native.scan_jsonrpc(b'{"jsonrpc":"2.0","id":"abc","method":42}')
    e = info.value
    assert (e.code, e.id) == (INVALID_REQUEST, b'"abc"')
    assert e.message == 'Invalid Request: "method" must be a string, found an integer'


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[]", "a batch must not be empty"),
        (b'"x"', "a message must be a JSON object, found a string"),
        (b'{"id":1,"method":"m"}', 'missing member "jsonrpc"'),
        (b'{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}', 'duplicate member "method"'),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"m"}', '"id" must be a string or an integer, found a number'),
        (b'{"jsonrpc":"2.0","id":null,"method":"m"}', '"id" must not be null'),
        (b'{"jsonrpc":"2.0","result":1}', 'a result response must have an "id"'),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":1}}', '"error" must have a "message"'),
    ],
)
def test_invalid_messages(data: bytes, message: str) -> None:
    with pytest.raises(JsonRpcError, match="^Invalid Request: ") as info:
        _native.scan_jsonrpc(data)
    assert message in info.value.message
    assert info.value.code == INVALID_REQUEST


def test_only_bytes_accepted() -> None:
    with pytest.raises(TypeError):
        _native.scan_jsonrpc('{"jsonrpc":"2.0","method":"m"}')  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _native.scan_jsonrpc(bytearray(b'{"jsonrpc":"2.0","method":"m"}'))  # type: ignore[arg-type]


def test_depth_limit() -> None:
    limit = _native.JSONRPC_MAX_DEPTH
    assert limit == reference.MAX_DEPTH

    def message(depth: int) -> bytes:
        # The envelope object is level 1 and params level 2.
        inner = "[" * (depth - 1) + "]" * (depth - 1)
        return f'{{"jsonrpc":"2.0","method":"m","params":{inner}}}'.encode()

    assert _native.scan_jsonrpc(message(limit)).kind == "notification"
    with pytest.raises(JsonRpcError, match="nested deeper than 128") as info:
        _native.scan_jsonrpc(message(limit + 1))
    assert info.value.code == PARSE_ERROR
    with pytest.raises(JsonRpcError):
        _native.scan_jsonrpc(b"[" * 100_000)


def test_batch_functions() -> None:
    data = b'[{"jsonrpc":"2.0","id":1,"method":"a"}, 5, {"jsonrpc":"2.0","method":"b"}]'
    assert _native.split_jsonrpc_batch(data) == [
        b'{"jsonrpc":"2.0","id":1,"method":"a"}',
        b"5",
        b'{"jsonrpc":"2.0","method":"b"}',
    ]
    first, second, third = _native.scan_jsonrpc_batch(data)
    assert isinstance(first, JsonRpcEnvelope) and first.kind == "request"
    assert first.raw == b'{"jsonrpc":"2.0","id":1,"method":"a"}'
    assert first.id_span == (22, 23)
    assert isinstance(second, JsonRpcError) and second.code == INVALID_REQUEST
    assert isinstance(third, JsonRpcEnvelope) and third.kind == "notification"
    for bad, code in [(b"[]", INVALID_REQUEST), (b"[1,", PARSE_ERROR), (b"{}", INVALID_REQUEST)]:
        with pytest.raises(JsonRpcError) as info:
            _native.scan_jsonrpc_batch(bad)
        assert info.value.code == code
        with pytest.raises(JsonRpcError):
            _native.split_jsonrpc_batch(bad)


def test_rewrite_id() -> None:
    data = b'{"jsonrpc":"2.0", "id" : "client-7", "method":"tools/list"}'
    out = _native.rewrite_jsonrpc_id(data, b"42")
    assert out == b'{"jsonrpc":"2.0", "id" : 42, "method":"tools/list"}'
    assert _native.scan_jsonrpc(data).with_id(b"42") == out
    assert _native.rewrite_jsonrpc_id(out, b'"client-7"') == data
    with pytest.raises(JsonRpcError) as info:
        _native.rewrite_jsonrpc_id(b'{"jsonrpc":"2.0","id":1}', b"2")
    assert info.value.code == INVALID_REQUEST
    notification = b'{"jsonrpc":"2.0","method":"m"}'
    for bad_message, new_id, match in [
        (notification, b"1", 'no "id"'),
        (b"[" + notification + b"]", b"1", "batch"),
        (data, b"1.0", "new id"),
        (data, b" 1", "new id"),
        (data, b"null", "new id"),
    ]:
        with pytest.raises(ValueError, match=match) as raised:
            _native.rewrite_jsonrpc_id(bad_message, new_id)
        assert not isinstance(raised.value, JsonRpcError)
    with pytest.raises(ValueError, match='no "id"'):
        _native.scan_jsonrpc(notification).with_id(b"1")
    with pytest.raises(ValueError, match="batch"):
        _native.scan_jsonrpc(b"[1]").with_id(b"1")


# --- Differential tests against the reference ----------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
    # Lone and paired surrogates: written as \u escapes, only proper pairs are valid.
    | st.text(st.characters(min_codepoint=0xD7FE, max_codepoint=0xE001, categories=["Cs", "Co", "Lo"]), max_size=3)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
ids = st.integers(-(2**65), 2**65) | st.text(max_size=6)
odd_ids: st.SearchStrategy[Any] = (
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.just({}) | st.just([1])
)
methods = st.sampled_from(["initialize", "tools/call", "notifications/progress"]) | st.text(max_size=8)
error_objects = st.fixed_dictionaries(
    {
        "code": st.integers(-(2**64), 2**64) | st.sampled_from([-32601, -32700]),
        "message": st.text(max_size=6),
    },
    optional={"data": json_values},
)


@st.composite
def message_members(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Members of a message that is usually valid, with occasional wrong types, missing or extra
    members, and repeats."""

    def rarely(value: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
        return draw(odd if draw(st.integers(0, 9)) == 0 else value)

    shape = draw(st.sampled_from(["request", "notification", "result", "error"]))
    members: list[tuple[str, Any]] = []
    if draw(st.integers(0, 19)):
        members.append(("jsonrpc", rarely(st.just("2.0"), st.sampled_from(["1.0", 2.0, None, "2.0 "]))))
    if shape != "notification" or draw(st.integers(0, 9)) == 0:
        members.append(("id", rarely(ids, odd_ids)))
    if shape in ("request", "notification"):
        members.append(("method", rarely(methods, json_values)))
        if draw(st.booleans()):
            members.append(
                (
                    "params",
                    rarely(
                        st.dictionaries(st.text(max_size=4), json_values, max_size=3)
                        | st.lists(json_values, max_size=2),
                        json_values,
                    ),
                )
            )
    if shape == "result" or draw(st.integers(0, 19)) == 0:
        members.append(("result", draw(json_values)))
    if shape == "error" or draw(st.integers(0, 19)) == 0:
        error = rarely(error_objects, json_values)
        if isinstance(error, dict) and draw(st.integers(0, 9)) == 0:
            error = {**error, "code": draw(json_values)}
        members.append(("error", error))
    members.extend(draw(st.lists(st.tuples(st.text(max_size=4), json_values), max_size=2)))
    if members and draw(st.integers(0, 9)) == 0:
        members.append((draw(st.sampled_from(members))[0], draw(json_values)))
    return draw(st.permutations(members))


whitespace = st.sampled_from(["", "", " ", "\n", "\t", "\r\n  "])


@st.composite
def encode_object(draw: st.DrawFn, members: list[tuple[str, Any]]) -> bytes:
    """Writes members as a JSON object with varied spacing and escaping."""
    ensure_ascii = draw(st.booleans())

    def key(name: str) -> str:
        if name and draw(st.integers(0, 9)) == 0:  # escaped spelling of the same name
            return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in name) + '"'
        return json.dumps(name, ensure_ascii=ensure_ascii)

    parts = [
        draw(whitespace)
        + key(k)
        + draw(whitespace)
        + ":"
        + draw(whitespace)
        + json.dumps(v, ensure_ascii=ensure_ascii)
        + draw(whitespace)
        for k, v in members
    ]
    text = draw(whitespace) + "{" + ",".join(parts) + "}" + draw(whitespace)
    return text.encode("utf-8", "surrogatepass")


messages = message_members().flatmap(encode_object)


def decoded_id(raw: bytes | None) -> Any:
    return ABSENT if raw is None else typed(json.loads(raw))


def typed(value: Any) -> Any:
    return value if value is ABSENT else (type(value).__name__, value)


def native_outcome(data: bytes) -> tuple[Any, ...]:
    try:
        env = _native.scan_jsonrpc(data)
    except JsonRpcError as e:
        return ("error", e.code, decoded_id(e.id))
    if env.is_batch:
        return ("batch",)
    params = ABSENT if env.params is None else json.loads(env.params)
    return ("ok", env.kind, decoded_id(env.id), env.method, params, env.error_code)


def reference_outcome(data: bytes) -> tuple[Any, ...]:
    try:
        ref = reference.scan(data)
    except reference.RefJsonRpcError as e:
        return ("error", e.code, typed(e.id))
    if isinstance(ref, list):
        return ("batch",)
    return ("ok", ref.kind, typed(ref.id), ref.method, ref.params, ref.error_code)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_scan_matches_reference(data: bytes) -> None:
    assert native_outcome(data) == reference_outcome(data)


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for op, position, byte in edits:
        at = position % (len(out) + 1)
        if op == 0:
            del out[at : at + 1]
        elif op == 1:
            out.insert(at, byte)
        elif op == 2 and at < len(out):
            out[at] = byte
        else:
            del out[at:]
    return bytes(out)


interesting_bytes = st.sampled_from(
    b'{}[]",:\\ \t\n0123456789-+.eEtrufalsn\x00\x1f\x7f\xc3\xa9\xed\xa0\xff'
) | st.integers(0, 255)


@settings(max_examples=300, deadline=None)
@given(
    messages,
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), interesting_bytes), min_size=1, max_size=3),
)
def test_mutated_messages_match_reference(data: bytes, edits: list[tuple[int, int, int]]) -> None:
    mutated = mutate(data, edits)
    assert native_outcome(mutated) == reference_outcome(mutated)


@settings(max_examples=150, deadline=None)
@given(st.lists(messages | st.sampled_from([b"1", b"[]", b"null", b'"x"']), max_size=4))
def test_batches_match_reference(elements: list[bytes]) -> None:
    data = b"[" + b",".join(elements) + b"]"
    outcome = reference_outcome(data)
    assert native_outcome(data) == outcome
    if outcome != ("batch",):
        return
    expected = [reference_outcome(element) for element in elements]
    got = []
    for item in _native.scan_jsonrpc_batch(data):
        if isinstance(item, JsonRpcError):
            got.append(("error", item.code, decoded_id(item.id)))
        else:
            got.append(native_outcome(item.raw))
    assert got == expected
    assert _native.split_jsonrpc_batch(data) == [element.strip(b" \t\r\n") for element in elements]


@settings(max_examples=200, deadline=None)
@given(messages, ids)
def test_rewritten_id_changes_only_the_id(data: bytes, new_id: int | str) -> None:
    try:
        env = _native.scan_jsonrpc(data)
    except JsonRpcError:
        return
    if env.id is None or env.is_batch:
        return
    raw_id = json.dumps(new_id).encode()
    out = env.with_id(raw_id)
    assert out == _native.rewrite_jsonrpc_id(data, raw_id)
    assert out == data[: env.id_span[0]] + raw_id + data[env.id_span[1] :]  # type: ignore[index]
    again = _native.scan_jsonrpc(out)
    assert again.id == raw_id
    assert (again.kind, again.method, again.params, again.result, again.error_code) == (
        env.kind,
        env.method,
        env.params,
        env.result,
        env.error_code,
    )
