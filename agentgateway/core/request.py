"""Request targets: split into path and query; the path normalized once, at the edge.

Everything after the edge (route matching, every policy, CEL ``request.path``, rewrites, the
upstream request) sees the one normalized path, so a guarded prefix cannot be reached by
spelling it differently. The rules (RFC 3986 §6.2.2):

- percent-encoded unreserved characters (``ALPHA DIGIT - . _ ~``) are decoded (``/%61pi`` is
  ``/api``); every other escape is kept, with upper-case hex (``%c3%a9`` is ``%C3%A9``);
- an encoded ``/`` or ``\\`` (``%2F``, ``%5C``) and a raw ``\\`` are refused (an upstream that
  decodes them would see other segments than the router did), unless the listener is told to
  decode them into ``/`` first (``frontendPolicies.http.escapedSlashes: decode``);
- dot segments are removed (also the encoded ones: ``/%2e%2e/``), then empty segments merged
  (``//api`` is ``/api``, as nginx's ``merge_slashes``; a trailing ``/`` is kept);
- refused outright: malformed escapes (``%zz``), an encoded NUL (``%00``), escapes that do not
  decode to UTF-8 (overlong forms such as ``%c0%af``, an old way of spelling ``/``), a dot
  segment with parameters (``..;``, which some servlet containers read as ``..``), and an empty
  segment with parameters (``/;x/admin``, which they read as ``/admin``).

Case is kept: paths are case-sensitive. The query is not touched.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from urllib.parse import unquote_plus

Headers = list[tuple[bytes, bytes]]

# Where upstreams split a query: '&', and ';' too (Go before 1.17, Rack 2, Python before 3.9.2).
_QUERY_SEPARATORS = re.compile(rb"([&;])")


class PathError(ValueError):
    """The request path cannot be normalized safely: answered with 400."""


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = "0123456789abcdefABCDEF"

# What each two-digit escape (any case) becomes: the decoded unreserved character, or the escape
# with upper-case hex. ``None`` marks the escapes handled separately (``/``, ``\``, NUL).
_ESCAPES: dict[bytes, bytes | None] = {}
for _hi in _HEX:
    for _lo in _HEX:
        _byte = int(_hi + _lo, 16)
        _key = (_hi + _lo).encode()
        if _byte in (0x2F, 0x5C, 0x00):
            _ESCAPES[_key] = None
        elif _byte in _UNRESERVED:
            _ESCAPES[_key] = bytes((_byte,))
        else:
            _ESCAPES[_key] = b"%" + (_hi + _lo).upper().encode()


def normalize_path(path: bytes, decode_slashes: bool = False) -> bytes:
    """The normalized form of an origin-form path (starting with ``/``); raises PathError."""
    if b"%" in path:
        path = _normalize_escapes(path, decode_slashes)
    if b"\\" in path:
        if not decode_slashes:
            raise PathError("backslash in the request path")
        path = path.replace(b"\\", b"/")
    return remove_dot_segments(path)


def _normalize_escapes(path: bytes, decode_slashes: bool) -> bytes:
    pieces = path.split(b"%")
    out = [pieces[0]]
    high = False  # an escape of a non-ASCII byte: the decoded path must be UTF-8
    for piece in pieces[1:]:
        pair = piece[:2]
        replaced = _ESCAPES.get(pair, b"") if len(pair) == 2 else b""
        if replaced is None:
            if pair == b"00":
                raise PathError("encoded NUL (%00) in the request path")
            if not decode_slashes:
                raise PathError(f"encoded slash (%{pair.decode().upper()}) in the request path")
            replaced = b"/"
        elif not replaced:
            raise PathError("malformed percent-encoding in the request path")
        elif pair[0] > 0x37:  # "8".."F": a byte >= 0x80
            high = True
        out.append(replaced)
        out.append(piece[2:])
    normalized = b"".join(out)
    if high:
        try:
            _decode_escapes(normalized).decode("utf-8")
        except UnicodeDecodeError:
            raise PathError("percent-encoded bytes in the request path are not UTF-8") from None
    return normalized


def _decode_escapes(path: bytes) -> bytes:
    pieces = path.split(b"%")
    return pieces[0] + b"".join(bytes.fromhex(p[:2].decode()) + p[2:] for p in pieces[1:])


# ``..;x`` and ``.;x`` (also with the ``;`` encoded): a dot segment to servlet containers.
_DOT_WITH_PARAMETERS = (b".;", b"..;", b".%3B", b"..%3B")


def remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 §5.2.4, then empty segments merged: ``/a/../admin`` and ``//admin`` are routed
    (and forwarded) as ``/admin``. Dots first, as the RFC reads the path (``/api//../x`` is
    ``/api/x`` to it, and so to us); a trailing ``/`` (or a final dot segment) leaves one."""
    out: list[bytes] = []
    segments = path.split(b"/")
    last_index = len(segments) - 1
    for i in range(1, last_index + 1):
        seg = segments[i]
        if seg == b"." or seg == b"..":
            if seg == b".." and out:
                out.pop()
            if i == last_index:
                out.append(b"")
        elif seg and seg[0] == 0x2E and seg.startswith(_DOT_WITH_PARAMETERS):
            raise PathError("dot segment with parameters in the request path")
        elif seg[:1] == b";":
            # An empty segment with parameters: servlet containers drop the parameters, then merge
            # the empty segment (``/;x/admin`` is ``/admin`` to them), which no rule here saw.
            raise PathError("empty segment with parameters in the request path")
        else:
            out.append(seg)
    if b"" in out and len(out) > 1:
        out = [seg for seg in out[:-1] if seg] + [out[-1]]
    return b"/" + b"/".join(out)


# RFC 9110 §7.2 / RFC 3986 §3.2.2: host (reg-name or IP literal) and an optional port. No
# userinfo, no whitespace, and no percent-encoding (RFC 3986 allows it in a reg-name, no client
# sends it, and an upstream that decodes it would read another host than routing and CEL did:
# ``%61dmin.example``). A request's Host is checked by it, and so is every authority of the config
# the gateway writes into a head (a backend's ``host``, ``urlRewrite``/``requestRedirect``
# authorities): CR or LF there would start header lines of their own.
AUTHORITY = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=]+)(?::[0-9]{0,5})?")


def split_target(target: bytes, decode_slashes: bool = False) -> tuple[bytes, bytes, bytes | None] | None:
    """(normalized path, query, authority from an absolute-form target); None when the target
    is not a request target; raises PathError when its path is refused."""
    authority = None
    if not target.startswith(b"/"):
        lowered = target[:8].lower()
        if lowered.startswith(b"http://") or lowered.startswith(b"https://"):
            rest = target[target.index(b"//") + 2 :]
            slash = rest.find(b"/")
            qmark = rest.find(b"?")
            cut = min(x for x in (slash, qmark, len(rest)) if x >= 0)
            authority = rest[:cut]
            target = rest[cut:] or b"/"
            if target.startswith(b"?"):
                target = b"/" + target
        elif target == b"*":
            return b"*", b"", None
        else:
            return None
    h = target.find(b"#")
    if h >= 0:
        target = target[:h]  # a fragment is the client's business, never sent
    q = target.find(b"?")
    if q >= 0:
        path, query = target[:q], target[q + 1 :]
    else:
        path, query = target, b""
    # The common path has no escape, dot segment, empty segment, backslash or segment starting with
    # parameters: five searches (``find``: ``in`` on bytes first tries the needle as an integer,
    # twice as slow on 3.11).
    if (
        path.find(b"%") >= 0
        or path.find(b"/.") >= 0
        or path.find(b"//") >= 0
        or path.find(b"\\") >= 0
        or path.find(b"/;") >= 0
    ):
        path = normalize_path(path, decode_slashes)
    return path, query, authority


def query_parameters(query: bytes) -> Iterator[tuple[str, bytes]]:
    """The parameters of ``query`` as an upstream may split them (at ``&`` and ``;``): each
    one's name decoded as a form decodes it (``api%5Fkey`` and ``api+key`` are spellings of a
    name), and its raw value. Empty segments are skipped."""
    for segment in _QUERY_SEPARATORS.split(query)[::2]:
        if segment:
            name, _, value = segment.partition(b"=")
            yield unquote_plus(name.decode("latin-1")), value


def query_without(query: bytes, names: Collection[str]) -> bytes:
    """``query`` less every parameter whose decoded name is in ``names``, split as an upstream
    may split it (``query_parameters``); the others are kept byte for byte, each with the
    separator that came before it."""
    parts = _QUERY_SEPARATORS.split(query)
    kept: list[bytes] = []
    for i in range(0, len(parts), 2):
        segment = parts[i]
        if not segment or unquote_plus(segment.partition(b"=")[0].decode("latin-1")) in names:
            continue
        if kept:
            kept.append(parts[i - 1])
        kept.append(segment)
    return b"".join(kept)
