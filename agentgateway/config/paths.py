"""Where a file the config names is: agentgateway resolves a relative path from the working
directory, and so does this gateway; a relative path that is not there is then looked up next
to the config file (an addition, so a config and the files beside it can be started from anywhere).
``~`` is the user's home directory."""

from __future__ import annotations

from pathlib import Path

from agentgateway.config import referenced
from agentgateway.config.errors import ConfigError


def resolve_file(value: str, base_dir: Path | None, where: str, shown: str | None = None) -> Path:
    """The file ``value`` names (an existing regular file), or a ConfigError at ``where``.
    A missing file is noted for the watcher (creating it reloads the config)."""
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() or base_dir is None else [path, base_dir / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    for candidate in candidates:
        referenced.note_missing(candidate)
    raise ConfigError(where, f"file {shown if shown is not None else repr(value)} not found")
