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

Every POST must also come from this host: a request relayed by a proxy (one that says so with
``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP``) is refused unless every address it names is
a loopback one. The default config proxies ``/ui`` on the data plane's port 8080, which listens
on every interface, and the admin door cannot tell such a request from a local one by its
``Host``; the gateway itself writes ``X-Forwarded-For`` with the client's address, so a client on
another machine can read the (redacted) pages but neither edit the config nor use the
playgrounds.

Pages carry a Content-Security-Policy that allows nothing but this origin (no inline script, no
call to anything outside the gateway, no framing: no clickjacking of the Apply button).
"""

from __future__ import annotations

import functools
import html
import ipaddress
from importlib import resources
from typing import Any, Protocol

import orjson

from agentgateway.admin import playground
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
_FORWARDING_HEADERS = ("x-forwarded-for", "x-real-ip")


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


def _loopback_only(value: str) -> bool:
    """Every address of a forwarding header is a loopback one (``for=`` of ``Forwarded``)."""
    for item in value.split(","):
        item = item.strip()
        if item.lower().startswith("for="):
            item = item[4:]
        item = item.split(";")[0].strip().strip('"')
        if item.startswith("["):
            item = item[1 : item.find("]")] if "]" in item else item
        elif item.count(":") == 1:
            item = item.split(":")[0]
        try:
            ip = ipaddress.ip_address(item)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_loopback:
            return False
    return True


def relayed_from_elsewhere(request: AdminRequest) -> bool:
    """The request names, through a proxy, a client that is not on this host."""
    for name in (*_FORWARDING_HEADERS, "forwarded"):
        for value in request.values(name):
            if name == "forwarded":
                fors = [p for part in value.split(",") for p in part.split(";") if p.strip().lower().startswith("for=")]
                if any(not _loopback_only(p) for p in fors):
                    return True
            elif not _loopback_only(value):
                return True
    return False


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
        if relayed_from_elsewhere(request):
            return json_response(
                {
                    "error": "changes and playground calls are taken only from this host (the request was relayed "
                    "for another address): open the admin address itself"
                },
                403,
            )
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
            return json_response(self.editor.current())
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
