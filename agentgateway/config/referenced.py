"""Files the config refers to (JWKS, htpasswd, secrets, TLS certificates and keys, OpenAPI
documents): every compile step that reads one reads it through ``read_bytes``/``read_text``,
which note the path, its ``stat`` and a digest of what was read while a ``ReferencedFiles`` is
collecting. The supervisor collects while it compiles a config, then watches those files as it
watches the config file itself, and reloads when one of them changes (or on SIGHUP), even when
the config file did not.

A file that could not be read is noted too (digest None): creating or fixing it triggers the
reload that makes the config whole again.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator
from pathlib import Path

# (mtime_ns, size, inode) of a file, or None when it is missing. A rotated Kubernetes secret (a
# symlink swapped to a new directory) changes the inode of what the path points to.
Signature = tuple[int, int, int] | None


def signature(path: Path) -> Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def digest_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class ReferencedFiles:
    """The files one compile read: path → (signature before the read, digest of what was read)."""

    __slots__ = ("files",)

    def __init__(self) -> None:
        self.files: dict[Path, tuple[Signature, str | None]] = {}

    def note(self, path: Path, sig: Signature, data: bytes | None) -> None:
        self.files[path.absolute()] = (sig, hashlib.sha256(data).hexdigest() if data is not None else None)

    @contextlib.contextmanager
    def collecting(self) -> Iterator[ReferencedFiles]:
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)

    def signatures(self) -> dict[Path, Signature]:
        return {path: sig for path, (sig, _) in self.files.items()}

    def digests(self) -> tuple[tuple[str, str | None], ...]:
        return tuple(sorted((str(path), digest) for path, (_, digest) in self.files.items()))

    def resigned(self) -> ReferencedFiles:
        """The same files and digests, with each file's signature taken now."""
        out = ReferencedFiles()
        out.files = {path: (signature(path), digest) for path, (_, digest) in self.files.items()}
        return out

    def current_digests(self) -> tuple[tuple[str, str | None], ...]:
        """The same paths, read again now."""
        return tuple(sorted((str(path), digest_of(path)) for path in self.files))


_current: contextvars.ContextVar[ReferencedFiles | None] = contextvars.ContextVar("referenced_files", default=None)


def read_bytes(path: Path) -> bytes:
    """``path.read_bytes()``, noted by the collector when one is active (raises OSError)."""
    collector = _current.get()
    if collector is None:
        return path.read_bytes()
    sig = signature(path)
    try:
        data = path.read_bytes()
    except OSError:
        collector.note(path, sig, None)
        raise
    collector.note(path, sig, data)
    return data


def read_text(path: Path) -> str:
    """``path.read_text()`` (UTF-8), noted like ``read_bytes`` (raises OSError, UnicodeDecodeError)."""
    return read_bytes(path).decode("utf-8")


def note_missing(path: Path) -> None:
    """A file the config names that is not there: watched so that creating it reloads."""
    collector = _current.get()
    if collector is not None:
        collector.note(path, signature(path), None)
