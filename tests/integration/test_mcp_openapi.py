"""A REST service behind the ``openapi`` MCP target: the official SDK client calls its operations
as tools through the real daemon; the service (a real HTTP server) logs what it received."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import sys
import threading

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.support.gateway import Process, free_port, mcp_config, stdio_target, wait_for
from tests.support.rest_service import DOCUMENT

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RestService(Process):
    def __init__(self, tmp_path, port: int) -> None:
        self.port = port
        super().__init__(
            [sys.executable, "-m", "tests.support.rest_service", "--port", str(port)], tmp_path / f"rest-{port}.log"
        )

        def listening() -> bool:
            assert self.alive(), self.output()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
            return False

        wait_for(listening, 30, "REST service")

    def received(self) -> list[dict]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]


@pytest.fixture
def rest_service(tmp_path, processes):
    service = RestService(tmp_path, free_port())
    processes.append(service)
    return service


def _schema_file(tmp_path) -> str:
    path = tmp_path / "pets.yaml"
    path.write_text(DOCUMENT)
    return str(path)


async def test_operations_are_tools(gateway, rest_service, tmp_path):
    port = free_port()
    target = {
        "name": "pets",
        "openapi": {"host": f"127.0.0.1:{rest_service.port}", "schema": {"file": _schema_file(tmp_path)}},
    }
    gateway(mcp_config(port, [target]))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        assert client.server_info.name == "agentgateway"
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"listPets", "createPet", "getPet", "deletePet", "slowThing"}
        assert tools["getPet"].input_schema["properties"]["path"]["required"] == ["petId"]

        rex = await client.call_tool("getPet", {"path": {"petId": 1}})
        assert not rex.is_error
        assert rex.structured_content == {"id": 1, "name": "Rex", "tag": "dog"}
        assert json.loads(rex.content[0].text)["name"] == "Rex"

        listed = await client.call_tool("listPets", {"query": {"limit": 5, "tag": ["dog", "cat"]}})
        assert [p["name"] for p in json.loads(listed.content[0].text)] == ["Rex", "Tom"]
        assert listed.structured_content is None  # a JSON array is not an object

        made = await client.call_tool(
            "createPet", {"body": {"name": "Fido", "tag": "dog"}, "header": {"X-Request-Tag": "t-42"}}
        )
        assert not made.is_error and made.structured_content["requestTag"] == "t-42"

        missing = await client.call_tool("getPet", {"path": {"petId": 99}})
        assert missing.is_error and missing.content[0].text == 'getPet: HTTP 404: {"error":"no such pet"}'

        bad = await client.call_tool("getPet", {})
        assert bad.is_error and "missing path parameter petId" in bad.content[0].text
        smuggle = await client.call_tool("createPet", {"body": {"name": "x"}, "header": {"X-Request-Tag": "a\r\nb: c"}})
        assert smuggle.is_error and "cannot be sent" in smuggle.content[0].text

        gone = await client.call_tool("deletePet", {"path": {"petId": 2}})
        assert not gone.is_error and gone.content[0].text == ""

        with pytest.raises(MCPError, match="Unknown tool"):
            await client.call_tool("feedPet", {})

    seen = rest_service.received()
    assert [(r["method"], r["path"]) for r in seen] == [
        ("GET", "/api/v1/pets/1"),
        ("GET", "/api/v1/pets"),
        ("POST", "/api/v1/pets"),
        ("GET", "/api/v1/pets/99"),
        ("DELETE", "/api/v1/pets/2"),
    ]
    assert seen[1]["query"] == "limit=5&tag=dog&tag=cat"
    assert seen[2]["headers"] == {"x-request-tag": "t-42", "content-type": "application/json"}
    assert json.loads(seen[2]["body"]) == {"name": "Fido", "tag": "dog"}


async def test_document_by_url_next_to_an_mcp_server(gateway, rest_service):
    port = free_port()
    api = f"http://127.0.0.1:{rest_service.port}"
    targets = [
        {"name": "pets", "openapi": {"host": api, "schema": {"url": f"{api}/openapi.yaml"}}},
        stdio_target("tools"),
    ]
    gateway(mcp_config(port, targets))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        assert "[pets]\nTools of the REST API Pet store" in client.instructions
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"pets_getPet", "pets_createPet", "tools_echo"} <= names
        # Only tools: the REST target is not asked for prompts or resources.
        assert {p.name for p in (await client.list_prompts()).prompts} == {"tools_greet"}
        tom = await client.call_tool("pets_getPet", {"path": {"petId": 2}})
        assert tom.structured_content["name"] == "Tom"
        assert (await client.call_tool("tools_echo", {"text": "hi"})).content[0].text == "tools: hi"


async def test_dead_or_slow_service_is_a_tool_error(gateway, rest_service, tmp_path):
    port = free_port()
    schema = {"file": _schema_file(tmp_path)}
    targets = [
        {"name": "dead", "openapi": {"host": f"127.0.0.1:{free_port()}", "schema": schema}},
        {"name": "live", "openapi": {"host": f"127.0.0.1:{rest_service.port}", "schema": schema}},
    ]
    gateway(mcp_config(port, targets))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy", read_timeout_seconds=30) as client:
        down = await client.call_tool("dead_getPet", {"path": {"petId": 1}})
        assert down.is_error and "dead_getPet" not in down.content[0].text
        assert "getPet: the service could not be reached" in down.content[0].text
        up = await client.call_tool("live_getPet", {"path": {"petId": 1}})
        assert up.structured_content["name"] == "Rex"
        slow = await client.call_tool("live_slowThing", {"query": {"seconds": 0.2}})
        assert slow.content[0].text == "finally"


async def test_unreachable_document_fails_initialize_clearly(gateway):
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    gateway(mcp_config(port, [{"name": "pets", "openapi": {"host": dead, "schema": {"url": f"{dead}/o.yaml"}}}]))
    with pytest.raises(ExceptionGroup) as info:  # the SDK's task groups wrap the error answer
        async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy"):
            pass
    (error,) = info.value.exceptions[0].exceptions
    assert isinstance(error, MCPError)
    assert error.error.message == (
        "MCP target pets failed to initialize: OpenAPI document of pets: "
        "upstream connect error: pets (schema): Connection refused"
    )


async def test_backend_auth_on_targets(gateway, rest_service, tmp_path):
    """backendAuth on an MCP target (its own), or on the MCP route for every target without one."""
    schema = {"file": _schema_file(tmp_path)}
    own = {
        "name": "pets",
        "openapi": {"host": f"127.0.0.1:{rest_service.port}", "schema": schema},
        "policies": {"backendAuth": {"key": {"value": "target-key", "location": {"header": {"name": "x-api-key"}}}}},
    }
    port = free_port()
    gateway(mcp_config(port, [own]))
    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        assert not (await client.call_tool("getPet", {"path": {"petId": 1}})).is_error
    assert rest_service.received()[-1]["headers"]["x-api-key"] == "target-key"

    shortcut = free_port()
    gateway(
        {
            "mcp": {
                "port": shortcut,
                "policies": {"backendAuth": {"key": "$PETS_TOKEN"}},
                "targets": [{"name": "pets", "openapi": {"host": f"127.0.0.1:{rest_service.port}", "schema": schema}}],
            }
        },
        env={"PETS_TOKEN": "route-token"},
    )
    async with Client(f"http://127.0.0.1:{shortcut}/mcp", mode="legacy") as client:
        assert not (await client.call_tool("getPet", {"path": {"petId": 1}})).is_error
    assert rest_service.received()[-1]["headers"]["authorization"] == "Bearer route-token"


# Operations whose path parameters are strings, in front of a service that records each request
# line as it arrived: what a tool call may and may not make the gateway send.
FILES_DOCUMENT = {
    "openapi": "3.0.0",
    "info": {"title": "Files", "version": "1"},
    "servers": [{"url": "/v1"}],
    "paths": {
        "/users/{uid}/files/{fid}": {
            "get": {
                "operationId": "getUserFile",
                "parameters": [
                    {"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "fid", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "filter", "in": "query", "schema": {"type": "object"}},
                    {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                ],
            }
        },
        "/files/{fid}": {
            "get": {
                "operationId": "adminFile",
                "parameters": [{"name": "fid", "in": "path", "required": True, "schema": {"type": "string"}}],
            }
        },
    },
}


class _Recorder(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        self.server.seen.append((self.requestline, dict(self.headers.items())))  # type: ignore[attr-defined]
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    """A real HTTP server (a thread of the test) that records each raw request line and its headers."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


async def test_arguments_cannot_leave_their_place(gateway, recorder):
    port = free_port()
    upstream = f"127.0.0.1:{recorder.server_address[1]}"
    gateway(mcp_config(port, [{"name": "files", "openapi": {"host": upstream, "schema": {"inline": FILES_DOCUMENT}}}]))

    def path(uid: str, fid: str = "f") -> dict:
        return {"path": {"uid": uid, "fid": fid}}

    async with Client(f"http://127.0.0.1:{port}/mcp", mode="legacy") as client:
        # Values that some hop (the service, or a proxy in front) would read as dot segments or
        # as nothing: refused as tool errors, never sent.
        for uid in (
            "..",
            ".",
            "%2E%2E",
            "%2e%2E",
            ".%2E",
            "%252E%252E",
            "a/../..",
            "..%2F..",
            "..;x",
            "..\\x",
            "",
            "/",
        ):
            for args in (path(uid, "admin"), path("alice", uid)):
                result = await client.call_tool("getUserFile", args)
                assert result.is_error, (uid, args)
                text = result.content[0].text
                assert text.startswith("invalid arguments for getUserFile: path parameter "), text
                assert "must not" in text, text
        refused = {
            "query parameter limit must be an integer, not a string": {**path("a"), "query": {"limit": "5"}},
            "query parameter filter cannot be an object": {**path("a"), "query": {"filter": {"admin": "1"}}},
            "path parameter uid cannot be an object": {"path": {"uid": {"x": 1}, "fid": "f"}},
            "path parameter uid must be a string, not a number": {"path": {"uid": 7, "fid": "f"}},
            "missing path parameter fid": {"path": {"uid": "a"}},
        }
        for message, args in refused.items():
            result = await client.call_tool("getUserFile", args)
            assert result.is_error and message in result.content[0].text, (message, result.content[0].text)
        smuggle = await client.call_tool("getUserFile", {**path("a"), "header": {"X-Trace": "t\r\nX-Admin: 1"}})
        assert smuggle.is_error and "cannot be sent" in smuggle.content[0].text
        assert recorder.seen == []

        # What may be sent stays in its segment, and only declared parameters go.
        sent = [
            {**path("a/b", "x%2Fy"), "query": {"limit": 5, "tags": ["p q", "r&s=t"]}},
            {**path("...", "..a"), "query": {"admin": "true"}, "header": {"X-Trace": "t1", "Authorization": "x"}},
            {**path("alice", "notes.txt"), "host": "evil.example", "cookie": {"s": "1"}},
        ]
        for args in sent:
            result = await client.call_tool("getUserFile", args)
            assert not result.is_error, result.content[0].text
    lines = [line for line, _ in recorder.seen]
    assert lines == [
        "GET /v1/users/a%2Fb/files/x%252Fy?limit=5&tags=p+q&tags=r%26s%3Dt HTTP/1.1",
        "GET /v1/users/.../files/..a HTTP/1.1",
        "GET /v1/users/alice/files/notes.txt HTTP/1.1",
    ]
    headers = [{k.lower(): v for k, v in h.items()} for _, h in recorder.seen]
    assert all(h["host"] == upstream for h in headers)
    assert headers[1]["x-trace"] == "t1" and "authorization" not in headers[1]
    assert "cookie" not in headers[2]
