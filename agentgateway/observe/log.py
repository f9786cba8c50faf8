"""The gateway's own log (startup, reloads, errors) on stderr, text or JSON like the access log."""

from __future__ import annotations

import logging
import sys

import orjson

from agentgateway.observe.accesslog import Timestamps

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}


# Control characters in a message, escaped in the text format: messages quote what upstreams and
# clients sent (a target's error, a provider's), and a line break or tab (the field separator)
# there would let them write lines that read as the gateway's own.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


class _Formatter(logging.Formatter):
    def __init__(self, json: bool, scope: str) -> None:
        super().__init__()
        self.json = json
        self.scope = scope
        self.ts = Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        ts = self.ts.format(record.created)
        level = record.levelname.lower().replace("warning", "warn")
        message = record.getMessage()
        if not self.json and not message.isprintable():  # (the common case: one C-level scan)
            message = message.translate(_ESCAPES)
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)  # (the gateway's own lines)
        if self.json:
            return orjson.dumps({"time": ts, "level": level, "scope": self.scope, "message": message}).decode()
        return f"{ts}\t{level}\t{self.scope}\t{message}"


def setup_logging(fmt: str, level: str, scope: str) -> None:
    root = logging.getLogger("agentgateway")
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json", scope))
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False


def access_log_enabled(level: str) -> bool:
    return _LEVELS.get(level, logging.INFO) <= logging.INFO
