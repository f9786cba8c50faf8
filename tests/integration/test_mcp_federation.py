"""MCP federation through the real daemon, with the official SDK as client and servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.support.gateway import free_port, mcp_config, stdio_target, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _text(result) -> str:
    return result.content[0].text


async def test_three_transports_behind_one_endpoint(gateway, mcp_server):
    beta = mcp_server("beta", "http")
    gamma = mcp_server("gamma", "sse")
    port = free_port()
    gateway(
        mcp_config(
            port,
            [
                stdio_target("alpha"),
                {"name": "beta", "mcp": {"host": beta.url}},
                {"name": "gamma", "sse": {"host": gamma.url}},
            ],
        )
    )
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        assert client.server_info.name == "agentgateway"
        assert "[alpha]" in client.instructions and "[gamma]" in client.instructions
        tools = {t.name for t in (await client.list_tools()).tools}
        for target in ("alpha", "beta", "gamma"):
            assert {f"{target}_echo", f"{target}_add", f"{target}_whoami"} <= tools
        for target in ("alpha", "beta", "gamma"):
            assert _text(await client.call_tool(f"{target}_whoami", {})) == target
            assert _text(await client.call_tool(f"{target}_add", {"a": 2, "b": 3})) == "5"
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"alpha_greet", "beta_greet", "gamma_greet"}
        greeting = await client.get_prompt("gamma_greet", {"person": "Ada"})
        assert "gamma greets Ada" in greeting.messages[0].content.text
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert resources == {"alpha+memo://alpha/info", "beta+memo://beta/info", "gamma+memo://gamma/info"}
        read = await client.read_resource("beta+memo://beta/info")
        assert read.contents[0].text == "info of beta"
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "alpha+memo://{key}/value" in templates
        value = await client.read_resource("alpha+memo://k1/value")
        assert value.contents[0].text == "alpha value of k1"
        with pytest.raises(MCPError, match="Unknown tool"):
            await client.call_tool("delta_echo", {"text": "x"})


async def test_single_target_names_are_not_prefixed(gateway):
    port = free_port()
    gateway(mcp_config(port, [stdio_target("solo")]))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "echo" in names and "solo_echo" not in names
        assert _text(await client.call_tool("echo", {"text": "hi"})) == "solo: hi"
        read = await client.read_resource("memo://solo/info")
        assert read.contents[0].text == "info of solo"


async def test_prefix_always_and_never(gateway):
    always, never = free_port(), free_port()
    gateway(mcp_config(always, [stdio_target("solo")], prefixMode="always"))
    gateway(mcp_config(never, [stdio_target("one", tools=1), stdio_target("two", tools=2)], prefixMode="never"))
    async with Client(f"http://127.0.0.1:{always}/mcp", mode="legacy") as client:
        assert "solo_echo" in {t.name for t in (await client.list_tools()).tools}
    async with Client(f"http://127.0.0.1:{never}/mcp", mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        # Tools both targets offer are hidden (a call could not be routed); unique ones stay.
        assert "echo" not in names and "extra0" not in names
        assert "extra1" in names
        assert _text(await client.call_tool("extra1", {})) == "two extra 1"


def _pager(name: str, tools: int, page: int) -> dict:
    args = ["-m", "tests.support.paging_server", "--name", name, "--tools", str(tools), "--page", str(page)]
    return {"name": name, "stdio": {"cmd": sys.executable, "args": args}}


async def test_pagination_continues_each_target(gateway):
    port = free_port()
    gateway(mcp_config(port, [_pager("p", 5, 2), _pager("q", 3, 3)]))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        pages = []
        cursor = None
        while True:
            result = await client.list_tools(cursor=cursor)
            pages.append([t.name for t in result.tools])
            cursor = result.next_cursor
            if not cursor:
                break
        assert pages == [["p_t0", "p_t1", "q_t0", "q_t1", "q_t2"], ["p_t2", "p_t3"], ["p_t4"]]
        assert _text(await client.call_tool("q_t2", {})) == "q:t2"
        with pytest.raises(MCPError, match="invalid cursor"):
            await client.list_tools(cursor="not-a-cursor")


async def test_progress_logging_and_elicitation_are_relayed(gateway, mcp_server):
    beta = mcp_server("beta", "http")
    port = free_port()
    gateway(mcp_config(port, [stdio_target("alpha"), {"name": "beta", "mcp": {"host": beta.url}}]))
    progress: list[tuple[float, float | None]] = []
    logs: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async def on_log(params) -> None:
        logs.append(str(params.data))

    async def on_elicit(context, params):
        from mcp_types import ElicitResult

        assert "Proceed?" in params.message
        return ElicitResult(action="accept", content={"confirm": True})

    async with Client(
        f"http://127.0.0.1:{port}/mcp", mode="legacy", logging_callback=on_log, elicitation_callback=on_elicit
    ) as client:
        for target in ("alpha", "beta"):
            progress.clear()
            result = await client.call_tool(f"{target}_count", {"steps": 3}, progress_callback=on_progress)
            assert _text(result) == f"{target} counted 3"
            assert progress == [(1, 3), (2, 3), (3, 3)]
            answer = await client.call_tool(f"{target}_confirm", {"question": "Proceed?"})
            assert _text(answer) == f"{target}: confirmed=True"
    assert any("alpha at step" in line for line in logs)


async def test_crashing_stdio_server_fails_its_call_only(gateway):
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha"), stdio_target("beta")]))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        with pytest.raises(MCPError, match="alpha exited"):
            await client.call_tool("alpha_crash", {})
        assert _text(await client.call_tool("beta_whoami", {})) == "beta"
        # The next call starts alpha again, transparently.
        assert _text(await client.call_tool("alpha_whoami", {})) == "alpha"
    assert "exited with" in gw.output()


async def test_failure_modes(gateway, mcp_server):
    dead = free_port()
    closed, opened = free_port(), free_port()
    targets = [stdio_target("alpha"), {"name": "dead", "mcp": {"host": f"http://127.0.0.1:{dead}/mcp"}}]
    gateway(mcp_config(closed, targets))
    gateway(mcp_config(opened, targets, failureMode="failOpen"))
    # The SDK raises the initialize error wrapped in exception groups.
    with pytest.RaisesGroup(pytest.RaisesExc(MCPError, match="dead failed to initialize"), flatten_subgroups=True):
        async with Client(f"http://127.0.0.1:{closed}/mcp", mode="legacy"):
            pass
    async with Client(f"http://127.0.0.1:{opened}/mcp", mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "alpha_echo" in names and not any(n.startswith("dead_") for n in names)


def _stdio_children(gw) -> list[int]:
    pids = []
    for worker in gw.worker_pids():
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{worker}/task/{worker}/children").read_text().split()]
    return pids


async def test_session_end_stops_its_servers_and_unknown_sessions_get_404(gateway):
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha"), stdio_target("beta")]), workers=1)
    url = f"http://127.0.0.1:{port}/mcp"
    async with Client(url, mode="legacy") as client:
        await client.call_tool("alpha_whoami", {})
        servers = _stdio_children(gw)
        assert len(servers) == 2
    # The SDK client sends DELETE on exit: the session's processes are stopped and reaped.
    wait_for(lambda: not _stdio_children(gw), 10, "stdio servers to stop")
    for pid in servers:
        assert not os.path.exists(f"/proc/{pid}")
    async with httpx.AsyncClient() as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        headers = {"mcp-session-id": "bogus", "accept": "application/json, text/event-stream"}
        r = await http.post(url, json=body, headers=headers)
        assert r.status_code == 404
        r = await http.post(url, json=body, headers={"accept": "application/json, text/event-stream"})
        assert r.status_code == 400


async def test_stdio_sessions_work_across_workers(gateway):
    port = free_port()
    gateway(mcp_config(port, [stdio_target("alpha"), stdio_target("beta")]), workers=2)
    url = f"http://127.0.0.1:{port}/mcp"
    async with Client(url, mode="legacy") as client:
        for i in range(30):
            target = ("alpha", "beta")[i % 2]
            assert _text(await client.call_tool(f"{target}_add", {"a": i, "b": 1})) == str(i + 1)


async def test_fifty_concurrent_clients_get_their_own_answers(gateway, mcp_server):
    # HTTP targets: 50 sessions of stdio targets would be 100 Python processes on this machine.
    alpha, beta = mcp_server("alpha", "http"), mcp_server("beta", "http")
    port = free_port()
    targets = [{"name": "alpha", "mcp": {"host": alpha.url}}, {"name": "beta", "mcp": {"host": beta.url}}]
    gateway(mcp_config(port, targets), workers=2)
    url = f"http://127.0.0.1:{port}/mcp"
    failures: list[str] = []

    async def one(i: int) -> None:
        async with Client(url, mode="legacy") as client:
            for target in ("alpha", "beta"):
                got = _text(await client.call_tool(f"{target}_echo", {"text": f"client {i}"}))
                if got != f"{target}: client {i}":
                    failures.append(got)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
    assert failures == []


async def test_http_upstream_restart_is_invisible(gateway, mcp_server):
    beta = mcp_server("beta", "http")
    port = free_port()
    gateway(mcp_config(port, [{"name": "beta", "mcp": {"host": beta.url}}]))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        assert _text(await client.call_tool("whoami", {})) == "beta"
        beta.stop(signal.SIGKILL)
        again = mcp_server("beta", "http", port=beta.port)
        assert again.alive()
        # The upstream forgot the session: the gateway re-initializes it and resends the call.
        assert _text(await client.call_tool("whoami", {})) == "beta"


async def test_session_continues_on_another_gateway_with_the_same_key(gateway, mcp_server):
    beta = mcp_server("beta", "http")
    key = os.urandom(32).hex()
    first, second = free_port(), free_port()
    config = mcp_config(first, [{"name": "beta", "mcp": {"host": beta.url}}])
    config["config"] = {"session": {"key": key}}
    gateway(config)
    config2 = mcp_config(second, [{"name": "beta", "mcp": {"host": beta.url}}])
    config2["config"] = {"session": {"key": key}}
    gateway(config2)
    accept = {"accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=10) as http:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        r = await http.post(f"http://127.0.0.1:{first}/mcp", json=init, headers=accept)
        token = r.headers["mcp-session-id"]
        headers = {**accept, "mcp-session-id": token, "mcp-protocol-version": "2025-06-18"}
        await http.post(
            f"http://127.0.0.1:{first}/mcp",
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=headers,
        )
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
        r = await http.post(
            f"http://127.0.0.1:{second}/mcp", json=call, headers={**headers, "accept": "application/json"}
        )
        assert r.status_code == 200
        assert r.json()["result"]["content"][0]["text"] == "beta"


async def test_legacy_sse_client(gateway, mcp_server):
    from mcp.client.sse import sse_client

    beta = mcp_server("beta", "http")
    port = free_port()
    config = {"mcp": {"port": port, "targets": [stdio_target("alpha"), {"name": "beta", "mcp": {"host": beta.url}}]}}
    gateway(config, workers=2)
    async with Client(sse_client(f"http://127.0.0.1:{port}/sse"), mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "alpha_echo" in names and "beta_echo" in names
        for _ in range(10):
            assert _text(await client.call_tool("alpha_whoami", {})) == "alpha"
            assert _text(await client.call_tool("beta_whoami", {})) == "beta"


async def test_mcp_metrics_and_access_log(gateway):
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha"), stdio_target("beta")]))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        await client.call_tool("beta_add", {"a": 1, "b": 2})
        await client.list_tools()
    assert gw.metric("agentgateway_mcp_requests_total", method="tools/call", target="beta", tool="beta_add") == 1
    assert gw.metric("agentgateway_mcp_requests_total", method="tools/list") >= 1
    lines = wait_for(lambda: [line for line in gw.access_lines() if "gen_ai.tool.name=beta_add" in line], 5, "log")
    assert "mcp.method.name=tools/call" in lines[0] and "mcp.target=beta" in lines[0]
    assert "mcp.session.id=" in lines[0]


async def test_mcp_metric_labels_are_not_client_chosen(gateway):
    """Invented method names are counted under ``unknown``: a client cannot mint label values."""
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha")]))
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx.AsyncClient(timeout=20) as http:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        accept = {"accept": "application/json, text/event-stream"}
        r = await http.post(url, json=init, headers=accept)
        session_id = r.headers["mcp-session-id"]
        headers = {**accept, "mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"}
        for i in range(20):
            r = await http.post(url, json={"jsonrpc": "2.0", "id": i + 2, "method": f"made/up-{i}"}, headers=headers)
            assert r.status_code == 200 and r.json()["error"]["code"] == -32601
    assert gw.metric("agentgateway_mcp_requests_total", method="unknown") == 20
    assert "made/up" not in gw.metrics_text()


async def test_cancellation_reaches_the_upstream(gateway):
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha"), stdio_target("beta")]))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        with anyio.move_on_after(1.0):
            await client.call_tool("beta_sleep", {"seconds": 30})
        # The client sent notifications/cancelled; the gateway mapped it to beta's request id.
        with anyio.fail_after(10):  # (an async wait: the client must keep running to send the cancel)
            while "beta: sleep cancelled" not in gw.output():
                await anyio.sleep(0.1)
        assert _text(await client.call_tool("beta_whoami", {})) == "beta"


async def test_shutdown_stops_stdio_servers(gateway):
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha"), stdio_target("beta")]), workers=2)
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        await client.call_tool("alpha_whoami", {})
        servers = _stdio_children(gw)
        assert len(servers) == 2
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0
    for pid in servers:
        assert not os.path.exists(f"/proc/{pid}"), "a stdio server outlived the gateway"


async def test_stateless_mode_issues_no_session(gateway):
    port = free_port()
    gateway(mcp_config(port, [stdio_target("alpha"), stdio_target("beta")], statefulMode="stateless"), workers=2)
    url = f"http://127.0.0.1:{port}/mcp"
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(url, json=init, headers={"accept": "application/json, text/event-stream"})
        assert r.status_code == 200 and "mcp-session-id" not in r.headers
        assert r.json()["result"]["protocolVersion"] == "2025-06-18"
        for i in range(6):  # fresh connections: any worker answers without a session
            call = {
                "jsonrpc": "2.0",
                "id": i,
                "method": "tools/call",
                "params": {"name": "beta_add", "arguments": {"a": i, "b": 1}},
            }
            async with httpx.AsyncClient(timeout=20) as fresh:
                r = await fresh.post(url, json=call, headers={"accept": "application/json"})
            assert r.json()["result"]["content"][0]["text"] == str(i + 1)


def _get_stream(port: int, path: str, headers: dict[str, str]) -> tuple[socket.socket, bytes]:
    """An event stream opened on a raw connection: the socket (the caller closes it) and what
    arrived after the head."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s.sendall(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: text/event-stream\r\n{lines}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, f"connection closed: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return s, head.partition(b"\r\n\r\n")[2]


async def test_event_streams_end_when_their_client_goes(gateway):
    """A client that exits closes its connection: its event streams end at once (not at the next
    keep-alive, nor at shutdown), also when the session lives in the other worker, and an
    HTTP+SSE session, which lives as long as its stream, ends with its servers."""
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha")]), workers=2)
    url = f"http://127.0.0.1:{port}/mcp"
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(url, json=init, headers={"accept": "application/json, text/event-stream"})
        token = r.headers["mcp-session-id"]

    def streams_ended() -> int:
        return sum("http.method=GET" in line and "http.status=200" in line for line in gw.access_lines())

    # New connections: the kernel hands some to the worker owning the session, some to the other.
    for i in range(4):
        _get_stream(port, "/mcp", {"mcp-session-id": token, "mcp-protocol-version": "2025-06-18"})[0].close()
        wait_for(lambda i=i: streams_ended() > i, 3, f"GET stream {i} to end")

    # HTTP+SSE (2024-11-05): the session, and its stdio server, end with the stream.
    before = set(_stdio_children(gw))
    sse, events = _get_stream(port, "/mcp", {})
    while b"sessionId=" not in events:
        events += sse.recv(4096)
    endpoint = events.split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(f"http://127.0.0.1:{port}{endpoint}", json=init)
        assert r.status_code == 202
    while b'"serverInfo"' not in events:  # the answer to initialize arrives on the stream
        events += sse.recv(4096)
    started = set(_stdio_children(gw)) - before
    assert started
    sse.close()
    wait_for(lambda: not set(_stdio_children(gw)) & started, 5, "the SSE session's stdio server to stop")

    # A client that leaves while its server is still starting: that server is stopped too.
    before = set(_stdio_children(gw))
    sse, events = _get_stream(port, "/mcp", {})
    while b"sessionId=" not in events:
        events += sse.recv(4096)
    endpoint = events.split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(f"http://127.0.0.1:{port}{endpoint}", json=init)
        assert r.status_code == 202
    starting = wait_for(lambda: set(_stdio_children(gw)) - before, 10, "a stdio server to start")
    sse.close()
    wait_for(lambda: not set(_stdio_children(gw)) & starting, 10, "the starting stdio server to stop")


async def test_sessions_holding_stdio_servers_are_bounded(gateway):
    """Clients that never end their sessions: at most ``maxStdioSessions`` sessions of a backend
    hold processes in a worker (the least recently used ends first: its client gets 404), and
    they end after ``stdioSessionTtl`` without requests, unless their client listens on the
    session's event stream."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    accept = {"accept": "application/json, text/event-stream"}

    async def whoami(http: httpx.AsyncClient, url: str, token: str) -> str:
        r = await http.post(url, json=call, headers={"accept": "application/json", "mcp-session-id": token})
        if r.status_code == 404:
            return "404"
        return str(r.json()["result"]["content"][0]["text"])

    port = free_port()
    config = mcp_config(port, [stdio_target("alpha")])
    config["config"] = {"mcp": {"maxStdioSessions": 2}}
    gw = gateway(config, workers=1)
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx.AsyncClient(timeout=30) as http:
        tokens = []
        for _ in range(3):
            r = await http.post(url, json=init, headers=accept)
            assert r.status_code == 200
            tokens.append(r.headers["mcp-session-id"])
        wait_for(lambda: len(_stdio_children(gw)) == 2, 10, "the oldest session's server to stop")
        assert [await whoami(http, url, token) for token in tokens] == ["404", "alpha", "alpha"]
    assert "maxStdioSessions" in gw.output()

    port = free_port()
    config = mcp_config(port, [stdio_target("alpha")])
    config["config"] = {"mcp": {"stdioSessionTtl": "2s"}}
    gw = gateway(config, workers=1)
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(url, json=init, headers=accept)
        listening = r.headers["mcp-session-id"]
        stream, _ = _get_stream(port, "/mcp", {"mcp-session-id": listening, "mcp-protocol-version": "2025-06-18"})
        try:
            r = await http.post(url, json=init, headers=accept)
            idle = r.headers["mcp-session-id"]
            wait_for(lambda: len(_stdio_children(gw)) == 1, 20, "the idle session's server to stop")
            assert await whoami(http, url, idle) == "404"
            assert await whoami(http, url, listening) == "alpha"
        finally:
            stream.close()


async def test_a_slow_streamed_answer_starts_its_stream_before_the_result(gateway, mcp_server):
    """A call answered as an event stream holds its head back for the answer's first event
    (one write for a quick call), but not for long: a call that takes a second shows its stream
    after 0.05-0.1 s (the waits share one timer: core/timers.py; 0.5 allowed for a loaded
    machine), the result follows."""
    server = mcp_server("slow", "http")
    port = free_port()
    gateway(mcp_config(port, [{"name": "slow", "mcp": {"host": server.url}}]))
    session = await _raw_session(port)
    body = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"sleep","arguments":{"seconds":1.0}}}'
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Accept: application/json, text/event-stream\r\nMcp-Session-Id: " + session.encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )  # fmt: skip
        sent = anyio.current_time()
        head = sock.recv(65536)
        head_after = anyio.current_time() - sent
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head
        assert b'"result"' not in head  # the head came alone, before the answer
        assert head_after < 0.5, head_after
        rest = b""
        while b'"result"' not in rest:
            chunk = sock.recv(65536)
            assert chunk, rest
            rest += chunk
        assert b"slow slept 1.0" in rest, rest


async def _raw_session(port: int) -> str:
    """An MCP session opened with plain HTTP (initialize, then initialized): its token."""
    url = f"http://127.0.0.1:{port}/mcp"
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    headers = {"accept": "application/json", "content-type": "application/json"}
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        token = answer.headers["mcp-session-id"]
        done = await http.post(
            url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers={**headers, "mcp-session-id": token},
        )
        assert done.status_code == 202, done.text
    return token
