"""OpenAPI 3 documents as MCP tools: the schemas built, the requests made, the errors."""

from __future__ import annotations

import msgspec
import pytest

from agentgateway.config.compile import compile_config
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import load_text
from agentgateway.config.schema import McpTarget
from agentgateway.mcp.config import compile_target
from agentgateway.mcp.openapi import OpenApiError, OpenApiTools
from agentgateway.upstream.target import HttpTarget
from tests.support.rest_service import DOCUMENT


def _tools() -> OpenApiTools:
    return OpenApiTools(msgspec.yaml.decode(DOCUMENT))


def test_one_tool_per_operation_with_parts_and_inlined_refs():
    tools = _tools()
    assert tools.title == "Pet store" and tools.version == "1.2.0"
    assert tools.prefix == "/api/v1"
    by_name = {t["name"]: t for t in tools.tools()}
    assert set(by_name) == {"listPets", "createPet", "getPet", "deletePet", "slowThing"}
    get_pet = by_name["getPet"]
    assert get_pet["title"] == "One pet by id" and get_pet["description"] == "One pet by id"
    # The path-level parameter reaches both operations of the path, and path parameters are required.
    assert get_pet["inputSchema"] == {
        "type": "object",
        "properties": {"path": {"type": "object", "properties": {"petId": {"type": "integer"}}, "required": ["petId"]}},
        "required": ["path"],
    }
    assert by_name["deletePet"]["inputSchema"]["required"] == ["path"]
    create = by_name["createPet"]
    assert create["description"] == "Add a pet to the store."
    body = create["inputSchema"]["properties"]["body"]
    assert body["required"] == ["name"] and "$ref" not in str(create)
    assert create["inputSchema"]["required"] == ["body"]
    limit = by_name["listPets"]["inputSchema"]["properties"]["query"]["properties"]["limit"]
    assert limit == {"type": "integer", "description": "How many at most"}


def test_arguments_become_the_request():
    ops = _tools().operations
    method, target, headers, body = ops["listPets"].request("/api/v1", {"query": {"limit": 2, "tag": ["a b", "c"]}})
    assert (method, target, headers, body) == ("GET", "/api/v1/pets?limit=2&tag=a+b&tag=c", [], None)
    method, target, headers, body = ops["createPet"].request(
        "/x/", {"body": {"name": "Fido"}, "header": {"X-Request-Tag": "t1"}}
    )
    assert (method, target, body) == ("POST", "/x/pets", b'{"name":"Fido"}')
    assert headers == [("X-Request-Tag", "t1"), ("content-type", "application/json")]
    with pytest.raises(ValueError, match="missing path parameter petId"):
        ops["getPet"].request("", {})
    with pytest.raises(ValueError, match="path parameter petId must be an integer, not a string"):
        ops["getPet"].request("", {"path": {"petId": "1/../2"}})


@pytest.mark.parametrize(
    "document,message",
    [
        ({"swagger": "2.0"}, "not an OpenAPI 3 document"),
        ({"openapi": "3.1.0"}, "no paths"),
        ({"openapi": "3.1.0", "paths": {"/a": {"get": {}}}}, "GET /a has no operationId"),
        (
            {"openapi": "3.1.0", "paths": {"/a": {"get": {"operationId": "x"}, "put": {"operationId": "x"}}}},
            "operationId 'x' is used twice",
        ),
        (
            {"openapi": "3.1.0", "servers": [{"url": "/a"}, {"url": "/b"}], "paths": {}},
            "exactly one server",
        ),
        (
            {"openapi": "3.1.0", "paths": {"/a": {"get": {"operationId": "x", "parameters": [{"$ref": "#/nope"}]}}}},
            "names nothing",
        ),
    ],
)
def test_bad_documents_are_explained(document, message):
    with pytest.raises(OpenApiError, match=message):
        OpenApiTools(document)


def test_binary_bodies_and_headers_the_gateway_owns():
    document = {
        "openapi": "3.0.0",
        "paths": {
            "/blob": {
                "put": {
                    "operationId": "upload",
                    "parameters": [
                        {"name": "Content-Type", "in": "header"},
                        {"name": "Authorization", "in": "header"},
                        {"name": "X-Name", "in": "header"},
                    ],
                    "requestBody": {"content": {"application/octet-stream": {}}},
                }
            }
        },
    }
    upload = OpenApiTools(document).operations["upload"]
    props = upload.tool["inputSchema"]["properties"]
    assert props["body"] == {"type": "string", "contentEncoding": "base64"}
    assert list(props["header"]["properties"]) == ["X-Name"]
    method, target, headers, body = upload.request("", {"body": "AAEC", "header": {"X-Name": "n"}})
    assert body == b"\x00\x01\x02" and ("content-type", "application/octet-stream") in headers
    with pytest.raises(ValueError, match="not valid base64"):
        upload.request("", {"body": "***"})


def test_recursive_schemas_are_cut_off():
    document = {
        "openapi": "3.0.0",
        "paths": {
            "/t": {
                "post": {
                    "operationId": "tree",
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/N"}}}},
                }
            }
        },
        "components": {
            "schemas": {"N": {"type": "object", "properties": {"kids": {"$ref": "#/components/schemas/N"}}}}
        },
    }
    tool = OpenApiTools(document).tools()[0]
    assert "$ref" not in str(tool)


def _config_error(target: str) -> str:
    with pytest.raises(ConfigError) as info:
        compile_config(load_text(f"mcp: {{port: 3000, targets: [{target}]}}"))
    return str(info.value)


def test_config_errors_name_the_spot(tmp_path):
    assert _config_error("{name: a, openapi: {host: 'http://127.0.0.1:1'}}") == (
        "mcp.targets[0].openapi.schema: required: the OpenAPI document (file, inline or url)"
    )
    assert _config_error("{name: a, openapi: {host: 'http://127.0.0.1:1', schema: {}}}").endswith(
        "exactly one of file, inline or url must be set"
    )
    assert _config_error("{name: a, openapi: {host: 'h:1', schema: {url: 'ftp://x/doc'}}}").startswith(
        "mcp.targets[0].openapi.schema.url:"
    )
    assert "GET /a has no operationId" in _config_error(
        "{name: a, openapi: {host: 'h:1', schema: {inline: {openapi: 3.0.0, paths: {/a: {get: {}}}}}}}"
    )
    missing = tmp_path / "none.yaml"
    assert _config_error(f"{{name: a, openapi: {{host: 'h:1', schema: {{file: '{missing}'}}}}}}").startswith(
        "mcp.targets[0].openapi.schema.file:"
    )


def _target(text: str, base_dir=None):
    cfg = msgspec.yaml.decode(text, type=McpTarget)
    return compile_target(
        cfg, "t", lambda host, port, tls, label, where: HttpTarget(host, port, None, label, 1.0), base_dir
    )


def test_document_from_a_file_inline_or_a_url(tmp_path):
    (tmp_path / "pets.yaml").write_text(DOCUMENT)
    from_file = _target("{name: p, openapi: {host: 'http://api:8080/base', schema: {file: pets.yaml}}}", tmp_path)
    assert from_file.openapi is not None and "getPet" in from_file.openapi.operations
    assert from_file.path == b"/base" and from_file.http.authority == b"api:8080"
    inline = _target("{name: p, openapi: {host: 'api:80', schema: {inline: {openapi: 3.0.0, paths: {}}}}}")
    assert inline.openapi is not None and inline.openapi.tools() == []
    from_url = _target("{name: p, openapi: {host: 'api:80', schema: {url: 'http://docs:81/o.yaml?v=2'}}}")
    assert from_url.openapi is None  # fetched at first use
    assert from_url.openapi_url is not None
    fetch_target, path = from_url.openapi_url
    assert (fetch_target.authority, path) == (b"docs:81", b"/o.yaml?v=2")


# A document whose path parameters are strings: what a value may do to the request made.
FILES = {
    "openapi": "3.0.0",
    "servers": [{"url": "/v1"}],
    "paths": {
        "/users/{uid}/files/{fid}": {
            "get": {
                "operationId": "getUserFile",
                "parameters": [
                    {"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "fid", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "mode", "in": "query", "schema": {"type": "string", "enum": ["full", "short"]}},
                    {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "filter", "in": "query", "schema": {"type": "object"}},
                    {"name": "X-Trace", "in": "header", "required": True, "schema": {"type": "string"}},
                ],
            }
        },
        "/loose/{any}": {"get": {"operationId": "loose", "parameters": [{"name": "any", "in": "path"}]}},
        "/undeclared/{x}": {"get": {"operationId": "undeclared"}},
    },
}


def _files(uid: object, fid: object = "f1", **more: object) -> str:
    args = {"path": {"uid": uid, "fid": fid}, "header": {"X-Trace": "t"}, **more}
    return OpenApiTools(FILES).operations["getUserFile"].request("/v1", args)[1]


@pytest.mark.parametrize(
    "value,sent",
    [
        ("alice", "alice"),
        ("a b", "a%20b"),
        ("a/b", "a%2Fb"),  # one segment: a '/' is escaped
        ("a%2Fb", "a%252Fb"),  # an escape in a value arrives as text, never as a '/'
        ("a?b#c", "a%3Fb%23c"),
        ("...", "..."),
        ("..a", "..a"),
        ("é", "%C3%A9"),
    ],
)
def test_path_values_stay_in_their_segment(value, sent):
    assert _files(value) == f"/v1/users/{sent}/files/f1"


@pytest.mark.parametrize(
    "value",
    [
        "..",
        ".",
        "",
        "/",
        "//",
        "a/../b",
        "a/..",
        "../admin",
        "..\\\\admin",
        "%2E%2E",  # a service that decodes before normalizing reads '..'
        "%2e%2e",
        "%2E",
        ".%2E",
        "%252E%252E",  # decoded twice
        "a%2F..%2Fb",
        "..;jsessionid=x",  # Tomcat drops ';...' from a segment
        "%2F",
    ],
)
def test_dot_segments_and_empty_values_are_refused(value):
    with pytest.raises(ValueError, match="path parameter uid must not"):
        _files(value)
    with pytest.raises(ValueError, match="path parameter fid must not"):
        _files("alice", value)


def test_values_are_checked_against_their_schema():
    assert _files("u", limit=None) == "/v1/users/u/files/f1"
    assert _files("u", query={"limit": 3, "mode": "full", "tags": ["a", "b c"]}).endswith(
        "?limit=3&mode=full&tags=a&tags=b+c"
    )
    assert _files("u", query={"limit": 3.0}).endswith("?limit=3")
    refused = {
        "path": [({"uid": {"a": 1}, "fid": "f"}, "path parameter uid cannot be an object")],
        "query": [
            ({"limit": "3"}, "query parameter limit must be an integer, not a string"),
            ({"limit": True}, "query parameter limit must be an integer, not a boolean"),
            ({"limit": 1.5}, "query parameter limit must be an integer, not a number"),
            ({"mode": "admin"}, 'query parameter mode must be one of ["full","short"]'),
            ({"tags": "a"}, "query parameter tags must be an array"),
            ({"tags": [{"k": "v"}]}, "an item of query parameter tags cannot be an object"),
            ({"filter": {"admin": "1"}}, "query parameter filter cannot be an object"),  # no extra parameters
            ({"limit": [1, 2]}, "query parameter limit must be an integer, not an array"),
        ],
    }
    for part, cases in refused.items():
        for given, message in cases:
            args = {"path": {"uid": "u", "fid": "f"}, "header": {"X-Trace": "t"}}
            args[part] = given
            with pytest.raises(ValueError) as info:
                OpenApiTools(FILES).operations["getUserFile"].request("/v1", args)
            assert str(info.value).startswith(message), given
    with pytest.raises(ValueError, match="missing header parameter X-Trace"):
        OpenApiTools(FILES).operations["getUserFile"].request("/v1", {"path": {"uid": "u", "fid": "f"}})


def test_only_declared_parameters_are_sent():
    method, target, headers, body = (
        OpenApiTools(FILES)
        .operations["getUserFile"]
        .request(
            "/v1",
            {
                "path": {"uid": "u", "fid": "f", "extra": "x"},
                "query": {"admin": "true"},
                "header": {"X-Trace": "t", "Authorization": "Bearer stolen", "X-Other": "1"},
                "cookie": {"session": "s"},
                "host": "evil.example",
            },
        )
    )
    assert (method, target, headers, body) == ("GET", "/v1/users/u/files/f", [("X-Trace", "t")], None)


def test_parameters_without_schema_are_strings():
    # As their tools say ({"type": "string"}), and the call is refused, not sent with a repr.
    loose = OpenApiTools(FILES).operations["loose"]
    assert loose.tool["inputSchema"]["properties"]["path"]["properties"]["any"] == {"type": "string"}
    assert loose.request("", {"path": {"any": "7"}})[1] == "/loose/7"
    with pytest.raises(ValueError, match="must be a string, not a number"):
        loose.request("", {"path": {"any": 7}})
    with pytest.raises(ValueError, match="cannot be an object"):
        loose.request("", {"path": {"any": {"a": 1}}})
    with pytest.raises(ValueError, match="without declaring it"):
        OpenApiTools(FILES).operations["undeclared"].request("", {"path": {"x": "1"}})
