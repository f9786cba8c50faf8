"""Attacks on tracing through the daemon: a client's ``traceparent``/``tracestate``/``baggage`` of
hostile size or form must not break the export of other requests' spans, grow what is queued,
or be reflected into a header; the collector's ``tracing.headers`` never show in the admin."""

from __future__ import annotations

import json

import httpx

from tests.support.gateway import ResponseReader, binds, free_port, raw_connection, read_response

SERVER = 2
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
PARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01".encode()


def _config(port: int, address: str, endpoint: str, **tracing: object) -> dict:
    config = binds(port, [{"name": "api", "backends": [{"host": address}]}])
    config["config"] = {"tracing": {"otlpEndpoint": endpoint, "randomSampling": True, **tracing}}
    return config


def _raw_get(port: int, path: bytes, headers: bytes) -> tuple[int, dict]:
    with raw_connection(port) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: gw.test\r\n" + headers + b"\r\n")
        status, _, body = read_response(sock)
    return status, json.loads(body) if status == 200 else {}


def test_hostile_tracestate_does_not_break_the_export_of_others(gateway, upstream, otlp):
    """OTLP's ``Span.trace_state`` is a protobuf string: bytes that are not UTF-8 there make a
    collector refuse the whole batch, every other request's spans with it. A tracestate is
    kept on the span only when it is one (W3C grammar), within W3C's 512 characters."""
    up = upstream()
    port = free_port()
    gateway(_config(port, up.address, otlp.grpc_endpoint, randomSampling=False, clientSampling=True))
    hostile = [
        b"tracestate: v=\xff\xfe\r\n",  # obs-text: not UTF-8
        b"tracestate: " + b"a=" + b"x" * 20_000 + b"\r\n",  # far over W3C's 512
        b"tracestate: not a list member\r\n",
    ]
    for i, header in enumerate(hostile):
        status, _ = _raw_get(port, b"/bad%d" % i, b"traceparent: " + PARENT + b"\r\n" + header)
        assert status == 200
    status, _ = _raw_get(port, b"/good", b"traceparent: " + PARENT + b"\r\ntracestate: v=1,w=2\r\n")
    assert status == 200
    spans = otlp.wait_spans(lambda s: sum(x.kind == SERVER for x in s) >= 4)
    servers = {s.attributes["url.path"]: s for s in spans if s.kind == SERVER}
    assert servers["/good"].trace_state == "v=1,w=2"
    for i in range(len(hostile)):
        state = servers[f"/bad{i}"].trace_state
        assert len(state) <= 512 and state.isascii(), state[:80]


def test_many_list_members_are_bounded_and_duplicates_joined(gateway, upstream, otlp):
    up = upstream()
    port = free_port()
    gateway(_config(port, up.address, otlp.grpc_endpoint, randomSampling=False, clientSampling=True))
    members = b",".join(b"k%d=v" % i for i in range(100))
    status, _ = _raw_get(port, b"/many", b"traceparent: " + PARENT + b"\r\ntracestate: " + members + b"\r\n")
    assert status == 200
    spans = otlp.wait_spans(lambda s: any(x.kind == SERVER for x in s))
    state = next(s for s in spans if s.kind == SERVER).trace_state
    assert len(state.split(",")) <= 32 and state.startswith("k0=v,k1=v")


def test_trace_headers_are_never_reflected_or_split(gateway, upstream, otlp):
    """A traceparent of a version the gateway does not know, with a free-form tail: the upstream
    gets one well-formed traceparent the gateway wrote, the client no trace header at all."""
    up = upstream()
    port = free_port()
    gateway(_config(port, up.address, otlp.grpc_endpoint))
    tails = [b"ff-" + PARENT[3:], PARENT.replace(b"00-", b"01-", 1) + b"-x;y=z", b"00-" + b"0" * 32 + PARENT[35:]]
    for tail in tails:
        with raw_connection(port) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: gw.test\r\ntraceparent: " + tail + b"\r\n\r\n")
            status, headers, body = read_response(sock)
        if status == 200:
            sent = dict(json.loads(body)["headers"])
            assert sent["traceparent"].count("-") == 3 and sent["traceparent"].startswith("00-")
        assert not any(k.lower() in ("traceparent", "tracestate", "traceresponse") for k in headers)


def test_tracing_headers_never_in_config_dump(gateway, upstream, otlp):
    up = upstream()
    port = free_port()
    secret = "Bearer collector-secret-4711"
    gw = gateway(_config(port, up.address, otlp.grpc_endpoint, headers={"authorization": secret, "x-tenant": "t1"}))
    for path in ("/config_dump", "/ui/api/config", "/ui/api/overview", "/ui/"):
        r = httpx.get(f"{gw.admin_url}{path}", timeout=10)
        assert r.status_code == 200 and "collector-secret-4711" not in r.text, path


def test_large_client_fields_do_not_fail_the_export_batch(gateway, upstream, otlp):
    """A client's head can be 64 KiB (a long User-Agent, path or query), and every span carries
    it: 512 such spans would make one export request of 30 MiB, which a collector refuses whole
    (4 MiB is the gRPC default), and every other request's span with it. Export requests are
    bounded in bytes instead."""
    up = upstream()
    port = free_port()
    gateway(_config(port, up.address, otlp.grpc_endpoint))
    agent = b"A" * 60_000
    count = 120
    with raw_connection(port, timeout=30) as sock:
        request = b"GET /big HTTP/1.1\r\nHost: gw.test\r\nUser-Agent: " + agent + b"\r\n\r\n"
        sock.sendall(request * count)  # pipelined: all within one export interval
        reader = ResponseReader(sock)
        for _ in range(count):
            assert reader.read()[0] == 200
    assert _raw_get(port, b"/good", b"")[0] == 200
    spans = otlp.wait_spans(lambda s: sum(x.kind == SERVER for x in s) >= count + 1, timeout=20)
    paths = [s.attributes["url.path"] for s in spans if s.kind == SERVER]
    assert paths.count("/big") == count and "/good" in paths
    # What a span keeps of a client's text is bounded too (the export queue holds 8192 spans).
    agents = [
        s.attributes["user_agent.original"] for s in spans if s.kind == SERVER and s.attributes["url.path"] == "/big"
    ]
    assert agents and all(len(a) <= 2048 for a in agents)
