"""What the callers of one MCP backend may see and call: ``mcpAuthorization`` and tool pinning,
applied where federation merges lists and before it routes a call.

Both hide things the same way: left out of the merged lists, and a call answered as one to a
name nothing serves (``-32602 Unknown tool: <name>``, and the same for prompts and resources).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from agentgateway._native import list_item_keys
from agentgateway.mcp import protocol
from agentgateway.mcp.authorization import McpAuthorization, item_kind
from agentgateway.mcp.pinning import ToolPins
from agentgateway.mcp.protocol import ListKind, McpError

if TYPE_CHECKING:
    from agentgateway.mcp.session import DownstreamSession

log = logging.getLogger("agentgateway.mcp.access")

_MAX_PAGES = 64  # pages of one target's tools listed to check a call (a bound for endless cursors)


def unknown(kind: str, name: object) -> McpError:
    """The answer to a call of something the caller cannot use, or that nothing serves."""
    return McpError(protocol.INVALID_PARAMS, f"Unknown {kind}: {protocol.shown(name)}")


def called_item(method: str, params: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, name as the client gave it) of what a routed request uses."""
    if method == "tools/call":
        return "tool", str(params.get("name"))
    if method == "prompts/get":
        return "prompt", str(params.get("name"))
    if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        return "resource", str(params.get("uri"))
    if method == "completion/complete":
        ref = params.get("ref")
        if isinstance(ref, dict):
            if ref.get("type") == "ref/resource":
                return "resource", str(ref.get("uri"))
            return "prompt", str(ref.get("name"))
    return None


class McpAccess:
    __slots__ = ("authorization", "pins")

    def __init__(self, authorization: McpAuthorization | None, pins: ToolPins | None) -> None:
        self.authorization = authorization if authorization else None
        self.pins = pins

    def __bool__(self) -> bool:
        return self.authorization is not None or self.pins is not None

    # ------------------------------------------------------------------ lists

    def screen_list(
        self, session: DownstreamSession, key: ListKind, method: str, results: list[tuple[str, bytes]]
    ) -> tuple[list[tuple[str, bytes]], set[str] | None]:
        """The targets' results to merge (rewritten for flagged tools) and the items the merge
        keeps (``target\\0name``; None: all). Raises ListResultError like the merge."""
        hidden: set[str] = set()
        unreadable: set[str] = set()
        pins = self.pins
        if pins is not None and key == "tools":
            screened = []
            for target, raw in results:
                screen = pins.screen(target, raw)
                if screen.unreadable:
                    unreadable.add(target)
                session.tools.update(target, screen.digests)
                if screen.hidden:
                    pins.count(target, screen.hidden, "hidden")
                    hidden.update(f"{target}\0{name}" for name in screen.hidden)
                if screen.flagged:
                    pins.count(target, screen.flagged, "flagged")
                screened.append((target, screen.raw))
            results = screened
        allowed: set[str] | None = None
        if self.authorization is not None:
            allowed = self.authorization.allowed_items(item_kind(key), list_item_keys(key, results), method)
        if hidden or unreadable:
            if allowed is None:
                allowed = {f"{t}\0{n}" for t, n in list_item_keys(key, results)}
            allowed = {k for k in allowed if k not in hidden and k.partition("\0")[0] not in unreadable}
        return results, allowed

    # ------------------------------------------------------------------ calls

    async def admit(
        self,
        session: DownstreamSession,
        method: str,
        params: dict[str, Any],
        target: str,
        upstream_params: dict[str, Any],
    ) -> None:
        """Raises the ``Unknown ...`` error when the caller may not make this call. ``params``
        are the client's, ``upstream_params`` the target's (its own names)."""
        given = called_item(method, params)
        own = called_item(method, upstream_params)
        if given is None or own is None:
            return
        kind, exposed = given
        name = own[1]
        if self.authorization is not None and not self.authorization.allows(kind, target, name, method):
            log.debug("mcpAuthorization: %s of %s %s of target %s denied", method, kind, name, target)
            raise unknown(kind, exposed)
        pins = self.pins
        if pins is not None and method == "tools/call":
            digest = session.tools.digest(target, name)
            if digest is None and session.tools.may_refresh(target):
                await self._list_tools(session, target)
                digest = session.tools.digest(target, name)
            if not pins.admits(target, name, digest):
                pins.count(target, (name,), "refused")
                raise unknown(kind, exposed)

    async def _list_tools(self, session: DownstreamSession, target: str) -> None:
        """Learn the current definitions of ``target``'s tools (every page), for a call of a tool
        this session has not seen listed."""
        pins = self.pins
        upstream = session.upstreams.get(target)
        if pins is None or upstream is None:
            return
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params = {"cursor": cursor} if cursor else {}
            try:
                raw = await upstream.call_raw("tools/list", params, None, timeout=60.0)
                session.tools.update(target, pins.screen(target, raw).digests)
                nxt = orjson.loads(raw).get("nextCursor") if b'"nextCursor"' in raw else None
            except Exception as exc:  # the call is then refused (hide) or passes (flag)
                log.warning("MCP target %s could not list its tools to check a call: %s", target, exc)
                return
            if not isinstance(nxt, str) or not nxt:
                return
            cursor = nxt
