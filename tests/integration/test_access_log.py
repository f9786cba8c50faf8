"""Access logs as agentgateway configures them, through the daemon: frontendPolicies.accessLog
(filter, add, remove), the older config.logging.filter/fields, JSON and text lines, and OTLP
log records with the trace and span ids, received by a real OTLP receiver."""

from __future__ import annotations

import json

import httpx

from tests.support.gateway import binds, free_port, wait_for


def _config(port: int, address: str, **extra: object) -> dict:
    config = binds(port, [{"name": "api", "backends": [{"host": address}]}])
    config.update(extra)
    return config


def test_filter_add_remove_json(gateway, upstream):
    up = upstream("a")
    port = free_port()
    access_log = {
        "filter": 'request.path.startsWith("/keep") || response.code >= 500',
        "add": {
            "user": 'request.headers["x-user"]',
            "status_class": 'string(response.code / 100) + "xx"',
            "missing": 'request.headers["x-absent"]',
            "tags": '["a", "b"]',
        },
        "remove": ["src.addr", "http.version"],
    }
    config = _config(port, up.address, frontendPolicies={"accessLog": access_log})
    config["config"] = {"logging": {"format": "json"}}
    gw = gateway(config)
    with httpx.Client() as client:
        client.get(f"http://127.0.0.1:{port}/skip", headers={"x-user": "bob"})
        client.get(f"http://127.0.0.1:{port}/keep/1", headers={"x-user": "alice"})
    lines = wait_for(lambda: gw.access_lines() or None, 5, "an access line")
    wait_for(lambda: len(gw.access_lines()) >= 1, 5, "lines")
    records = [json.loads(line[line.index("{") :]) for line in gw.access_lines()]
    assert [r["http.path"] for r in records] == ["/keep/1"]
    record = records[0]
    assert record["user"] == "alice"
    assert record["status_class"] == "2xx"
    assert record["tags"] == ["a", "b"]
    assert "missing" not in record  # a failed expression adds nothing
    assert "src.addr" not in record and "http.version" not in record
    assert record["http.status"] == 200
    assert lines


def test_failed_filter_does_not_log_and_legacy_config_logging(gateway, upstream):
    """config.logging.filter/fields (agentgateway's older keys) work too; a filter that fails
    to evaluate (a missing header) drops the line."""
    up = upstream("a")
    port = free_port()
    config = _config(port, up.address)
    config["config"] = {
        "logging": {
            "filter": 'request.headers["x-log"] == "yes"',
            "fields": {"add": {"route_name": '"r-" + request.path'}, "remove": ["duration"]},
        }
    }
    gw = gateway(config)
    with httpx.Client() as client:
        client.get(f"http://127.0.0.1:{port}/one")  # no x-log header: the filter fails
        client.get(f"http://127.0.0.1:{port}/two", headers={"x-log": "no"})
        client.get(f"http://127.0.0.1:{port}/three", headers={"x-log": "yes"})
    wait_for(lambda: any("/three" in line for line in gw.access_lines()), 5, "the logged line")
    lines = gw.access_lines()
    assert len(lines) == 1
    assert 'route_name="r-/three"' in lines[0] or "route_name=r-/three" in lines[0]
    assert "duration=" not in lines[0]


def test_access_log_over_otlp_with_trace_ids(gateway, upstream, otlp):
    up = upstream("a")
    port = free_port()
    access_log = {"add": {"tenant": 'request.headers["x-tenant"]'}, "otlp": {"filter": 'request.path != "/quiet"'}}
    config = _config(port, up.address, frontendPolicies={"accessLog": access_log})
    config["config"] = {"tracing": {"otlpEndpoint": otlp.grpc_endpoint, "randomSampling": True}}
    gateway(config)
    with httpx.Client() as client:
        client.get(f"http://127.0.0.1:{port}/quiet")
        client.get(f"http://127.0.0.1:{port}/loud", headers={"x-tenant": "acme"})
    logs = otlp.wait_logs(lambda r: any(x.attributes.get("http.path") == "/loud" for x in r))
    spans = otlp.wait_spans(lambda s: any(x.kind == 2 and x.attributes["url.path"] == "/loud" for x in s))
    record = next(x for x in logs if x.attributes.get("http.path") == "/loud")
    server = next(x for x in spans if x.kind == 2 and x.attributes["url.path"] == "/loud")
    assert record.trace_id == server.trace_id and record.span_id == server.span_id
    assert record.attributes["tenant"] == "acme"
    assert record.attributes["trace.id"] == server.trace_id
    assert "http.path=/loud" in record.body
    assert record.severity == "info"
    assert all(x.attributes.get("http.path") != "/quiet" for x in otlp.logs)


def test_otlp_logs_to_their_own_host_over_http(gateway, upstream, otlp):
    up = upstream("a")
    port = free_port()
    access_log = {
        "otlp": {
            "host": f"127.0.0.1:{otlp.http_port}",
            "protocol": "http",
            "fields": {"remove": ["src.addr"], "add": {"otlp_only": '"yes"'}},
        }
    }
    config = _config(port, up.address, frontendPolicies={"accessLog": access_log})
    gw = gateway(config)
    httpx.get(f"http://127.0.0.1:{port}/x")
    logs = otlp.wait_logs(lambda r: len(r) >= 1)
    assert logs[0].via == "http"
    assert logs[0].attributes["otlp_only"] == "yes" and "src.addr" not in logs[0].attributes
    assert logs[0].trace_id == ""  # no tracing configured: no trace context
    # stdout keeps its own fields
    wait_for(lambda: gw.access_lines(), 5, "a stdout line")
    assert "src.addr=" in gw.access_lines()[0] and "otlp_only" not in gw.access_lines()[0]


def test_bad_expressions_are_refused_at_load(gateway, upstream, tmp_path):
    up = upstream("a")
    port = free_port()
    config = _config(port, up.address, frontendPolicies={"accessLog": {"add": {"x": "request.nope("}}})
    gw = gateway(config, wait=False)
    wait_for(lambda: not gw.alive(), 15, "the gateway to refuse the config")
    assert "frontendPolicies.accessLog.add.x" in gw.output()


def test_text_line_quotes_values_that_need_it(gateway, upstream):
    """A text line quotes a value that is empty or holds a space, ``"``, ``=``, ``\\`` or a newline
    (escaping ``\\``, ``"`` and newlines), and leaves any other value bare; numbers and lists
    (CEL fields) are written as values, a list as quoted JSON."""
    up = upstream("a")
    port = free_port()
    access_log = {
        "add": {
            "spaced": '"a b"',
            "quoted": '"say \\"hi\\""',
            "equals": '"k=v"',
            "backslash": '"a\\\\b"',
            "newline": '"a\\nb"',
            "plain": '"plain/value-1.2"',
            "number": "7",
            "tags": '["x", "y z"]',
        }
    }
    gw = gateway(_config(port, up.address, frontendPolicies={"accessLog": access_log}))
    with httpx.Client() as client:
        client.get(f"http://127.0.0.1:{port}/p?x=1&y=2")
        client.get(f"http://127.0.0.1:{port}/bare")
    wait_for(lambda: len(gw.access_lines()) >= 2, 5, "two access lines")
    first, second = gw.access_lines()[:2]
    assert 'http.path="/p?x=1&y=2"' in first  # '=' in the query: quoted
    assert "http.path=/bare " in second  # nothing to quote: bare
    assert "http.method=GET " in first and "http.status=200 " in first
    assert 'spaced="a b"' in first
    assert 'quoted="say \\"hi\\""' in first
    assert 'equals="k=v"' in first
    assert 'backslash="a\\\\b"' in first
    assert 'newline="a\\nb"' in first and "\n" not in first.rstrip("\n")
    assert "plain=plain/value-1.2" in first
    assert "number=7" in first
    assert 'tags="[\\"x\\",\\"y z\\"]"' in first
