"""Who may use a management plane: the checks at its door, run on every request's head before
any handler (so an endpoint added later is covered without doing anything).

The admin plane (``AdminDoor``) must not be reachable from a web page the operator happens to
open:

* DNS rebinding: a page at ``http://evil.example:15000`` whose name the attacker re-points at
  127.0.0.1 reads the answers as same-origin. Its requests carry ``Host: evil.example:15000``,
  so only loopback names (``localhost``, 127.0.0.0/8, ``::1``), the admin's own bind address and,
  when it binds every interface, IP literals (a literal cannot be re-pointed) are answered; any
  other ``Host``, a missing one or two of them get 403. The port is not compared: a proxy on this
  host (the default config's ``/ui`` route) forwards its own.
* Cross-site requests: a page can send a "simple" POST (a form) to any address without asking.
  Methods other than GET, HEAD and OPTIONS need the header ``x-agentgateway-admin`` (a custom
  header, which a browser sends cross-site only after a CORS preflight that this plane never
  approves), and are refused when they carry an ``Origin`` other than the request's own
  ``http://<Host>``, or ``Sec-Fetch-Site`` other than ``same-origin``/``none``.
* Pages that share the admin's origin: a proxy that serves the admin plane under a path of its
  own port (the default config's ``/ui`` route on 8080) serves the pages of its other routes (an
  upstream's web application) from the same origin, and their scripts' requests carry the same
  ``Origin``, ``Host`` and marker as the UI's. So methods other than GET, HEAD and OPTIONS are
  refused when a proxy says it relayed them (``X-Forwarded-For``, ``X-Forwarded-Host``,
  ``Forwarded``, ``X-Real-IP``, whatever address they name): changes are made at the admin
  address itself; through a proxy the pages are read-only.

The stats and readiness planes (``ReadOnlyDoor``) are scraped by Prometheus and probed by
kubelets with whatever ``Host`` they use (a pod IP, a service name), so any ``Host`` is answered;
they are read-only (GET and HEAD, anything else 405), and what they show (counters labelled by
route, backend address and model, and "ready") holds no secret.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

from agentgateway.admin.http import AdminRequest, AdminResponse, RequestHead

ADMIN_MARKER = "x-agentgateway-admin"
_SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
_READ_METHODS = frozenset(("GET", "HEAD"))
_WILDCARDS = frozenset(("0.0.0.0", "::", ""))
# Headers by which a proxy says it relays a request (the gateway's own proxy writes the first two).
_RELAY_HEADERS = ("x-forwarded-for", "x-forwarded-host", "forwarded", "x-real-ip")


class Door(Protocol):
    def refuse(self, head: RequestHead) -> AdminResponse | None:
        """The answer that turns ``head`` away, or None to let it in."""


def relay_header(request: RequestHead | AdminRequest) -> str | None:
    """The header by which a proxy says it relayed ``request``, or None when it came directly."""
    return next((name for name in _RELAY_HEADERS if request.values(name)), None)


def _forbidden(why: str) -> AdminResponse:
    return AdminResponse(403, f"forbidden: {why}\n")


def split_host(value: str) -> tuple[str, str] | None:
    """``Host`` → (host, port text), the host lowercased and without IPv6 brackets; None when the
    value is not a well-formed ``host[:port]``."""
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[1:end], value[end + 1 :]
        if end < 0 or not isinstance(_ip(host), ipaddress.IPv6Address):
            return None
        if not rest:
            return host.lower(), ""
        port = rest[1:]
        if not rest.startswith(":") or not _is_port(port):
            return None
    else:
        host, sep, port = value.partition(":")
        if sep and not _is_port(port):
            return None
    return (host.lower(), port) if host else None


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_loopback(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


class AdminDoor:
    """The admin plane's door (see the module docstring)."""

    __slots__ = ("bind_host", "any_ip")

    def __init__(self, bind_host: str) -> None:
        host = bind_host.strip("[]").lower()
        self.bind_host = host
        # Bound to every interface: reached by any of the machine's addresses.
        self.any_ip = host in _WILDCARDS

    def host_allowed(self, host: str) -> bool:
        if host == "localhost" or host == self.bind_host:
            return True
        ip = _ip(host)
        if ip is None:
            return False
        return _is_loopback(ip) or self.any_ip or ip == _ip(self.bind_host)

    def refuse(self, head: RequestHead) -> AdminResponse | None:
        hosts = head.values("host")
        if len(hosts) != 1:
            return _forbidden("the admin plane needs exactly one Host header")
        parsed = split_host(hosts[0])
        if parsed is None or not self.host_allowed(parsed[0]):
            return _forbidden(f"Host {hosts[0][:100]!r} is not this admin address or a loopback name")
        if head.method in _SAFE_METHODS:
            return None
        origins = head.values("origin")
        if origins and (len(origins) > 1 or origins[0] != f"http://{hosts[0]}"):
            return _forbidden("cross-site request (Origin is not this admin address)")
        fetch_site = head.values("sec-fetch-site")
        if fetch_site and fetch_site[-1].lower() not in ("same-origin", "none"):
            return _forbidden(f"cross-site request (Sec-Fetch-Site: {fetch_site[-1][:40]})")
        if not head.values(ADMIN_MARKER):
            return _forbidden(f"{head.method} needs the header {ADMIN_MARKER} (e.g. {ADMIN_MARKER}: 1)")
        relayed = relay_header(head)
        if relayed is not None:
            return _forbidden(
                f"changes are taken only from this host at the admin address itself, not through a proxy "
                f"(the request carries {relayed}): open the admin address"
            )
        return None


class ReadOnlyDoor:
    """The stats and readiness planes' door: any Host, reads only."""

    __slots__ = ()

    def refuse(self, head: RequestHead) -> AdminResponse | None:
        if head.method in _READ_METHODS:
            return None
        return AdminResponse(405, "read-only endpoint: use GET\n", headers=(("allow", "GET, HEAD"),))
