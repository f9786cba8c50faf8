"""A parsed request head, as handed from the connection to whatever serves the route."""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]


class Request:
    """Header names are lower-cased bytes; values are bytes as received. ``target`` is what is sent
    upstream (origin-form, path normalized); ``path`` and ``query`` are its two halves."""

    __slots__ = (
        "method",
        "target",
        "path",
        "query",
        "host",
        "headers",
        "version",
        "keep_alive",
        "content_length",
        "chunked",
        "expect_continue",
        "client_ip",
        "client_port",
        "scheme",
        "start",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        path: bytes,
        query: bytes,
        host: bytes,
        headers: Headers,
        version: str,
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        expect_continue: bool,
        client_ip: str,
        client_port: int,
        scheme: bytes,
        start: float,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.host = host
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.client_ip = client_ip
        self.client_port = client_port
        self.scheme = scheme
        self.start = start  # time.perf_counter()

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


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
