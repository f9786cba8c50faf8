"""Attacks from one MCP target of a federation on the others and on the gateway, and from one
client on another's session, through the real daemon (audit 14).

The attacker is a hostile or compromised server behind the gateway (``tests.support.
hostile_mcp_server``: it lists whatever names it is told to, spoofs of another target's
included, and can misbehave), or a client. What is checked:

- names: prefixed tools, prompts and resource URIs of one target never route to another, and
  ``mcpAuthorization`` judges the target and name a call is routed by (held); with
  ``prefixMode: never`` a name two targets offer goes to neither (before: to the last lister);
- cursors: a forged composite cursor pages only through what the caller may see (held);
- what a target sends back: a list nested deeper than the gateway writes fails only its
  target under tool pinning (held);
- stdio servers: the gateway's own secrets are not in their environment (before: they were);
- OpenAPI documents: ``$ref`` fan-out that would inline to billions of values is refused;
- a client's answer to a relayed server request with a malformed id is dropped (202).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.support.gateway import REPO, binds, free_port, mcp_config

ACCEPT = "application/json, text/event-stream"


def hostile(name: str, **spec: Any) -> dict[str, Any]:
    """A target running ``tests.support.hostile_mcp_server`` with ``spec``."""
    args = ["-m", "tests.support.hostile_mcp_server", "--name", name, "--spec", json.dumps(spec)]
    return {"name": name, "stdio": {"cmd": sys.executable, "args": args, "env": {"PYTHONPATH": str(REPO)}}}


def mcp_route(port: int, targets: list[dict[str, Any]], policies: dict[str, Any], **backend: Any) -> dict[str, Any]:
    """``mcp_config`` with route ``policies``."""
    return binds(port, [{"name": "mcp", "policies": policies, "backends": [{"mcp": {"targets": targets, **backend}}]}])


def _decode(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer of a POST, answered as JSON or as an event stream (its last message)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        messages = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
        answers = [m for m in messages if "result" in m or "error" in m]
        return answers[-1]
    return response.json()


class RawSession:
    """A legacy (2025-06-18) MCP session spoken in raw JSON-RPC over httpx."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.http = httpx.Client(timeout=30.0, headers={"accept": ACCEPT, **(headers or {})})
        self.ids = 0
        answer = self.http.post(
            url,
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            },
        )
        assert answer.status_code == 200, answer.text
        self.sid = answer.headers["mcp-session-id"]
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, msg: dict[str, Any], timeout: float = 30.0) -> httpx.Response:
        return self.http.post(self.url, json=msg, headers={"mcp-session-id": self.sid}, timeout=timeout)

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self.ids += 1
        msg = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params or {}}
        return _decode(self.post(msg, timeout))

    def names(self, method: str = "tools/list", key: str = "tools", field: str = "name") -> list[str]:
        answer = self.request(method)
        assert "result" in answer, answer
        return [item[field] for item in answer["result"][key]]

    def call(self, tool: str) -> dict[str, Any]:
        return self.request("tools/call", {"name": tool, "arguments": {}})

    def close(self) -> None:
        self.http.close()


def _text(answer: dict[str, Any]) -> str:
    assert "result" in answer, answer
    return str(answer["result"]["content"][0]["text"])


def _unknown(answer: dict[str, Any]) -> bool:
    return "error" in answer and answer["error"]["code"] == -32602


@pytest.fixture
def session() -> Iterator[Any]:
    opened: list[RawSession] = []

    def open_session(url: str, headers: dict[str, str] | None = None) -> RawSession:
        s = RawSession(url, headers)
        opened.append(s)
        return s

    yield open_session
    for s in opened:
        s.close()


# ---------------------------------------------------------------------------------------- names


SPOOFS = ["b_secret", "B_secret", "b__secret", "ｂ_secret", "b\u200b_secret", "", "_secret", "x" * 5000]


def test_prefixed_names_of_one_target_never_reach_another(gateway, session):
    """Target ``a`` lists tools spelled as ``b``'s (the separator, case, a fullwidth or invisible
    look-alike, empty and very long names) and resource URIs that embed ``b``'s prefix. Every
    one of them stays ``a``'s: listed under ``a_``/``a+``, served by ``a``, and judged by
    mcpAuthorization as ``a``'s, while the rule that hides ``b``'s ``secret`` keeps holding."""
    port = free_port()
    rules = [{"deny": 'has(mcp.tool) && mcp.tool.target == "b" && mcp.tool.name == "secret"'}]
    gateway(
        mcp_route(
            port,
            [
                hostile("a", tools=SPOOFS, prompts=["b_greet"], resources=["b+memo://secret", "memo://x"]),
                hostile("b", tools=["secret", "open"], prompts=["greet"], resources=["memo://secret"]),
            ],
            {"mcpAuthorization": {"rules": ["true", *rules]}},
        )
    )
    s = session(f"http://127.0.0.1:{port}/mcp")
    tools = s.names()
    assert sorted(tools) == sorted([f"a_{n}" for n in SPOOFS] + ["b_open"])
    for spoof in SPOOFS:
        assert _text(s.call(f"a_{spoof}")) == f"a:{spoof}"
    # b's tool stays hidden and refused, however it is spelled.
    for attempt in ("b_secret", "B_secret", "b__secret", "ｂ_secret", "b_secret ", "a_b_secret_"):
        answer = s.call(attempt)
        assert "error" in answer or _text(answer) != "b:secret", attempt
    assert _unknown(s.call("b_secret"))
    assert _text(s.call("b_open")) == "b:open"
    # Prompts and resources alike.
    assert sorted(s.names("prompts/list", "prompts")) == ["a_b_greet", "b_greet"]
    got = s.request("prompts/get", {"name": "a_b_greet"})
    assert got["result"]["messages"][0]["content"]["text"] == "a:b_greet"
    uris = s.names("resources/list", "resources", "uri")
    assert sorted(uris) == ["a+b+memo://secret", "a+memo://x", "b+memo://secret"]
    read = s.request("resources/read", {"uri": "a+b+memo://secret"})
    assert read["result"]["contents"][0]["text"] == "a:b+memo://secret"
    assert read["result"]["contents"][0]["uri"] == "a+b+memo://secret"
    read = s.request("resources/read", {"uri": "b+memo://secret"})
    assert read["result"]["contents"][0]["text"] == "b:memo://secret"
    for uri in ("memo://secret", "B+memo://secret", "b+", "+memo://secret", "a+"):
        answer = s.request("resources/read", {"uri": uri})
        assert _unknown(answer), (uri, answer)


def test_prefix_never_a_name_two_targets_offer_reaches_neither(gateway, session):
    """``prefixMode: never``: a name offered by two targets is hidden from the list, and a call
    of it must reach neither (agentgateway: "served by multiple targets"). Before, the call went
    to the target listed last, so a hostile target that lists ``deploy`` after the real one
    captured every call meant for it."""
    port = free_port()
    gateway(
        mcp_config(
            port,
            [hostile("good", tools=["deploy", "status"]), hostile("evil", tools=["deploy", "other"])],
            prefixMode="never",
        )
    )
    s = session(f"http://127.0.0.1:{port}/mcp")
    assert sorted(s.names()) == ["other", "status"]
    answer = s.call("deploy")
    assert "error" in answer, answer
    assert "multiple targets" in answer["error"]["message"]
    assert _text(s.call("status")) == "good:status"
    assert _text(s.call("other")) == "evil:other"


# ---------------------------------------------------------------------------------------- stdio


def test_stdio_servers_do_not_get_the_gateways_own_secrets(gateway, session):
    """A stdio server inherits the gateway's environment (as in agentgateway: ``clear_env`` to
    start from nothing), but not the gateway's own secrets: the key that seals MCP session ids,
    input_required states and oidc cookies (the run's key, or ``SESSION_KEY``) and the directory
    of the workers' private relay sockets. Before, every server got them: one that logged or
    sent its environment handed out what forges any client's MCP session. The config's ``env``
    can still pass one on by name."""
    port = free_port()
    key = "ab" * 32
    env_target = hostile("srv", env=True)
    gateway(mcp_config(port, [env_target]), env={"SESSION_KEY": key, "AUDIT_ORDINARY": "kept"})
    s = session(f"http://127.0.0.1:{port}/mcp")
    child = json.loads(_text(s.call("env")))
    assert child.get("AUDIT_ORDINARY") == "kept"
    for name in ("SESSION_KEY", "AGENTGATEWAY_EPHEMERAL_SESSION_KEY", "AGENTGATEWAY_RUNTIME_DIR"):
        assert name not in child, name
    assert key not in json.dumps(child)
    # Named in the config's env: passed on.
    port = free_port()
    passed = hostile("srv", env=True)
    passed["stdio"]["env"]["SESSION_KEY"] = "${SESSION_KEY}"
    gateway(mcp_config(port, [passed]), env={"SESSION_KEY": key})
    s = session(f"http://127.0.0.1:{port}/mcp")
    assert json.loads(_text(s.call("env"))).get("SESSION_KEY") == key


# ----------------------------------------------------------------------- what a target answers


def _deep(levels: int) -> dict[str, Any]:
    """A JSON schema nested ``levels`` deep: within what the gateway reads of a message (1,024
    levels), beyond what the list merge takes (128) and what orjson writes (254)."""
    node: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        node = {"type": "object", "properties": {"p": node}}
    return node


DEEP_TOOLS = {"tools": [{"name": "deep", "inputSchema": _deep(300)}, {"name": "flat", "inputSchema": {}}]}


def test_a_deeply_nested_list_under_tool_pinning_fails_only_its_target(gateway, session):
    """A target lists a tool whose schema nests 300 levels. The list merge refuses a result
    nested beyond 128 levels as that target's fault (failOpen: the target is left out), but tool
    pinning canonicalized each tool first, and orjson writes at most 254 levels: the error was
    no target's, so ``tools/list`` failed with an internal error for every client of the backend,
    failOpen or not. Now the pinning leaves such a result to the merge."""
    port, closed = free_port(), free_port()
    targets = [hostile("good", tools=["status"]), hostile("evil", tool_list=DEEP_TOOLS)]
    gateway(mcp_config(port, targets, toolPinning={"mode": "hide"}, failureMode="failOpen"))
    gateway(mcp_config(closed, targets, toolPinning={"mode": "flag"}))
    s = session(f"http://127.0.0.1:{port}/mcp")
    assert s.names() == ["good_status"]
    assert _text(s.call("good_status")) == "good:status"
    assert _unknown(s.call("evil_deep"))
    answer = session(f"http://127.0.0.1:{closed}/mcp").request("tools/list")
    assert "MCP target evil failed tools/list" in answer["error"]["message"], answer


# -------------------------------------------------------------------------------------- OpenAPI


@pytest.fixture
def document_server() -> Iterator[Any]:
    """Serves the OpenAPI documents a test sets (``server.documents[path] = bytes``) on 127.0.0.1."""
    documents: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = documents.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def do_POST(self) -> None:  # a streamable MCP target answering every POST with the document
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.documents = documents  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _fan_out_document(levels: int, width: int) -> dict[str, Any]:
    """One operation whose body schema refers ``width`` times to the next schema, ``levels`` deep."""
    schemas: dict[str, Any] = {
        f"L{i}": {
            "type": "object",
            "properties": {f"p{j}": {"$ref": f"#/components/schemas/L{i + 1}"} for j in range(width)},
        }
        for i in range(levels)
    }
    schemas[f"L{levels}"] = {"type": "string"}
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/L0"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "fan-out", "version": "1"},
        "components": {"schemas": schemas},
        "paths": {"/x": {"post": {"operationId": "bomb", "requestBody": body}}, "/y": {"get": {"operationId": "ok"}}},
    }


def test_an_openapi_document_whose_refs_fan_out_is_refused(gateway, session, document_server):
    """A fetched OpenAPI document whose schemas each refer several times to the next (a YAML
    alias does the same): inlined, 8 properties over 6 levels are 300,000 values, 10 levels a
    billion, built in the worker's event loop while every client of it waits. The document is
    refused once its tools' schemas pass 250,000 values: the target fails its handshake with
    the reason (failOpen: the session goes on without it). Before, it was inlined whatever it
    cost."""
    host = f"http://127.0.0.1:{document_server.server_port}"
    document_server.documents["/bomb.json"] = json.dumps(_fan_out_document(6, 8)).encode()
    document_server.documents["/fine.json"] = json.dumps(_fan_out_document(2, 8)).encode()
    port = free_port()
    targets = [
        {"name": "bomb", "openapi": {"host": host, "schema": {"url": f"{host}/bomb.json"}}},
        {"name": "fine", "openapi": {"host": host, "schema": {"url": f"{host}/fine.json"}}},
        hostile("other", tools=["status"]),
    ]
    gateway(mcp_config(port, targets, failureMode="failOpen"))
    s = session(f"http://127.0.0.1:{port}/mcp")
    assert sorted(s.names()) == ["fine_bomb", "fine_ok", "other_status"]
    closed = free_port()
    gw = gateway(mcp_config(closed, targets[:1]))
    answer = httpx.post(
        f"http://127.0.0.1:{closed}/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        headers={"accept": ACCEPT},
        timeout=30.0,
    ).json()
    assert "more than 250000 values" in answer["error"]["message"], answer
    assert "bomb" in gw.output()


@pytest.mark.parametrize(
    "answer",
    [b'{"ok": true}', b'{"jsonrpc": "2.0", "id": 999, "result": {}}', b"[]"],
    ids=["not-json-rpc", "another-id", "empty-batch"],
)
def test_a_target_answering_json_that_answers_nothing_fails_its_handshake_at_once(
    gateway, session, document_server, answer
):
    """A streamable target that answers a POST with 200 and a JSON body that is not the call's
    JSON-RPC response (another shape, another id) can never answer it on that POST. The call
    waited for its 20 s timeout, holding the client's initialize (and every call) that long; now
    it fails at once with what the target said (failOpen: the session goes on without it)."""
    host = f"http://127.0.0.1:{document_server.server_port}"
    document_server.documents["/odd"] = answer
    port, alone = free_port(), free_port()
    odd = {"name": "odd", "mcp": {"host": f"{host}/odd"}}
    gateway(mcp_config(port, [odd, hostile("other", tools=["status"])], failureMode="failOpen"))
    gw = gateway(mcp_config(alone, [odd]))
    s = session(f"http://127.0.0.1:{port}/mcp")
    assert s.names() == ["other_status"]
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    reply = httpx.post(f"http://127.0.0.1:{alone}/mcp", json=initialize, headers={"accept": ACCEPT}, timeout=10.0)
    assert "answered HTTP 200" in reply.json()["error"]["message"], reply.text
    assert "odd" in gw.output()


# ------------------------------------------------------------------------------- client answers


def test_an_answer_to_a_relayed_request_with_a_malformed_id_is_dropped(gateway, session):
    """Server requests reach the client with ids ``agw/<target>/<upstream id as JSON>``. A client
    answering an id of that form whose last part is not JSON made the gateway raise: HTTP 500 and
    a traceback in the log per message (a client could fill the log with them). Now it is dropped
    like an answer to an id the gateway never sent (202), and the session goes on."""
    port = free_port()
    gw = gateway(mcp_config(port, [hostile("srv", tools=["x"])]))
    s = session(f"http://127.0.0.1:{port}/mcp")
    for bad in ("agw/srv/{", "agw/srv/", 'agw/srv/"unterminated', "agw/nobody/1", "agw/", "other"):
        answer = s.post({"jsonrpc": "2.0", "id": bad, "result": {}})
        assert answer.status_code == 202, (bad, answer.status_code, answer.text)
        answer = s.post({"jsonrpc": "2.0", "id": bad, "error": {"code": 1, "message": "no"}})
        assert answer.status_code == 202, (bad, answer.status_code, answer.text)
    assert _text(s.call("x")) == "srv:x"
    assert "Traceback" not in gw.output()


# ---------------------------------------------------------------------------------------- cursors


def test_a_forged_cursor_pages_only_what_the_caller_may_see(gateway, session):
    """The composite cursor is each target's own cursor by target name, and a client can write
    one (base64 of JSON). Forged to page target ``b``, whose tools mcpAuthorization hides from
    this caller, it lists none of them; one naming a target the backend does not have, or not
    an object of strings, is refused (held)."""
    import base64

    port = free_port()
    rules = [{"deny": 'has(mcp.tool) && mcp.tool.target == "b"'}]
    gateway(
        mcp_route(
            port, [hostile("a", tools=["one"]), hostile("b", tools=["secret"])], {"mcpAuthorization": {"rules": rules}}
        )
    )
    s = session(f"http://127.0.0.1:{port}/mcp")
    assert s.names() == ["a_one"]

    def cursor(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    answer = s.request("tools/list", {"cursor": cursor({"b": "anything"})})
    assert answer["result"]["tools"] == [], answer
    for forged in ({"c": "x"}, {"b": 1}, ["b"], {"b": "x", "": "y"}):
        answer = s.request("tools/list", {"cursor": cursor(forged)})
        assert answer["error"]["message"] == "invalid cursor", (forged, answer)
    assert _unknown(s.call("b_secret"))
