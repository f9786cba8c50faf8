"""Secrets kept out of what the gateway shows: ``/config_dump``, the status page, the last reload
error and the log lines of failed reloads.

Two layers:

* By type. Fields of the schema are marked (``schema.SECRET``, ``KEY_MATERIAL``,
  ``CREDENTIAL_HEADERS``, ``JWKS``); ``redact_config`` turns a decoded config into JSON builtins with
  every marked value replaced, wherever its struct is used, and returns the values it replaced.
* By value, on every string of the output (``scrub``): the secrets found by type (a reload error
  may quote one), PEM private key blocks, the user-info of URLs (``redis://user:pw@host`` →
  ``redis://user:<redacted>@host``; a user name alone, often a token, is redacted whole), the
  values of query parameters named as credentials (``?api_key=``, ``&access_token=``, ``?sig=``),
  JWTs, and provider API keys and AWS access key ids recognizable by their form. These rules are
  narrow on purpose: a harmless value (a route name, a path) is never mistaken for a secret.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
import orjson

from agentgateway.config.schema import CREDENTIAL_HEADERS, JWKS, KEY_MATERIAL, SECRET, Schema

REDACTED = "<redacted>"
_MARKERS = frozenset((SECRET, KEY_MATERIAL, CREDENTIAL_HEADERS, JWKS))
# Headers whose values are credentials (request and response side).
CREDENTIAL_HEADER_NAMES = frozenset(
    (
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "x-auth-token",
        "x-access-token",
        "x-amz-security-token",
    )
)
# Any other header named as a credential: its last part (after ``-`` or ``_``) says so
# (``x-internal-token``, ``x-partner-api-key``, ``X_Client_Secret``, ``x-hub-signature``).
_CREDENTIAL_HEADER_PART = re.compile(
    r"(?:^|[-_])(?:key|apikey|token|secret|password|passwd|credential|credentials|signature|auth)$", re.IGNORECASE
)


def is_credential_header(name: str) -> bool:
    """Whether a header of this name carries a credential (its value is redacted)."""
    return name.lower() in CREDENTIAL_HEADER_NAMES or _CREDENTIAL_HEADER_PART.search(name) is not None


# Members of a JWK that are private key material (RFC 7518 §6).
_PRIVATE_JWK_MEMBERS = frozenset(("d", "p", "q", "dp", "dq", "qi", "oth", "k"))
# Known secrets shorter than this are not searched for in other text (they would match anything).
_MIN_KNOWN = 6

_PEM_PRIVATE = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL
)
# scheme://userinfo@ — userinfo without '/', '?', '#', '@' or whitespace.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/?#@\s:]*)(?P<pw>:[^/?#@\s]*)?@")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# A query parameter that carries a credential in a URL (``?api_key=``, ``&access_token=``,
# ``?sig=`` of a signed URL, ``X-Amz-Signature``, ...): a name ending so, any case.
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9_.-]*(?:key|token|secret|password|passwd|pwd|signature|credential|sig|auth|pass)"
    r"|code)=)(?P<value>[^&#\s\"'<>]+)",
    re.IGNORECASE,
)
# OpenAI/Anthropic-style keys (sk-..., sk-proj-..., sk-ant-...) and AWS access key ids.
_API_KEY = re.compile(r"\bsk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def is_inline_pem(value: str) -> bool:
    return value.lstrip().startswith("-----BEGIN")


# ---------------------------------------------------------------- by type


@functools.cache
def marked_fields(cls: type[Schema]) -> tuple[tuple[str, str, str | None], ...]:
    """(attribute, key in the file, marker or None) of every field of ``cls``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in msgspec.structs.fields(cls):
        hint = hints[f.name]
        marker = None
        if typing.get_origin(hint) is Annotated:
            marker = next((m for m in hint.__metadata__ if m in _MARKERS), None)
        out.append((f.name, f.encode_name, marker))
    return tuple(out)


class _Redactor:
    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: set[str] = set()

    def secret(self, value: str, remember: bool = True) -> str:
        """``remember``: also look for it in other text (not for values that are often harmless
        and would then be cut out of everything, such as a stdio server's PATH)."""
        if value and remember:
            self.found.add(value)
        return REDACTED

    def struct(self, node: Schema, out: dict[str, Any]) -> None:
        for attr, key, marker in marked_fields(type(node)):
            if key not in out:
                continue
            value = getattr(node, attr)
            if marker is not None and not isinstance(value, Schema):
                out[key] = self.marked(marker, value, out[key])
            else:
                self.child(value, out[key])

    def child(self, value: object, out: Any) -> None:
        if isinstance(value, Schema):
            self.struct(value, out)
        elif isinstance(value, list):
            for item, item_out in zip(value, out, strict=True):
                self.child(item, item_out)
        elif isinstance(value, dict):
            for k, item in value.items():
                if k in out:
                    self.child(item, out[k])

    def marked(self, marker: str, value: object, out: Any) -> Any:
        if marker == SECRET:
            if isinstance(value, str):
                return self.secret(value)
            if isinstance(value, dict):  # a map of secrets (a stdio server's environment)
                return {k: self.secret(v, remember=False) if isinstance(v, str) else v for k, v in value.items()}
            return out
        if marker == KEY_MATERIAL:
            return self.secret(value) if isinstance(value, str) and is_inline_pem(value) else out
        if marker == CREDENTIAL_HEADERS:
            assert isinstance(value, dict)
            return {
                k: self.secret(v) if is_credential_header(k) and isinstance(v, str) else v for k, v in value.items()
            }
        if marker == JWKS:
            if isinstance(value, list):
                return [self.jwk(k) for k in value]
            if isinstance(value, str):
                return self.jwks_text(value)
        return out

    def jwk(self, key: object) -> object:
        if not isinstance(key, dict):
            return key
        return {k: self.secret(str(v)) if k in _PRIVATE_JWK_MEMBERS else v for k, v in key.items()}

    def jwks_text(self, text: str) -> str:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self.secret(text)  # not JSON: nothing can be shown of it safely
        if isinstance(document, dict) and isinstance(document.get("keys"), list):
            document = {**document, "keys": [self.jwk(k) for k in document["keys"]]}
        elif isinstance(document, dict):
            document = self.jwk(document)
        return orjson.dumps(document).decode()


def redact_config(cfg: Schema) -> tuple[Any, set[str]]:
    """``cfg`` as JSON builtins with every marked secret replaced, and the secrets replaced."""
    redactor = _Redactor()
    out = msgspec.to_builtins(cfg)
    redactor.struct(cfg, out)
    return out, redactor.found


def secret_values(cfg: Schema) -> set[str]:
    """The secrets a decoded config holds (to keep them out of messages about it)."""
    return redact_config(cfg)[1]


# ---------------------------------------------------------------- by value


def _userinfo(m: re.Match[str]) -> str:
    if m.group("pw") is not None:
        return f"{m.group('scheme')}{m.group('user')}:{REDACTED}@"
    return f"{m.group('scheme')}{REDACTED}@"


def _query_value(m: re.Match[str]) -> str:
    return m.group("name") + REDACTED


def scrub(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with the ``known`` secrets and anything that looks like a secret replaced."""
    for secret in sorted((k for k in known if len(k) >= _MIN_KNOWN), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "PRIVATE KEY" in text:
        text = _PEM_PRIVATE.sub(REDACTED, text)
    if "@" in text:
        text = _URL_USERINFO.sub(_userinfo, text)
    if "=" in text:
        text = _QUERY_SECRET.sub(_query_value, text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    return _API_KEY.sub(REDACTED, text)


def scrub_tree(node: Any, known: Iterable[str] = ()) -> Any:
    """Every string (keys too) of a JSON-like tree through ``scrub``."""
    known = tuple(known)
    if isinstance(node, str):
        return scrub(node, known)
    if isinstance(node, dict):
        return {scrub(k, known) if isinstance(k, str) else k: scrub_tree(v, known) for k, v in node.items()}
    if isinstance(node, list):
        return [scrub_tree(v, known) for v in node]
    return node
