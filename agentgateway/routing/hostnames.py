"""Hostname matching as the Gateway API defines it: exact names first, then wildcards from the
most specific suffix to the least (``*.example.com`` matches any depth below example.com but not
example.com itself), then entries without a hostname."""

from __future__ import annotations


def normalize_host(host: bytes) -> bytes:
    """Lower-case host without port; IPv6 literals keep their brackets."""
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[: end + 1].lower() if end > 0 else host.lower()
    colon = host.rfind(b":")
    if colon >= 0:
        host = host[:colon]
    return host.rstrip(b".").lower()


def host_candidates(host: bytes) -> list[bytes]:
    """Patterns that can match ``host``, most specific first, ending with b"" (no hostname)."""
    out = [host]
    dot = host.find(b".")
    while dot >= 0:
        out.append(b"*" + host[dot:])
        dot = host.find(b".", dot + 1)
    out.append(b"")
    return out


# What a request's host may hold (server/head.py ``_VALID_HOST``, without the port and the IPv6
# literal): a hostname of the config outside it could never match a request.
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()+,;=")


def validate_hostname_pattern(pattern: str) -> str | None:
    """Why ``pattern`` is not a hostname or ``*.suffix`` wildcard, or None if it is one. A name no
    request's host can spell is refused: it would match nothing, silently, and the requests meant
    for it would go to another listener or route and its policies."""
    name = pattern[2:] if pattern.startswith("*.") else pattern
    if not name or "*" in name:
        return "a hostname is a DNS name or a wildcard of the form *.example.com"
    if any(c.isspace() or c in "/:@?#" for c in name):
        return "a hostname has no port, path or spaces"
    if not name.isascii():
        return "a hostname is ASCII (write an internationalized name in its punycode form, xn--...)"
    if not set(name) <= _HOST_CHARS:
        return "a hostname has only letters, digits and - . _ ~ (no percent-encoding)"
    if not name.strip("."):
        return "a hostname is not dots alone"
    return None


def pattern_key(pattern: str | None) -> bytes:
    """A validated hostname of the config in the spelling requests are matched in (see
    ``normalize_host``): lower case, without trailing dots; b"" for none."""
    return (pattern or "").rstrip(".").lower().encode()
