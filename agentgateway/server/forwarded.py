"""Forwarded headers: believed only from the proxies the config trusts.

``X-Forwarded-For``, ``X-Forwarded-Proto``, ``X-Forwarded-Host``, ``Forwarded`` and ``X-Real-IP``
(and their look-alikes with ``_`` for ``-``) say who the client is and how it connected; any
client can write them. From a peer listed in ``frontendPolicies.http.trustedProxies`` they are
kept, and the client address is read from ``X-Forwarded-For`` (Envoy's ``xff_trusted_cidrs``
and nginx's ``real_ip_recursive``: the rightmost address that is not itself a trusted proxy).
From any other peer they are dropped at the edge, so no policy, CEL expression, MCP Origin
check or upstream ever sees them; the gateway then writes ``X-Forwarded-For`` (the peer),
``-Proto`` and ``-Host`` itself (proxy/forward.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from agentgateway.config.settings import IPNetwork
from agentgateway.core.request import Headers

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_FORWARDED_NAMES = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip")
# With their look-alikes spelled with ``_``: CGI, WSGI and PHP servers read ``X_Forwarded_For`` as
# ``X-Forwarded-For`` (both are ``HTTP_X_FORWARDED_FOR``), so an upstream would believe a spoof
# the gateway let through under another name.
FORWARDED_HEADERS = frozenset(_FORWARDED_NAMES + tuple(name.replace(b"-", b"_") for name in _FORWARDED_NAMES))


def _address(text: bytes) -> IPAddress | None:
    """An address of an X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``)."""
    entry = text.strip()
    if entry.startswith(b"["):
        end = entry.find(b"]")
        entry = entry[1:end] if end > 0 else b""
    elif entry.count(b":") == 1:
        entry = entry.split(b":", 1)[0]
    try:
        address = ipaddress.ip_address(entry.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: str | IPAddress | None, trusted: Sequence[IPNetwork]) -> bool:
    if not trusted or address is None:
        return False
    if isinstance(address, str):
        found = _address(address.encode())
        if found is None:
            return False
        address = found
    return any(address in network for network in trusted)


def client_address(chain: bytes, trusted: Sequence[IPNetwork]) -> str | None:
    """The client an ``X-Forwarded-For`` chain names, read from the right: the first address
    that is not a trusted proxy (or the leftmost when all are). None when the rightmost entry
    is not an address: the chain says nothing usable."""
    found: IPAddress | None = None
    for entry in reversed(chain.split(b",")):
        address = _address(entry)
        if address is None:
            break  # garbage below a trusted hop: stop at the last address known good
        found = address
        if not is_trusted(address, trusted):
            break
    return None if found is None else str(found)


def forwarded_chain(headers: Headers) -> bytes:
    """Every ``X-Forwarded-For`` field of the request as one chain, in order."""
    values = [value for name, value in headers if name == b"x-forwarded-for"]
    return values[0] if len(values) == 1 else b", ".join(values)


def without_forwarded(headers: Headers) -> Headers:
    return [h for h in headers if h[0] not in FORWARDED_HEADERS]
