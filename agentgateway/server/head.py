"""Checks of a request head that every client protocol makes the same way (the HTTP/1.1
connection, ``http1.py``, and the HTTP/2 streams, ``http2.py``): the authority, and the
forwarded headers of a peer that may or may not be a trusted proxy."""

from __future__ import annotations

from agentgateway.config.settings import IPNetwork, ServerLimits
from agentgateway.core.context import RequestCtx
from agentgateway.core.request import AUTHORITY, Headers
from agentgateway.server.forwarded import client_address, forwarded_chain, without_forwarded

_VALID_HOST = AUTHORITY.fullmatch


# The methods the HTTP/1.1 parser (llhttp) accepts; anything else is 400 there, and HTTP/2 (whose
# nghttp2 takes any token) refuses it the same way: an h2 ``delete`` must not pass a rule about
# ``DELETE`` to reach an upstream framework that upper-cases methods (Werkzeug, ...).
KNOWN_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH UNLOCK "
    b"BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH "
    b"PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)


# Connection values that name no other header (the common case, compared without parsing).
PLAIN_CONNECTION = frozenset((b"keep-alive", b"close", b"Keep-Alive", b"Close", b"upgrade", b"Upgrade"))
# Fields a Connection option never removes: the framing the gateway read the request by (removing
# ``Content-Length`` after the body was framed by it would send the body upstream as a second
# request), the authority it routed by, and the upgrade it relays itself. All are rewritten for the
# upstream anyway.
_KEPT_OPTIONS = frozenset((b"close", b"keep-alive", b"host", b"content-length", b"transfer-encoding", b"upgrade"))


def without_connection_options(headers: Headers) -> Headers:
    """``headers`` without the fields the client's ``Connection`` header names (RFC 9110 §7.6.1:
    they are meant for this hop only). Removed once, when the head is parsed, so every policy
    reads the headers the upstream will get, and a header a policy adds under such a name still
    reaches the upstream."""
    listed: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            listed.update(token.strip().lower() for token in value.split(b","))
    listed -= _KEPT_OPTIONS
    if not listed:
        return headers
    return [h for h in headers if h[0] not in listed]


def valid_host(host: bytes) -> bytes | None:
    """``host`` as the router reads it, or None when it is not a host: without trailing
    whitespace (which llhttp keeps), lower case, and without the trailing dots of the name
    (``Admin.Example.:8080`` is ``admin.example:8080``). The request carries this one spelling
    from here on (CEL ``request.host`` and ``request.headers["host"]``, the upstream's ``Host``),
    so a rule cannot be passed by a spelling the router and the upstream take for the same host."""
    host = host.rstrip(b" \t")
    if not host:
        return host
    if _VALID_HOST(host) is None:
        return None
    host = host.lower()
    if host[0] == 0x5B:  # "[": an IPv6 literal has no trailing dot
        return host
    colon = host.rfind(b":")
    name = host if colon < 0 else host[:colon]
    if name.endswith(b"."):
        name = name.rstrip(b".")
        host = name if colon < 0 else name + host[colon:]
        if not name:
            return None
    return host


def apply_forwarded(ctx: RequestCtx, trusted: bool, trusted_proxies: tuple[IPNetwork, ...]) -> None:
    """The request carries forwarded headers: from a trusted proxy they are believed (the client
    address comes from its X-Forwarded-For), from anyone else they are dropped."""
    if not trusted:
        ctx.headers = without_forwarded(ctx.headers)
        return
    chain = forwarded_chain(ctx.headers)
    if chain:
        client = client_address(chain, trusted_proxies)
        if client is not None:
            ctx.client_ip = client


def body_stall(limits: ServerLimits, received: int, elapsed: float, idle: float) -> str | None:
    """Why a request body that has delivered ``received`` bytes in ``elapsed`` seconds of reading,
    the last ``idle`` of them without a byte, is cut (408); None while it keeps pace. It must not
    pause longer than ``requestBodyIdleTimeout``, nor average less than ``requestBodyMinRate``
    once ``requestBodyMinRateGrace`` has passed (a trickle that never pauses)."""
    if idle >= limits.body_idle_timeout:
        return f"timed out reading the request body (nothing for {limits.body_idle_timeout:g}s)"
    rate, grace = limits.body_min_rate, limits.body_min_rate_grace
    if not rate or elapsed <= grace or received >= rate * (elapsed - grace):
        return None
    return f"request body too slow ({received} bytes in {elapsed:.0f}s; at least {rate} bytes/s needed)"
