"""The request path normalizer (core/request.py): explicit tricky cases, then hypothesis
properties against an independent RFC 3986 reference (decode, then §5.2.4 dot removal), with the
real route table deciding what is guarded."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentgateway.config.compile import compile_config
from agentgateway.config.loader import load_text
from agentgateway.core.request import PathError, normalize_path, split_target
from agentgateway.routing.table import RouteTable


def _table() -> RouteTable:
    runtime = compile_config(
        load_text(
            "binds: [{port: 80, listeners: [{routes: ["
            "{name: guarded, matches: [{path: {pathPrefix: /api}}]},"
            "{name: open}]}]}]"
        )
    )
    listener = runtime.binds[80].listeners.select(b"x")
    assert listener is not None
    return listener.routes


TABLE = _table()


def _route(path: bytes) -> str:
    route = TABLE.select(b"x", b"GET", path, [], b"")
    assert route is not None
    return route.name


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (b"/%61pi/x", b"/api/x"),
        (b"/API/x", b"/API/x"),
        (b"/%2e%2e/api/x", b"/api/x"),
        (b"/x/%2E%2E/api/x", b"/api/x"),
        (b"/.%2e/api", b"/api"),
        (b"//api/x", b"/api/x"),
        (b"/api//../x", b"/api/x"),  # dots first, as RFC 3986 reads it
        (b"/x//../api", b"/x/api"),
        (b"/api/./x", b"/api/x"),
        (b"/a/b/../../api/x", b"/api/x"),
        (b"/a/b/../../../../api/x", b"/api/x"),
        (b"/api%252Fx", b"/api%252Fx"),
        (b"/caf%c3%a9/", b"/caf%C3%A9/"),
        (b"/%7e%41%2d%5f%2E", b"/~A-_."),
        (b"/a/.", b"/a/"),
        (b"/a/..", b"/"),
        (b"/..", b"/"),
        (b"/a//", b"/a/"),
        (b"/%3B/%3f/%23", b"/%3B/%3F/%23"),
    ],
)
def test_normalized(raw, normalized):
    assert normalize_path(raw) == normalized


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"/api%2fx", "encoded slash"),
        (b"/api%2Fx", "encoded slash"),
        (b"/api%5cx", "encoded slash"),
        (b"/x/..%2fapi", "encoded slash"),
        (b"/api\\x", "backslash"),
        (b"/%c0%af", "not UTF-8"),
        (b"/%e0%80%af", "not UTF-8"),
        (b"/%ff", "not UTF-8"),
        (b"/api%00", "NUL"),
        (b"/a%zz", "malformed"),
        (b"/a%", "malformed"),
        (b"/a%4", "malformed"),
        (b"/x/..;/api", "parameters"),
        (b"/x/.;/api", "parameters"),
        (b"/x/..%3b/api", "parameters"),
        (b"/x/%2e%2e;x/api", "parameters"),
        (b"/;x/admin", "empty segment with parameters"),
        (b"/api/;/x", "empty segment with parameters"),
        (b"/api/;", "empty segment with parameters"),
    ],
)
def test_refused(raw, reason):
    with pytest.raises(PathError, match=reason):
        normalize_path(raw)


def test_decode_mode_turns_escaped_slashes_into_slashes():
    assert normalize_path(b"/api%2fx", decode_slashes=True) == b"/api/x"
    assert normalize_path(b"/x/..%2Fapi", decode_slashes=True) == b"/api"
    assert normalize_path(b"/x\\..\\api", decode_slashes=True) == b"/api"
    with pytest.raises(PathError):
        normalize_path(b"/a%00", decode_slashes=True)


def test_split_target_normalizes_only_the_path():
    assert split_target(b"/%61pi?x=%2F..&y=/./") == (b"/api", b"x=%2F..&y=/./", None)
    assert split_target(b"http://h/a/../b#frag") == (b"/b", b"", b"h")
    assert split_target(b"/a?b#c") == (b"/a", b"b", None)
    assert split_target(b"*") == (b"*", b"", None)


def test_segment_parameters_stay_under_their_prefix():
    assert _route(b"/api;jsessionid=1/x") == "guarded"
    assert _route(b"/api;x") == "guarded"
    assert _route(b"/apix") == "open"


# ------------------------------------------------------------------------------- properties

_PIECES = [
    "a",
    "api",
    "API",
    "x",
    ".",
    "..",
    "/",
    "//",
    ";",
    "~",
    "\\",
    "%",
    "%2",
    "%zz",
    "?",
]


def _escape(byte: int, upper: bool) -> str:
    text = f"%{byte:02x}"
    return text.upper() if upper else text


_piece = st.one_of(
    st.sampled_from(_PIECES),
    st.builds(
        _escape, st.sampled_from([0x2E, 0x2F, 0x5C, 0x61, 0x70, 0x69, 0x41, 0x7E, 0x25, 0x00, 0x3B]), st.booleans()
    ),
    st.builds(_escape, st.integers(0, 255), st.booleans()),
    st.sampled_from(["%c3%a9", "%C0%AF", "%e2%82%ac", "%252F", "%2e%2e", "%2E."]),
)
_paths = st.lists(_piece, max_size=12).map(lambda pieces: ("/" + "".join(pieces)).encode())

_ESCAPE = re.compile(rb"%(..)")


def _rfc_remove_dots(path: bytes) -> bytes:
    """RFC 3986 §5.2.4 as written (the input-buffer loop), independent of the gateway's."""
    inp, out = path, b""
    while inp:
        if inp.startswith(b"../"):
            inp = inp[3:]
        elif inp.startswith(b"./") or inp.startswith(b"/./"):
            inp = inp[2:]
        elif inp == b"/.":
            inp = b"/"
        elif inp.startswith(b"/../") or inp == b"/..":
            inp = b"/" + inp[4:] if inp.startswith(b"/../") else b"/"
            out = out[: out.rfind(b"/")] if b"/" in out else b""
        elif inp in (b".", b".."):
            inp = b""
        else:
            cut = inp.find(b"/", 1)
            seg, inp = (inp, b"") if cut < 0 else (inp[:cut], inp[cut:])
            out += seg
    return out


def _merge(path: bytes) -> bytes:
    return re.sub(rb"/+", b"/", path)


def _guarded(path: bytes) -> bool:
    return path == b"/api" or path.startswith(b"/api/")


def _upstream_readings(path: bytes) -> list[bytes]:
    """How upstreams read a path: RFC decoding and dot removal, with and without merging
    slashes, and (IIS, some frameworks) backslashes as slashes."""
    decoded = unquote_to_bytes(path)
    plain = _rfc_remove_dots(decoded)
    merged_first = _rfc_remove_dots(_merge(decoded))
    backslashed = _rfc_remove_dots(_merge(decoded.replace(b"\\", b"/")))
    return [plain, _merge(plain), merged_first, backslashed]


@settings(max_examples=500, deadline=None)
@given(_paths)
@example(b"/%61pi")
@example(b"/api//../x")
@example(b"/x//../api")
@example(b"/%2e%2e//api")
@example(b"/x/..%2fapi")
@example(b"/.%2e/api")
def test_normalizing_is_idempotent_and_leaves_nothing_to_reinterpret(path):
    try:
        normalized = normalize_path(path)
    except PathError:
        return
    assert normalize_path(normalized) == normalized
    assert normalized.startswith(b"/")
    segments = normalized.split(b"/")[1:]
    assert b"." not in segments and b".." not in segments
    assert b"//" not in normalized and b"\\" not in normalized
    for hexpair in _ESCAPE.findall(normalized):
        assert re.fullmatch(rb"[0-9A-F]{2}", hexpair), normalized
        byte = int(hexpair, 16)
        assert byte not in (0x2F, 0x5C, 0x00), normalized
        assert not (chr(byte).isascii() and (chr(byte).isalnum() or chr(byte) in "-._~")), normalized
    # However an upstream reads what it gets, a guarded reading was routed under the guard.
    if any(_guarded(reading) for reading in _upstream_readings(normalized)):
        assert _route(normalized) == "guarded", normalized


@settings(max_examples=500, deadline=None)
@given(_paths)
@example(b"/%61pi/x")
@example(b"/api%2Fx")
@example(b"/x/%2E%2E/api")
@example(b"//api")
@example(b"/api//../x")
def test_a_path_an_rfc_reader_puts_under_the_guard_is_routed_there(path):
    readings = _upstream_readings(path)
    if not any(_guarded(r) for r in readings[:2]):  # RFC 3986 decoding + dot removal (+ merged)
        return
    try:
        normalized = normalize_path(path)
    except PathError:
        return  # refused: no upstream sees it
    assert _route(normalized) == "guarded", (path, normalized)
