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
from tests.support.hostile_ui_upstream import FLOOD, FLOOD_CHARS, FLOOD_EVENTS, MARK

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
                                # A target named like a member every JavaScript object has.
                                "name": "proto",
                                "matches": [{"path": {"pathPrefix": "/proto/mcp"}}],
                                "backends": [
                                    {"mcp": {"targets": [{"name": "constructor", "mcp": {"host": f"http://{up}/mcp"}}]}}
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
                {
                    "name": FLOOD,
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


# ------------------------------------------------------------------ hostile data, shown as text

INJECTED = "img, script:not([src='/ui/app.js']), svg[onload], [onerror], [onload], a[href^='javascript']"


def watch(page: Page) -> list[str]:
    """Dialogs the page opened (an alert() from injected script would be one)."""
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


def assert_nothing_ran(page: Page, dialogs: list[str]) -> None:
    assert page.evaluate("window.__pwned") is None
    assert page.locator(INJECTED).count() == 0, page.locator(INJECTED).first.evaluate("e => e.outerHTML")
    assert dialogs == []


def test_names_of_the_config_show_as_text_on_the_overview_and_status_pages(page: Page, env: Env) -> None:
    dialogs = watch(page)
    open_page(page, env, "overview")
    route = page.locator(".node.route", has_text="web")
    expect(route.locator(".name")).to_contain_text("web" + MARK)
    expect(page.locator(".node.listener .name").first).to_have_text("main" + MARK)
    route.click()
    expect(page.locator("#detail h3")).to_have_text("Route web" + MARK)
    page.locator(".node.listener").first.click()
    expect(page.locator("#detail h3")).to_have_text("Listener main" + MARK)
    # The page's script-less status section (the server's HTML) and the status page on /.
    for url in (env.ui, env.gateway.admin_url + "/"):
        page.goto(url)
        if url.endswith("/"):
            expect(page.locator("table")).to_contain_text("web" + MARK)
        else:
            expect(page.locator("body")).to_have_attribute("data-ready", "overview")
        assert_nothing_ran(page, dialogs)
    open_page(page, env, "overview")
    assert_nothing_ran(page, dialogs)


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_an_mcp_server_hostile_names_schemas_and_results_show_as_text(page: Page, env: Env, era: str) -> None:
    dialogs = watch(page)
    open_page(page, env, "mcp")
    page.locator("#mcp-route").select_option("binds[0].listeners[0].routes[3]")
    page.locator("#mcp-era").select_option(era)
    page.locator("#mcp-connect").click()
    expect(page.locator("#mcp-state")).to_contain_text("connected")
    tool = page.locator("#mcp-tools button")
    expect(tool).to_have_count(1)
    expect(tool).to_contain_text("evil" + MARK)
    assert MARK in (tool.get_attribute("title") or "")
    expect(page.locator("#mcp-lists")).to_contain_text("prompt" + MARK)
    expect(page.locator("#mcp-lists")).to_contain_text("resource" + MARK)
    tool.click()
    form = page.locator("#mcp-form")
    expect(form).to_contain_text("desc " + MARK)
    expect(form).to_contain_text("prop " + MARK)
    expect(form.locator("select option")).to_have_text(["", MARK, "javascript:window.__pwned=4"])
    field = form.locator("input[type=text]").first
    expect(field).to_have_value(MARK)  # the schema's default, as a value
    page.locator("#mcp-call").click()
    expect(page.locator("#mcp-text")).to_have_text("result " + MARK)
    expect(page.locator("#mcp-result")).to_contain_text('"structuredContent"')
    page.locator("#mcp-lists button", has_text="resource").click()
    expect(page.locator("#mcp-result")).to_contain_text("error " + MARK)
    page.locator("#mcp-lists button", has_text="prompt").click()
    page.locator("#mcp-form button.primary").click()
    expect(page.locator("#mcp-text")).to_have_text("prompt " + MARK)
    assert_nothing_ran(page, dialogs)


def test_an_a2a_agent_hostile_card_and_events_show_as_text(page: Page, env: Env) -> None:
    dialogs = watch(page)
    open_page(page, env, "a2a")
    page.locator("#a2a-card-fetch").click()
    expect(page.locator("#a2a-card-name")).to_have_text("agent " + MARK)
    card = page.locator("#a2a-card")
    expect(card).to_contain_text("about " + MARK)
    expect(card).to_contain_text("skill " + MARK)
    assert card.locator("a").count() == 0  # card URLs are text, never links
    page.locator("#a2a-input").fill("hello")
    page.locator("#a2a-send").click()
    expect(page.locator("#a2a-answer")).to_contain_text("HTTP 200")
    events = page.locator("#a2a-events")
    expect(events).to_contain_text("failed " + MARK)
    expect(events).to_contain_text("kind" + MARK)
    expect(page.locator("#a2a-text")).to_contain_text("answer " + MARK)
    assert_nothing_ran(page, dialogs)


def test_an_llm_provider_hostile_answer_and_error_show_as_text(page: Page, env: Env) -> None:
    dialogs = watch(page)
    open_page(page, env, "llm")
    expect(page.locator("#llm-model")).to_have_value("chat" + MARK)
    page.locator("#llm-input").fill("hi")
    page.locator("#llm-send").click()
    expect(page.locator("#llm-chat .msg.assistant").last).to_have_text("answer " + MARK)
    page.locator("#llm-model").fill("fail")
    page.locator("#llm-input").fill("again")
    page.locator("#llm-send").click()
    expect(page.locator("#llm-chat .msg.assistant").last.locator(".bad")).to_be_visible()
    expect(page.locator("#llm-usage")).to_be_visible()
    assert_nothing_ran(page, dialogs)


def test_client_chosen_names_in_the_metrics_show_as_text_on_the_traffic_page(page: Page, env: Env) -> None:
    """An MCP tool name is the client's (a label of the calls chart); route names the config's."""
    dialogs = watch(page)
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    url = f"http://127.0.0.1:{env.port}/tools/mcp"
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "client" + MARK, "arguments": {}}}
    with httpx.Client(timeout=10) as client:
        r = client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}, headers=accept)
        session = {**accept, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        for _ in range(10):
            client.post(url, json=call, headers=session)
            client.get(f"http://127.0.0.1:{env.port}/web")
    open_page(page, env, "traffic")
    expect(page.locator("[data-chart='requests'] .legend")).to_contain_text("web" + MARK, timeout=20_000)
    expect(page.locator("[data-chart='mcpCalls'] .legend")).to_contain_text("client" + MARK, timeout=20_000)
    assert_nothing_ran(page, dialogs)


def test_a_target_named_like_an_object_member_shows_its_own_state(page: Page, env: Env) -> None:
    """The overview sums each target's sessions by name: a target named ``constructor`` (a name
    the config allows) must count as itself, not as a member every object inherits."""
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    r = httpx.post(
        f"http://127.0.0.1:{env.port}/proto/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
        headers=accept,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    open_page(page, env, "overview")
    expect(page.locator("[data-target='constructor'] .target-state")).to_contain_text("1 connected")
    expect(page.locator("#workers")).to_contain_text("constructor")
    assert page.evaluate("[Object.open, Object.prototype.open, ({}).closed]") == [None, None, None]


# What the playgrounds keep of a stream (app.js): entries per list, characters per entry and of
# an answer, with room for the note saying how much was cut.
LOG_LINES, EVENT_CHARS, ANSWER_CHARS, NOTE = 500, 2000, 200_000, 100


def _lengths(page: Page, selector: str) -> list[int]:
    return page.locator(selector).evaluate_all("els => els.map((e) => e.textContent.length)")


def test_an_upstream_streaming_without_end_keeps_the_playground_pages_bounded(page: Page, env: Env) -> None:
    """An MCP server, an A2A agent and an LLM provider each stream 3,000 events of 10,000
    characters (30 MB: an upstream streaming for minutes). The playgrounds keep the newest 500
    entries of a list, 2,000 characters of each, and 200,000 of an answer. Before, every event
    stayed in the page, whole."""
    assert FLOOD_EVENTS > LOG_LINES and FLOOD_CHARS > EVENT_CHARS and FLOOD_EVENTS * FLOOD_CHARS > ANSWER_CHARS
    dialogs = watch(page)
    open_page(page, env, "mcp")
    page.locator("#mcp-route").select_option("binds[0].listeners[0].routes[3]")
    page.locator("#mcp-connect").click()
    expect(page.locator("#mcp-state")).to_contain_text("connected")
    page.locator("#mcp-tools button").click()
    page.locator("#mcp-form input[type=text]").first.fill(FLOOD)
    page.locator("#mcp-call").click()
    expect(page.locator("#mcp-text")).to_have_text("flooded", timeout=60_000)
    lines = _lengths(page, "#mcp-log > div")
    assert LOG_LINES // 2 < len(lines) <= LOG_LINES, len(lines)
    assert max(lines) <= EVENT_CHARS + NOTE

    open_page(page, env, "a2a")
    page.locator("#a2a-input").fill(FLOOD)
    page.locator("#a2a-send").click()
    expect(page.locator("#a2a-answer")).to_contain_text("HTTP 200", timeout=60_000)
    events = _lengths(page, "#a2a-events li")
    assert LOG_LINES // 2 < len(events) <= LOG_LINES, len(events)
    assert max(events) <= EVENT_CHARS + NOTE
    assert ANSWER_CHARS // 2 < max(_lengths(page, "#a2a-text")) <= ANSWER_CHARS + NOTE

    open_page(page, env, "llm")
    page.locator("#llm-model").fill(FLOOD)
    page.locator("#llm-input").fill("hi")
    page.locator("#llm-send").click()
    expect(page.locator("#llm-usage")).to_be_visible(timeout=60_000)
    reply = max(_lengths(page, "#llm-chat .msg.assistant"))
    assert ANSWER_CHARS // 2 < reply <= ANSWER_CHARS + NOTE, reply
    assert_nothing_ran(page, dialogs)
