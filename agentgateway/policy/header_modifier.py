"""``requestHeaderModifier`` and ``responseHeaderModifier``: add, then set, then remove headers.

As in agentgateway, ``add`` appends a value, ``set`` replaces every value of a name and
``remove`` drops a name; a name both added and set ends up set, and one removed is gone whatever
else was asked. All of that is resolved at load, so a request pays one pass over its headers.

On requests, a name the modifier sets or removes is also removed in its underscore spelling
(``x_user`` for ``x-user``): CGI-style upstreams (WSGI, PHP, Rails' Rack) read both as
``HTTP_X_USER``, so a client's ``X_User: admin`` would otherwise stand beside, or in place of, the
value the gateway set or the header it removed. nginx drops every underscored header by default;
only the ones that collide with the gateway's own edits go here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import HeaderModifier as HeaderModifierConfig

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.reply import LocalReply

Headers = list[tuple[bytes, bytes]]

TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def header_name(name: str, where: str) -> bytes:
    if not TOKEN.match(name):
        raise ConfigError(where, f"{name!r} is not a header name")
    return name.lower().encode()


# RFC 9110 §5.5: a field value on the wire (no CR, LF, NUL or other control character but HTAB).
FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_WIRE_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9a-z-]+")


def service_header(key: str, value: str | bytes) -> tuple[bytes, bytes] | None:
    """A header a service's answer asks the gateway to write (an authorizer's, a rate limit
    service's): (lower-case name, value), or None when the name is no token or the value holds
    CR, LF, NUL or another control character. A service that copies a caller's data (a claim, a
    descriptor value) into a header would otherwise let the caller write header lines of its own
    (request smuggling upstream, response splitting)."""
    if not key.isascii():
        return None
    name = key.lower().encode("ascii")
    raw = value if isinstance(value, bytes) else value.encode()
    if _WIRE_TOKEN.fullmatch(name) is None or FIELD_VALUE.fullmatch(raw) is None:
        return None
    return name, raw


def header_value(value: str, where: str) -> bytes:
    if "\r" in value or "\n" in value or "\0" in value:
        raise ConfigError(where, "a header value cannot contain CR, LF or NUL")
    try:
        return value.strip().encode("latin-1")
    except UnicodeEncodeError:
        return value.strip().encode()


# The framing of a message is the gateway's (as for transformations): a modifier that added
# ``content-length: 0`` to a request, or removed its ``content-length``, sent the upstream the
# client's body as a request of its own that no route or policy saw; on the gateway's own answers
# it wrote a second length for the client.
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))


def _edited_name(name: str, where: str) -> bytes:
    n = header_name(name, where)
    if n in _FRAMING:
        raise ConfigError(where, f"{name} is set by the gateway itself (the message's framing)")
    return n


class HeaderEdit:
    """The resolved edit: names to drop from what is there, then pairs to append."""

    __slots__ = ("drop", "append", "host")

    def __init__(self, cfg: HeaderModifierConfig, where: str, underscore_spellings: bool = False) -> None:
        removed = {_edited_name(n, f"{where}.remove") for n in cfg.remove}
        sets = [(_edited_name(k, f"{where}.set"), header_value(v, f"{where}.set.{k}")) for k, v in cfg.set.items()]
        adds = [(_edited_name(k, f"{where}.add"), header_value(v, f"{where}.add.{k}")) for k, v in cfg.add.items()]
        set_names = {k for k, _ in sets}
        dropped = removed | set_names
        if underscore_spellings:
            dropped |= {name.replace(b"-", b"_") for name in dropped if b"-" in name}
        self.drop = frozenset(dropped)
        self.append = tuple(
            [(k, v) for k, v in adds if k not in self.drop] + [(k, v) for k, v in sets if k not in removed]
        )
        # A set/added Host header changes the request's authority.
        self.host = next((v for k, v in reversed(self.append) if k == b"host"), None)

    def apply(self, headers: Headers) -> Headers:
        """``headers`` edited; the list is edited in place when nothing is dropped."""
        drop = self.drop
        out = [h for h in headers if h[0] not in drop] if drop else headers
        out.extend(self.append)
        return out


class RequestHeaderModifier:
    kind = "requestHeaderModifier"
    __slots__ = ("edit",)

    def __init__(self, cfg: HeaderModifierConfig, where: str) -> None:
        self.edit = HeaderEdit(cfg, where, underscore_spellings=True)

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        edit = self.edit
        ctx.headers = edit.apply(ctx.headers)  # the parsed list belongs to this request
        if edit.host is not None:
            ctx.host = edit.host
            ctx.keep_host = True  # sent as set, whatever the backend
        return None


class ResponseHeaderModifier:
    kind = "responseHeaderModifier"
    __slots__ = ("edit",)

    def __init__(self, cfg: HeaderModifierConfig, where: str) -> None:
        self.edit = HeaderEdit(cfg, where)

    def on_response(self, ctx: RequestCtx, status: int, headers: Headers) -> None:
        headers[:] = self.edit.apply(headers)
