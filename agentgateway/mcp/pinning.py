"""Tool pinning against tool poisoning (an addition to agentgateway's schema: ``toolPinning``).

A server can change a tool after a user or an operator trusted it — a description that now tells
the model to read ``~/.ssh`` and pass it along, a widened input schema, a ``readOnlyHint`` turned
on (a "rug pull"). The gateway records each upstream tool's definition by hash and, when a
definition no longer matches its pin, hides the tool (``mode: hide``, the default: left out of
lists, calls answered ``Unknown tool``) or passes it flagged (``mode: flag``: its description
starts with a warning and its ``_meta`` says what changed). Either way a log line says so and
``agentgateway_mcp_tool_pin_mismatches_total`` counts it.

- A definition is what a model or a client's approval logic reads of a tool: ``name``,
  ``title``, ``description``, ``inputSchema``, ``outputSchema`` and ``annotations`` (not ``_meta``
  or ``icons``). Its pin is ``sha256:<hex>`` of its canonical JSON (keys sorted at every level,
  no whitespace, UTF-8).
- Pins come from the config (``pins: {<target>_<tool>: sha256:…}``), and otherwise from the
  first definition seen (``learn``, the default). Learned pins are first-writer-wins and never
  replaced by the gateway; to accept a changed tool, put its new pin in ``pins`` or remove it
  from the store, then reload.
- Learned pins are shared by the workers of a gateway through a file under an exclusive lock:
  ``store`` when set (kept across restarts), else a file in the run's private directory (gone
  when the gateway stops). A process outside a supervisor keeps them in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from agentgateway.observe.counters import COUNTERS
from agentgateway.upstream.relay import runtime_dir

__all__ = [
    "DEFINITION_KEYS",
    "PinStore",
    "Screen",
    "SessionTools",
    "ToolPins",
    "read_pin_file",
    "tool_digest",
    "valid_digest",
]

log = logging.getLogger("agentgateway.mcp.pinning")

DEFINITION_KEYS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
META_KEY = "io.agentgateway/toolPinning"
FLAG_NOTE = "[agentgateway: this tool's definition changed after it was pinned; review it before use] "
UNPINNED_NOTE = "[agentgateway: this tool has no pin; review it before use] "
METRIC = "agentgateway_mcp_tool_pin_mismatches"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_SCREENS_KEPT = 256  # screened list results remembered (by their bytes) per backend and worker
_REFRESH_INTERVAL = 2.0  # a target's tools are listed again for a call at most this often

OK, CHANGED, UNPINNED = "ok", "changed", "unpinned"


def tool_digest(tool: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a tool's definition as canonical JSON."""
    definition = {k: tool[k] for k in DEFINITION_KEYS if k in tool}
    return "sha256:" + hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()


def valid_digest(text: object) -> bool:
    return isinstance(text, str) and _DIGEST.match(text) is not None


def read_pin_file(path: Path) -> dict[str, str]:
    """A pin file: a JSON object ``{"<target>_<tool>": "sha256:<hex>"}`` (missing: empty).
    Raises ValueError when it holds anything else."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    if not data.strip():
        return {}
    try:
        pins = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(pins, dict) or not all(isinstance(k, str) and valid_digest(v) for k, v in pins.items()):
        raise ValueError(f'{path}: not a pin file (a JSON object of "<target>_<tool>": "sha256:<hex>")')
    return pins


class PinStore:
    """Pins learned at first sight. ``path`` is the file shared with the other workers (and,
    when configured, kept across restarts); ``run_name`` names one in the run's directory when no
    path is configured; with neither, pins live in this process only."""

    __slots__ = ("_path", "_run_name", "_resolved", "known", "_broken")

    def __init__(self, path: Path | None = None, run_name: str | None = None) -> None:
        self._path = path
        self._run_name = run_name
        self._resolved = False
        self.known: dict[str, str] = {}
        self._broken = False

    @property
    def path(self) -> Path | None:
        if not self._resolved:
            # Resolved at first use: the run's directory exists in workers, not at validation.
            if self._path is None and self._run_name is not None:
                base = runtime_dir()
                self._path = base / self._run_name if base is not None else None
            self._resolved = True
        return self._path

    def pin(self, key: str, digest: str) -> tuple[str, bool]:
        """The pin of ``key``: the one recorded first (by any worker), or ``digest``, recorded now.
        The flag says whether it was recorded now."""
        found = self.known.get(key)
        if found is not None:
            return found, False
        path = self.path
        if path is None or self._broken:
            self.known[key] = digest
            return digest, True
        try:
            return self._record(path, key, digest)
        except (OSError, ValueError) as exc:
            # The file cannot be used: keep pinning in memory rather than let tools through.
            log.error("MCP tool pin store %s unusable, pins are kept in memory only: %s", path, exc)
            self._broken = True
            self.known[key] = digest
            return digest, True

    def _record(self, path: Path, key: str, digest: str) -> tuple[str, bool]:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            pins = read_pin_file(path)
            self.known.update(pins)
            if key in pins:
                return pins[key], False
            pins[key] = digest
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(orjson.dumps(pins, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n")
            os.replace(tmp, path)
            self.known[key] = digest
            return digest, True
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
            os.close(lock_fd)


class Screen:
    """One target's ``tools/list`` result as the pins see it: the result to pass on (rewritten in
    flag mode), each tool's digest, and the tools to hide or that were flagged."""

    __slots__ = ("raw", "digests", "hidden", "flagged", "unreadable")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.digests: dict[str, str] = {}
        self.hidden: list[str] = []
        self.flagged: list[str] = []
        self.unreadable = False  # not parsed: nothing of it can be trusted


class SessionTools:
    """Per downstream session: each target's tools as last listed (name → digest), for calls."""

    __slots__ = ("digests", "refreshed")

    def __init__(self) -> None:
        self.digests: dict[str, dict[str, str]] = {}
        self.refreshed: dict[str, float] = {}

    def update(self, target: str, digests: Mapping[str, str]) -> None:
        self.digests.setdefault(target, {}).update(digests)

    def digest(self, target: str, name: str) -> str | None:
        return self.digests.get(target, {}).get(name)

    def may_refresh(self, target: str) -> bool:
        """Whether a call may list ``target`` again (bounded: a stream of calls to names that
        do not exist must not become a stream of upstream listings)."""
        now = time.monotonic()
        if now - self.refreshed.get(target, -_REFRESH_INTERVAL) < _REFRESH_INTERVAL:
            return False
        self.refreshed[target] = now
        return True


class ToolPins:
    """``toolPinning`` of one MCP backend, in one worker."""

    __slots__ = ("label", "mode", "pins", "learn", "store", "_status", "_screens")

    def __init__(self, label: str, mode: str, pins: Mapping[str, str], learn: bool, store: PinStore) -> None:
        self.label = label
        self.mode = mode
        self.pins = dict(pins)
        self.learn = learn
        self.store = store
        # (target, tool, digest) → (status, pin): a pin never changes once set.
        self._status: dict[tuple[str, str, str], tuple[str, str | None]] = {}
        self._screens: OrderedDict[tuple[str, bytes], Screen] = OrderedDict()

    @property
    def hides(self) -> bool:
        return self.mode == "hide"

    def status(self, target: str, name: str, digest: str) -> tuple[str, str | None]:
        """(ok | changed | unpinned, the pin) of a tool with definition ``digest``."""
        entry = (target, name, digest)
        found = self._status.get(entry)
        if found is not None:
            return found
        key = f"{target}_{name}"
        pin = self.pins.get(key)
        learned = False
        if pin is None and self.learn:
            pin, learned = self.store.pin(key, digest)
        if pin is None:
            result: tuple[str, str | None] = (UNPINNED, None)
            log.warning(
                "MCP tool %s of backend %s has no pin (learn is off): %s",
                key,
                self.label,
                "hidden" if self.hides else "flagged",
            )
        elif pin == digest:
            result = (OK, pin)
            if learned:
                log.info("MCP tool %s of backend %s pinned at first sight: %s", key, self.label, digest)
        else:
            result = (CHANGED, pin)
            log.warning(
                "MCP tool %s of backend %s changed since it was pinned (pinned %s, now %s): %s",
                key,
                self.label,
                pin,
                digest,
                "hidden" if self.hides else "flagged",
            )
        self._status[entry] = result
        return result

    def screen(self, target: str, raw: bytes) -> Screen:
        """The verdicts on one ``tools/list`` result of ``target`` (cached by its bytes: an
        unchanged list costs a lookup)."""
        cache_key = (target, raw)
        found = self._screens.get(cache_key)
        if found is not None:
            self._screens.move_to_end(cache_key)
            return found
        screen = self._screen(target, raw)
        self._screens[cache_key] = screen
        if len(self._screens) > _SCREENS_KEPT:
            self._screens.popitem(last=False)
        return screen

    def _screen(self, target: str, raw: bytes) -> Screen:
        screen = Screen(raw)
        try:
            result = orjson.loads(raw)
        except orjson.JSONDecodeError:
            result = None
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            screen.unreadable = True  # the merge rejects it, or nothing of it is shown
            return screen
        rewritten: list[Any] = []
        changed = False
        for tool in tools:
            name = tool.get("name") if isinstance(tool, dict) else None
            if not isinstance(name, str):
                rewritten.append(tool)
                continue
            digest = tool_digest(tool)
            screen.digests[name] = digest
            status, pin = self.status(target, name, digest)
            if status == OK:
                rewritten.append(tool)
            elif self.hides:
                screen.hidden.append(name)
                rewritten.append(tool)  # left out by the merge
            else:
                screen.flagged.append(name)
                rewritten.append(_flagged(tool, status, pin, digest))
                changed = True
        if changed:
            screen.raw = orjson.dumps({**result, "tools": rewritten})
        return screen

    def count(self, target: str, names: Iterable[str], action: str) -> None:
        for name in names:
            COUNTERS.inc(METRIC, (self.label, target, name, action))

    def admits(self, target: str, name: str, digest: str | None) -> bool:
        """May a call of ``name`` go to ``target``, its definition as last listed being
        ``digest`` (None: not listed)? Flagged tools may be called; hidden ones may not."""
        if not self.hides:
            return True
        return digest is not None and self.status(target, name, digest)[0] == OK


def _flagged(tool: dict[str, Any], status: str, pin: str | None, digest: str) -> dict[str, Any]:
    out = dict(tool)
    note = FLAG_NOTE if status == CHANGED else UNPINNED_NOTE
    description = tool.get("description")
    out["description"] = note + (description if isinstance(description, str) else "")
    meta = tool.get("_meta")
    out["_meta"] = {
        **(meta if isinstance(meta, dict) else {}),
        META_KEY: {"status": status, "pin": pin, "digest": digest},
    }
    return out
