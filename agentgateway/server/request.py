"""Request targets: split into path and query, dot segments resolved."""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


def remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 §5.2.4, so ``/a/../admin`` is routed (and forwarded) as ``/admin``."""
    out: list[bytes] = []
    segments = path.split(b"/")
    for i, seg in enumerate(segments[1:], start=1):
        last = i == len(segments) - 1
        if seg == b".":
            if last:
                out.append(b"")
        elif seg == b"..":
            if out:
                out.pop()
            if last:
                out.append(b"")
        else:
            out.append(seg)
    return b"/" + b"/".join(out)


def split_target(target: bytes) -> tuple[bytes, bytes, bytes | None] | None:
    """(path, query, authority from an absolute-form target) or None when the target is invalid."""
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
    q = target.find(b"?")
    if q >= 0:
        path, query = target[:q], target[q + 1 :]
    else:
        path, query = target, b""
    h = path.find(b"#")
    if h >= 0:
        path = path[:h]
    if b"/." in path:
        path = remove_dot_segments(path)
    return path, query, authority
