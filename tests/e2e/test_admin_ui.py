"""The admin UI used as a person would, in headless Chromium, against the real daemon: the overview
shows the test config's routes, a traffic chart moves after traffic, a broken config edit is shown
at its line and changes nothing, a valid edit is applied and served (and rolled back), an MCP tool
is called from its generated form (both MCP eras) against the demo MCP server, an A2A message gets
its answer from the test agent, and an LLM chat streams from the strict fake provider."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.gateway import Gateway, Process, ServerProcess, free_port, python_stdio_target, wait_for
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY

BEARER = "ui-bearer-token-0123456789"


class Env:
    def __init__(self, gateway: Gateway, port: int, llm_port: int, agent_port: int) -> None:
        self.gateway = gateway
        self.port = port
        self.llm_port = llm_port
        self.agent_port = agent_port

    @property
    def ui(self) -> str:
        return self.gateway.admin_url + "/ui"


def ui_config(port: int, llm_port: int, agent_port: int, fake: FakeProvider) -> dict[str, Any]:
    return {
        "binds": [
            {
                "port": port,
                "listeners": [
                    {
                        "name": "main",
                        "routes": [
                            {
                                "name": "web",
                                "matches": [{"path": {"pathPrefix": "/web"}}],
                                "policies": {"directResponse": {"status": 200, "body": "hello from web"}},
                            },
                            {
                                "name": "tools",
                                "matches": [{"path": {"pathPrefix": "/tools/mcp"}}],
                                "backends": [
                                    {"mcp": {"targets": [python_stdio_target("demo", "agentgateway.mcp.demo_server")]}}
                                ],
                            },
                            {
                                "name": "agent",
                                "matches": [{"path": {"pathPrefix": "/agent"}}],
                                "policies": {"a2a": {}},
                                "backends": [{"host": f"127.0.0.1:{agent_port}"}],
                            },
                            {
                                "name": "secure-tools",
                                "matches": [{"path": {"pathPrefix": "/secure/mcp"}}],
                                "policies": {"apiKey": {"mode": "strict", "keys": [{"key": BEARER}]}},
                                "backends": [
                                    {"mcp": {"targets": [python_stdio_target("demo", "agentgateway.mcp.demo_server")]}}
                                ],
                            },
                        ],
                    }
                ],
            }
        ],
        "llm": {
            "port": llm_port,
            "models": [
                {
                    "name": "gpt-4o-mini",
                    "provider": "openAI",
                    "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1"},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("ui")
    procs: list[Process] = []
    try:
        fake = FakeProvider(tmp, "openai")
        procs.append(fake)
        agent_port = free_port()
        agent = ServerProcess(
            [sys.executable, "-m", "tests.support.a2a_agent", "--port", str(agent_port), "--base-path", "/agent"],
            tmp / "agent.log",
            agent_port,
            what="A2A test agent",
        )
        procs.append(agent)
        port, llm_port = free_port(), free_port()
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gateway = Gateway(gw_dir, ui_config(port, llm_port, agent_port, fake), wait=False)
        procs.append(gateway)
        gateway.wait_ready()
        yield Env(gateway, port, llm_port, agent_port)
    finally:
        for proc in reversed(procs):
            proc.stop()


def open_page(page: Page, env: Env, name: str, query: str = "") -> None:
    page.goto(f"{env.ui}#{name}{query}")
    expect(page.locator("body")).to_have_attribute("data-ready", name)


def test_overview_shows_the_routes_of_the_config(page: Page, env: Env) -> None:
    open_page(page, env, "overview")
    picture = page.locator("#picture")
    for route, kind in (("web", "http"), ("tools", "mcp"), ("agent", "a2a"), ("llm", "llm")):
        node = picture.locator(f".node.route[data-route='{route}']")
        expect(node).to_be_visible()
        expect(node.locator(f".chip.kind-{kind}")).to_have_text(kind)
    expect(picture.locator(f".bind[data-port='{env.port}']")).to_be_visible()
    expect(picture.locator(".node.listener", has_text="main")).to_be_visible()
    expect(picture.locator(".node.backend", has_text=f"127.0.0.1:{env.agent_port}")).to_be_visible()
    # A route's details, and the way to its playground.
    picture.locator(".node.route[data-route='web']").click()
    expect(page.locator("#detail")).to_contain_text("directResponse")
    picture.locator(".node.route[data-route='tools']").click()
    expect(page.locator("#detail a")).to_have_text("Try it in the MCP playground →")
    # Live state: the worker table and the status line.
    expect(page.locator("#workers tr").nth(1)).to_contain_text("#0")
    expect(page.locator("#summary")).to_contain_text("serving the current config")
    expect(page.locator("#health")).to_contain_text("ready")


def test_a_chart_moves_after_traffic(page: Page, env: Env) -> None:
    open_page(page, env, "traffic")
    chart = page.locator("[data-chart='requests']")
    expect(chart).to_be_visible()
    with httpx.Client(timeout=10) as client:
        for _ in range(30):
            assert client.get(f"http://127.0.0.1:{env.port}/web").text == "hello from web"
    series = chart.locator("svg[data-series]")
    expect(series).to_have_attribute("data-series", re.compile(r"(^|\|)web(\||$)"), timeout=20_000)
    assert float(series.get_attribute("data-max") or 0) > 0
    expect(chart.locator("polyline[data-key='web']")).to_have_count(1)
    expect(page.locator("[data-chart='status'] .legend")).to_contain_text("2xx")
    latency = page.locator("[data-chart='latency']")
    expect(latency.locator("polyline")).to_have_count(3)


def _config_text(page: Page) -> str:
    return page.locator("#config-text").input_value()


def test_a_broken_edit_is_shown_at_its_line_and_changes_nothing(page: Page, env: Env) -> None:
    before = env.gateway.config_path.read_text()
    generation = httpx.get(env.gateway.admin_url + "/config_dump").json()["status"]["generation"]
    open_page(page, env, "config")
    text = _config_text(page)
    assert API_KEY not in text and "<redacted>" in text  # the secret never reaches the browser
    lines = text.splitlines()
    where = next(i for i, line in enumerate(lines) if "directResponse:" in line)
    indent = re.match(r"\s*", lines[where + 1]).group(0)  # type: ignore[union-attr]
    lines.insert(where + 1, f"{indent}bogusKey: 1")
    page.locator("#config-text").fill("\n".join(lines) + "\n")
    page.locator("#validate").click()
    bad_line = where + 2
    expect(page.locator(".gutter span.error")).to_have_text(str(bad_line))
    expect(page.locator("#config-errors li").first).to_contain_text(f"line {bad_line}:")
    expect(page.locator("#config-errors li").first).to_contain_text("bogusKey: unknown field")
    expect(page.locator("#config-diff .add")).to_contain_text("bogusKey: 1")
    page.locator("#apply").click()
    expect(page.locator("#config-result")).to_contain_text("Not applied")
    assert env.gateway.config_path.read_text() == before
    status = httpx.get(env.gateway.admin_url + "/config_dump").json()["status"]
    assert status["generation"] == generation and status["lastError"] is None


def test_a_valid_edit_is_applied_served_and_rolled_back(page: Page, env: Env) -> None:
    open_page(page, env, "config")
    text = _config_text(page)
    assert "hello from web" in text
    page.locator("#config-text").fill(text.replace("hello from web", "edited in the UI"))
    page.locator("#validate").click()
    expect(page.locator("#config-result")).to_have_text("Valid.")
    expect(page.locator("#config-diff .del")).to_contain_text("hello from web")
    page.locator("#apply").click()
    expect(page.locator("#config-result")).to_contain_text("Applied")
    url = f"http://127.0.0.1:{env.port}/web"
    assert httpx.get(url).text == "edited in the UI"
    # The secret the editor showed as <redacted> was kept: the file holds it and the LLM route works.
    written = env.gateway.config_path.read_text()
    assert API_KEY in written and "<redacted>" not in written
    r = httpx.post(
        f"http://127.0.0.1:{env.llm_port}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    expect(page.locator("#config-history")).to_contain_text("Previous versions kept: 1")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#rollback").click()
    expect(page.locator("#config-result")).to_contain_text("Rolled back")
    assert httpx.get(url).text == "hello from web"
    expect(page.locator("#config-text")).to_have_value(re.compile("hello from web"))


@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_an_mcp_tool_is_called_from_its_form(page: Page, env: Env, era: str) -> None:
    open_page(page, env, "mcp", "?route=binds%5B0%5D.listeners%5B0%5D.routes%5B1%5D")
    expect(page.locator("#mcp-route")).to_have_value("binds[0].listeners[0].routes[1]")
    page.locator("#mcp-era").select_option(era)
    page.locator("#mcp-connect").click()
    expect(page.locator("#mcp-state")).to_contain_text("connected")
    tools = page.locator("#mcp-tools button")
    expect(tools).to_have_count(3)
    page.locator("#mcp-tools button", has_text="add").click()
    form = page.locator("#mcp-form")
    expect(form.locator("[data-field]")).to_have_count(2)
    form.locator("[data-field='a']").fill("2")
    form.locator("[data-field='b']").fill("3.5")
    page.locator("#mcp-call").click()
    expect(page.locator("#mcp-text")).to_have_text("5.5")
    page.locator("#mcp-tools button", has_text="echo").click()
    form.locator("[data-field='text']").fill("héllo from the UI")
    page.locator("#mcp-progress").check()
    page.locator("#mcp-call").click()
    expect(page.locator("#mcp-text")).to_have_text("héllo from the UI")
    expect(page.locator("#mcp-log")).to_contain_text("→ tools/call")
    if era == "legacy":  # the session's stream for what the server sends on its own
        expect(page.locator("#mcp-log")).to_contain_text("notification stream open")
    # A required field left empty is caught by the form.
    page.locator("#mcp-tools button", has_text="add").click()
    form.locator("[data-field='a']").fill("1")
    page.locator("#mcp-call").click()
    expect(page.locator("#mcp-result")).to_contain_text("b is required")


def test_an_mcp_route_asking_for_a_bearer_token(page: Page, env: Env) -> None:
    open_page(page, env, "mcp", "?route=binds%5B0%5D.listeners%5B0%5D.routes%5B3%5D")
    page.locator("#mcp-connect").click()
    expect(page.locator("#mcp-state")).to_contain_text("asks for authentication (401")
    page.locator("#mcp-token").fill(BEARER)
    page.locator("#mcp-connect").click()
    expect(page.locator("#mcp-state")).to_contain_text("connected")
    page.locator("#mcp-tools button", has_text="time").click()
    expect(page.locator("#mcp-form [data-field]")).to_have_count(0)
    page.locator("#mcp-call").click()
    expect(page.locator("#mcp-text")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\dT"))


def test_an_mcp_session_shows_on_the_overview(page: Page, env: Env) -> None:
    open_page(page, env, "mcp")
    page.locator("#mcp-route").select_option("binds[0].listeners[0].routes[1]")
    page.locator("#mcp-connect").click()
    expect(page.locator("#mcp-tools button")).to_have_count(3)
    page.locator("nav a[data-page='overview']").click()
    expect(page.locator("body")).to_have_attribute("data-ready", "overview")
    expect(page.locator("[data-target='demo'] .target-state").first).to_contain_text("connected")
    sessions = page.locator("#workers td.sessions").first
    wait_for(lambda: int(sessions.inner_text() or 0) >= 1, 10, "an MCP session on the overview")


def test_an_a2a_message_gets_its_answer(page: Page, env: Env) -> None:
    open_page(page, env, "a2a")
    page.locator("#a2a-card-fetch").click()
    expect(page.locator("#a2a-card-name")).to_have_text("gateway test agent")
    # The card was rewritten to point at the gateway, not at the agent.
    card = page.locator("#a2a-card")
    expect(card).to_contain_text(f":{env.port}/agent")
    assert f":{env.agent_port}" not in card.inner_text()
    page.locator("#a2a-input").fill("ping from the UI")
    page.locator("#a2a-send").click()
    expect(page.locator("#a2a-text")).to_have_text("echo: ping from the UI")
    expect(page.locator("#a2a-answer")).to_contain_text("TASK_STATE_COMPLETED")
    expect(page.locator("#a2a-events li").first).to_contain_text("task")


def test_an_llm_chat_streams_from_the_provider(page: Page, env: Env) -> None:
    open_page(page, env, "llm")
    expect(page.locator("#llm-model")).to_have_value("gpt-4o-mini")
    page.locator("#llm-input").fill("tell me about gateways")
    page.locator("#llm-send").click()
    answer = page.locator("#llm-chat .msg.assistant").last
    expect(answer).to_contain_text("You said: tell me about gateways")
    expect(page.locator("#llm-ttft")).to_have_text(re.compile(r"time to first token: \d+ ms"))
    expect(page.locator("#llm-usage")).to_have_text(re.compile(r"tokens: \d+ in, \d+ out"))
    # A second turn carries the conversation.
    page.locator("#llm-input").fill("and again")
    page.locator("#llm-send").click()
    expect(page.locator("#llm-chat .msg.assistant")).to_have_count(2)
    expect(page.locator("#llm-chat .msg.assistant").last).to_contain_text("You said: and again")
    last = httpx.get(f"{env_fake_base(env)}/_last", timeout=5).json()["body"]
    body = json.loads(last) if isinstance(last, str) else last
    assert body["stream"] is True and [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def env_fake_base(env: Env) -> str:
    for line in env.gateway.config_path.read_text().splitlines():
        m = re.search(r"baseUrl: (http://127\.0\.0\.1:\d+)/v1", line)
        if m:
            return m.group(1)
    raise AssertionError("no fake provider in the config")


def _demo_traffic(env: Env, seconds: float) -> None:
    """Varying traffic on every kind of route for ``seconds`` (for the README's pictures)."""
    import math
    import time

    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    mcp = f"http://127.0.0.1:{env.port}/tools/mcp"
    with httpx.Client(timeout=20) as client:
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "demo", "version": "1"}}
        r = client.post(mcp, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}, headers=accept)
        session = {**accept, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        client.post(mcp, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        start = time.monotonic()
        step = 0
        while time.monotonic() - start < seconds:
            step += 1
            wave = 1 + math.sin(step / 4)
            for _ in range(int(6 * wave) + 1):
                client.get(f"http://127.0.0.1:{env.port}/web")
            client.get(
                f"http://127.0.0.1:{env.port}/web/missing-{step % 3}"
                if step % 5 == 0
                else f"http://127.0.0.1:{env.port}/nowhere"
            )
            for tool, args in (("echo", {"text": "hi"}), ("add", {"a": step, "b": 1}))[: 1 + step % 2]:
                call = {
                    "jsonrpc": "2.0",
                    "id": step + 1,
                    "method": "tools/call",
                    "params": {"name": f"demo_{tool}", "arguments": args},
                }
                client.post(mcp, json=call, headers=session)
            if step % 2 == 0:
                client.post(
                    f"http://127.0.0.1:{env.llm_port}/v1/chat/completions",
                    json={
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": "a question " * (step % 7 + 1)}],
                    },
                )
            time.sleep(0.5)


def test_screenshots_for_the_readme(page: Page, env: Env, tmp_path: Path) -> None:
    """Writes docs/ui-overview.png and docs/ui-traffic.png when UI_SCREENSHOTS names a directory
    (the README's pictures, after a minute of varied traffic); otherwise checks only that both
    pages render after some traffic."""
    import os

    out = os.environ.get("UI_SCREENSHOTS")
    if out:
        _demo_traffic(env, 60)
    else:
        with httpx.Client(timeout=10) as client:
            for _ in range(20):
                client.get(f"http://127.0.0.1:{env.port}/web")
    target = Path(out or tmp_path)
    page.set_viewport_size({"width": 1280, "height": 800})
    open_page(page, env, "overview")
    page.locator(".node.route[data-route='tools']").click()
    expect(page.locator("#detail")).to_contain_text("Route tools")
    page.screenshot(path=str(target / "ui-overview.png"))
    open_page(page, env, "traffic")
    expect(page.locator("[data-chart='requests'] svg[data-series]")).to_be_visible(timeout=20_000)
    page.screenshot(path=str(target / "ui-traffic.png"))
