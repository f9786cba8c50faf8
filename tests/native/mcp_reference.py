"""A plain-Python reference of the native MCP federation helpers, built on `json`.

It works on decoded values and says nothing about bytes; the differential tests compare its
results with the parsed native output, and check bytes separately from what the generators
know about the text they wrote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence, Set
from typing import Any

LIST_KEYS = {"tools": "name", "prompts": "name", "resources": "uri", "resourceTemplates": "uriTemplate"}
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class Malformed(ValueError):
    pass


class _Object(dict[str, Any]):
    """A decoded object that remembers every member, repeats included."""

    pairs: list[tuple[str, Any]]
    repeated: frozenset[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.pairs = pairs
    names = [name for name, _ in pairs]
    obj.repeated = frozenset(name for name in names if names.count(name) > 1)
    return obj


def loads(raw: bytes) -> Any:
    return json.loads(raw, object_pairs_hook=_object)


def has_scheme(uri: str) -> bool:
    return SCHEME.match(uri) is not None


def escape(text: str) -> str:
    """`text` as it appears inside a JSON string token written by the native code."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def items_of(kind: str, raw: bytes) -> tuple[_Object, list[tuple[Any, str]]]:
    """The decoded result and its (item, key) pairs; Malformed when it cannot be merged."""
    key = LIST_KEYS[kind]
    try:
        result = loads(raw)
    except ValueError as e:
        raise Malformed(f"not JSON: {e}") from None
    if not isinstance(result, _Object):
        raise Malformed("not an object")
    if kind in result.repeated:
        raise Malformed("list twice")
    if not isinstance(result.get(kind), list):
        raise Malformed("no list")
    pairs = []
    for item in result[kind]:
        if not isinstance(item, _Object):
            raise Malformed("item not an object")
        if key in item.repeated:
            raise Malformed("key twice")
        if not isinstance(item.get(key), str):
            raise Malformed("no string key")
        pairs.append((item, item[key]))
    return result, pairs


def list_item_keys(kind: str, results: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
    return [(target, key) for target, raw in results for _, key in items_of(kind, raw)[1]]


def _ttl(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return min(value, 2**64 - 1)
    return 0


def plan(
    kind: str,
    results: Sequence[tuple[str, bytes]],
    *,
    prefix: bool,
    delimiter: str = "_",
    dedupe: bool = False,
    allowed: Set[str] | None = None,
) -> tuple[list[tuple[int, int, str, bool]], list[_Object]]:
    """Which items the merge keeps, as (target index, item index, exposed key, prefixed), and
    the decoded results."""
    by_uri = LIST_KEYS[kind] != "name"
    decoded = [(target, *items_of(kind, raw)) for target, raw in results]

    def prefixed(original: str) -> bool:
        return prefix and (not by_uri or has_scheme(original))

    def exposed(target: str, original: str) -> str:
        if not prefixed(original):
            return original
        return f"{target}{'+' if by_uri else delimiter}{original}"

    owners: dict[str, set[int]] = {}
    for index, (target, _, pairs) in enumerate(decoded):
        for _, original in pairs:
            owners.setdefault(exposed(target, original), set()).add(index)

    kept = []
    for t, (target, _, pairs) in enumerate(decoded):
        for i, (_, original) in enumerate(pairs):
            name = exposed(target, original)
            if dedupe and len(owners[name]) > 1:
                continue
            if allowed is not None and f"{target}\x00{original}" not in allowed:
                continue
            kept.append((t, i, name, prefixed(original)))
    return kept, [result for _, result, _ in decoded]


def merge_list_results(
    kind: str,
    results: Sequence[tuple[str, bytes]],
    *,
    prefix: bool,
    delimiter: str = "_",
    dedupe: bool = False,
    allowed: Set[str] | None = None,
    next_cursor: str | None = None,
) -> dict[str, Any]:
    key = LIST_KEYS[kind]
    kept, decoded = plan(kind, results, prefix=prefix, delimiter=delimiter, dedupe=dedupe, allowed=allowed)
    items = [{**decoded[t][kind][i], key: name} for t, i, name, _ in kept]
    merged: dict[str, Any] = {kind: items}
    if next_cursor is not None:
        merged["nextCursor"] = next_cursor
    # Every copy of a repeated hint counts, each read the strict way.
    ttls = [[_ttl(v) for k, v in result.pairs if k == "ttlMs"] for result in decoded]
    scopes = [[v for k, v in result.pairs if k == "cacheScope"] for result in decoded]
    if any(ttls):
        merged["ttlMs"] = min(min(copies, default=0) for copies in ttls)
    if any(scopes):
        public = allowed is None and all(copies and all(v == "public" for v in copies) for copies in scopes)
        merged["cacheScope"] = "public" if public else "private"
    return merged


def _longest(text: str, targets: Sequence[str], joint: str, accept: Any) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for index, target in enumerate(targets):
        head = target + joint
        longer = best is None or len(target) > len(targets[best[0]])
        if longer and text.startswith(head) and accept(text[len(head) :]):
            best = (index, text[len(head) :])
    return best


def split_prefixed_name(name: str, targets: Sequence[str], delimiter: str = "_") -> tuple[int, str] | None:
    return _longest(name, targets, delimiter, lambda rest: True)


def split_prefixed_uri(uri: str, targets: Sequence[str]) -> tuple[int, str] | None:
    return _longest(uri, targets, "+", has_scheme)


def rewrite_request(message: bytes, new_id: Any, path: str | None, value: str | None) -> Any:
    """The decoded message after the rewrite (`new_id` decoded; None leaves the id)."""
    decoded = loads(message)
    if new_id is not None:
        decoded["id"] = new_id
    if path is not None:
        container = decoded["params"]
        *parents, last = path.split(".")
        for part in parents:
            container = container[part]
        if not isinstance(container.get(last), str):
            raise ValueError(path)
        container[last] = value
    return decoded
