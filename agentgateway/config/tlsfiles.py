"""TLS material named in the config: a file path (config/paths.py: relative to the working
directory, else to the config file's directory) or inline PEM text."""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from pathlib import Path

from agentgateway.config import referenced
from agentgateway.config.errors import ConfigError
from agentgateway.config.paths import resolve_file
from agentgateway.config.redact import is_inline_pem

# Base64 text, not starting like a path: what a PEM body looks like without its header.
_BASE64 = re.compile(r"[A-Za-z0-9+=][A-Za-z0-9+/=\s]{39,}")


def resolve_path(value: str, base_dir: Path | None, where: str) -> Path:
    return resolve_file(value, base_dir, where, _shown(value))


def _shown(value: str) -> str:
    """``value`` quoted for an error message when it can be a path; a long, multi-line or base64
    value is more likely key material pasted without its PEM header, and is not repeated."""
    if len(value) <= 255 and "\n" not in value and not _BASE64.fullmatch(value):
        return repr(value)
    return f"of {len(value)} characters (not inline PEM either: that starts with -----BEGIN)"


def read_pem(value: str, base_dir: Path | None, where: str) -> str:
    if is_inline_pem(value):
        return value
    try:
        return referenced.read_text(resolve_path(value, base_dir, where))
    except OSError as exc:
        raise ConfigError(where, f"cannot read {value!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(where, f"{value!r} is not a text (UTF-8) file") from None


def load_cert_chain(ctx: ssl.SSLContext, cert: str, key: str, base_dir: Path | None, where: str) -> None:
    """Load a certificate and key, from files or inline PEM (ssl wants files, so inline PEM goes
    through a private temporary file that is removed at once)."""
    cert_pem = read_pem(cert, base_dir, f"{where}.cert")
    key_pem = read_pem(key, base_dir, f"{where}.key")
    fd, tmp = tempfile.mkstemp(prefix="agw-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(cert_pem.rstrip() + "\n" + key_pem.rstrip() + "\n")
        ctx.load_cert_chain(tmp)
    except ssl.SSLError as exc:
        raise ConfigError(where, f"invalid certificate or key: {exc.reason or exc}") from None
    finally:
        os.unlink(tmp)


def load_roots(ctx: ssl.SSLContext, root: str, base_dir: Path | None, where: str) -> None:
    pem = read_pem(root, base_dir, where)
    try:
        ctx.load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(where, f"invalid root certificates: {exc}") from None
