"""The three management planes, as agentgateway lays them out: admin (``/config_dump``, the UI on
``/ui`` and a status page on ``/``), stats (``/metrics``) and readiness (``/healthz/ready``)."""

from __future__ import annotations

import html
from typing import Any, Protocol

import orjson
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agentgateway.admin.http import AdminRequest, AdminResponse, Handler
from agentgateway.admin.ui import AdminUi, UiHost


class GatewayView(Protocol):
    """What the planes read from the supervisor."""

    def is_ready(self) -> bool: ...

    def config_dump(self) -> dict[str, Any]: ...

    async def metrics_text(self) -> bytes: ...

    def request_shutdown(self) -> None: ...


class AdminView(GatewayView, UiHost, Protocol):
    """What the admin plane reads: the planes' view and the UI's."""


def _json(data: object, status: int = 200) -> AdminResponse:
    return AdminResponse(status, orjson.dumps(data, option=orjson.OPT_INDENT_2), "application/json")


def admin_handler(view: AdminView) -> Handler:
    ui = AdminUi(view, render_status_section)

    async def handle(request: AdminRequest) -> AdminResponse:
        path = request.path
        if path == "/config_dump":
            return _json(view.config_dump())
        if path.startswith("/ui"):
            answer = await ui.handle(request)
            if answer is not None:
                return answer
        if path == "/":
            return AdminResponse(200, render_status_page(view.config_dump()), "text/html; charset=utf-8")
        if path == "/quitquitquit":
            if request.method != "POST":
                return AdminResponse(405, "use POST\n", headers=(("allow", "POST"),))
            view.request_shutdown()
            return AdminResponse(200, "draining and exiting\n")
        if path == "/healthz/ready":
            return await readiness(request)
        return AdminResponse(404, f"no admin endpoint {path}; try /ui or /config_dump\n")

    async def readiness(request: AdminRequest) -> AdminResponse:
        return AdminResponse(200, "ready\n") if view.is_ready() else AdminResponse(503, "not ready\n")

    return handle


def stats_handler(view: GatewayView) -> Handler:
    async def handle(request: AdminRequest) -> AdminResponse:
        if request.path in ("/metrics", "/stats/prometheus"):
            return AdminResponse(200, await view.metrics_text(), CONTENT_TYPE_LATEST)
        return AdminResponse(404, "metrics are at /metrics\n")

    return handle


def readiness_handler(view: GatewayView) -> Handler:
    async def handle(request: AdminRequest) -> AdminResponse:
        if request.path == "/healthz/ready":
            return AdminResponse(200, "ready\n") if view.is_ready() else AdminResponse(503, "not ready\n")
        return AdminResponse(404, "readiness is at /healthz/ready\n")

    return handle


def render_status_section(dump: dict[str, Any]) -> str:
    """What is served where, and the state of the config, as HTML (no script needed)."""
    e = html.escape
    status = dump.get("status", {})
    rows = []
    for bind in dump.get("effective", {}).get("binds", []):
        for listener in bind["listeners"]:
            for route in listener["routes"] or [{"name": "(no routes)", "matches": [], "backends": []}]:
                rows.append(
                    "<tr>"
                    f"<td>{bind['port']}</td><td>{e(listener['protocol'])}</td>"
                    f"<td>{e(listener['name'])}</td><td>{e(listener['hostname'] or '*')}</td>"
                    f"<td>{e(route['name'])}</td><td>{e(', '.join(route['matches']) or '/*')}</td>"
                    f"<td>{e(', '.join(route['backends']))}</td>"
                    "</tr>"
                )
    planes = dump.get("effective", {}).get("planes", {})
    links = "".join(f"<li>{e(name)}: <code>{e(addr or 'off')}</code></li>" for name, addr in planes.items())
    error = status.get("lastError")
    state = (
        f"<p class=bad>Last edit rejected: <code>{e(error)}</code> (still serving the previous config)</p>"
        if error
        else "<p class=ok>Serving the current config.</p>"
    )
    table = "".join(rows) or "<tr><td colspan=7>no binds configured</td></tr>"
    return f"""<h1>agentgateway <small>{e(str(dump.get("version", "")))}</small></h1>
<p>Config: <code>{e(str(status.get("source", "")))}</code>, generation {e(str(status.get("generation", 0)))},
{e(str(status.get("workers", 0)))} worker(s), {"ready" if status.get("ready") else "not ready"}.</p>
{state}
<h2>Routes</h2>
<table><tr><th>port</th><th>protocol</th><th>listener</th><th>hostname</th><th>route</th><th>matches</th><th>backends</th></tr>
{table}</table>
<h2>Endpoints</h2>
<ul><li><a href="/ui">/ui</a>: the admin UI</li>
<li><a href="/config_dump">/config_dump</a>: the effective config as JSON</li>{links}</ul>
"""


def render_status_page(dump: dict[str, Any]) -> str:
    """A self-contained page (no script) with the status section."""
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>agentgateway</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}}
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left}}
th{{background:#f3f3f3}}code{{background:#f6f6f6;padding:0 .2rem}}.bad{{color:#a00}}.ok{{color:#070}}
</style></head><body>
{render_status_section(dump)}
</body></html>
"""
