"""mcpAuthorization compiled from the config and evaluated per item: rule sets that apply
together, the variables rules see, the verdict cache, config errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from agentgateway.config.compile import compile_config
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import load_text
from agentgateway.config.schema import McpAuthorization as McpAuthorizationCfg
from agentgateway.config.schema import McpBackend
from agentgateway.core.context import RequestCtx
from agentgateway.mcp.authorization import CURRENT_CALLER, Caller, McpAuthorization, normalize_uri
from agentgateway.mcp.config import McpService, compile_mcp_backend

ROUTE = "binds[0].listeners[0].routes[0]"


def _ctx(user: str = "alice", cel_vars: dict[str, object] | None = None, **headers: str) -> RequestCtx:
    sent = [(b"host", b"gw"), (b"x-user", user.encode()), *((k.encode(), v.encode()) for k, v in headers.items())]
    ctx = RequestCtx(
        b"POST", b"/mcp", b"/mcp", b"", b"gw", sent, "1.1", True, 10, False, False, "10.0.0.7", 4000, b"http", 0.0, "gw"
    )
    ctx.cel_vars = cel_vars
    return ctx


def _service(backend: dict[str, Any], route_rules: list[Any] | None = None) -> McpService:
    cfg = msgspec.convert(backend, McpBackend)
    outer = []
    if route_rules is not None:
        outer.append(
            (msgspec.convert({"rules": route_rules}, McpAuthorizationCfg), f"{ROUTE}.policies.mcpAuthorization")
        )

    def no_http(*_: object) -> Any:
        raise AssertionError("no HTTP target here")

    return compile_mcp_backend(cfg, "mcp", f"{ROUTE}.backends[0].mcp", no_http, authorization=outer)


def _stdio(name: str, rules: list[Any] | None = None) -> dict[str, Any]:
    target: dict[str, Any] = {"name": name, "stdio": {"cmd": "true"}}
    if rules is not None:
        target["policies"] = {"mcpAuthorization": {"rules": rules}}
    return target


@pytest.fixture
def as_caller() -> Iterator[Any]:
    tokens = []

    def set_caller(ctx: RequestCtx) -> None:
        tokens.append(CURRENT_CALLER.set(Caller(ctx)))

    yield set_caller
    for token in reversed(tokens):
        CURRENT_CALLER.reset(token)


def _authz(service: McpService) -> McpAuthorization:
    assert service.access is not None and service.access.authorization is not None
    return service.access.authorization


def test_no_rules_means_no_checks() -> None:
    assert _service({"targets": [_stdio("a")]}).access is None
    assert _service({"targets": [_stdio("a")]}, route_rules=[]).access is None


def test_route_and_target_rules_apply_together(as_caller) -> None:
    service = _service(
        {"targets": [_stdio("a", [{"require": 'request.headers["x-user"] != "mallory"'}]), _stdio("b")]},
        route_rules=['mcp.tool.name == "echo"', {"deny": 'mcp.tool.name == "echo" && mcp.tool.target == "b"'}],
    )
    authz = _authz(service)
    as_caller(_ctx("alice"))
    items = [("a", "echo"), ("a", "add"), ("b", "echo"), ("b", "add")]
    assert authz.allowed_items("tool", items, "tools/list") == {"a\0echo"}
    as_caller(_ctx("mallory"))
    assert authz.allowed_items("tool", items, "tools/list") == set()
    assert not authz.allows("tool", "a", "echo", "tools/call")


def test_mcp_variable_holds_one_kind_and_the_method(as_caller) -> None:
    rules = [
        'has(mcp.prompt) && mcp.prompt.name == "greet"',
        'has(mcp.resource) && mcp.resource.uri.startsWith("memo://") && mcp.resource.name == mcp.resource.uri',
        'has(mcp.tool) && mcp.methodName == "tools/list"',  # may see every tool, call none
    ]
    authz = _authz(_service({"targets": [_stdio("a")]}, route_rules=rules))
    as_caller(_ctx())
    assert authz.allows("prompt", "a", "greet", "prompts/get")
    assert not authz.allows("prompt", "a", "other", "prompts/get")
    assert authz.allows("resource", "a", "memo://x", "resources/read")
    assert not authz.allows("resource", "a", "file:///etc/passwd", "resources/read")
    assert authz.allowed_items("tool", [("a", "x"), ("a", "y")], "tools/list") is None  # all visible
    assert not authz.allows("tool", "a", "x", "tools/call")


def test_jwt_claims_from_earlier_policies(as_caller) -> None:
    """``jwt`` comes from RequestCtx.cel_vars (set by jwtAuth once it exists)."""
    rules = ['jwt.sub == "admin"', 'jwt.sub == "dev" && mcp.tool.name in ["read", "list"]']
    authz = _authz(_service({"targets": [_stdio("a")]}, route_rules=rules))
    items = [("a", "read"), ("a", "list"), ("a", "deploy")]
    as_caller(_ctx(cel_vars={"jwt": {"sub": "dev"}}))
    assert authz.allowed_items("tool", items, "tools/list") == {"a\0read", "a\0list"}
    as_caller(_ctx(cel_vars={"jwt": {"sub": "admin"}}))
    assert authz.allowed_items("tool", items, "tools/list") is None
    as_caller(_ctx(cel_vars=None))  # no token: the claim is missing, the allow rules fail
    assert authz.allowed_items("tool", items, "tools/list") == set()


def test_cached_verdicts_follow_what_the_rules_read(as_caller) -> None:
    """The cache key holds the headers, peer and variables the rules read: a caller never gets
    another caller's verdict, and a header the rules do not read does not split the cache."""
    rules = ['request.headers["x-user"] == "alice" && jwt.level > 2']
    authz = _authz(_service({"targets": [_stdio("a")]}, route_rules=rules))
    for user, level, expected in [("alice", 3, True), ("bob", 3, False), ("alice", 1, False), ("alice", 3, True)]:
        as_caller(_ctx(user, cel_vars={"jwt": {"level": level}}, x_request_id=f"{user}{level}"))
        assert authz.allows("tool", "a", "t", "tools/call") is expected
    assert len(authz._tables) == 3  # x-request-id is not read: alice/3 was a hit


def test_without_a_caller_everything_is_denied() -> None:
    authz = _authz(_service({"targets": [_stdio("a")]}, route_rules=["true"]))
    assert CURRENT_CALLER.get() is None
    assert not authz.allows("tool", "a", "t", "tools/call")
    assert authz.allowed_items("tool", [("a", "t")], "tools/list") == set()


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        compile_config(load_text(text))
    return str(info.value)


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "mcp: {port: 3000, targets: [{name: a, stdio: {cmd: x}}], policies: {mcpAuthorization: {rules: ['true', 'mcp.tool.name ==']}}}",
            "mcp.policies.mcpAuthorization.rules[1]: ",
        ),
        (
            "mcp: {port: 3000, targets: [{name: a, stdio: {cmd: x}, policies: {mcpAuthorization: {rules: [{allow: 'nope.x'}]}}}]}",
            "mcp.targets[0].policies.mcpAuthorization.rules[0]: ",
        ),
        (
            "mcp: {port: 3000, targets: [{name: a, stdio: {cmd: x}}], policies: {mcpAuthorization: {rules: [{permit: 'true'}]}}}",
            "mcp.policies.mcpAuthorization.rules[0]: a rule is a CEL expression or {allow|deny|require: <CEL expression>}",
        ),
        (
            "binds: [{port: 80, listeners: [{routes: [{policies: {mcpAuthorization: {rules: ['true']}}, backends: [{host: 'a:1'}]}]}]}]",
            f"{ROUTE}.policies.mcpAuthorization: applies to MCP backends only",
        ),
        (
            "backends: [{name: web, host: 'a:1', policies: {mcpAuthorization: {rules: ['true']}}}]",
            "backends[0].policies.mcpAuthorization: applies to MCP backends only",
        ),
        (
            "binds: [{port: 80, listeners: [{routes: [{backends: [{mcp: {targets: [{name: a, stdio: {cmd: x}}]}, policies: {mcpAuthorization: {rules: ['1 +']}}}]}]}]}]",
            f"{ROUTE}.backends[0].policies.mcpAuthorization.rules[0]: ",
        ),
    ],
)
def test_config_errors_name_the_rule(text: str, expected: str) -> None:
    assert _error(text).startswith(expected)


def test_named_backend_rules_apply_with_the_route_rules(as_caller) -> None:
    text = """
backends:
- name: tools
  mcp: {targets: [{name: a, stdio: {cmd: x}}]}
  policies: {mcpAuthorization: {rules: [{deny: 'mcp.tool.name == "drop"'}]}}
binds:
- port: 8080
  listeners:
  - routes:
    - policies: {mcpAuthorization: {rules: ['mcp.tool.name in ["keep", "drop"]']}}
      backends: [{backend: tools}]
"""
    runtime = compile_config(load_text(text))
    listener = runtime.binds[8080].default_listener
    rule = listener.routes.select_rule(b"gw", b"POST", b"/mcp", [], b"")
    assert rule is not None
    (service,) = rule.route.backends.items
    assert isinstance(service, McpService)
    as_caller(_ctx())
    assert _authz(service).allowed_items("tool", [("a", "keep"), ("a", "drop"), ("a", "other")], "tools/list") == {
        "a\0keep"
    }


@pytest.mark.parametrize(
    "uri,normal",
    [
        ("demo://about", "demo://about"),
        ("DEMO://about", "demo://about"),
        ("demo://ABOUT", "demo://about"),
        ("demo://about/", "demo://about"),
        ("demo://about//", "demo://about"),
        ("demo://about?x", "demo://about"),
        ("demo://about#top", "demo://about"),
        ("demo://%61bout", "demo://about"),
        ("demo://about%2F", "demo://about"),
        ("demo://x/a/./b/../c/", "demo://x/a/c"),
        ("demo://x/%2e%2e/y", "demo://x/y"),
        ("demo://x/%252e%252e/y", "demo://x/y"),
        ("file:///srv//a/../../etc/passwd", "file:///etc/passwd"),
        ("file:///srv\\..\\etc", "file:///etc"),
        ("urn:Ex:Item", "urn:Ex:Item"),  # an opaque path keeps its case
        ("memo://alpha/Info", "memo://alpha/Info"),  # and so does a path
    ],
)
def test_resource_uris_normalized(uri, normal) -> None:
    assert normalize_uri(uri) == normal


@pytest.mark.parametrize(
    "uri",
    [
        "demo://about",
        "DEMO://about",
        "Demo://About",
        "demo://about/",
        "demo://about?x",
        "demo://about?",
        "demo://about#x",
        "demo://%61bout",
        "demo://about/.",
        "demo://about/x/..",
        "demo://about%2F",
    ],
)
def test_deny_rules_cover_every_spelling_of_a_uri(as_caller, uri) -> None:
    service = _service({"targets": [_stdio("demo")]}, route_rules=[{"deny": 'mcp.resource.uri == "demo://about"'}])
    as_caller(_ctx())
    authz = _authz(service)
    assert not authz.allows("resource", "demo", uri, "resources/read")
    assert authz.allowed_items("resource", [("demo", uri), ("demo", "demo://other")], "resources/list") == {
        "demo\0demo://other"
    }
    assert authz.allows("resource", "demo", "demo://abouts", "resources/read")


def test_deny_rules_written_with_a_trailing_slash(as_caller) -> None:
    service = _service({"targets": [_stdio("f")]}, route_rules=[{"deny": 'mcp.resource.name == "file:///secret/"'}])
    as_caller(_ctx())
    for uri in ("file:///secret", "file:///secret/", "file:///secret//", "file:///public/../secret", "FILE:///secret"):
        assert not _authz(service).allows("resource", "f", uri, "resources/read"), uri


def test_require_rules_see_the_normal_form_too(as_caller) -> None:
    rules = [{"require": 'mcp.resource.uri.startsWith("file:///public/")'}]
    service = _service({"targets": [_stdio("f")]}, route_rules=rules)
    as_caller(_ctx())
    assert _authz(service).allows("resource", "f", "file:///public/a.txt", "resources/read")
    for uri in ("file:///public/../secret", "file:///public/%2e%2e/secret", "file:///public/..%2Fsecret"):
        assert not _authz(service).allows("resource", "f", uri, "resources/read"), uri


def test_allow_rules_must_allow_the_uri_as_given(as_caller) -> None:
    service = _service({"targets": [_stdio("demo")]}, route_rules=['mcp.resource.uri == "demo://about"'])
    as_caller(_ctx())
    assert _authz(service).allows("resource", "demo", "demo://about", "resources/read")
    for uri in ("demo://about?admin=1", "DEMO://about", "demo://about/"):
        assert not _authz(service).allows("resource", "demo", uri, "resources/read"), uri
