"""The admin UI on ``/ui``: a page, its script and style (``admin/ui/``), and the JSON endpoints the
page calls, all behind the admin plane's door (``admin/door.py``: loopback or admin ``Host``;
anything but GET/HEAD/OPTIONS needs ``x-agentgateway-admin`` and no foreign ``Origin``).

Endpoints (under ``/ui/api/``):

* ``GET overview``: the running config as a picture (``topology.py``), the status and each
  worker's state (sessions, stdio processes, upstream health);
* ``GET traffic?window=S``: the last ``S`` seconds (at most 900) of traffic (``history.py``);
* ``GET config``, ``POST config/validate``, ``POST config/apply``, ``POST config/rollback``: the
  config editor (``editor.py``);
* ``POST call``: a playground's request to a route of the running config (``playground.py``).

Every POST must also reach the admin address directly: a request a proxy says it relayed
(``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``, ``X-Forwarded-Host``) is refused at the door
(``admin/door.py``), whatever address it names. The default config proxies ``/ui`` on the data
plane's port 8080, and every other route of that port serves pages of the same origin as the
proxied UI (an upstream's web application): their scripts could otherwise apply a config. Through
such a proxy the pages are read-only.

Pages carry a Content-Security-Policy that allows nothing but this origin (no inline script, no
call to anything outside the gateway, no framing: no clickjacking of the Apply button).
"""

from __future__ import annotations

import functools
import html
from importlib import resources
from typing import Any, Protocol

import orjson

from agentgateway.admin import playground
from agentgateway.admin.door import relay_header
from agentgateway.admin.editor import ConfigEditor, EditorHost
from agentgateway.admin.http import AdminRequest, AdminResponse
from agentgateway.admin.topology import topology

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = (
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)
_ASSETS = {
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
}


class UiHost(EditorHost, Protocol):
    """What the UI reads from the supervisor besides the editor's needs."""

    def config_dump(self) -> dict[str, Any]: ...

    async def worker_states(self) -> list[dict[str, Any]]: ...

    def traffic(self, window: float) -> dict[str, Any]: ...


@functools.cache
def _asset(name: str) -> bytes:
    """A file of ``admin/ui/`` (read once: they ship with the package)."""
    return resources.files("agentgateway.admin").joinpath("ui", name).read_bytes()


def json_response(data: object, status: int = 200) -> AdminResponse:
    return AdminResponse(status, orjson.dumps(data), "application/json", headers=PAGE_HEADERS)


class AdminUi:
    def __init__(self, host: UiHost, status_section: Any) -> None:
        self.host = host
        self.editor = ConfigEditor(host)
        # (dump) -> HTML of the status summary: shown until the script has loaded, and without it.
        self.status_section = status_section

    async def handle(self, request: AdminRequest) -> AdminResponse | None:
        """The answer for a ``/ui`` path, or None when it is not one."""
        path = request.path
        if path in ("/ui", "/ui/"):
            return self._page()
        if path in _ASSETS:
            name, content_type = _ASSETS[path]
            return AdminResponse(200, _asset(name), content_type, headers=PAGE_HEADERS)
        if not path.startswith("/ui/api/"):
            return None if not path.startswith("/ui/") else AdminResponse(404, "no such UI path\n")
        endpoint = path[len("/ui/api/") :]
        if request.method in ("GET", "HEAD"):
            return await self._read(endpoint, request)
        if request.method != "POST":
            return AdminResponse(405, "use GET or POST\n", headers=(("allow", "GET, HEAD, POST"),))
        try:
            body = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError:
            return json_response({"error": "the body must be JSON"}, 400)
        if not isinstance(body, dict):
            return json_response({"error": "the body must be a JSON object"}, 400)
        return await self._write(endpoint, body)

    def _page(self) -> AdminResponse:
        dump = self.host.config_dump()
        page = _asset("index.html").decode()
        page = page.replace("<!--status-->", self.status_section(dump))
        page = page.replace("{{version}}", html.escape(str(dump.get("version", ""))))
        return AdminResponse(200, page, "text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def _read(self, endpoint: str, request: AdminRequest) -> AdminResponse:
        if endpoint == "overview":
            dump = self.host.config_dump()
            return json_response(
                {
                    "version": dump.get("version"),
                    "status": dump.get("status"),
                    "planes": dump.get("effective", {}).get("planes"),
                    "topology": topology(dump.get("config") or {}),
                    "workers": await self.host.worker_states(),
                }
            )
        if endpoint == "traffic":
            window = 900.0
            for part in request.query.split("&"):
                key, _, value = part.partition("=")
                if key == "window":
                    try:
                        window = min(max(float(value), 10.0), 900.0)
                    except ValueError:
                        return json_response({"error": "window: a number of seconds"}, 400)
            return json_response(self.host.traffic(window))
        if endpoint == "config":
            current = self.editor.current()
            relayed = relay_header(request)
            if relayed is not None and current["editable"]:
                # The door refuses this page's changes (door.py): say so before the admin edits.
                current["editable"] = False
                current["readOnlyReason"] = (
                    f"this page was opened through a proxy (the request carries {relayed}), which may serve other "
                    "pages from its origin: make changes at the admin address itself"
                )
            return json_response(current)
        return json_response({"error": f"no UI endpoint {endpoint}"}, 404)

    async def _write(self, endpoint: str, body: dict[str, Any]) -> AdminResponse:
        if endpoint in ("config/validate", "config/apply"):
            text = body.get("text")
            if not isinstance(text, str):
                return json_response({"error": "text: the config as a string"}, 400)
            if endpoint == "config/validate":
                return json_response(self.editor.validate(text))
            status, answer = await self.editor.apply(text, str(body.get("base", "")))
            return json_response(answer, status)
        if endpoint == "config/rollback":
            status, answer = await self.editor.rollback(str(body.get("base", "")))
            return json_response(answer, status)
        if endpoint == "call":
            dump = self.host.config_dump()
            return await playground.call(topology(dump.get("config") or {}), body)
        return json_response({"error": f"no UI endpoint {endpoint}"}, 404)
