"""The native MCP federation helpers: session tokens, list merge, name resolution, request
rewriting. API behaviour, and differential tests against `mcp_reference`."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgateway import _native
from agentgateway._native import JsonRpcError, ListResultError, SessionCipher, SessionTokenError
from tests.native import mcp_reference as ref

KEY = bytes(range(32))
HEX_KEY = KEY.hex()

# --- Session tokens ----------------------------------------------------------------------------


def b64decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_seal_open_round_trip() -> None:
    cipher = SessionCipher(KEY)
    token = cipher.seal(b'{"t":"mcp"}', b"alice")
    assert cipher.open(token, b"alice") == b'{"t":"mcp"}'
    assert cipher.open(cipher.seal(b"")) == b""
    assert len(b64decode(token)) == 12 + len(b'{"t":"mcp"}') + 16
    assert cipher.seal(b"same") != cipher.seal(b"same")
    assert repr(cipher) == "SessionCipher(<key hidden>)"
    assert _native.SESSION_KEY_LEN == 32


def test_tokens_are_standard_aes_256_gcm() -> None:
    """nonce || ciphertext || tag, readable by another AES-GCM implementation and back."""
    cipher = SessionCipher(KEY)
    raw = b64decode(cipher.seal(b"state", b"ctx"))
    assert AESGCM(KEY).decrypt(raw[:12], raw[12:], b"ctx") == b"state"
    nonce = bytes(range(12))
    foreign = b64encode(nonce + AESGCM(KEY).encrypt(nonce, b"from elsewhere", b"ctx"))
    assert cipher.open(foreign, b"ctx") == b"from elsewhere"


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_key_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ValueError, match=f"exactly 32 bytes \\(AES-256\\), got {length}") as info:
        SessionCipher(bytes(length))
    assert not isinstance(info.value, SessionTokenError)


def test_wrong_key_or_aad() -> None:
    token = SessionCipher(KEY).seal(b"state", b"alice")
    for cipher, aad in [(SessionCipher(KEY), b"bob"), (SessionCipher(KEY), b""), (SessionCipher(bytes(32)), b"alice")]:
        with pytest.raises(SessionTokenError, match="failed authentication") as info:
            cipher.open(token, aad)
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "too short: 0 bytes"),
        (b64encode(bytes(27)), "too short: 27 bytes"),
        (b64encode(bytes(28)), "failed authentication"),
        ("AAAA=", "not canonical base64url"),
        ("AA AA", "not canonical base64url"),
        ("AA+/", "not canonical base64url"),
        ("Ab", "not canonical base64url"),  # non-zero trailing bits
        ("A", "not canonical base64url"),
        ("\u00e9\u00e9\u00e9\u00e9", "not canonical base64url"),
    ],
)
def test_malformed_tokens(token: str, message: str) -> None:
    with pytest.raises(SessionTokenError, match=message):
        SessionCipher(KEY).open(token)


def test_every_bit_flip_is_detected() -> None:
    cipher = SessionCipher(KEY)
    raw = b64decode(cipher.seal(b"upstream session ids", b"alice"))
    for i in range(len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            with pytest.raises(SessionTokenError):
                cipher.open(b64encode(bytes(bad)), b"alice")
    for cut in (raw[:-1], raw[1:], raw + b"\x00"):
        with pytest.raises(SessionTokenError):
            cipher.open(b64encode(cut), b"alice")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=40))
def test_round_trip_and_visible_ascii(plaintext: bytes, aad: bytes) -> None:
    cipher = SessionCipher(KEY)
    token = cipher.seal(plaintext, aad)
    assert all(0x21 <= ord(c) <= 0x7E for c in token)
    assert cipher.open(token, aad) == plaintext


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 10_000), st.characters(codec="ascii") | st.characters())
def test_any_changed_character_is_rejected(plaintext: bytes, position: int, replacement: str) -> None:
    cipher = SessionCipher(KEY)
    token = cipher.seal(plaintext)
    at = position % len(token)
    if token[at] == replacement:
        return
    with pytest.raises(SessionTokenError):
        cipher.open(token[:at] + replacement + token[at + 1 :])


def test_session_key_from_hex() -> None:
    assert _native.session_key_from_hex(HEX_KEY) == KEY
    assert _native.session_key_from_hex(HEX_KEY.upper()) == KEY
    with pytest.raises(ValueError, match="must be 64 hex characters .* got 63 characters"):
        _native.session_key_from_hex(HEX_KEY[:-1])
    with pytest.raises(ValueError, match="got 65 characters"):
        _native.session_key_from_hex(HEX_KEY + "\n")
    with pytest.raises(ValueError, match="'z' at position 5 is not a hex digit"):
        _native.session_key_from_hex(HEX_KEY[:5] + "z" + HEX_KEY[6:])
    with pytest.raises(ValueError, match="'\u00e9' at position 0"):
        _native.session_key_from_hex("\u00e9" + HEX_KEY[1:])


# --- List merge: API ---------------------------------------------------------------------------

MATH = b'{"tools": [ {"name":"add","description":"Adds.","inputSchema":{"type":"object"}}, {"name":"sub"} ], "nextCursor":"m2", "ttlMs": 5000, "cacheScope":"public", "_meta":{"k":1}}'
WEB = b'{"tools":[{"inputSchema":{"type":"object"},"n\\u0061me":"fetch","title":"Fetch"}],"ttlMs":300,"cacheScope":"public"}'


def test_merge_tools_with_prefix() -> None:
    merged = _native.merge_list_results("tools", [("math", MATH), ("web", WEB)], prefix=True, next_cursor="opaque")
    assert merged == (
        b'{"tools":[{"name":"math_add","description":"Adds.","inputSchema":{"type":"object"}},{"name":"math_sub"},'
        b'{"inputSchema":{"type":"object"},"n\\u0061me":"web_fetch","title":"Fetch"}],'
        b'"nextCursor":"opaque","ttlMs":300,"cacheScope":"public"}'
    )
    plain = _native.merge_list_results("tools", [("math", MATH), ("web", WEB)], prefix=False)
    assert [t["name"] for t in json.loads(plain)["tools"]] == ["add", "sub", "fetch"]


def test_merge_resources_and_templates() -> None:
    resources = b'{"resources":[{"uri":"memo://a","name":"a"},{"uri":"plain","name":"p"}]}'
    merged = json.loads(_native.merge_list_results("resources", [("svc", resources)], prefix=True))
    assert [r["uri"] for r in merged["resources"]] == ["svc+memo://a", "plain"]
    templates = b'{"resourceTemplates":[{"uriTemplate":"file:///{path}","name":"f"}]}'
    merged = json.loads(_native.merge_list_results("resourceTemplates", [("fs", templates)], prefix=True))
    assert merged == {"resourceTemplates": [{"uriTemplate": "fs+file:///{path}", "name": "f"}]}
    prompts = b'{"prompts":[{"name":"greet","arguments":[]}]}'
    merged = json.loads(_native.merge_list_results("prompts", [("p", prompts)], prefix=True, delimiter="__"))
    assert merged == {"prompts": [{"name": "p__greet", "arguments": []}]}


def test_merge_allow_list_and_keys() -> None:
    results = [("math", MATH), ("web", WEB)]
    assert _native.list_item_keys("tools", results) == [("math", "add"), ("math", "sub"), ("web", "fetch")]
    merged = json.loads(
        _native.merge_list_results("tools", results, prefix=True, allowed={"math\x00sub", "web\x00fetch"})
    )
    assert [t["name"] for t in merged["tools"]] == ["math_sub", "web_fetch"]
    # A filtered list depends on the client: never public.
    assert merged["cacheScope"] == "private"
    # Any container works.
    merged = json.loads(_native.merge_list_results("tools", results, prefix=True, allowed={"math\x00add": 1}.keys()))
    assert [t["name"] for t in merged["tools"]] == ["math_add"]
    assert json.loads(_native.merge_list_results("tools", results, prefix=True, allowed=frozenset()))["tools"] == []


def test_merge_dedupe() -> None:
    a = b'{"tools":[{"name":"x"},{"name":"y"}]}'
    b = b'{"tools":[{"name":"y"}]}'
    merged = json.loads(_native.merge_list_results("tools", [("a", a), ("b", b)], prefix=False, dedupe=True))
    assert merged == {"tools": [{"name": "x"}]}


def test_cache_hints() -> None:
    def hints(*results: bytes, allowed: set[str] | None = None) -> dict[str, Any]:
        merged: dict[str, Any] = json.loads(
            _native.merge_list_results("tools", [("t", r) for r in results], prefix=False, allowed=allowed)
        )
        del merged["tools"]
        return merged

    assert hints(b'{"tools":[]}') == {}
    assert hints(b'{"tools":[],"ttlMs":5,"cacheScope":"public"}', b'{"tools":[],"ttlMs":3,"cacheScope":"public"}') == {
        "ttlMs": 3,
        "cacheScope": "public",
    }
    assert hints(b'{"tools":[],"ttlMs":5}', b'{"tools":[]}') == {"ttlMs": 0}
    assert hints(b'{"tools":[],"cacheScope":"public"}', b'{"tools":[]}') == {"cacheScope": "private"}
    assert hints(b'{"tools":[],"cacheScope":"public"}', b'{"tools":[],"cacheScope":"private"}') == {
        "cacheScope": "private"
    }
    assert hints(b'{"tools":[],"ttlMs":-4,"cacheScope":"weird"}') == {"ttlMs": 0, "cacheScope": "private"}
    assert hints(b'{"tools":[],"cacheScope":"public"}', allowed=set()) == {"cacheScope": "private"}


@pytest.mark.parametrize(
    ("kind", "body", "reason"),
    [
        ("tools", b"[]", "expected an object, found an array"),
        ("tools", b"{", "not JSON: expected a string key or '}' at byte 1, found end of input"),
        ("tools", b'{"tools":[]} {}', "not JSON: expected end of input"),
        ("tools", b"{}", 'no "tools" member'),
        ("tools", b'{"tools":{}}', '"tools" must be an array, found an object'),
        ("tools", b'{"tools":[],"tools":[]}', '"tools" appears twice'),
        ("tools", b'{"tools":[1]}', "tools\\[0\\] must be an object, found an integer"),
        ("tools", b'{"tools":[{"name":"a"},{"title":"b"}]}', 'tools\\[1\\] has no "name"'),
        ("prompts", b'{"prompts":[{"name":null}]}', "prompts\\[0\\].name must be a string, found null"),
        ("resources", b'{"resources":[{"uri":"a:b","uri":"c:d"}]}', 'resources\\[0\\] has "uri" twice'),
        (
            "resourceTemplates",
            b'{"resourceTemplates":[{"uri":"a:b"}]}',
            'resourceTemplates\\[0\\] has no "uriTemplate"',
        ),
    ],
)
def test_malformed_results_name_the_target(kind: str, body: bytes, reason: str) -> None:
    good = b'{"%s":[]}' % kind.encode()
    results = [("good", good), ("bad one", body)]
    method = {"resourceTemplates": "resources/templates/list"}.get(kind, f"{kind}/list")
    for call in (
        lambda: _native.merge_list_results(kind, results, prefix=True),  # type: ignore[arg-type]
        lambda: _native.list_item_keys(kind, results),  # type: ignore[arg-type]
    ):
        with pytest.raises(ListResultError, match=f'^target "bad one": malformed {method} result: {reason}') as info:
            call()
        assert (info.value.target, info.value.index) == ("bad one", 1)
        assert isinstance(info.value, ValueError)
    with pytest.raises(ref.Malformed):
        ref.items_of(kind, body)


def test_merge_argument_errors() -> None:
    with pytest.raises(
        ValueError, match='kind must be "tools", "prompts", "resources" or "resourceTemplates", got "tool"'
    ):
        _native.merge_list_results("tool", [], prefix=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be"):
        _native.list_item_keys("Tools", [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="results must be a sequence, not a str"):
        _native.merge_list_results("tools", "ab", prefix=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="allowed must be a sequence, not a str"):
        _native.merge_list_results("tools", [("a", b'{"tools":[{"name":"x"}]}')], prefix=True, allowed="a\x00x")
    with pytest.raises(TypeError):
        _native.merge_list_results("tools", [("a", '{"tools":[]}')], prefix=True)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="expected tuple of length 2") as info:
        _native.merge_list_results("tools", [("a",)], prefix=True)  # type: ignore[list-item]
    assert not isinstance(info.value, ListResultError)
    with pytest.raises(TypeError):
        _native.merge_list_results("tools", [], True)  # type: ignore[call-arg]
    assert _native.merge_list_results("tools", (), prefix=True) == b'{"tools":[]}'
    assert _native.merge_list_results("tools", iter([]), prefix=True) == b'{"tools":[]}'  # type: ignore[arg-type]


# --- List merge: differential ------------------------------------------------------------------

ws = st.sampled_from(["", " ", "\n  ", "\t"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=4,
)
# Small alphabets so that names collide across targets and prefixes nest.
names = st.text(alphabet='ab_+:/"\u00e9\n', max_size=5) | st.sampled_from(
    ["x", "a_x", "memo:x", "file:///a", "svc+memo:x", "a_b:x", "a b:x", "1a:x", "a.b-c+d:x", "\u00e9:x", ":x", "a"]
)
target_names = st.text(alphabet='ab_+"\u00e9\n', min_size=1, max_size=3)


@dataclass(frozen=True)
class RawItem:
    text: str
    key_start: int  # offset of the key's string token in `text`


@st.composite
def raw_items(draw: st.DrawFn, key: str) -> RawItem:
    original = draw(names)
    extra_names = [n for n in ("name", "description", "title", "inputSchema", "_meta", "mimeType") if n != key]
    extras = draw(st.dictionaries(st.sampled_from(extra_names), json_values, max_size=2))

    def token(value: Any) -> str:
        return json.dumps(value, ensure_ascii=draw(st.booleans()))

    members = [f"{token(n)}{draw(ws)}:{draw(ws)}{token(v)}" for n, v in extras.items()]
    key_name = draw(st.sampled_from([json.dumps(key), f'"\\u{ord(key[0]):04x}{key[1:]}"']))
    key_head = f"{key_name}{draw(ws)}:{draw(ws)}"
    at = draw(st.integers(0, len(members)))
    before = "{" + draw(ws) + "".join(m + "," + draw(ws) for m in members[:at]) + key_head
    text = before + token(original) + "".join("," + draw(ws) + m for m in members[at:]) + draw(ws) + "}"
    return RawItem(text, len(before))


@st.composite
def raw_results(draw: st.DrawFn, kind: str) -> tuple[bytes, list[RawItem]]:
    items = draw(st.lists(raw_items(ref.LIST_KEYS[kind]), max_size=5))
    members = [json.dumps(kind) + ":" + draw(ws) + "[" + ("," + draw(ws)).join(i.text for i in items) + draw(ws) + "]"]
    hint_values = {
        "ttlMs": st.integers(0, 10**6) | st.sampled_from([-1, 2.5, "9", 2**70, None]),
        "cacheScope": st.sampled_from(["public", "public", "private", "shared", 1]),
        "nextCursor": st.text(max_size=4),
        "_meta": json_values,
    }
    for name, values in hint_values.items():
        if draw(st.booleans()):
            members.insert(
                draw(st.integers(0, len(members))), f"{json.dumps(name)}:{draw(ws)}{json.dumps(draw(values))}"
            )
    return ("{" + draw(ws) + ("," + draw(ws)).join(members) + draw(ws) + "}").encode(), items


@st.composite
def fan_outs(draw: st.DrawFn) -> tuple[str, list[str], list[tuple[bytes, list[RawItem]]]]:
    kind = draw(st.sampled_from(list(ref.LIST_KEYS)))
    targets = draw(st.lists(target_names, min_size=draw(st.integers(0, 3)), max_size=4, unique=True))
    return kind, targets, [draw(raw_results(kind)) for _ in targets]


@settings(max_examples=120, deadline=None)
@given(
    fan_outs(),
    st.booleans(),
    st.sampled_from(["_", "__", "."]),
    st.booleans(),
    st.none() | st.text(max_size=4),
    st.data(),
)
def test_merge_matches_reference(
    fan_out: tuple[str, list[str], list[tuple[bytes, list[RawItem]]]],
    prefix: bool,
    delimiter: str,
    dedupe: bool,
    next_cursor: str | None,
    data: st.DataObject,
) -> None:
    kind, targets, bodies = fan_out
    results = [(target, body) for target, (body, _) in zip(targets, bodies, strict=True)]
    keys = ref.list_item_keys(kind, results)
    assert _native.list_item_keys(kind, results) == keys  # type: ignore[arg-type]
    allowed = None
    if data.draw(st.booleans()):
        allowed = {f"{t}\x00{k}" for t, k in keys if data.draw(st.booleans())}
    options: dict[str, Any] = {"prefix": prefix, "delimiter": delimiter, "dedupe": dedupe, "allowed": allowed}
    merged = _native.merge_list_results(kind, results, next_cursor=next_cursor, **options)  # type: ignore[arg-type]
    assert json.loads(merged) == ref.merge_list_results(kind, results, next_cursor=next_cursor, **options)
    # Bytes: each item is its upstream text, with at most the target prefix spliced into its key.
    kept, _ = ref.plan(kind, results, **options)
    joint = "+" if ref.LIST_KEYS[kind] != "name" else delimiter
    expected = []
    for t, i, _, prefixed in kept:
        item = bodies[t][1][i]
        cut = item.key_start + 1
        expected.append(item.text[:cut] + ref.escape(targets[t] + joint) + item.text[cut:] if prefixed else item.text)
    assert merged.startswith(("{" + json.dumps(kind) + ":[" + ",".join(expected) + "]").encode())


@settings(max_examples=80, deadline=None)
@given(
    fan_outs(),
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.sampled_from(b'{}[]",:\\ 0a-\x00\xc3')),
        min_size=1,
        max_size=2,
    ),
)
def test_mutated_results_fail_cleanly(
    fan_out: tuple[str, list[str], list[tuple[bytes, list[RawItem]]]], edits: list[tuple[int, int, int]]
) -> None:
    kind, targets, bodies = fan_out
    if not targets:
        return
    body = bytearray(bodies[0][0])
    for op, position, byte in edits:
        at = position % (len(body) + 1)
        if op == 0:
            del body[at : at + 1]
        elif op == 1:
            body.insert(at, byte)
        elif at < len(body):
            body[at] = byte
    results = [(targets[0], bytes(body))] + [(t, b) for t, (b, _) in zip(targets[1:], bodies[1:], strict=True)]
    try:
        expected = ref.merge_list_results(kind, results, prefix=True)
    except (ref.Malformed, UnicodeDecodeError):
        expected = None
    try:
        merged = _native.merge_list_results(kind, results, prefix=True)  # type: ignore[arg-type]
    except ListResultError as e:
        assert (e.target, e.index) == (targets[0], 0)
        return
    # The native scanner is the stricter one (no NaN, no lone surrogates), never the looser.
    assert expected is not None
    assert json.loads(merged) == expected


# --- Name resolution ---------------------------------------------------------------------------


def test_split_prefixed_name() -> None:
    targets = ["math", "a", "a_b"]
    assert _native.split_prefixed_name("math_add", targets) == (0, "add")
    assert _native.split_prefixed_name("a_b_c", targets) == (2, "c")
    assert _native.split_prefixed_name("a_c", targets) == (1, "c")
    assert _native.split_prefixed_name("math.add", targets, ".") == (0, "add")
    assert _native.split_prefixed_name("nope_x", targets) is None
    assert _native.split_prefixed_name("math", targets) is None
    assert _native.split_prefixed_name("math_x", ()) is None
    with pytest.raises(TypeError, match="targets must be a sequence, not a str"):
        _native.split_prefixed_name("math_x", "math")
    with pytest.raises(TypeError):
        _native.split_prefixed_name("math_x", [1])  # type: ignore[list-item]


def test_split_prefixed_uri() -> None:
    targets = ["svc", "a", "a+b"]
    assert _native.split_prefixed_uri("svc+memo://x", targets) == (0, "memo://x")
    assert _native.split_prefixed_uri("a+b+file:///x", targets) == (2, "file:///x")
    assert _native.split_prefixed_uri("a+b:x", targets) == (1, "b:x")
    # Only URIs with a scheme are ever prefixed.
    assert _native.split_prefixed_uri("svc+plain", targets) is None
    assert _native.split_prefixed_uri("memo://x", targets) is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(target_names, max_size=5),
    st.text(alphabet="ab_+:.\u00e9", max_size=4),
    st.sampled_from(["_", "__", "."]),
    st.data(),
)
def test_split_matches_reference(targets: list[str], rest: str, delimiter: str, data: st.DataObject) -> None:
    head = data.draw(st.sampled_from([*targets, "", "zz"]))
    name = head + data.draw(st.sampled_from([delimiter, "+", ""])) + rest
    assert _native.split_prefixed_name(name, targets, delimiter) == ref.split_prefixed_name(name, targets, delimiter)
    assert _native.split_prefixed_uri(name, targets) == ref.split_prefixed_uri(name, targets)


@settings(max_examples=60, deadline=None)
@given(fan_outs(), st.sampled_from(["_", "__"]))
def test_merged_names_split_back(
    fan_out: tuple[str, list[str], list[tuple[bytes, list[RawItem]]]], delimiter: str
) -> None:
    """A prefixed name resolves to its own target and original name, unless a longer target
    name also matches it (the ambiguity `dedupe` exists for)."""
    kind, targets, bodies = fan_out
    results = [(target, body) for target, (body, _) in zip(targets, bodies, strict=True)]
    key = ref.LIST_KEYS[kind]
    merged = json.loads(_native.merge_list_results(kind, results, prefix=True, delimiter=delimiter))  # type: ignore[arg-type]
    served = _native.list_item_keys(kind, results)  # type: ignore[arg-type]
    assert len(merged[kind]) == len(served)
    for item, (target, original) in zip(merged[kind], served, strict=True):
        exposed = item[key]
        if key == "name":
            found = _native.split_prefixed_name(exposed, targets, delimiter)
        elif ref.has_scheme(original):
            found = _native.split_prefixed_uri(exposed, targets)
        else:
            assert exposed == original
            continue
        assert found is not None
        index, name = found
        if len(targets[index]) == len(target):
            assert (targets[index], name) == (target, original)
        else:
            assert len(targets[index]) > len(target)


# --- Request rewriting -------------------------------------------------------------------------

CALL = b'{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"math_add","arguments":{"name":"x"}}}'


def test_rewrite_request() -> None:
    assert _native.rewrite_request(CALL, new_id=b"17", param="name", value="add") == (
        b'{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"add","arguments":{"name":"x"}}}'
    )
    assert _native.rewrite_request(CALL, param="name", value='a"\n\u00e9') == CALL.replace(
        b'"math_add"', '"a\\"\\n\u00e9"'.encode()
    )
    assert _native.rewrite_request(CALL, new_id=b'"gw-1"') == CALL.replace(b'"c-1"', b'"gw-1"')
    assert _native.rewrite_request(CALL) == CALL
    complete = b'{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"svc+file:///{p}"}}}'
    assert json.loads(_native.rewrite_request(complete, param="ref.uri", value="file:///{p}"))["params"]["ref"] == {
        "type": "ref/resource",
        "uri": "file:///{p}",
    }


@pytest.mark.parametrize(
    ("message", "kwargs", "error"),
    [
        (CALL, {"param": "uri", "value": "x"}, "params.uri does not exist"),
        (CALL, {"param": "ref.name", "value": "x"}, "params.ref does not exist"),
        (CALL, {"param": "arguments.y", "value": "x"}, "params.arguments.y does not exist"),
        (CALL, {"param": "arguments", "value": "x"}, "params.arguments must be a string, found an object"),
        (CALL, {"param": "name.x", "value": "x"}, "params.name must be an object, found a string"),
        (CALL, {"param": "a.b.c", "value": "x"}, 'param path "a.b.c" must be one or two non-empty member names'),
        (CALL, {"param": "", "value": "x"}, 'param path "" must be'),
        (CALL, {"param": "name"}, "param and value must be given together"),
        (CALL, {"value": "x"}, "param and value must be given together"),
        (CALL, {"new_id": b"1.5"}, "the new id must be exactly one JSON string or integer"),
        (CALL, {"new_id": b"null"}, "the new id must be"),
        (b'{"jsonrpc":"2.0","method":"notifications/x"}', {"new_id": b"1"}, 'the message has no "id" to rewrite'),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', {"param": "name", "value": "x"}, 'no "params" object'),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"m","params":["name"]}',
            {"param": "name", "value": "x"},
            'no "params" object',
        ),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\\u0061me":"b"}}',
            {"param": "name", "value": "x"},
            "params.name appears twice",
        ),
        (b'[{"jsonrpc":"2.0","id":1,"method":"m"}]', {"new_id": b"2"}, "cannot rewrite a batch"),
    ],
)
def test_rewrite_request_errors(message: bytes, kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)) as info:
        _native.rewrite_request(message, **kwargs)
    assert not isinstance(info.value, JsonRpcError)


def test_rewrite_invalid_message_is_a_jsonrpc_error() -> None:
    with pytest.raises(JsonRpcError) as info:
        _native.rewrite_request(b'{"jsonrpc":"2.0","id":"q","method":5}', new_id=b"1")
    assert (info.value.code, info.value.id) == (-32600, b'"q"')
    assert info.value.message == 'Invalid Request: "method" must be a string, found an integer'
    with pytest.raises(JsonRpcError) as info:
        _native.rewrite_request(b"{", param="name", value="x")
    assert (info.value.code, info.value.id) == (-32700, None)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, Any]:
    """A request template with \\x01I where the id token goes and \\x01T where the string at
    `path` goes (a raw \\x01 cannot occur in the JSON text around them), the path, the id."""
    path = draw(st.sampled_from(["name", "uri", "ref.name", "ref.uri", "cursor"]))
    first, _, second = path.partition(".")
    extras = st.dictionaries(st.sampled_from(["arguments", "_meta", "type", "x"]), json_values, max_size=2)

    def obj(target_key: str, inner: str) -> str:
        members = [
            f"{json.dumps(k)}:{draw(ws)}{json.dumps(v, ensure_ascii=draw(st.booleans()))}"
            for k, v in draw(extras).items()
        ]
        members.insert(draw(st.integers(0, len(members))), f"{json.dumps(target_key)}{draw(ws)}:{draw(ws)}{inner}")
        return "{" + draw(ws) + ("," + draw(ws)).join(members) + draw(ws) + "}"

    params = obj(first, obj(second, "\x01T") if second else "\x01T")
    envelope = [
        '"jsonrpc":"2.0"',
        '"id":' + draw(ws) + "\x01I",
        '"method":"tools/call"',
        '"params":' + draw(ws) + params,
    ]
    order = draw(st.permutations(envelope))
    old_id = draw(st.integers(-(10**12), 10**12) | st.text(max_size=4))
    return "{" + ("," + draw(ws)).join(order) + "}", path, old_id


@settings(max_examples=200, deadline=None)
@given(
    requests(),
    st.text(max_size=6),
    st.none() | st.integers(0, 10**20) | st.text(max_size=4),
    st.text(max_size=6),
    st.booleans(),
)
def test_rewrite_matches_reference(
    request: tuple[str, str, Any], old: str, new_id: int | str | None, value: str, ascii_old: bool
) -> None:
    template, path, old_id = request
    message = (
        template.replace("\x01I", json.dumps(old_id)).replace("\x01T", json.dumps(old, ensure_ascii=ascii_old)).encode()
    )
    raw_id = None if new_id is None else json.dumps(new_id).encode()
    out = _native.rewrite_request(message, new_id=raw_id, param=path, value=value)
    assert json.loads(out) == ref.rewrite_request(message, new_id, path, value)
    kept_id = json.dumps(old_id) if raw_id is None else raw_id.decode()
    assert out == template.replace("\x01I", kept_id).replace("\x01T", json.dumps(value, ensure_ascii=False)).encode()
