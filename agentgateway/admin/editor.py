"""The UI's config editor: the config file's text with its secrets redacted, validation by the
gateway's own loader and compiler with errors placed at their line, a diff, apply (an atomic
write of the file, then a reload) and roll back.

Secrets never reach the browser. The text is shown as written (comments kept), except that every
scalar holding a secret is replaced by ``<redacted>`` (or by its redacted form, a JWKS with its
private members redacted): the scalars at the paths the schema marks as secret
(``config/redact.py``), unless they are a bare ``${VAR}`` reference, and anything the value rules
recognize (a known secret, a key, a URL's password), comments included. On apply, each scalar of
the edit that still reads exactly as it was shown gets its real value back, server-side; one
that still contains ``<redacted>`` but was changed, or moved to a path where the file has no
secret, is refused at its line (type the value). A secret in a comment stays redacted in the
file (comments are not config).

Apply only when the gateway runs on a file (``-f``): an inline (``-c``) or embedded config is
shown read-only. The file is replaced atomically (a temporary file beside it, then a rename, so
the watch never reads half a file) and the gateway reloads it at once. The previous versions of
the file (the last ``HISTORY`` applies) are kept in memory for roll back; they are lost when the
gateway restarts, and nothing but the config file itself is written.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml

from agentgateway.admin import yamltext
from agentgateway.config.envexpand import expand_env, secret_variable_values
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import decode_config
from agentgateway.config.redact import REDACTED, redact_config, scrub, secret_values
from agentgateway.config.schema import LocalConfig

HISTORY = 10
_LINE_PATH = re.compile(r"^line (\d+)$")  # where envexpand's errors are
_ENV_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$|^\$[A-Za-z_][A-Za-z0-9_]*$")


class _DefinedOrEmpty(Mapping[str, str]):
    """The environment, with every unset variable empty."""

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name, "")

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


class EditorHost(Protocol):
    """What the editor needs from the supervisor."""

    def config_file(self) -> Path | None:
        """The config file the gateway watches, or None (inline or embedded config)."""

    def config_text(self) -> str:
        """The config's text as written (the file's current content)."""

    def running_config(self) -> LocalConfig:
        """The decoded config being served."""

    def check_config(self, text: str) -> None:
        """Load and compile ``text`` as the gateway would; raises ConfigError."""

    async def reload_config(self) -> dict[str, Any]:
        """Reload now; the status afterwards (generation, lastError)."""


class EditError(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "invalid")
        self.errors = errors


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Shown:
    """A scalar shown differently from the file: its source text, its value, and what was shown."""

    __slots__ = ("source", "value", "shown")

    def __init__(self, source: str, value: str, shown: str) -> None:
        self.source = source
        self.value = value
        self.shown = shown


def _secret_paths(builtins: Any, at: yamltext.Path = ()) -> dict[yamltext.Path, str]:
    """Paths of the redacted builtins whose string holds ``<redacted>``, with that string."""
    out: dict[yamltext.Path, str] = {}
    if isinstance(builtins, str):
        if REDACTED in builtins:
            out[at] = builtins
    elif isinstance(builtins, dict):
        for k, v in builtins.items():
            out.update(_secret_paths(v, (*at, str(k))))
    elif isinstance(builtins, list):
        for i, v in enumerate(builtins):
            out.update(_secret_paths(v, (*at, i)))
    return out


def _span(text: str, node: yaml.Node) -> tuple[int, int]:
    start, end = node.start_mark.index, node.end_mark.index
    return start, start + len(text[start:end].rstrip())  # a block scalar's span ends after its newline


class Redactor:
    """The redacted view of one text of the config, and the way back."""

    def __init__(self, text: str, running: LocalConfig) -> None:
        try:
            try:
                expanded = expand_env(text)
            except ConfigError:  # an unset variable: empty here (its secret is not in the text anyway)
                expanded = expand_env(text, _DefinedOrEmpty())
            cfg = decode_config(expanded)
        except ConfigError:
            cfg = running  # a broken file: hide at least what the served config holds (same paths)
        builtins, found = redact_config(cfg)
        # (a secret-named variable's value too: an error about the edit may quote it expanded)
        self.known = found | secret_values(running) | secret_variable_values(text)
        self.marked = _secret_paths(builtins)
        self.text = text
        self.shown: dict[yamltext.Path, _Shown] = {}
        try:
            root = yamltext.compose(text)
        except yamltext.YamlTextError:
            self.view = scrub(text, self.known)
            return
        spans = []
        for path, node in yamltext.scalars(root):
            value = node.value
            redacted = self.marked.get(path)
            # A marked field shows its redacted form (unless it only names a variable); any other
            # value what the value rules leave of it.
            marked = redacted is not None and not _ENV_REFERENCE.match(value)
            shown = redacted if marked and redacted is not None else scrub(value, self.known)
            if shown != value:
                start, end = _span(text, node)
                spans.append((start, end, json.dumps(shown, ensure_ascii=False)))
                self.shown[path] = _Shown(text[start:end], value, shown)
        self.view = scrub(yamltext.replace_spans(text, spans), self.known)

    def restore(self, edited: str) -> str:
        """``edited`` (a change of the view) with the shown secrets put back. Raises EditError for
        a placeholder that cannot be put back."""
        if REDACTED not in edited:
            return edited
        try:
            root = yamltext.compose(edited)
        except yamltext.YamlTextError as exc:
            raise EditError([{"line": exc.line, "path": "", "message": exc.message}]) from None
        spans = []
        errors = []
        for path, node in yamltext.scalars(root):
            if REDACTED not in node.value:
                continue
            was = self.shown.get(path)
            if was is None or was.shown != node.value:
                errors.append(
                    {
                        "line": node.start_mark.line + 1,
                        "path": yamltext.dotted(path),
                        "message": f"{yamltext.dotted(path)}: {REDACTED} stands for a secret only where it was "
                        "shown, unchanged; type the value here",
                    }
                )
                continue
            start, end = _span(edited, node)
            original = was.source if "\n" not in was.source else json.dumps(was.value, ensure_ascii=False)
            spans.append((start, end, original))
        if errors:
            raise EditError(errors)
        return yamltext.replace_spans(edited, spans)


class Version:
    __slots__ = ("at", "text", "digest", "why")

    def __init__(self, text: str, why: str) -> None:
        self.at = time.time()
        self.text = text
        self.digest = digest(text)
        self.why = why


def write_atomically(path: Path, text: str) -> None:
    """Replace the file at ``path`` (a symlink's target) by ``text`` in one rename, with the
    file's permissions."""
    target = path.resolve()
    mode = 0o600
    with contextlib.suppress(OSError):
        mode = target.stat().st_mode & 0o777
    tmp = target.with_name(f".{target.name}.ui-{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class ConfigEditor:
    def __init__(self, host: EditorHost) -> None:
        self.host = host
        self.history: deque[Version] = deque(maxlen=HISTORY)

    def _redactor(self) -> Redactor:
        return Redactor(self.host.config_text(), self.host.running_config())

    def current(self) -> dict[str, Any]:
        """What the editor opens with."""
        path = self.host.config_file()
        redactor = self._redactor()
        return {
            "text": redactor.view,
            "base": digest(redactor.text),
            "editable": path is not None,
            "file": str(path) if path is not None else None,
            "readOnlyReason": None
            if path is not None
            else "the gateway was started with an inline (-c) or embedded config: start it with -f FILE to edit",
            "history": self.versions(),
        }

    def versions(self) -> list[dict[str, Any]]:
        return [{"at": v.at, "digest": v.digest[:12], "why": v.why} for v in reversed(self.history)]

    def _errors(self, redactor: Redactor, edited: str) -> tuple[str | None, list[dict[str, Any]]]:
        """The edit with its secrets back and the problems the gateway's loader finds in it."""
        try:
            root = yamltext.compose(edited)
        except yamltext.YamlTextError as exc:
            return None, [{"line": exc.line, "path": "", "message": exc.message}]
        try:
            merged = redactor.restore(edited)
        except EditError as exc:
            return None, exc.errors
        try:
            self.host.check_config(merged)
        except ConfigError as exc:
            at_line = _LINE_PATH.match(exc.path)
            if at_line:
                line, exact = int(at_line.group(1)), True
            elif exc.path:
                line, exact = yamltext.line_of(root, yamltext.parse_path(exc.path))
            else:
                line, exact = 1, False
            message = scrub(str(exc), redactor.known)
            return merged, [{"line": line, "path": exc.path, "exact": exact, "message": message}]
        return merged, []

    def validate(self, edited: str) -> dict[str, Any]:
        redactor = self._redactor()
        _, errors = self._errors(redactor, edited)
        return {"valid": not errors, "errors": errors, "diff": self.diff(redactor.view, edited)}

    @staticmethod
    def diff(before: str, after: str) -> str:
        lines = difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), "running", "edited", n=2
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)

    async def apply(self, edited: str, base: str) -> tuple[int, dict[str, Any]]:
        path = self.host.config_file()
        if path is None:
            return 409, {"error": "read-only: the gateway does not run on a config file (-f)"}
        redactor = self._redactor()
        if digest(redactor.text) != base:
            return 409, {"error": "the config file changed since the editor loaded it: reload the editor"}
        merged, errors = self._errors(redactor, edited)
        if errors or merged is None:
            return 422, {"valid": False, "errors": errors}
        if merged == redactor.text:
            return 200, {"applied": False, "message": "no change", **await self.host.reload_config()}
        write_atomically(path, merged)
        self.history.append(Version(redactor.text, "before apply"))
        status = await self.host.reload_config()
        return 200, {"applied": True, **status, "history": self.versions()}

    async def rollback(self, base: str) -> tuple[int, dict[str, Any]]:
        """Write the version before the last apply back, if the file is still the one the
        editor shows (``base``): an edit made meanwhile is not thrown away unseen."""
        path = self.host.config_file()
        if path is None:
            return 409, {"error": "read-only: the gateway does not run on a config file (-f)"}
        if not self.history:
            return 409, {"error": "no previous version to roll back to"}
        if digest(self.host.config_text()) != base:
            return 409, {"error": "the config file changed since the editor loaded it: reload the editor"}
        previous = self.history[-1]
        try:
            self.host.check_config(previous.text)
        except ConfigError as exc:
            redactor = self._redactor()
            return 422, {"error": f"the previous version no longer loads: {scrub(str(exc), redactor.known)}"}
        self.history.pop()
        write_atomically(path, previous.text)
        status = await self.host.reload_config()
        return 200, {"applied": True, **status, "history": self.versions()}
