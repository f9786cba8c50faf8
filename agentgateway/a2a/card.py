"""Agent card rewriting: the interface URLs point at the gateway, signatures go.

The card names where the agent is reached: 0.3 ``url`` and ``additionalInterfaces[].url``, 1.0
``supportedInterfaces[].url``. Through the gateway those must be the address the client used
(scheme and authority of its request) and the gateway-side path. Paths are mapped back through
the route's rewrite:

1. an interface under the backend's card base (the backend path of the card, less the
   ``/.well-known/…`` suffix) moves under the client's card base
   (``/a2a/tock/rpc`` → ``/a2a/tick/rpc`` when ``/a2a/tick/.well-known/agent-card.json`` was
   fetched from ``/a2a/tock/.well-known/agent-card.json``);
2. else an interface under a ``urlRewrite`` prefix replacement moves back under the prefix the
   route matched;
3. else the path is kept (the agent already advertises a public path).

Only ``http``/``https`` URLs are rewritten (the gateway serves HTTP; a gRPC interface is left as
the agent wrote it). ``signatures`` are removed: they cover the card as the agent wrote it and no
longer verify.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import orjson


class CardError(ValueError):
    """The agent's card cannot be rewritten (not JSON, not an object)."""


class CardPaths:
    """Where the card was asked for and fetched: client-facing scheme and authority, the client's
    and the backend's card base paths (None when the backend path is not a card path), and the
    route's prefix rewrite (prefix matched, replacement) when it has one."""

    __slots__ = ("scheme", "authority", "client_base", "backend_base", "prefix")

    def __init__(
        self,
        scheme: str,
        authority: str,
        client_base: str,
        backend_base: str | None,
        prefix: tuple[str, str] | None,
    ) -> None:
        self.scheme = scheme
        self.authority = authority
        self.client_base = client_base
        self.backend_base = backend_base
        self.prefix = prefix


def _under(path: str, base: str) -> str | None:
    """The rest of ``path`` after ``base`` when ``base`` is a whole-segment prefix of it."""
    if not base:
        return path
    if path == base or path.startswith(base + "/"):
        return path[len(base) :]
    return None


def _trim(path: str) -> str:
    return path[:-1] if path.endswith("/") else path


def gateway_path(path: str, paths: CardPaths) -> str:
    if paths.backend_base is not None:
        rest = _under(path, paths.backend_base)
        if rest is not None:
            return paths.client_base + rest or "/"
    if paths.prefix is not None:
        matched, replacement = paths.prefix
        rest = _under(path, _trim(replacement))
        if rest is not None:
            return _trim(matched) + rest or "/"
    return path


def gateway_url(url: str, paths: CardPaths) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return url
    return urlunsplit((paths.scheme, paths.authority, gateway_path(parts.path, paths), parts.query, parts.fragment))


def rewrite_card(body: bytes, paths: CardPaths) -> bytes:
    """The card with its interface URLs pointing at the gateway and without signatures.
    Raises CardError when ``body`` is not a JSON object."""
    try:
        card = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CardError(f"not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise CardError(f"a JSON {type(card).__name__} where an object was expected")
    card.pop("signatures", None)
    url = card.get("url")
    if isinstance(url, str):
        card["url"] = gateway_url(url, paths)
    for key in ("additionalInterfaces", "supportedInterfaces"):
        interfaces = card.get(key)
        if isinstance(interfaces, list):
            for interface in interfaces:
                if isinstance(interface, dict) and isinstance(interface.get("url"), str):
                    interface["url"] = gateway_url(interface["url"], paths)
    return orjson.dumps(card)
