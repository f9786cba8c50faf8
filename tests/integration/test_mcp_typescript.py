"""The gateway federating the TypeScript reference server (``@modelcontextprotocol/server-everything``)
over stdio and over streamable HTTP, next to a Python SDK server, with two different clients: the
Python SDK client (legacy handshake and ``auto``, which picks the 2026-07-28 revision) and the
TypeScript inspector CLI (``@modelcontextprotocol/inspector-cli``).

Targets: ``evstdio`` (server-everything spawned by the gateway), ``evhttp`` (server-everything on
a port of its own) and ``py`` (``tests.support.mcp_server`` over stdio). With three targets, names
are prefixed with the target's name (``evstdio_echo``) and resource URIs with ``<target>+``."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp_types import CreateMessageResult, ElicitResult, ImageContent, ListRootsResult, Root, TextContent

from tests.support.gateway import Gateway, ServerProcess, free_port, mcp_config, stdio_target
from tests.support.node import NODE, node_script, require_node, run_node

pytestmark = pytest.mark.anyio

EVERYTHING = "mcp-server-everything"
TS_TARGETS = ("evstdio", "evhttp")
MODES = ("legacy", "auto")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def everything_http(tmp_path, processes) -> ServerProcess:
    """server-everything over streamable HTTP (path /mcp); it takes its port from ``PORT``."""
    require_node(EVERYTHING)
    port = free_port()
    args = [str(NODE), str(node_script(EVERYTHING)), "streamableHttp"]
    env = {"PORT": str(port)}
    server = ServerProcess(args, tmp_path / "everything-http.log", port, env=env, what="server-everything")
    processes.append(server)
    return server


@pytest.fixture
def endpoint(gateway, everything_http) -> str:
    """The gateway's MCP endpoint, federating the three targets."""
    port = free_port()
    targets = [
        {"name": "evstdio", "stdio": {"cmd": str(NODE), "args": [str(node_script(EVERYTHING)), "stdio"]}},
        {"name": "evhttp", "mcp": {"host": everything_http.endpoint()}},
        stdio_target("py"),
    ]
    config = mcp_config(port, targets)
    # Sessions left open by clients keep their GET streams; do not wait long for them on stop.
    config["config"] = {"connectionTerminationDeadline": "1s"}
    gateway(config)
    return f"http://127.0.0.1:{port}/mcp"


async def _sample(context: Any, params: Any) -> CreateMessageResult:
    prompt = params.messages[0].content.text
    return CreateMessageResult(
        role="assistant", content=TextContent(type="text", text=f"sampled <{prompt}>"), model="test-model"
    )


async def _elicit(context: Any, params: Any) -> ElicitResult:
    assert "name" in params.requested_schema["properties"]
    return ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})


def _texts(result: Any) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.mark.parametrize("mode", MODES)
async def test_python_client_lists_what_every_target_offers(endpoint, mode):
    async with Client(endpoint, mode=mode, sampling_callback=_sample, elicitation_callback=_elicit) as client:
        assert client.server_info.name == "agentgateway"
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        for target in TS_TARGETS:
            for name in ("echo", "get-sum", "get-tiny-image", "trigger-long-running-operation"):
                assert f"{target}_{name}" in tools, sorted(tools)
            # Registered by server-everything only for clients that declared these capabilities.
            assert f"{target}_trigger-sampling-request" in tools, sorted(tools)
            assert f"{target}_trigger-elicitation-request" in tools, sorted(tools)
            assert tools[f"{target}_get-sum"].input_schema["required"] == ["a", "b"]
        assert {"py_echo", "py_add", "py_count"} <= set(tools)

        prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
        for target in TS_TARGETS:
            assert {f"{target}_simple-prompt", f"{target}_args-prompt"} <= prompts, sorted(prompts)
        assert "py_greet" in prompts

        resources = {str(resource.uri) for resource in (await client.list_resources()).resources}
        for target in TS_TARGETS:
            assert f"{target}+demo://resource/static/document/features.md" in resources, sorted(resources)
        assert "py+memo://py/info" in resources
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        for target in TS_TARGETS:
            assert f"{target}+demo://resource/dynamic/text/{{resourceId}}" in templates, sorted(templates)


@pytest.mark.parametrize("mode", MODES)
async def test_python_client_calls_typescript_tools(endpoint, mode):
    progress: list[tuple[float, float | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total))

    async with Client(endpoint, mode=mode, sampling_callback=_sample, elicitation_callback=_elicit) as client:
        for target in TS_TARGETS:
            assert _texts(await client.call_tool(f"{target}_echo", {"message": "hi"})) == "Echo: hi"
            assert _texts(await client.call_tool(f"{target}_get-sum", {"a": 2, "b": 3})) == "The sum of 2 and 3 is 5."

            image = await client.call_tool(f"{target}_get-tiny-image", {})
            images = [block for block in image.content if isinstance(block, ImageContent)]
            assert images and images[0].mime_type == "image/png" and images[0].data

            progress.clear()
            args = {"duration": 0.3, "steps": 3}
            done = await client.call_tool(
                f"{target}_trigger-long-running-operation", args, progress_callback=on_progress
            )
            assert "Long running operation completed" in _texts(done)
            assert progress == [(1, 3), (2, 3), (3, 3)], target

            sampled = await client.call_tool(f"{target}_trigger-sampling-request", {"prompt": "a haiku"})
            assert "sampled <Resource trigger-sampling-request context: a haiku>" in _texts(sampled), _texts(sampled)

            elicited = await client.call_tool(f"{target}_trigger-elicitation-request", {})
            assert "- Name: Ada Lovelace" in _texts(elicited), _texts(elicited)

            prompt = await client.get_prompt(f"{target}_args-prompt", {"city": "Paris"})
            assert "Paris" in prompt.messages[0].content.text

            read = await client.read_resource(f"{target}+demo://resource/dynamic/text/3")
            assert "Resource 3" in read.contents[0].text

        # The Python SDK target answers through the same endpoint.
        assert _texts(await client.call_tool("py_add", {"a": 40, "b": 2})) == "42"


def _inspector(*args: str) -> Any:
    """Run the inspector CLI and return its JSON output. It reads its own package.json relative to
    the working directory, so it runs from its ``build`` directory; ``node_env`` puts Node 22 first
    on PATH for the ``node`` it spawns."""
    cwd = node_script("mcp-inspector-cli").parent
    proc = run_node("mcp-inspector-cli", "--cli", *args, timeout=60, cwd=cwd)
    assert proc.returncode == 0, f"inspector CLI {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_inspector_cli_through_the_gateway(endpoint):
    require_node("mcp-inspector-cli")
    http = (endpoint, "--transport", "http")
    names = {tool["name"] for tool in _inspector(*http, "--method", "tools/list")["tools"]}
    for target in TS_TARGETS:
        assert {f"{target}_echo", f"{target}_get-sum"} <= names, sorted(names)
    assert "py_echo" in names

    summed = _inspector(*http, "--method", "tools/call", "--tool-name", "evhttp_get-sum", "--tool-arg", "a=2", "b=3")
    assert summed["content"][0]["text"] == "The sum of 2 and 3 is 5."
    echoed = _inspector(*http, "--method", "tools/call", "--tool-name", "evstdio_echo", "--tool-arg", "message=hello")
    assert echoed["content"][0]["text"] == "Echo: hello"
    added = _inspector(*http, "--method", "tools/call", "--tool-name", "py_add", "--tool-arg", "a=1", "b=2")
    assert added["content"][0]["text"] == "3"

    prompts = {prompt["name"] for prompt in _inspector(*http, "--method", "prompts/list")["prompts"]}
    assert {"evstdio_simple-prompt", "evhttp_simple-prompt", "py_greet"} <= prompts
    read = _inspector(*http, "--method", "resources/read", "--uri", "evhttp+demo://resource/dynamic/text/2")
    assert "Resource 2" in read["contents"][0]["text"]


MODERN = "2026-07-28"


async def _roots(context: Any) -> ListRootsResult:
    return ListRootsResult(roots=[Root(uri="file:///work/project", name="project")])


async def test_modern_clients_capabilities_reach_the_upstreams(endpoint):
    """server-everything offers its sampling, elicitation and roots tools only to clients that
    declared those capabilities: a modern client's declaration must reach it as a legacy one's
    does (the gateway keeps an upstream session per declared set)."""
    conditional = ("trigger-sampling-request", "trigger-elicitation-request", "get-roots-list")
    with anyio.fail_after(60):
        async with Client(endpoint, mode=MODERN) as bare:
            tools = {tool.name for tool in (await bare.list_tools()).tools}
            for target in TS_TARGETS:
                assert f"{target}_echo" in tools, sorted(tools)
                for name in conditional:
                    assert f"{target}_{name}" not in tools, sorted(tools)
            assert _texts(await bare.call_tool("evstdio_echo", {"message": "hi"})) == "Echo: hi"
        async with Client(endpoint, mode=MODERN, sampling_callback=_sample) as sampler:
            tools = {tool.name for tool in (await sampler.list_tools()).tools}
            for target in TS_TARGETS:
                assert f"{target}_trigger-sampling-request" in tools, sorted(tools)
                assert f"{target}_trigger-elicitation-request" not in tools, sorted(tools)
                sampled = await sampler.call_tool(f"{target}_trigger-sampling-request", {"prompt": "a haiku"})
                assert "sampled <Resource trigger-sampling-request context: a haiku>" in _texts(sampled)


async def test_modern_client_with_roots_gets_them_asked_in_its_call(endpoint, everything_http, processes):
    """server-everything asks for the roots 350 ms after initialize, outside any request; the
    gateway cannot ask a stateless client then, so it answers that ask itself at once (nothing
    waits for a minute), and the roots tool then asks during the call, which reaches the client as
    an input_required round."""
    gw = next(p for p in processes if isinstance(p, Gateway))
    answered = "roots/list outside a request"
    with anyio.fail_after(30):
        async with Client(endpoint, mode=MODERN, list_roots_callback=_roots) as client:
            await client.list_tools()
            while answered not in gw.output() or answered not in everything_http.output():
                await anyio.sleep(0.1)  # both servers log the gateway's answer (stdio: in its log)
            for target in TS_TARGETS:
                listed = _texts(await client.call_tool(f"{target}_get-roots-list", {}))
                assert "file:///work/project" in listed, listed


async def test_abandoned_input_required_round_does_not_block_the_target(endpoint):
    """A modern client that gets input_required and never retries must not leave the stdio server
    unusable: the next calls that ask the client something still reach their own client."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "evstdio_trigger-sampling-request", "arguments": {"prompt": "x"}, "_meta": envelope},
    }
    headers = {
        "accept": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": "evstdio_trigger-sampling-request",
    }
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(endpoint, json=call, headers=headers)
        assert r.status_code == 200
        assert r.json()["result"]["resultType"] == "input_required", r.text
    # The round above is never finished; the next ones are, each asking its own client.
    with anyio.fail_after(30):
        async with Client(endpoint, mode=MODERN, sampling_callback=_sample) as client:
            for prompt in ("one", "two", "three"):
                sampled = await client.call_tool("evstdio_trigger-sampling-request", {"prompt": prompt})
                assert f"context: {prompt}>" in _texts(sampled), _texts(sampled)


@pytest.mark.parametrize("mode", MODES)
async def test_read_resource_keeps_the_prefixed_uri(endpoint, mode):
    """resources/read of ``<target>+<uri>``: the contents name the URI as the client knows it (as
    agentgateway rewrites read results)."""
    async with Client(endpoint, mode=mode) as client:
        for target in TS_TARGETS:
            uri = f"{target}+demo://resource/dynamic/text/3"
            read = await client.read_resource(uri)
            assert [str(c.uri) for c in read.contents] == [uri]
        read = await client.read_resource("py+memo://py/info")
        assert [str(c.uri) for c in read.contents] == ["py+memo://py/info"]
