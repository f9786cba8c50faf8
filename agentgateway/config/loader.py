"""Read a config file: expand ``$VAR``, decode into the typed schema, report problems by path."""

from __future__ import annotations

import datetime
import re
from importlib import resources
from pathlib import Path

import msgspec

from agentgateway.config.envexpand import expand_env
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import LocalConfig, find_refused_form, find_unsupported

_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`(?: - at `\$(?P<path>[^`]*)`)?$")
_AT_PATH = re.compile(r"^(?P<reason>.*) - at `\$(?P<path>[^`]*)`$", re.S)


def _tidy_path(msgspec_path: str) -> str:
    return msgspec_path[1:] if msgspec_path.startswith(".") else msgspec_path


def _validation_error(exc: msgspec.ValidationError) -> ConfigError:
    text = str(exc)
    m = _UNKNOWN_FIELD.match(text)
    if m:
        parent = _tidy_path(m.group("path") or "")
        key = m.group("field")
        return ConfigError(f"{parent}.{key}" if parent else key, "unknown field")
    m = _AT_PATH.match(text)
    if m:
        return ConfigError(_tidy_path(m.group("path")), m.group("reason"))
    return ConfigError("", text)


def decode_config(text: str) -> LocalConfig:
    """Decode already-expanded YAML (or JSON, which is YAML) into the schema."""
    if not text.strip():
        return LocalConfig()
    try:
        raw = msgspec.yaml.decode(text)
    except msgspec.DecodeError as exc:
        raise ConfigError("", f"invalid YAML: {exc}") from None
    # Forms of a value agentgateway accepts but this gateway does not implement are refused by
    # name before they meet the types (which would call them type errors).
    refused = find_refused_form(raw, LocalConfig)
    if refused is not None:
        raise ConfigError(*refused)
    try:
        cfg = msgspec.convert(raw, LocalConfig, builtin_types=(datetime.datetime, datetime.date))
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    unsupported = find_unsupported(cfg)
    if unsupported:
        raise ConfigError(unsupported, "not supported")
    return cfg


def load_text(text: str) -> LocalConfig:
    return decode_config(expand_env(text))


def read_config_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"config file {path} is not UTF-8: {exc}") from None


def default_config_text() -> str:
    """The config embedded in the package, served when the CLI gets no config."""
    return resources.files("agentgateway.config").joinpath("default.yaml").read_text(encoding="utf-8")
