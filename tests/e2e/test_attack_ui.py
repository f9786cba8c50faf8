"""Attacks on the admin UI through the data it shows, in headless Chromium against the real daemon.

The attacker controls what an MCP server, an A2A agent, an LLM provider or a web application
behind the gateway answers, what a client sends (paths that land in the metrics), and the names
a less trusted config author gives (routes, listeners, targets); not the admin's browser. Every
hostile text holds markup (``MARK``, from ``tests/support/hostile_ui_upstream.py``) that would
run script or add elements if put in the page as HTML: each test asserts that no script ran
(``window.__pwned`` unset, no dialog), that no element came out of the data, and that the text
is shown literally.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.gateway import Gateway, Process, ServerProcess, free_port
from tests.support.hostile_ui_upstream import MARK

SERVED = "served by the gateway"


class Env:
    def __init__(self, gateway: Gateway, port: int, upstream_port: int) -> None:
        self.gateway = gateway
        self.port = port
        self.upstream_port = upstream_port

    @property
    def ui(self) -> str:
        return self.gateway.admin_url + "/ui"


def hostile_config(port: int, upstream: int, admin: int) -> dict[str, Any]:
    up = f"127.0.0.1:{upstream}"
    return {
        "config": {"adminAddr": f"127.0.0.1:{admin}"},
        "binds": [
            {
                "port": port,
                "listeners": [
                    {
                        "name": "main" + MARK,
                        "routes": [
                            {
                                # The admin UI proxied on the data plane, as the default config does.
                                "name": "admin-ui",
                                "matches": [{"path": {"pathPrefix": "/ui"}}],
                                "backends": [{"host": f"127.0.0.1:{admin}"}],
                            },
                            {
                                "name": "app",
                                "matches": [{"path": {"pathPrefix": "/app"}}],
                                "backends": [{"host": up}],
                            },
                            {
                                "name": "web" + MARK,
                                "matches": [{"path": {"pathPrefix": "/web"}}],
                                "policies": {"directResponse": {"status": 200, "body": SERVED}},
                            },
                            {
                                "name": "tools",
                                "matches": [{"path": {"pathPrefix": "/tools/mcp"}}],
                                "backends": [
                                    {"mcp": {"targets": [{"name": "evil", "mcp": {"host": f"http://{up}/mcp"}}]}}
                                ],
                            },
                            {
                                "name": "agent",
                                "matches": [{"path": {"pathPrefix": "/agent"}}],
                                "policies": {"a2a": {}},
                                "backends": [{"host": up}],
                            },
                        ],
                    }
                ],
            }
        ],
        "llm": {
            "port": free_port(),
            "models": [
                {
                    "name": "chat" + MARK,
                    "provider": "openAI",
                    "params": {"apiKey": "sk-test-hostile", "baseUrl": f"http://{up}/v1"},
                },
                {
                    "name": "fail",
                    "provider": "openAI",
                    "params": {"apiKey": "sk-test-hostile", "baseUrl": f"http://{up}/v1"},
                },
            ],
        },
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("ui-attack")
    procs: list[Process] = []
    try:
        upstream_port = free_port()
        procs.append(
            ServerProcess(
                [sys.executable, "-m", "tests.support.hostile_ui_upstream", "--port", str(upstream_port)],
                tmp / "hostile.log",
                upstream_port,
                what="hostile upstream",
            )
        )
        port = free_port()
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        admin = free_port()
        gateway = Gateway(gw_dir, hostile_config(port, upstream_port, admin), wait=False)
        gateway.admin_port = admin  # the config names its own admin address (the proxied route's backend)
        procs.append(gateway)
        gateway.wait_ready()
        yield Env(gateway, port, upstream_port)
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_a_page_of_an_upstream_on_the_proxied_ui_origin_cannot_apply_a_config(page: Page, env: Env) -> None:
    """The default config proxies /ui on a data-plane port: every other route of that listener
    serves pages of the same origin. An upstream's page there must not drive the UI's changes
    (a config can start processes): it was applied with the admin's browser on this host."""
    before = env.gateway.config_path.read_text()
    page.goto(f"http://127.0.0.1:{env.port}/app/")
    expect(page).to_have_title(re.compile("^(apply|failed)"))
    assert page.title() != "apply 200", page.title()
    assert env.gateway.config_path.read_text() == before
    assert httpx.get(f"http://127.0.0.1:{env.port}/web").text == SERVED
    # The proxied editor says it is read-only; at the admin address it is editable.
    page.goto(f"http://127.0.0.1:{env.port}/ui#config")
    expect(page.locator("body")).to_have_attribute("data-ready", "config")
    expect(page.locator("#read-only")).to_contain_text("through a proxy")
    expect(page.locator("#apply")).to_be_disabled()
    open_page(page, env, "config")
    expect(page.locator("#apply")).to_be_enabled()


def open_page(page: Page, env: Env, name: str, query: str = "") -> None:
    page.goto(f"{env.ui}#{name}{query}")
    expect(page.locator("body")).to_have_attribute("data-ready", name)
