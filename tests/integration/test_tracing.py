"""Traces through the daemon to a real OTLP receiver (tests/support/otlp.py): the server span and
the gateway's own calls, W3C trace context continued and propagated, sampling, the collector
going away mid-run."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.support.gateway import binds, free_port, mcp_config, stdio_target, wait_for
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY

SERVER, CLIENT = 2, 3
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def traced(port: int, routes: list[dict], endpoint: str, protocol: str = "grpc", **tracing: object) -> dict:
    config = binds(port, routes)
    config["config"] = {
        "tracing": {"otlpEndpoint": endpoint, "otlpProtocol": protocol, "randomSampling": True, **tracing}
    }
    return config


def api_route(address: str) -> dict:
    return {"name": "api", "matches": [{"path": {"pathPrefix": "/api"}}], "backends": [{"host": address}]}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_http_route_server_and_upstream_spans(gateway, upstream, otlp, protocol):
    up = upstream("a")
    port = free_port()
    endpoint = otlp.grpc_endpoint if protocol == "grpc" else otlp.http_endpoint
    gateway(traced(port, [api_route(up.address)], endpoint, protocol))
    r = httpx.get(f"http://127.0.0.1:{port}/api/items?x=1", headers={"user-agent": "tester/1"})
    assert r.status_code == 200
    sent = dict(r.json()["headers"])
    spans = otlp.wait_spans(lambda s: len(s) >= 2)
    server = next(s for s in spans if s.kind == SERVER)
    call = next(s for s in spans if s.kind == CLIENT)
    assert {s.via for s in spans} == {protocol}
    # The server span: HTTP conventions and the gateway's route identity.
    assert server.name == "GET /api"
    assert server.parent_id == ""
    a = server.attributes
    assert a["http.request.method"] == "GET"
    assert a["url.path"] == "/api/items"
    assert a["url.query"] == "x=1"
    assert a["http.route"] == "/api"
    assert a["http.response.status_code"] == 200
    assert a["client.address"] == "127.0.0.1"
    assert a["route"] == "api"
    assert a["endpoint"] == up.address
    assert a["user_agent.original"] == "tester/1"
    assert server.resource["service.name"] == "agentgateway"
    assert server.scope == "agentgateway"
    # The upstream call: a child of the server span; the upstream was told its id.
    assert call.trace_id == server.trace_id
    assert call.parent_id == server.span_id
    assert call.attributes["server.address"] == "127.0.0.1"
    assert call.attributes["http.response.status_code"] == 200
    assert sent["traceparent"] == f"00-{server.trace_id}-{call.span_id}-01"
    assert server.start <= call.start <= call.end <= server.end


def test_client_traceparent_is_continued(gateway, upstream, otlp):
    up = upstream("a")
    port = free_port()
    gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint, randomSampling=False))
    incoming = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    r = httpx.get(
        f"http://127.0.0.1:{port}/api/x", headers={"traceparent": incoming, "tracestate": "vendor=abc,other=1"}
    )
    sent = dict(r.json()["headers"])
    spans = otlp.wait_spans(lambda s: len(s) >= 2)
    server = next(s for s in spans if s.kind == SERVER)
    call = next(s for s in spans if s.kind == CLIENT)
    assert server.trace_id == CLIENT_TRACE
    assert server.parent_id == CLIENT_SPAN
    assert server.trace_state == "vendor=abc,other=1"
    assert call.parent_id == server.span_id
    assert sent["traceparent"] == f"00-{CLIENT_TRACE}-{call.span_id}-01"
    assert sent["tracestate"] == "vendor=abc,other=1"


def test_unsampled_requests_propagate_without_spans(gateway, upstream, otlp):
    """randomSampling off: no span; a client's traceparent passes unchanged (also an unsampled
    one); a request without one gets a fresh trace id with the sampled flag cleared."""
    up = upstream("a")
    port = free_port()
    gw = gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint, randomSampling=False))
    unsampled = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"
    r = httpx.get(f"http://127.0.0.1:{port}/api/x", headers={"traceparent": unsampled})
    assert dict(r.json()["headers"])["traceparent"] == unsampled
    r = httpx.get(f"http://127.0.0.1:{port}/api/y")
    fresh = dict(r.json()["headers"])["traceparent"]
    version, trace_id, span_id, flags = fresh.split("-")
    assert (version, flags) == ("00", "00") and len(trace_id) == 32 and len(span_id) == 16
    assert int(trace_id, 16) and int(span_id, 16)
    time.sleep(1.5)  # an export period
    assert otlp.spans == []
    # The access log names the trace either way.
    wait_for(lambda: any(trace_id in line for line in gw.access_lines()), 5, "the trace id in the access log")


@pytest.mark.parametrize(
    "bad",
    [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper-case hex
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 has no more fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
    ],
)
def test_malformed_traceparent_starts_a_new_trace(gateway, upstream, otlp, bad):
    up = upstream("a")
    port = free_port()
    gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint))
    r = httpx.get(f"http://127.0.0.1:{port}/api/x", headers={"traceparent": bad, "tracestate": "vendor=abc"})
    sent = dict(r.json()["headers"])
    spans = otlp.wait_spans(lambda s: len(s) >= 2)
    server = next(s for s in spans if s.kind == SERVER)
    assert server.trace_id != CLIENT_TRACE and server.parent_id == ""
    assert sent["traceparent"].split("-")[1] == server.trace_id
    assert "tracestate" not in sent  # it belonged to the context that was dropped


def test_duplicate_traceparent_headers_are_not_trusted(gateway, upstream, otlp):
    up = upstream("a")
    port = free_port()
    gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint))
    first = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    second = "00-11111111111111111111111111111111-2222222222222222-01"
    r = httpx.get(f"http://127.0.0.1:{port}/api/x", headers=[("traceparent", first), ("traceparent", second)])
    sent = [v for k, v in r.json()["headers"] if k == "traceparent"]
    assert len(sent) == 1
    spans = otlp.wait_spans(lambda s: len(s) >= 2)
    server = next(s for s in spans if s.kind == SERVER)
    assert server.trace_id not in (CLIENT_TRACE, "1" * 32)


def test_fields_add_and_remove_and_span_name(gateway, upstream, otlp):
    up = upstream("a")
    port = free_port()
    fields = {
        "remove": ["user_agent.original", "url.query"],
        "add": {"tenant": 'request.headers["x-tenant"]', "code": "response.code", "span.name": '"custom name"'},
    }
    gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint, fields=fields))
    httpx.get(f"http://127.0.0.1:{port}/api/x?q=1", headers={"x-tenant": "acme", "user-agent": "t/1"})
    spans = otlp.wait_spans(lambda s: any(x.kind == SERVER for x in s))
    server = next(s for s in spans if s.kind == SERVER)
    assert server.name == "custom name"
    assert server.attributes["tenant"] == "acme"
    assert server.attributes["code"] == 200
    assert "user_agent.original" not in server.attributes and "url.query" not in server.attributes


def test_sampling_ratio_from_cel(gateway, upstream, otlp):
    """randomSampling as CEL: only the requests it selects are traced."""
    up = upstream("a")
    port = free_port()
    rule = 'request.headers["x-trace-me"] == "yes"'
    gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint, randomSampling=rule))
    for i in range(6):
        headers = {"x-trace-me": "yes"} if i % 3 == 0 else {}
        httpx.get(f"http://127.0.0.1:{port}/api/{i}", headers=headers)
    spans = otlp.wait_spans(lambda s: len([x for x in s if x.kind == SERVER]) >= 2)
    time.sleep(1.2)
    servers = [s for s in otlp.spans if s.kind == SERVER]
    assert sorted(s.attributes["url.path"] for s in servers) == ["/api/0", "/api/3"]
    assert spans


def test_error_status_and_failed_upstream(gateway, otlp):
    port = free_port()
    dead = f"127.0.0.1:{free_port()}"
    gateway(traced(port, [api_route(dead)], otlp.grpc_endpoint))
    r = httpx.get(f"http://127.0.0.1:{port}/api/x")
    assert r.status_code == 503
    spans = otlp.wait_spans(lambda s: len(s) >= 2)
    server = next(s for s in spans if s.kind == SERVER)
    call = next(s for s in spans if s.kind == CLIENT)
    assert server.status == 2 and server.attributes["error.type"] == "503"
    assert call.status == 2 and call.status_message


def test_collector_killed_mid_run_fails_no_request(gateway, upstream, otlp):
    up = upstream("a")
    port = free_port()
    gw = gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint))
    with httpx.Client() as client:
        for i in range(20):
            assert client.get(f"http://127.0.0.1:{port}/api/before{i}").status_code == 200
        otlp.wait_spans(lambda s: len(s) >= 40)
        otlp.stop()
        for i in range(200):
            assert client.get(f"http://127.0.0.1:{port}/api/during{i}").status_code == 200

    # Spans the dead collector could not take are dropped and counted, not kept without bound.
    wait_for(lambda: gw.metric("agentgateway_trace_spans_dropped_total") >= 1, 15, "drops counted")
    assert gw.alive()


def test_headers_sent_to_the_collector(gateway, upstream, otlp):
    up = upstream("a")
    port = free_port()
    gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint, headers={"x-api-key": "k123"}))
    httpx.get(f"http://127.0.0.1:{port}/api/x")
    spans = otlp.wait_spans(lambda s: len(s) >= 1)
    assert spans[0].metadata.get("x-api-key") == "k123"


def test_frontend_policy_tracing(gateway, upstream, otlp):
    """frontendPolicies.tracing: its own collector, CEL attributes and resources, a filter."""
    up = upstream("a")
    port = free_port()
    config = binds(port, [api_route(up.address)])
    config["frontendPolicies"] = {
        "tracing": {
            "host": f"127.0.0.1:{otlp.http_port}",
            "protocol": "http",
            "randomSampling": "1.0",
            "attributes": {"environment": '"production"', "path": "request.path"},
            "resources": {"service.name": '"edge-gw"', "service.version": '"1.0.0"'},
            "remove": ["user_agent.original"],
            "filter": 'request.path != "/api/skip"',
        }
    }
    gateway(config)
    httpx.get(f"http://127.0.0.1:{port}/api/skip")
    httpx.get(f"http://127.0.0.1:{port}/api/keep", headers={"user-agent": "t/1"})
    spans = otlp.wait_spans(lambda s: any(x.kind == SERVER for x in s))
    time.sleep(1.2)
    servers = [s for s in otlp.spans if s.kind == SERVER]
    assert [s.attributes["path"] for s in servers] == ["/api/keep"]
    server = servers[0]
    assert server.attributes["environment"] == "production"
    assert "user_agent.original" not in server.attributes
    assert server.resource["service.name"] == "edge-gw" and server.resource["service.version"] == "1.0.0"
    assert spans[0].via == "http"


# ---------------------------------------------------------------------- MCP


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_mcp_fan_out_spans_and_meta_traceparent(gateway, mcp_server, otlp):
    """tools/list fans out to both targets (a span each); tools/call continues the client's
    _meta.traceparent and carries the call span's context to the MCP SDK server in _meta."""
    beta = mcp_server("beta", "http")
    port = free_port()
    config = mcp_config(port, [stdio_target("alpha"), {"name": "beta", "mcp": {"host": beta.url}}])
    config["config"] = {"tracing": {"otlpEndpoint": otlp.grpc_endpoint, "randomSampling": True}}
    gateway(config)
    incoming = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"alpha_trace_meta", "beta_trace_meta"} <= tools
        result = await client.call_tool("beta_trace_meta", {}, meta={"traceparent": incoming})
        failed = await client.call_tool("alpha_fail", {"reason": "boom"})
        assert failed.is_error
    received_meta = json.loads(result.content[0].text)

    def complete(spans: list) -> bool:
        names = {(s.kind, s.name) for s in spans}
        return {(SERVER, "tools/list"), (CLIENT, "tools/call trace_meta"), (CLIENT, "tools/call fail")} <= names

    spans = otlp.wait_spans(complete)
    listing = next(s for s in spans if s.kind == SERVER and s.name == "tools/list")
    fan_out = [s for s in spans if s.kind == CLIENT and s.parent_id == listing.span_id]
    assert sorted(s.attributes["mcp.target"] for s in fan_out) == ["alpha", "beta"]
    assert all(s.name == "tools/list" and s.trace_id == listing.trace_id for s in fan_out)
    assert listing.attributes["mcp.method.name"] == "tools/list"

    call = next(s for s in spans if s.kind == SERVER and s.name == "tools/call beta_trace_meta")
    assert call.trace_id == CLIENT_TRACE and call.parent_id == CLIENT_SPAN  # from the client's _meta
    a = call.attributes
    assert a["mcp.method.name"] == "tools/call"
    assert a["gen_ai.tool.name"] == "beta_trace_meta"
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["mcp.target"] == "beta"
    session = a["mcp.session.id"]
    assert len(session) == 32 and session not in json.dumps(received_meta)  # a digest, not the id

    target_call = next(s for s in spans if s.kind == CLIENT and s.name == "tools/call trace_meta")
    assert target_call.parent_id == call.span_id and target_call.trace_id == CLIENT_TRACE
    assert target_call.attributes["gen_ai.tool.name"] == "trace_meta"
    assert target_call.attributes["mcp.target"] == "beta"
    # What the MCP SDK server received in params._meta.
    assert received_meta["traceparent"] == f"00-{CLIENT_TRACE}-{target_call.span_id}-01"

    failing = next(s for s in spans if s.kind == CLIENT and s.name == "tools/call fail")
    assert failing.attributes["error.type"] == "tool_error" and failing.status == 2


@pytest.mark.anyio
async def test_mcp_jsonrpc_error_code_on_the_target_span(gateway, mcp_server, otlp):
    beta = mcp_server("beta", "http")
    port = free_port()
    config = mcp_config(port, [{"name": "beta", "mcp": {"host": beta.url}}])
    config["config"] = {"tracing": {"otlpEndpoint": otlp.http_endpoint, "otlpProtocol": "http", "randomSampling": 1}}
    gateway(config)
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        with pytest.raises(MCPError):
            await client.get_prompt("no_such_prompt", {})
    spans = otlp.wait_spans(lambda s: any(x.kind == CLIENT and x.name.startswith("prompts/get") for x in s))
    span = next(s for s in spans if s.kind == CLIENT and s.name.startswith("prompts/get"))
    assert span.attributes["rpc.response.status_code"] == span.attributes["error.type"]
    int(span.attributes["error.type"])  # the JSON-RPC code the target answered, as text
    assert span.status == 2


# ---------------------------------------------------------------------- LLM


@pytest.mark.parametrize("stream", [False, True])
def test_llm_chat_span_with_genai_conventions(gateway, tmp_path, processes, otlp, stream):
    fake = FakeProvider(tmp_path, "openai")
    processes.append(fake)
    port = free_port()
    model = {"name": "gpt-4o-mini", "provider": "openAI", "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1"}}
    config = {
        "llm": {"port": port, "models": [model]},
        "config": {"tracing": {"otlpEndpoint": otlp.grpc_endpoint, "randomSampling": True}},
    }
    gateway(config)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-client")
    messages = [{"role": "user", "content": "hi there"}]
    if stream:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        assert any(c.usage is not None for c in chunks)
    else:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    client.close()
    spans = otlp.wait_spans(lambda s: any(x.kind == CLIENT for x in s) and any(x.kind == SERVER for x in s))
    server = next(s for s in spans if s.kind == SERVER)
    call = next(s for s in spans if s.kind == CLIENT)
    assert call.parent_id == server.span_id and call.trace_id == server.trace_id
    assert call.name == "chat gpt-4o-mini"
    a = call.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"]
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (16, 7)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 5
    if stream:
        assert a["gen_ai.request.stream"] is True
        assert a["gen_ai.response.time_to_first_chunk"] > 0
    else:
        assert a["gen_ai.response.finish_reasons"] == ["stop"]
    # Usage is on the provider span only (GenAI views would count it twice).
    assert "gen_ai.usage.input_tokens" not in server.attributes
    assert server.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    # The provider was told the call span's context.
    sent = {k.lower(): v for k, v in fake.last()["headers"].items()}
    assert sent["traceparent"] == f"00-{call.trace_id}-{call.span_id}-01"


def test_llm_content_only_when_asked(gateway, tmp_path, processes, otlp):
    fake = FakeProvider(tmp_path, "openai")
    processes.append(fake)
    port = free_port()
    model = {"name": "gpt-4o-mini", "provider": "openAI", "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1"}}
    fields = {"add": {"gen_ai.input.messages": "llm.prompt", "gen_ai.output.messages": "llm.completion"}}
    tracing = {"otlpEndpoint": otlp.grpc_endpoint, "randomSampling": 'request.headers["x-capture"] == "yes"'}
    gateway({"llm": {"port": port, "models": [model]}, "config": {"tracing": {**tracing, "fields": fields}}})
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-client")
    answer = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "secret plan"}],
        extra_headers={"x-capture": "yes"},
    )
    client.close()
    spans = otlp.wait_spans(lambda s: any(x.kind == SERVER for x in s))
    server = next(s for s in spans if s.kind == SERVER)
    assert server.attributes["gen_ai.input.messages"] == [{"role": "user", "content": "secret plan"}]
    assert server.attributes["gen_ai.output.messages"] == [answer.choices[0].message.content]


def test_llm_content_is_not_recorded_by_default(gateway, tmp_path, processes, otlp):
    fake = FakeProvider(tmp_path, "openai")
    processes.append(fake)
    port = free_port()
    model = {"name": "gpt-4o-mini", "provider": "openAI", "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1"}}
    gateway(
        {
            "llm": {"port": port, "models": [model]},
            "config": {"tracing": {"otlpEndpoint": otlp.grpc_endpoint, "randomSampling": True}},
        }
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-client")
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "secret plan"}])
    client.close()
    spans = otlp.wait_spans(lambda s: len(s) >= 2)
    assert all("secret plan" not in repr(s.attributes) for s in spans)


def test_requests_relayed_between_workers_keep_one_server_span(gateway, otlp):
    """Two workers: calls for a stdio session reach either one; those the other worker relays to
    the owner are recorded by the owner, with the context the first one propagated, so every
    target call has its server span and every server span the client's span as parent."""
    port = free_port()
    config = mcp_config(port, [stdio_target("alpha")])
    config["config"] = {"tracing": {"otlpEndpoint": otlp.grpc_endpoint, "randomSampling": True}}
    gateway(config, workers=2)
    base = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    r = httpx.post(f"http://127.0.0.1:{port}/mcp", json=init, headers=base)
    session = {**base, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
    parents = []
    for i in range(12):
        parent = f"{i + 1:016x}"
        parents.append(parent)
        headers = {**session, "traceparent": f"00-{CLIENT_TRACE}-{parent}-01", "connection": "close"}
        with httpx.Client() as client:  # a new connection each time: either worker takes it
            assert client.post(f"http://127.0.0.1:{port}/mcp", json=call, headers=headers).status_code == 200

    def done(spans: list) -> bool:
        return len([s for s in spans if s.kind == SERVER and s.trace_id == CLIENT_TRACE]) >= 12

    spans = [s for s in otlp.wait_spans(done) if s.trace_id == CLIENT_TRACE]
    servers = [s for s in spans if s.kind == SERVER]
    assert sorted(s.parent_id for s in servers) == parents  # one server span per request
    server_ids = {s.span_id for s in servers}
    calls = [s for s in spans if s.kind == CLIENT]
    assert len(calls) == 12 and all(c.parent_id in server_ids for c in calls)


def test_a_client_cannot_hand_over_a_relayed_trace_context(gateway, upstream, otlp):
    """x-agentgateway-trace is believed only on the internal relay socket: on a public listener
    it is ignored (the client's own traceparent, or a new trace, decides)."""
    up = upstream("a")
    port = free_port()
    gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint))
    forged = f"{CLIENT_TRACE}-{CLIENT_SPAN}-00f067aa0ba902b8-1"
    httpx.get(f"http://127.0.0.1:{port}/api/x", headers={"x-agentgateway-trace": forged})
    spans = otlp.wait_spans(lambda s: any(x.kind == SERVER for x in s))
    server = next(s for s in spans if s.kind == SERVER)
    assert server.trace_id != CLIENT_TRACE and server.span_id != CLIENT_SPAN and server.parent_id == ""


def test_reload_turns_tracing_on_changes_sampling_and_off(gateway, upstream, otlp):
    up = upstream("a")
    port = free_port()
    plain = binds(port, [api_route(up.address)])
    gw = gateway(plain)
    r = httpx.get(f"http://127.0.0.1:{port}/api/before")
    assert "traceparent" not in dict(r.json()["headers"])  # tracing off: nothing added
    gw.write_config(traced(port, [api_route(up.address)], otlp.grpc_endpoint))
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="success") == 1, 10, "the reload")
    httpx.get(f"http://127.0.0.1:{port}/api/on")
    otlp.wait_spans(lambda s: any(x.attributes.get("url.path") == "/api/on" for x in s))
    gw.write_config(traced(port, [api_route(up.address)], otlp.grpc_endpoint, randomSampling=False))
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="success") == 2, 10, "the second reload")
    httpx.get(f"http://127.0.0.1:{port}/api/unsampled")
    gw.write_config(plain)
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="success") == 3, 10, "the third reload")
    r = httpx.get(f"http://127.0.0.1:{port}/api/off")
    assert "traceparent" not in dict(r.json()["headers"])
    time.sleep(1.5)
    assert not any(s.attributes.get("url.path") in ("/api/unsampled", "/api/off") for s in otlp.spans)


def test_vendor_guard_checks_are_child_spans(gateway, tmp_path, processes, otlp):
    """A vendor prompt guard (openAIModeration) is a CLIENT span of the request, and the vendor
    is told its id; a flagged prompt marks the span ``reject``."""
    from tests.integration.test_llm_vendor_guards import GuardService, _route
    from tests.support.guard_fakes import GUARD_KEY

    fake = FakeProvider(tmp_path, "openai")
    processes.append(fake)
    guard = GuardService(tmp_path, "moderation")
    processes.append(guard)
    moderation = {
        "model": "omni-moderation-latest",
        "baseUrl": guard.base,
        "policies": {"backendAuth": {"key": GUARD_KEY}},
    }
    port = free_port()
    route = _route("mod", fake.port, {"request": [{"openAIModeration": moderation}]})
    gateway(traced(port, [route], otlp.grpc_endpoint))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/mod/v1", api_key="sk-client", max_retries=0)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
        spans = otlp.wait_spans(lambda s: any(x.name == "guardrail openAIModeration" for x in s) and len(s) >= 3)
        server = next(s for s in spans if s.kind == SERVER)
        check = next(s for s in spans if s.name == "guardrail openAIModeration")
        assert check.kind == CLIENT and check.parent_id == server.span_id and check.trace_id == server.trace_id
        assert check.attributes["agw.guardrail.action"] == "pass"
        assert check.attributes["agw.guardrail.phase"] == "request"
        sent = {k.lower(): v for k, v in guard.last()["headers"].items()}
        assert sent["traceparent"] == f"00-{check.trace_id}-{check.span_id}-01"
        # The provider call comes after the check, as a sibling.
        call = next(s for s in spans if s.name.startswith("chat "))
        assert call.parent_id == server.span_id and check.end <= call.start
        first = server.trace_id
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "FLAGME"}])
        spans = otlp.wait_spans(lambda s: any(x.kind == SERVER and x.trace_id != first for x in s))
        spans = [s for s in spans if s.trace_id != first]
        check = next(s for s in spans if s.name == "guardrail openAIModeration")
        assert check.attributes["agw.guardrail.action"] == "reject"
        assert not any(s.name.startswith("chat ") for s in spans)
    finally:
        client.close()


# ---------------------------------------------------------------------- upgrades and TCP routes


def test_websocket_upgrade_span_lasts_until_the_relay_ends(gateway, otlp):
    """A WebSocket: one SERVER span from the handshake to the end of the relay (with the bytes
    each way); the upstream call's span is the handshake, ended at the 101; the backend was told
    that span's id."""
    import asyncio

    from websockets.asyncio.client import connect

    from tests.support.websocket_server import WebSocketServer

    server = WebSocketServer()
    try:
        port = free_port()
        route = {"name": "ws", "matches": [{"path": {"pathPrefix": "/"}}], "backends": [{"host": server.address}]}
        gateway(traced(port, [route], otlp.grpc_endpoint))

        async def run() -> None:
            async with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10) as ws:
                await ws.send("ping")
                assert await ws.recv() == "ping"
                # The relay is open: no span was exported for it yet.
                await asyncio.sleep(1.5)
                assert not any(s.kind == SERVER for s in otlp.spans)

        asyncio.run(run())
        spans = otlp.wait_spans(lambda s: any(x.kind == SERVER for x in s))
        server_span = next(s for s in spans if s.kind == SERVER)
        call = next(s for s in spans if s.kind == CLIENT)
        a = server_span.attributes
        assert a["http.response.status_code"] == 101
        assert a["agw.upgrade"].lower() == "websocket"
        assert a["bytes.received"] > 4 and a["bytes.sent"] > 4
        assert call.parent_id == server_span.span_id
        assert call.attributes["http.response.status_code"] == 101
        # The handshake span ended at the 101; the server span ended with the relay, after it.
        assert call.end < server_span.end - 1_000_000_000
        assert server.handshakes[0]["traceparent"] == f"00-{call.trace_id}-{call.span_id}-01"
    finally:
        server.stop()


def test_tcp_route_connection_span(gateway, otlp):
    """A connection of a TCP listener: one SERVER span from accept to close (network
    conventions, bytes each way), its ids in the connection's log line and OTLP log record; one
    refused (no backend) is a failed span."""
    from tests.support.gateway import raw_connection
    from tests.support.tcp_echo import TcpEchoServer

    echo = TcpEchoServer()
    try:
        port = free_port()
        dead = free_port()
        config = {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {"protocol": "TCP", "tcpRoutes": [{"name": "echo", "backends": [{"host": echo.address}]}]}
                    ],
                }
            ],
            "config": {"tracing": {"otlpEndpoint": otlp.grpc_endpoint, "randomSampling": True}},
            "frontendPolicies": {"accessLog": {"otlp": {}}},
        }
        config["binds"].append(
            {
                "port": dead,
                "listeners": [
                    {
                        "protocol": "TCP",
                        "tcpRoutes": [{"name": "down", "backends": [{"host": f"127.0.0.1:{free_port()}"}]}],
                    }
                ],
            }
        )
        gw = gateway(config)
        with raw_connection(port, timeout=10) as s:
            s.sendall(b"hello")
            got = b""
            while len(got) < 5:
                chunk = s.recv(5 - len(got))
                assert chunk
                got += chunk
            assert got == b"hello"
        with raw_connection(dead, timeout=10) as s:
            assert s.recv(10) == b""
        spans = otlp.wait_spans(lambda s: len([x for x in s if x.kind == SERVER]) >= 2)
        ok = next(s for s in spans if s.attributes.get("route") == "echo")
        assert ok.name == "tcp echo" and ok.parent_id == ""
        a = ok.attributes
        assert a["network.transport"] == "tcp" and a["client.address"] == "127.0.0.1"
        assert (a["bytes.received"], a["bytes.sent"]) == (5, 5)
        assert a["endpoint"] == echo.address
        assert ok.status == 0
        down = next(s for s in spans if s.attributes.get("route") == "down")
        assert down.status == 2 and down.attributes["reason"]
        line = next(x for x in gw.output().splitlines() if "\tconnection\t" in x and "route=echo" in x)
        assert f"trace.id={ok.trace_id}" in line and f"span.id={ok.span_id}" in line
        # The same line as an OTLP log record, with the span's ids.
        logs = otlp.wait_logs(lambda r: any(x.attributes.get("route") == "echo" for x in r))
        record = next(x for x in logs if x.attributes.get("route") == "echo")
        assert (record.trace_id, record.span_id) == (ok.trace_id, ok.span_id)
        assert record.attributes["bytes.sent"] == 5
    finally:
        echo.stop()


def test_token_exchange_is_a_child_span(gateway, upstream, idp, otlp):
    """backendAuth oauthTokenExchange: the call to the token endpoint is a CLIENT span of the
    request (the endpoint told its id); a cached token makes no call and no span."""
    from tests.integration.test_backend_auth_tokens import _exchange_route

    idp.register_client("gw", "gw-secret", [])
    up = upstream()
    port = free_port()
    gateway(traced(port, [_exchange_route(up, idp)], otlp.grpc_endpoint))
    headers = {"authorization": f"Bearer {idp.mint()}"}
    assert httpx.get(f"http://127.0.0.1:{port}/x", headers=headers).status_code == 200
    spans = otlp.wait_spans(lambda s: any(x.kind == SERVER for x in s))
    server = next(s for s in spans if s.kind == SERVER)
    token = next(s for s in spans if s.name == "oauth token")
    assert token.kind == CLIENT and token.parent_id == server.span_id and token.trace_id == server.trace_id
    assert token.attributes["agw.oauth.grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert token.attributes["http.response.status_code"] == 200
    assert idp.token_requests[-1]["headers"]["traceparent"] == f"00-{token.trace_id}-{token.span_id}-01"
    assert httpx.get(f"http://127.0.0.1:{port}/x", headers=headers).status_code == 200
    spans = otlp.wait_spans(lambda s: len([x for x in s if x.kind == SERVER]) >= 2)
    second = next(s for s in spans if s.kind == SERVER and s.trace_id != server.trace_id)
    assert not any(s.name == "oauth token" for s in otlp.trace(second.trace_id))


def test_oidc_code_redemption_is_a_child_span(gateway, upstream, idp, otlp):
    """The OIDC callback's call to the provider's token endpoint is a CLIENT span of the callback
    request, the provider told its id."""
    from tests.integration.test_auth_oidc import HTML, SESSION_KEY, _login, _oidc

    up = upstream()
    port = free_port()
    route = {"name": "app", "policies": {"oidc": _oidc(idp, port)}, "backends": [{"host": up.address}]}
    gateway(traced(port, [route], otlp.grpc_endpoint), env={"SESSION_KEY": SESSION_KEY})
    with httpx.Client() as browser:
        callback = _login(browser, f"http://127.0.0.1:{port}")
        assert callback.status_code == 302, callback.text
        assert browser.get(f"http://127.0.0.1:{port}/app", headers=HTML).status_code == 200
    spans = otlp.wait_spans(lambda s: any(x.name == "oidc token" for x in s))
    token = next(s for s in spans if s.name == "oidc token")
    callback_span = next(s for s in spans if s.kind == SERVER and s.span_id == token.parent_id)
    assert callback_span.attributes["url.path"] == "/oauth/callback"
    assert token.kind == CLIENT and token.attributes["http.response.status_code"] == 200
    assert idp.token_requests[-1]["headers"]["traceparent"] == f"00-{token.trace_id}-{token.span_id}-01"


def test_llm_remote_token_reservation_is_a_child_span(gateway, tmp_path, processes, rls, otlp):
    """remoteRateLimit tokens on an LLM route: the reservation before the provider call is a
    CLIENT span of the request (the true-up after it runs once the request is over)."""
    fake = FakeProvider(tmp_path, "openai")
    processes.append(fake)
    service = rls(limit=100_000)
    port = free_port()
    model = {"name": "gpt-4o-mini", "provider": "openAI", "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1"}}
    limit = {
        "domain": "llm-tokens",
        "host": service.address,
        "descriptors": [{"type": "tokens", "entries": [{"key": "route", "value": '"all"'}]}],
    }
    config = {
        "llm": {"port": port, "models": [model], "policies": {"remoteRateLimit": limit}},
        "config": {"tracing": {"otlpEndpoint": otlp.grpc_endpoint, "randomSampling": True}},
    }
    gateway(config)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-client", max_retries=0)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    finally:
        client.close()
    spans = otlp.wait_spans(lambda s: any(x.kind == SERVER for x in s))
    server = next(s for s in spans if s.kind == SERVER)
    reserve = next(s for s in spans if s.name == "rate_limit reserve")
    call = next(s for s in spans if s.name == "chat gpt-4o-mini")
    assert reserve.kind == CLIENT and reserve.parent_id == server.span_id
    assert reserve.attributes["agw.rate_limit.result"] == "allowed"
    assert reserve.attributes["agw.rate_limit.tokens"] > 0
    assert reserve.end <= call.start


def test_http2_client_request_is_traced_like_http1(gateway, upstream, otlp):
    """The protocol is below the policy chain: an h2c request gets the same server span and
    upstream child span, and the upstream the same traceparent, as an HTTP/1.1 one."""
    up = upstream("a")
    port = free_port()
    gateway(traced(port, [api_route(up.address)], otlp.grpc_endpoint))
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        r = client.get(
            f"http://127.0.0.1:{port}/api/h2", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
        )
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    sent = dict(r.json()["headers"])
    spans = otlp.wait_spans(lambda s: len(s) >= 2)
    server = next(s for s in spans if s.kind == SERVER)
    call = next(s for s in spans if s.kind == CLIENT)
    assert server.trace_id == CLIENT_TRACE and server.parent_id == CLIENT_SPAN
    assert server.attributes["url.path"] == "/api/h2"
    assert server.attributes["http.response.status_code"] == 200
    assert call.parent_id == server.span_id
    assert sent["traceparent"] == f"00-{CLIENT_TRACE}-{call.span_id}-01"
