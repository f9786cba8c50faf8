"""Which browsers may reach an MCP endpoint.

- Always (the MCP transport's rule, 403 since 2025-11-25): a request that carries an ``Origin``
  must come from the page the endpoint belongs to, meaning the Origin's host and port are those
  of the request's ``Host`` (or of ``X-Forwarded-Host``, set by a proxy in front), or both are
  localhost names. A browser sends Origin on every cross-origin POST, even a "simple" one
  (``text/plain``) that reaches the server without a CORS preflight; without this rule any web page
  could call tools through a gateway the browser can reach. Clients that are not browsers send no
  Origin and are not affected.
- DNS-rebinding protection (``dnsRebindingProtection``, agentgateway's key): ``Host`` must be a
  localhost name and so must a present ``Origin``. DNS rebinding makes an attacker's name resolve
  to 127.0.0.1, so its page is same-origin with the request it sends (``Host: evil.example``,
  ``Origin: http://evil.example``); only a gateway that knows it is reached as localhost can refuse
  it, and the upstream cannot (the gateway sends it a Host of its own). It applies when set to
  ``true``; unset, it applies to clients on this machine (``is_loopback_client``: the client
  address is a loopback one, read from the connection, or from ``X-Forwarded-For`` when the peer
  is a trusted proxy: the listeners take every IPv4 address, so the bind cannot tell it);
  ``false`` turns it off.

Localhost names: ``localhost``, ``127.0.0.1`` and ``[::1]``, any port, in any letter case; no other
spelling (``127.1``, ``127.0.0.1.nip.io``: a browser sends none of them for a page of its own
machine). ``Host: localhost.`` reaches this check as ``localhost`` (server/head.py reads every host
without the trailing dots of its name, as routing does).
"""

from __future__ import annotations

import functools
import re

_LOCALHOST = frozenset(("localhost", "127.0.0.1", "::1"))
_DEFAULT_PORT = {"http": 80, "https": 443}
# RFC 3986 authority without userinfo: a registered name or IPv4 address, or an IPv6 literal.
_AUTHORITY = r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._~-]+))(?::(?P<port>[0-9]{1,5}))?"
_HOST_RE = re.compile(_AUTHORITY)
_ORIGIN_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://" + _AUTHORITY + "/?")
_SHOWN = 100  # characters of a refused header value quoted in the answer


def _host_port(match: re.Match[str]) -> tuple[str, int | None] | None:
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        return None
    return (match["v6"] or match["name"]).lower(), port


@functools.lru_cache(maxsize=256)  # clients send the same few Host values, request after request
def split_authority(value: bytes | str | None) -> tuple[str, int | None] | None:
    """(lower-cased host, port or None) of a ``Host`` value; None when it is not one."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    match = _HOST_RE.fullmatch(text.strip())
    return _host_port(match) if match else None


def parse_origin(value: bytes) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a serialized origin (``https://app.example:8443``); None for
    ``null`` or anything that is not an http(s) origin."""
    match = _ORIGIN_RE.fullmatch(value.decode("latin-1").strip())
    if match is None:
        return None
    scheme = match["scheme"].lower()
    authority = _host_port(match)
    if scheme not in _DEFAULT_PORT or authority is None:
        return None
    host, port = authority
    return scheme, host, port if port is not None else _DEFAULT_PORT[scheme]


def is_localhost(host: str) -> bool:
    return host in _LOCALHOST


def is_loopback_client(address: str) -> bool:
    """Whether a client address is a loopback address (127.0.0.0/8, ::1, or 127.x mapped into
    IPv6): the client runs on this machine, where a DNS-rebinding page would run."""
    return address.startswith("127.") or address == "::1" or address.startswith("::ffff:127.")


def _shown(value: bytes) -> str:
    text = value.decode("latin-1")
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def origin_problem(
    host: bytes | None, origins: list[bytes], forwarded_host: bytes | None, localhost_only: bool
) -> str | None:
    """Why the request must be refused (HTTP 403), or None when it may proceed. ``origins`` are
    the request's Origin values that must be checked (one allowed by the route's cors policy is
    left out); ``localhost_only``: the DNS-rebinding protection applies."""
    authority = split_authority(host)
    if localhost_only and (authority is None or not is_localhost(authority[0])):
        shown = _shown(host) if host else "(none)"
        return f"Host {shown} is not localhost, 127.0.0.1 or [::1] (dnsRebindingProtection)"
    if not origins:
        return None  # not a browser
    if len(origins) > 1:
        return "more than one Origin header"
    origin = parse_origin(origins[0])
    shown = _shown(origins[0])
    if origin is None:
        return f"Origin {shown} is not an http(s) origin"
    scheme, origin_host, origin_port = origin
    if localhost_only:
        if is_localhost(origin_host):
            return None
        return f"Origin {shown} is not localhost, 127.0.0.1 or [::1] (dnsRebindingProtection)"
    forwarded = forwarded_host.split(b",", 1)[0] if forwarded_host else None
    for candidate in (authority, split_authority(forwarded)):
        if candidate is None:
            continue
        name, port = candidate
        if name == origin_host and (port if port is not None else _DEFAULT_PORT[scheme]) == origin_port:
            return None
    if authority is not None and is_localhost(authority[0]) and is_localhost(origin_host):
        return None
    return f"Origin {shown} is not allowed: it is not the origin of this endpoint"
