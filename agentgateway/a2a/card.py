"""Agent card rewriting: the interface URLs point at the gateway, every other URL is one a client
may follow safely, signatures go.

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

Every URL of the card is one of three kinds:

- **interfaces** (above): an absolute ``http``/``https`` URL, a protocol-relative one
  (``//host/x``) or an absolute path is rewritten to the gateway; anything else (``grpc://``, a
  bare ``host:port``, ``javascript:``, ``file:``, a relative path) is an interface the gateway
  does not serve and would send clients around it: the interface is dropped (the 0.3 ``url``,
  which is required, becomes the gateway's address of the agent);
- **security endpoints** (OAuth flows' ``authorizationUrl``, ``tokenUrl``, ``refreshUrl``,
  ``deviceAuthorizationUrl``, ``oauth2MetadataUrl``, ``openIdConnectUrl``; 0.3 and 1.0 shapes):
  the agent's identity provider, not proxied: kept only when absolute ``https`` (OAuth and
  OpenID Connect require TLS there), else dropped;
- **links** (``provider.url``, ``documentationUrl``, ``iconUrl``): kept when absolute
  ``http``/``https`` with a host, else dropped.

What a dropped URL leaves must still be a valid card (0.3 clients validate it against the
schema): a URL the schema requires takes its object with it (``provider``, an OAuth flow whose
authorization, token or device endpoint goes, an OpenID Connect scheme); optional ones
(``refreshUrl``, ``oauth2MetadataUrl``, ``documentationUrl``, ``iconUrl``) go alone.

A URL with whitespace or control characters, or a backslash, is not taken as any of these.
Members are found in every spelling a client reads as theirs: the proto field name
(``supported_interfaces``, ``icon_url``: A2A 1.0 is ProtoJSON, and the SDKs take both) and any
case (Go's ``encoding/json``).
Extension ``uri`` values are identifiers, not links, and are left as written. ``signatures`` are
removed: they cover the card as the agent wrote it and no longer verify.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

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


_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")
# A flow's endpoints (0.3 and 1.0 use the same names in JSON): the schema requires the ones a
# flow has, so a flow whose endpoint is dropped goes whole. ``refreshUrl`` is optional.
_FLOW_ENDPOINTS = ("authorizationUrl", "tokenUrl", "deviceAuthorizationUrl")


def _split(url: str) -> SplitResult | None:
    if _UNSAFE.search(url):
        return None
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        return None
    return parts


def gateway_url(url: str, paths: CardPaths) -> str | None:
    """An interface URL as the gateway serves it; None when it is not one the gateway serves."""
    parts = _split(url)
    if parts is None:
        return None
    if parts.scheme in ("http", "https") and parts.netloc:
        pass
    elif not parts.scheme and (parts.netloc or parts.path.startswith("/")):
        pass  # protocol-relative or an absolute path: the card's own origin, i.e. the agent
    else:
        return None
    path = gateway_path(parts.path or "/", paths)
    return urlunsplit((paths.scheme, paths.authority, path, parts.query, parts.fragment))


def _absolute(url: object, schemes: tuple[str, ...]) -> bool:
    if not isinstance(url, str):
        return False
    parts = _split(url)
    return parts is not None and parts.scheme in schemes and bool(parts.hostname)


_HTTPS = ("https",)
_WEB = ("http", "https")


def _fold(name: str) -> str:
    return name.casefold().replace("_", "").replace("\x00", "")


def _spelled(container: dict[str, Any], name: str) -> list[str]:
    """Every member of ``container`` a client may read as ``name``: the name itself, its proto
    field name (A2A 1.0 is ProtoJSON, whose parsers take ``supported_interfaces`` as they take
    ``supportedInterfaces``; the 0.3 SDK's models take both too) and any case of either (Go's
    encoding/json, which also folds ``ſ`` and ``K``). Of two spellings, clients differ on which
    counts (ProtoJSON the last, pydantic the JSON name), so each one is rewritten or dropped."""
    folded = _fold(name)
    return [key for key in container if key == name or _fold(key) == folded]


def _keep_if(container: dict[str, Any], name: str, schemes: tuple[str, ...]) -> None:
    for key in _spelled(container, name):
        if not _absolute(container[key], schemes):
            del container[key]


def _any_unsafe(container: dict[str, Any], name: str, schemes: tuple[str, ...]) -> bool:
    return any(not _absolute(container[key], schemes) for key in _spelled(container, name))


def _values(container: dict[str, Any], name: str) -> list[Any]:
    return [container[key] for key in _spelled(container, name)]


def _security_urls(schemes: Any) -> None:
    if not isinstance(schemes, dict):
        return
    for name, scheme in list(schemes.items()):
        if not isinstance(scheme, dict):
            continue
        # 1.0 wraps each kind (oauth2SecurityScheme, openIdConnectSecurityScheme, ...); 0.3 is flat.
        wrapped = (v for k, v in scheme.items() if _fold(k).endswith("securityscheme") and isinstance(v, dict))
        bodies = [scheme, *wrapped]
        for body in bodies:
            if _any_unsafe(body, "openIdConnectUrl", _HTTPS):
                del schemes[name]  # the scheme's one, required, URL: nothing is left of it
                break
            _keep_if(body, "oauth2MetadataUrl", _HTTPS)
            for flows in _values(body, "flows"):
                if not isinstance(flows, dict):
                    continue
                for kind, flow in list(flows.items()):
                    if not isinstance(flow, dict):
                        continue
                    if any(_any_unsafe(flow, key, _HTTPS) for key in _FLOW_ENDPOINTS):
                        del flows[kind]
                    else:
                        _keep_if(flow, "refreshUrl", _HTTPS)


def _gateway_interface(interface: dict[str, Any], paths: CardPaths) -> bool:
    """Points every spelling of the interface's ``url`` at the gateway; False when it has no url
    or one the gateway does not serve."""
    keys = _spelled(interface, "url")
    for key in keys:
        url = interface[key]
        rewritten = gateway_url(url, paths) if isinstance(url, str) else None
        if rewritten is None:
            return False
        interface[key] = rewritten
    return bool(keys)


def rewrite_card(body: bytes, paths: CardPaths) -> bytes:
    """The card with its interface URLs pointing at the gateway, its other URLs safe to follow,
    and without signatures. Members are found in every spelling a client reads (``_spelled``).
    Raises CardError when ``body`` is not a JSON object."""
    try:
        card = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CardError(f"not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise CardError(f"a JSON {type(card).__name__} where an object was expected")
    for key in _spelled(card, "signatures"):
        del card[key]
    for key in _spelled(card, "url"):
        url = card[key]
        rewritten = gateway_url(url, paths) if isinstance(url, str) else None
        card[key] = rewritten or urlunsplit((paths.scheme, paths.authority, paths.client_base + "/", "", ""))
    for key in (*_spelled(card, "additionalInterfaces"), *_spelled(card, "supportedInterfaces")):
        interfaces = card[key]
        if isinstance(interfaces, list):
            # An entry the gateway does not serve would send clients around it: dropped.
            card[key] = [i for i in interfaces if not isinstance(i, dict) or _gateway_interface(i, paths)]
    for key in _spelled(card, "provider"):
        provider = card[key]
        if isinstance(provider, dict) and _any_unsafe(provider, "url", _WEB):
            del card[key]  # its url is required (0.3 and 1.0): the provider goes whole
    _keep_if(card, "documentationUrl", _WEB)
    _keep_if(card, "iconUrl", _WEB)
    for schemes in _values(card, "securitySchemes"):
        _security_urls(schemes)
    return orjson.dumps(card)
