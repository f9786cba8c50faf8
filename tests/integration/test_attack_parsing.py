"""Attacks where a policy and the upstream could read one request differently: the headers a
client names in ``Connection``, JSON bodies with duplicate or escaped keys (MCP, A2A, LLM), and
the path and headers CEL reads. Through the daemon, with raw sockets where a client library
would normalize the request. One gateway serves every route of the header and CEL tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import (
    Gateway,
    McpServerProcess,
    UpstreamServer,
    free_port,
    mcp_config,
    raw_connection,
    read_response,
)
from tests.support.http2 import RawH2Client
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY as PROVIDER_KEY

DENY_ADMIN = '!request.path.startsWith("/admin")'
API_KEY = "sk-the-one-key"
# An agent's tasks of tenant "a" only, and no cancelling.
A2A_RULE = 'a2a.method != "tasks/cancel" && has(a2a.task) && a2a.task.id.startsWith("a-")'
NOT_ADMIN_HOST = 'request.host != "admin.example" && request.headers["host"].split(":")[0] != "admin.example"'


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, UpstreamServer]]:
    """A gateway in front of the test upstream: ``guarded.test`` refuses ``/admin`` by CEL,
    ``tenant.test`` needs ``x-tenant: a``, ``stamped.test`` sets ``x-user`` itself, ``keyed.test``
    checks a bearer API key when one is present (``mode: optional``), ``agent.test`` is an A2A
    agent whose callers may use their tenant's tasks (``a-…``) but not cancel them; any other
    host is served unless it is ``admin.example``."""
    tmp: Path = tmp_path_factory.mktemp("attack-parsing")
    procs: list[Any] = []
    try:
        up = UpstreamServer(tmp, "up")
        procs.append(up)
        backends = [{"host": up.address}]
        routes = [
            {
                "hostnames": ["guarded.test"],
                "backends": backends,
                "policies": {"authorization": {"rules": [DENY_ADMIN]}},
            },
            {
                "hostnames": ["tenant.test"],
                "backends": backends,
                "policies": {"authorization": {"rules": ['request.headers["x-tenant"] == "a"']}},
            },
            {
                "hostnames": ["stamped.test"],
                "backends": backends,
                "policies": {"requestHeaderModifier": {"set": {"x-user": "gateway"}}},
            },
            {
                "hostnames": ["keyed.test"],
                "backends": backends,
                "policies": {"apiKey": {"mode": "optional", "keys": [{"key": API_KEY}]}},
            },
            {
                "hostnames": ["agent.test"],
                "backends": backends,
                "policies": {"a2a": {}, "authorization": {"rules": [A2A_RULE]}},
            },
            {"backends": backends, "policies": {"authorization": {"rules": [NOT_ADMIN_HOST]}}},
        ]
        port = free_port()
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        procs.append(Gateway(gw_dir, {"binds": [{"port": port, "listeners": [{"routes": routes}]}]}))
        yield port, up
    finally:
        for proc in reversed(procs):
            proc.stop()


def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends ``raw`` on a new connection and reads the first response."""
    with raw_connection(port, timeout=5) as sock:
        sock.sendall(raw)
        return read_response(sock)


def _targets(up: UpstreamServer, since: int) -> list[str]:
    return [str(r["target"]) for r in up.requests()[since:]]


# ---------------------------------------------------------------------------------------- Connection


@pytest.mark.parametrize(
    "connection",
    [
        b"Connection: content-length\r\n",
        b"Connection: Content-Length\r\n",
        b"Connection: close, content-length\r\n",
        b"Connection: keep-alive\r\nConnection: content-length\r\n",
        b"Connection: host, content-length, transfer-encoding\r\n",
    ],
)
def test_connection_option_cannot_unframe_the_body(edge, connection: bytes) -> None:
    """``Connection: content-length`` once made the gateway drop Content-Length on the way out
    after it had framed the body by it: the body reached the upstream as a second request that
    no policy had read (here ``GET /admin/secret`` past a rule refusing ``/admin``)."""
    port, up = edge
    since = len(up.requests())
    smuggled = b"GET /admin/secret HTTP/1.1\r\nHost: guarded.test\r\n\r\n"
    head = b"POST /echo HTTP/1.1\r\nHost: guarded.test\r\n" + connection
    assert _exchange(port, head + b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled)[0] == 200
    time.sleep(0.2)  # (a smuggled second request would reach the upstream right after the first)
    seen = up.requests()[since:]
    assert [r["target"] for r in seen] == ["/echo"], seen
    assert seen[0]["body_length"] == len(smuggled)


def test_connection_option_cannot_unframe_a_chunked_body(edge) -> None:
    port, up = edge
    since = len(up.requests())
    smuggled = b"GET /admin/secret HTTP/1.1\r\nHost: guarded.test\r\n\r\n"
    head = b"POST /echo HTTP/1.1\r\nHost: guarded.test\r\nConnection: transfer-encoding\r\n"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    assert _exchange(port, head + b"Transfer-Encoding: chunked\r\n\r\n" + body)[0] == 200
    time.sleep(0.2)
    seen = up.requests()[since:]
    assert [r["target"] for r in seen] == ["/echo"], seen
    assert seen[0]["body_length"] == len(smuggled)


@pytest.mark.parametrize("name", [b"X-Tenant ", b"X-Tenant\t", b" X-Tenant", b"X-Tenant\x00"])
def test_header_names_with_whitespace_are_refused(edge, name: bytes) -> None:
    """``X-Tenant : a`` is not ``x-tenant`` to the gateway; a lenient upstream trims it."""
    port, up = edge
    since = len(up.requests())
    status = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: tenant.test\r\n" + name + b": a\r\n\r\n")[0]
    assert status == 400
    assert _targets(up, since) == []


def test_connection_option_is_removed_before_the_policies(edge) -> None:
    """A header the client names in ``Connection`` is this hop's: it is gone before any policy
    reads it (the upstream never gets it), so a rule cannot be satisfied by a value the upstream
    does not see."""
    port, up = edge
    since = len(up.requests())
    status = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: tenant.test\r\nConnection: x-tenant\r\nX-Tenant: a\r\n\r\n")
    assert status[0] == 403
    assert _targets(up, since) == []
    status = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: tenant.test\r\nConnection: x-other\r\nX-Tenant: a\r\n\r\n")
    assert status[0] == 200


@pytest.mark.parametrize("listed", [b"x-user", b"X-User", b"keep-alive, x-user"])
def test_connection_option_cannot_remove_a_header_the_gateway_sets(edge, listed: bytes) -> None:
    """``requestHeaderModifier.set`` replaces the client's ``x-user``; naming ``x-user`` in
    ``Connection`` once made the gateway strip its own value on the way out."""
    port, up = edge
    status, _, body = _exchange(
        port, b"GET /echo HTTP/1.1\r\nHost: stamped.test\r\nConnection: " + listed + b"\r\nX-User: admin\r\n\r\n"
    )
    assert status == 200
    sent = [v for k, v in json.loads(body)["headers"] if k == "x-user"]
    assert sent == ["gateway"]


@pytest.mark.parametrize("name", [b"X_User", b"x_user", b"X_USER"])
def test_underscore_spelling_of_a_header_the_gateway_sets_is_removed(edge, name: bytes) -> None:
    """``requestHeaderModifier.set`` makes ``x-user`` the gateway's; a CGI-style upstream (WSGI,
    PHP, Rack) reads a client's ``X_User`` as the same ``HTTP_X_USER``, so it is removed too."""
    port, up = edge
    status, _, body = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: stamped.test\r\n" + name + b": admin\r\n\r\n")
    assert status == 200
    sent = [[k, v] for k, v in json.loads(body)["headers"] if k.replace("_", "-") == "x-user"]
    assert sent == [["x-user", "gateway"]], sent


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Authorization: Basic Zm9vOmJhcg==\r\nAuthorization: Bearer sk-forged\r\n", 401),
        (b"Authorization: Basic Zm9vOmJhcg==\r\nauthorization: bearer sk-forged\r\n", 401),
        (b"Authorization: Bearer sk-forged\r\nAuthorization: Bearer " + API_KEY.encode() + b"\r\n", 401),
        (b"Authorization: Bearer " + API_KEY.encode() + b"\r\nAuthorization: Bearer sk-forged\r\n", 200),
        (b"Authorization: Basic Zm9vOmJhcg==\r\nAuthorization: Bearer " + API_KEY.encode() + b"\r\n", 200),
    ],
)
def test_repeated_credential_header_cannot_hide_a_key(edge, headers: bytes, status: int) -> None:
    """``mode: optional`` checks a key that is present. A first ``Authorization`` without the
    ``Bearer`` prefix once counted as no key, and the second, a bearer token nothing had checked,
    reached the upstream. Accepted, every ``Authorization`` header is taken off the request."""
    port, _ = edge
    answer = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: keyed.test\r\n" + headers + b"\r\n")
    assert answer[0] == status
    if status == 200:
        assert [k for k, _ in json.loads(answer[2])["headers"] if k == "authorization"] == []


def test_repeated_credential_header_cannot_hide_a_key_over_http2(edge) -> None:
    port, _ = edge
    with RawH2Client(port) as client:
        basic = ("authorization", "Basic Zm9vOmJhcg==")
        forged = client.request("/echo", authority="keyed.test", headers=[basic, ("authorization", "Bearer sk-x")])
        assert client.response(forged).status == 401
        good = client.request("/echo", authority="keyed.test", headers=[basic, ("authorization", f"Bearer {API_KEY}")])
        answer = client.response(good)
    assert answer.status == 200
    assert [k for k, _ in json.loads(answer.body)["headers"] if k == "authorization"] == []


# ---------------------------------------------------------------------------------------- CEL inputs


@pytest.mark.parametrize(
    "host",
    [b"ADMIN.example", b"Admin.Example:80", b"admin.example.", b"admin.example..", b"ADMIN.EXAMPLE.:8080"],
)
def test_cel_reads_the_host_routing_reads(edge, host: bytes) -> None:
    """Routing takes a host case-insensitively and without its trailing dot (so does an
    upstream's virtual hosting); CEL once read the bytes as sent, so ``ADMIN.example`` passed a
    rule about ``admin.example``. The host is one spelling from the head on."""
    port, up = edge
    since = len(up.requests())
    assert _exchange(port, b"GET /echo HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")[0] == 403
    assert _targets(up, since) == []


def test_upstream_gets_the_host_cel_read(edge) -> None:
    port, _ = edge
    status, _, body = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: Public.Example.:8080\r\n\r\n")
    assert status == 200
    assert [v for k, v in json.loads(body)["headers"] if k == "host"] == ["public.example:8080"]


def test_cel_reads_the_host_routing_reads_over_http2(edge) -> None:
    port, up = edge
    since = len(up.requests())
    with RawH2Client(port) as client:
        client.conn.config.validate_outbound_headers = False
        for authority in ("ADMIN.example", "admin.example.:80"):
            assert client.response(client.request("/echo", authority=authority)).status == 403
        # a host field that is the same host spelled otherwise: one spelling reaches the upstream
        stream = client.request("/echo", authority="Public.Example.", headers=[("host", "PUBLIC.example")])
        answer = client.response(stream)
    assert answer.status == 200
    assert [v for k, v in json.loads(answer.body)["headers"] if k == "host"] == ["public.example"]
    assert _targets(up, since) == ["/echo"]


@pytest.mark.parametrize("host", [b".", b"..:80", b"%61dmin.example", b"admin%2eexample"])
def test_a_host_of_dots_alone_or_percent_encoded_is_refused(edge, host: bytes) -> None:
    port, up = edge
    since = len(up.requests())
    assert _exchange(port, b"GET /echo HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")[0] == 400
    assert _targets(up, since) == []


@pytest.mark.parametrize(
    "path",
    [b"//admin", b"/x/../admin", b"/%61dmin", b"/./admin", b"/admin?x=1", b"/admin;x", b"/x/%2e%2e/admin", b"/admin#x"],
)
def test_cel_path_is_the_path_routing_and_the_upstream_get(edge, path: bytes) -> None:
    port, up = edge
    since = len(up.requests())
    assert _exchange(port, b"GET " + path + b" HTTP/1.1\r\nHost: guarded.test\r\n\r\n")[0] == 403
    assert _targets(up, since) == []


def test_a_fragment_is_not_the_path(edge) -> None:
    port, up = edge
    since = len(up.requests())
    assert _exchange(port, b"GET /echo#/admin HTTP/1.1\r\nHost: guarded.test\r\n\r\n")[0] == 200
    assert _targets(up, since) == ["/echo"]


@pytest.mark.parametrize("path", [b"/;x/admin", b"/;/admin/x", b"/echo/;x/../../admin"])
def test_empty_segment_with_parameters_is_refused(edge, path: bytes) -> None:
    """Servlet containers drop a segment's parameters and merge the empty segment left:
    ``/;x/admin`` is ``/admin`` to them, while CEL and routing read a path that does not start
    with ``/admin``."""
    port, up = edge
    since = len(up.requests())
    assert _exchange(port, b"GET " + path + b" HTTP/1.1\r\nHost: guarded.test\r\n\r\n")[0] == 400
    assert _targets(up, since) == []


# ---------------------------------------------------------------------------------------- A2A bodies


def _a2a(port: int, body: bytes, path: bytes = b"/") -> tuple[int, dict[str, str], bytes]:
    head = b"POST " + path + b" HTTP/1.1\r\nHost: agent.test\r\nContent-Type: application/json\r\n"
    return _exchange(port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)


A2A_GET = b'{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":%s}'


@pytest.mark.parametrize(
    "body",
    [
        # Go's encoding/json reads Method/METHOD/paramſ as method/params, the last one winning.
        b'{"jsonrpc":"2.0","id":3,"method":"tasks/get","Method":"tasks/cancel","params":{"id":"a-1"}}',
        b'{"jsonrpc":"2.0","id":3,"METHOD":"tasks/cancel","method":"tasks/get","params":{"id":"a-1"}}',
        b'{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"id":"a-1"},"param\\u017f":{"id":"b-1"}}',
        A2A_GET % b'{"id":"a-1","ID":"b-1"}',
        A2A_GET % b'{"id":"a-1","taskId":"a-1","TaskId":"b-1"}',
        b'{"jsonrpc":"2.0","id":3,"method":"message/send","params":{"message":{"taskId":"a-1","tas\\u212aId":"b-1"}}}',
        b'{"jsonrpc":"2.0","id":3,"method":"message/send","params":{"message":{"taskId":"a-1"},"Message":{"taskId":"b-1"}}}',
    ],
)
def test_a2a_case_variants_of_what_the_policy_read(edge, body: bytes) -> None:
    """The body goes to the agent as it came; an agent on Go's encoding/json reads ``Method``
    as ``method`` and ``TaskId`` as ``taskId`` (CVE-2026-27896), so the policy must not have
    read another member than the one the agent will."""
    port, up = edge
    since = len(up.requests())
    status, _, answer = _a2a(port, body)
    assert status in (200, 403), answer
    assert b'"error"' in answer or status == 403, answer
    assert _targets(up, since) == []


def test_a2a_http_json_case_variants(edge) -> None:
    port, up = edge
    since = len(up.requests())
    status, _, answer = _a2a(port, b'{"message":{"taskId":"a-1","TaskId":"b-1"}}', b"/message:send")
    assert status == 400, answer
    assert _a2a(port, b'{"message":{"taskId":"a-1"}}', b"/message:send")[0] == 200
    assert len(_targets(up, since)) == 1


@pytest.mark.parametrize(
    "body",
    [
        A2A_GET % b'{"id":"b-1","id":"a-1"}',
        A2A_GET % b'{"id" : "b-1" , "id" : "a-1"}',
        b'{"jsonrpc":"2.0","id":3,"method":"message/send","params":{"message":{"taskId":"b-1","taskId":"a-1"}}}',
        b'{"jsonrpc":"2.0","id":3,"method":"message/send","params":{"message":{"taskId":"b-1","t\\u0061skId":"a-1"}}}',
        b'{"jsonrpc":"2.0","id":3,"method":"message/send","params":{"message":{"taskId":"a-1","parts":[{"kind":"text","kind":"file"}]}}}',
    ],
)
def test_a2a_repeated_names_in_params(edge, body: bytes) -> None:
    """The facts read the last of a repeated name (``a-1``, which the rule allows); an agent
    that reads the first would act on ``b-1``. The body goes to the agent as it came, so a
    name repeated in any object of the params is refused (-32602)."""
    port, up = edge
    since = len(up.requests())
    status, _, answer = _a2a(port, body)
    assert status == 200 and json.loads(answer)["error"]["code"] == -32602, answer
    assert _targets(up, since) == []


DEEP = b"[" * 200 + b"]" * 200  # deeper than the native scanner's 128 levels, within orjson's 1024


@pytest.mark.parametrize("path", [b"/", b"/message:send"])
def test_a2a_repeated_names_cannot_hide_behind_a_deep_value(edge, path: bytes) -> None:
    """The duplicate search gives up past 128 levels; a body that nests that deep anywhere must
    be refused, not pass as having no repeated name."""
    port, up = edge
    since = len(up.requests())
    message = b'{"taskId":"b-1","taskId":"a-1","pad":' + DEEP + b"}"
    if path == b"/":
        body = b'{"jsonrpc":"2.0","id":3,"method":"message/send","params":{"message":' + message + b"}}"
    else:
        body = b'{"message":' + message + b"}"
    status, _, answer = _a2a(port, body, path)
    assert status in (200, 400), answer
    assert status == 400 or json.loads(answer)["error"]["code"] in (-32600, -32602, -32700), answer
    assert _targets(up, since) == []


def test_a2a_plain_request_reaches_the_agent(edge) -> None:
    port, up = edge
    since = len(up.requests())
    assert _a2a(port, A2A_GET % b'{"id":"a-1"}')[0] == 200
    assert _a2a(port, A2A_GET % b'{"id":"b-1"}')[0] == 403
    assert len(_targets(up, since)) == 1


# ---------------------------------------------------------------------------------------- MCP bodies

MCP_RULES: list[Any] = ["true", {"deny": 'has(mcp.tool) && mcp.tool.name == "whoami"'}]


@pytest.fixture(scope="module")
def mcp_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """A gateway whose MCP route denies the tool ``whoami`` of its one target (an official SDK
    server over streamable HTTP), and a client with an initialized session."""
    tmp: Path = tmp_path_factory.mktemp("attack-parsing-mcp")
    procs: list[Any] = []
    try:
        alpha = McpServerProcess(tmp, "alpha", "http")
        procs.append(alpha)
        port = free_port()
        cfg = mcp_config(port, [{"name": "alpha", "mcp": {"host": alpha.url}}])
        cfg["binds"][0]["listeners"][0]["routes"][0]["policies"] = {"mcpAuthorization": {"rules": MCP_RULES}}
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        procs.append(Gateway(gw_dir, cfg))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
            init = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            }
            answer = http.post("/mcp", json=init, headers=accept)
            assert answer.status_code == 200, answer.text
            headers = {**accept, "mcp-session-id": answer.headers["mcp-session-id"]}
            http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            yield http, headers
    finally:
        for proc in reversed(procs):
            proc.stop()


def _mcp(mcp_edge: tuple[httpx.Client, dict[str, str]], body: bytes) -> dict[str, Any]:
    http, headers = mcp_edge
    answer = http.post("/mcp", content=body, headers={**headers, "accept": "application/json"})
    return dict(answer.json())


def _ran(answer: dict[str, Any]) -> str | None:
    """The text of a tool's answer, or None when the call was refused."""
    if "error" in answer or answer.get("result", {}).get("isError"):
        return None
    return str(answer["result"]["content"][0]["text"])


CALL = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":%s}'


@pytest.mark.parametrize(
    "params",
    [
        b'{"name":"echo","name":"whoami","arguments":{"text":"x"}}',
        b'{"name":"who\\u0061mi","arguments":{}}',
        b'{"n\\u0061me":"whoami","arguments":{}}',
        b'{"name":"echo","arguments":{"text":"x"},"n\\u0061me":"whoami"}',
    ],
)
def test_mcp_denied_tool_behind_duplicate_or_escaped_names(mcp_edge, params: bytes) -> None:
    """The rule reads the name the upstream would run (JSON's last duplicate, escapes decoded),
    and the upstream gets the message re-serialized from what the rule read."""
    answer = _mcp(mcp_edge, CALL % params)
    assert _ran(answer) is None, answer
    assert answer["error"]["code"] == -32602


def test_mcp_duplicate_name_runs_the_one_the_rule_read(mcp_edge) -> None:
    answer = _mcp(mcp_edge, CALL % b'{"name":"whoami","name":"echo","arguments":{"text":"x"}}')
    assert _ran(answer) == "alpha: x"


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":7,"method":"tools/list","method":"tools/call","params":{"name":"whoami"}}',
        b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"},"params":{"name":"whoami"}}',
        b'{"jsonrpc":"2.0","id":7,"method":"tools/c\\u0061ll","params":{"name":"whoami"}}',
        b'{"jsonrpc":"2.0","id":7,"met\\u0068od":"tools/call","params":{"name":"whoami"}}',
    ],
)
def test_mcp_duplicate_or_escaped_envelope_members(mcp_edge, body: bytes) -> None:
    assert _ran(_mcp(mcp_edge, body)) is None


@pytest.mark.parametrize(
    "params",
    [
        b'{"name":"echo","NAME":"whoami","arguments":{}}',
        b'{"name":"echo","N\\u0061me":"whoami","arguments":{}}',
        b'{"Name":"whoami","name":"echo","arguments":{}}',
        b'{"name":"echo","arguments":{"text":"x"},"Arguments":{"text":"y"}}',
        # segmentio/encoding before 0.5.4 (the Go SDK's first fix) read "name\u0000" as "name"
        b'{"name":"echo","name\\u0000":"whoami","arguments":{}}',
    ],
)
def test_mcp_case_variants_of_the_tool_name(mcp_edge, params: bytes) -> None:
    """The params go upstream re-serialized with every member; a server on Go's encoding/json
    (older MCP Go SDKs, mcp-go) reads ``NAME`` as ``name`` and the last one wins, so
    ``{"name":"echo","NAME":"whoami"}`` would run the denied tool (CVE-2026-27896)."""
    answer = _mcp(mcp_edge, CALL % params)
    assert answer.get("error", {}).get("code") == -32600, answer


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":7,"method":"tools/call","Method":"tools/list","params":{"name":"echo"}}',
        b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"},"PARAMS":{"name":"whoami"}}',
        b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"},"params\\u0000":{"name":"whoami"}}',
    ],
)
def test_mcp_case_variants_of_envelope_members(mcp_edge, body: bytes) -> None:
    assert _mcp(mcp_edge, body).get("error", {}).get("code") == -32600


@pytest.mark.parametrize(
    "headers",
    [
        {"mcp-method": "tools/list"},
        {"mcp-name": "echo"},
        {"mcp-method": "tools/call", "mcp-name": "=?base64?ZWNobw==?="},  # "echo"
    ],
)
def test_mcp_routing_headers_of_a_legacy_message_must_match_its_body(mcp_edge, headers: dict[str, str]) -> None:
    """A route policy reads ``Mcp-Method``/``Mcp-Name`` before the body; a legacy-shape message
    that carries them with other values than its body's is refused (-32020), as a modern one is."""
    http, session = mcp_edge
    body = CALL % b'{"name":"whoami","arguments":{}}'
    answer = http.post("/mcp", content=body, headers={**session, "accept": "application/json", **headers})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == -32020


def test_mcp_routing_headers_that_match_the_body_pass(mcp_edge) -> None:
    http, session = mcp_edge
    body = CALL % b'{"name":"echo","arguments":{"text":"x"}}'
    sent = {**session, "accept": "application/json", "mcp-method": "tools/call", "mcp-name": "echo"}
    assert _ran(http.post("/mcp", content=body, headers=sent).json()) == "alpha: x"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (CALL % b'{"name":"whoami\\ud800"}', -32700),  # a lone surrogate
        (CALL % b'{"name":"whoami\xff"}', -32700),  # not UTF-8
        (b"\xef\xbb\xbf" + CALL % b'{"name":"whoami"}', -32700),  # a byte order mark
        (CALL % b'{"name":"echo","arguments":{"text":"x"}}' + CALL % b'{"name":"whoami"}', -32700),
        (b"[" + CALL % b'{"name":"whoami"}' + b"]", -32600),  # a batch (removed in 2025-06-18)
        (b'{"jsonrpc":"2.0","id":1e2,"method":"tools/call","params":{"name":"whoami"}}', -32600),
        (b'{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"tools/call"}', -32600),
        (b'{"jsonrpc":"2.0","id":true,"method":"tools/call","params":{"name":"whoami"}}', -32600),
    ],
)
def test_mcp_malformed_bodies_are_refused(mcp_edge, body: bytes, code: int) -> None:
    answer = _mcp(mcp_edge, body)
    assert answer.get("error", {}).get("code") == code, answer


# ---------------------------------------------------------------------------------------- LLM bodies

LLM_KEY = "key-cheap-only"


@pytest.fixture(scope="module")
def llm_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, FakeProvider]]:
    """An LLM gateway: ``cheap`` and ``pricey`` go to the provider as the client sent them
    (``passthrough``), ``shaped`` is re-serialized; the one key may call ``cheap`` and ``shaped``;
    a prompt guard refuses ``forbidden-word``."""
    tmp: Path = tmp_path_factory.mktemp("attack-parsing-llm")
    procs: list[Any] = []
    try:
        fake = FakeProvider(tmp, "openai")
        procs.append(fake)
        params = {"apiKey": PROVIDER_KEY, "baseUrl": f"{fake.base}/v1"}
        models = [
            {"name": "cheap", "provider": "openAI", "params": params, "passthrough": "detect"},
            {"name": "pricey", "provider": "openAI", "params": params, "passthrough": "opaque"},
            {"name": "shaped", "provider": "openAI", "params": params},
        ]
        keys = [{"key": LLM_KEY, "allowedModels": ["cheap", "shaped"]}]
        port = free_port()
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        guard = {"request": [{"regex": {"action": "reject", "rules": [{"pattern": "forbidden-word"}]}}]}
        policies = {"apiKey": {"mode": "strict", "keys": keys}, "ai": {"promptGuard": guard}}
        config = {"llm": {"port": port, "models": models, "policies": policies}}
        procs.append(Gateway(gw_dir, config))
        yield port, fake
    finally:
        for proc in reversed(procs):
            proc.stop()


def _chat(port: int, body: bytes) -> tuple[int, dict[str, str], bytes]:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: llm.test\r\nAuthorization: Bearer " + LLM_KEY.encode()
    head += b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    with raw_connection(port, timeout=15) as sock:
        sock.sendall(head + body)
        return read_response(sock)


MESSAGES = b'"messages":[{"role":"user","content":"hi"}]'


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"pricey",' + MESSAGES + b',"model":"cheap"}',
        b'{"model":"pricey",' + MESSAGES + b',"mod\\u0065l":"cheap"}',
        b'{"model":"cheap",' + MESSAGES + b',"stream":true,"stream":false}',
        b'{"model":"cheap","messages":[{"role":"user","content":"a"}],' + MESSAGES + b"}",
    ],
)
def test_llm_body_sent_as_it_came_cannot_repeat_a_key(llm_edge, body: bytes) -> None:
    """A passthrough model's body goes to the provider byte for byte, while allowedModels,
    routing, streaming and budgets read the gateway's parse (JSON's last duplicate). A provider
    that reads the first ``model`` would serve ``pricey`` to a key allowed ``cheap`` only."""
    port, fake = llm_edge
    before = fake.count()
    status, _, answer = _chat(port, body)
    assert status == 400, answer
    assert b"more than once" in answer
    assert fake.count() == before


def test_llm_body_nested_past_the_search_cannot_hide_a_repeated_key(llm_edge) -> None:
    """The duplicate search stops past 128 levels; a body nesting that deep is refused rather
    than passed as having no repeated key (``pricey`` first, ``cheap`` last, a deep ``pad``)."""
    port, fake = llm_edge
    before = fake.count()
    body = b'{"model":"pricey",' + MESSAGES + b',"model":"cheap","pad":' + DEEP + b"}"
    status, _, answer = _chat(port, body)
    assert status == 400, answer
    assert fake.count() == before


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"shaped",' + MESSAGES + b',"MODEL":"pricey"}',
        b'{"model":"shaped",' + MESSAGES + b',"Messages":[{"role":"user","content":"unguarded"}]}',
        b'{"model":"shaped","Messages":[{"role":"user","content":"unguarded"}]}',
        b'{"model":"shaped",' + MESSAGES + b',"\\u017ftream":true}',
        b'{"model":"cheap",' + MESSAGES + b',"Model":"pricey"}',
        b'{"model":"cheap",' + MESSAGES + b',"model\\u0000":"pricey"}',
    ],
)
def test_llm_case_variants_of_keys_the_gateway_reads(llm_edge, body: bytes) -> None:
    """A provider on Go's encoding/json (Ollama, ...) reads ``MODEL`` or ``Messages`` as
    ``model``/``messages``: allowedModels, routing and guards would have read other values."""
    port, fake = llm_edge
    before = fake.count()
    status, _, answer = _chat(port, body)
    assert status == 400, answer
    assert b"another spelling" in answer
    assert fake.count() == before


@pytest.mark.parametrize("value", [b"1", b'"true"', b"[true]"])
def test_llm_stream_is_a_boolean(llm_edge, value: bytes) -> None:
    """A lenient provider streams for ``"stream": 1``; the gateway, reading ``true`` only, would
    wait for one JSON answer and could not count the usage its budgets charge."""
    port, fake = llm_edge
    before = fake.count()
    status, _, answer = _chat(port, b'{"model":"shaped",' + MESSAGES + b',"stream":' + value + b"}")
    assert status == 400 and b"stream must be true or false" in answer
    assert fake.count() == before


def test_llm_duplicate_keys_in_a_re_serialized_body_are_what_the_policy_read(llm_edge) -> None:
    """A body the gateway re-serializes goes with the values the policies read."""
    port, fake = llm_edge
    status, _, _ = _chat(port, b'{"model":"pricey",' + MESSAGES + b',"model":"shaped"}')
    assert status == 200
    assert json.loads(fake.last()["body"])["model"] == "shaped"
    assert _chat(port, b'{"model":"shaped",' + MESSAGES + b',"model":"pricey"}')[0] == 403
    assert _chat(port, b'{"model":"cheap",' + MESSAGES + b"}")[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"shaped","messages":[{"role":"user","content":"forbidden-word"}],' + MESSAGES + b"}",
        b'{"model":"shaped",' + MESSAGES + b',"messages":[{"role":"user","content":"forbidden-word"}]}',
        b'{"model":"shaped",' + MESSAGES + b',"mess\\u0061ges":[{"role":"user","content":"forbidden-word"}]}',
        b'{"model":"shaped","messages":[{"role":"user","content":"forbidden-word","content":"hi"}]}',
    ],
)
def test_llm_prompt_guard_reads_the_prompt_the_provider_gets(llm_edge, body: bytes) -> None:
    """A repeated or escaped ``messages`` (or ``content``) key: the guard reads the gateway's
    parse (the last value), and the provider gets the body re-serialized from that parse, so
    the word either is refused or never reaches the provider."""
    port, fake = llm_edge
    status, _, _ = _chat(port, body)
    if status == 200:
        assert b"forbidden-word" not in json.dumps(json.loads(fake.last()["body"])).encode()
    else:
        assert status != 500


# ---------------------------------------------------------------------------------------- MCP federation


def test_mcp_federated_name_cannot_reach_another_target(tmp_path, processes) -> None:
    """Targets ``a`` and ``b`` (target names hold no ``_``, so a prefixed name splits one way
    only), ``b`` hidden by the rule: no spelling of a name runs a tool of ``b``, and the rule
    judges the target that would run it."""
    a, b = McpServerProcess(tmp_path, "a", "http"), McpServerProcess(tmp_path, "b", "http")
    processes += [a, b]
    port = free_port()
    cfg = mcp_config(port, [{"name": "a", "mcp": {"host": a.url}}, {"name": "b", "mcp": {"host": b.url}}])
    rules: list[Any] = ["true", {"deny": 'has(mcp.tool) && mcp.tool.target == "b"'}]
    cfg["binds"][0]["listeners"][0]["routes"][0]["policies"] = {"mcpAuthorization": {"rules": rules}}
    gw_dir = tmp_path / "gw"
    gw_dir.mkdir()
    processes.append(Gateway(gw_dir, cfg))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
        accept = {"accept": "application/json", "content-type": "application/json"}
        info = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        answer = http.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": info}, headers=accept
        )
        session = (http, {**accept, "mcp-session-id": answer.headers["mcp-session-id"]})
        echo = b',"arguments":{"text":"x"}}'
        assert _ran(_mcp(session, CALL % (b'{"name":"a_echo"' + echo))) == "a: x"
        for name in (b"b_echo", b"b\\u005fecho", b"\\u0062_echo", b"B_echo", b"a_b_echo", b"b__echo", b"b_echo "):
            answer = _mcp(session, CALL % (b'{"name":"' + name + b'"' + echo))
            assert _ran(answer) is None, (name, answer)
