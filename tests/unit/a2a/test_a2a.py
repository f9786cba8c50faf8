"""A2A units: card URL mapping, REST operations, facts of both protocol versions, the policy's
request phase and its config."""

from __future__ import annotations

import orjson
import pytest
from a2a.compat.v0_3.types import AgentCard as AgentCard03

from agentgateway.a2a.card import CardError, CardPaths, gateway_url, rewrite_card
from agentgateway.a2a.facts import JSONRPC, REST, A2aFacts, card_base, normalize_state, rest_operation
from agentgateway.a2a.policy import A2aPolicy
from agentgateway.config.compile import compile_config
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import load_text
from agentgateway.config.schema import A2aPolicy as A2aConfig
from agentgateway.core.context import RequestCtx
from agentgateway.policy.chain import ORDER, PolicyChain


def paths(client_base="", backend_base="", prefix=None, authority="gw.example:8080", scheme="https"):
    return CardPaths(scheme, authority, client_base, backend_base, prefix)


@pytest.mark.parametrize(
    "url,where,expected",
    [
        # No rewrite: same paths, the gateway's origin.
        ("http://10.0.0.5:9999/", paths(), "https://gw.example:8080/"),
        ("http://10.0.0.5:9999", paths(), "https://gw.example:8080/"),
        ("http://10.0.0.5:9999/rpc?x=1", paths(), "https://gw.example:8080/rpc?x=1"),
        # agentgateway#2981: /a2a/tick published, the agent at /a2a/tock.
        ("http://localhost:8080/a2a/tock/", paths("/a2a/tick", "/a2a/tock"), "https://gw.example:8080/a2a/tick/"),
        ("http://localhost:8080/a2a/tock", paths("/a2a/tick", "/a2a/tock"), "https://gw.example:8080/a2a/tick"),
        ("http://localhost:8080/a2a/tock/rpc", paths("/a2a/tick", "/a2a/tock"), "https://gw.example:8080/a2a/tick/rpc"),
        # A prefix that only looks alike is not under the base.
        ("http://h/a2a/tocker/x", paths("/a2a/tick", "/a2a/tock"), "https://gw.example:8080/a2a/tocker/x"),
        # Card at the root of the backend, agent published under a prefix.
        ("http://h:1/", paths("/agents/one", ""), "https://gw.example:8080/agents/one/"),
        # agentgateway#3500: the agent already advertises its public path, outside the backend base
        # and the rewrite: the path stays, the origin is the gateway's.
        (
            "https://tenant.example/a2a/agents/supervisor/rpc",
            paths("/a2a/agents/supervisor", "/firefly/agents/supervisor", ("/a2a/agents", "/firefly/agents")),
            "https://gw.example:8080/a2a/agents/supervisor/rpc",
        ),
        # An interface outside the card's base but under the rewrite's replacement maps back.
        (
            "http://h/firefly/agents/other/rpc",
            paths("/a2a/agents/supervisor", "/firefly/agents/supervisor", ("/a2a/agents/", "/firefly/agents/")),
            "https://gw.example:8080/a2a/agents/other/rpc",
        ),
        # Protocol-relative and path-only: the agent's own origin, served by the gateway.
        ("//10.0.0.5:9999/rpc", paths(), "https://gw.example:8080/rpc"),
        ("//evil.example/a2a/tock/x", paths("/a2a/tick", "/a2a/tock"), "https://gw.example:8080/a2a/tick/x"),
        ("/a2a/tock/rpc", paths("/a2a/tick", "/a2a/tock"), "https://gw.example:8080/a2a/tick/rpc"),
        # Not an interface the gateway serves: dropped.
        ("grpc://10.0.0.5:50051", paths(), None),
        ("10.0.0.5:50051", paths(), None),
        ("javascript:alert(1)", paths(), None),
        ("java\tscript:alert(1)", paths(), None),
        ("file:///etc/passwd", paths(), None),
        ("https:\\\\evil.example/x", paths(), None),
        (" https://h/x", paths(), None),
        ("rpc", paths(), None),
        ("http://h:notaport/", paths(), None),
    ],
)
def test_gateway_url(url, where, expected):
    assert gateway_url(url, where) == expected


def test_rewrite_card_both_versions():
    card = {
        "name": "a",
        "url": "http://b:1/",
        "additionalInterfaces": [{"url": "http://b:1/", "transport": "JSONRPC"}, {"url": "x:2", "transport": "GRPC"}],
        "supportedInterfaces": [{"url": "http://b:1/", "protocolBinding": "JSONRPC", "tenant": "t"}],
        "signatures": [{"protected": "p", "signature": "s"}],
        "provider": {"url": "http://b:1/about"},
    }
    out = orjson.loads(rewrite_card(orjson.dumps(card), paths("/p")))
    assert out["url"] == "https://gw.example:8080/p/"
    assert [i["url"] for i in out["additionalInterfaces"]] == ["https://gw.example:8080/p/"]  # gRPC dropped
    assert out["supportedInterfaces"] == [
        {"url": "https://gw.example:8080/p/", "protocolBinding": "JSONRPC", "tenant": "t"}
    ]
    assert "signatures" not in out
    assert out["provider"] == {"url": "http://b:1/about"}  # a link: kept as written


def test_rewrite_card_urls_of_every_kind():
    """Interfaces go to the gateway or are dropped; security endpoints stay only as absolute
    https; links stay only as absolute http(s); extension URIs are identifiers and stay."""
    flows = {
        "authorizationCode": {
            "authorizationUrl": "https://idp.example/authorize",
            "tokenUrl": "http://idp.example/token",
            "refreshUrl": "//idp.example/refresh",
            "scopes": {},
        },
        "clientCredentials": {"tokenUrl": "javascript:alert(1)", "scopes": {}},
        "deviceCode": {"deviceAuthorizationUrl": "https://idp.example/device", "tokenUrl": "https://idp.example/t"},
        "password": {"tokenUrl": "https://idp.example/t", "refreshUrl": "http://idp.example/r", "scopes": {}},
    }
    card = {
        "url": "javascript:alert(document.cookie)",
        "additionalInterfaces": [
            {"url": "//agent.internal:9000/", "transport": "JSONRPC"},
            {"url": "file:///etc/passwd", "transport": "HTTP+JSON"},
        ],
        "supportedInterfaces": [
            {"url": "grpc://agent.internal:50051", "protocolBinding": "GRPC"},
            {"url": "http://agent.internal/rpc", "protocolBinding": "JSONRPC"},
        ],
        "provider": {"organization": "o", "url": "javascript:void(0)"},
        "documentationUrl": "https://docs.example/a",
        "iconUrl": "data:image/svg+xml,<svg onload=alert(1)>",
        "capabilities": {"extensions": [{"uri": "urn:example:ext", "required": False}]},
        "securitySchemes": {
            # 0.3 shape
            "oauth": {"type": "oauth2", "flows": flows, "oauth2MetadataUrl": "file:///m"},
            "oidc": {
                "type": "openIdConnect",
                "openIdConnectUrl": "https://idp.example/.well-known/openid-configuration",
            },
            # 1.0 shape
            "oauth10": {"oauth2SecurityScheme": {"flows": orjson.loads(orjson.dumps(flows))}},
            "oidc10": {"openIdConnectSecurityScheme": {"openIdConnectUrl": "http://idp.example/oidc"}},
        },
    }
    out = orjson.loads(rewrite_card(orjson.dumps(card), paths("/p")))
    assert out["url"] == "https://gw.example:8080/p/"
    assert out["additionalInterfaces"] == [{"url": "https://gw.example:8080/p/", "transport": "JSONRPC"}]
    assert out["supportedInterfaces"] == [{"url": "https://gw.example:8080/p/rpc", "protocolBinding": "JSONRPC"}]
    # What is left is still a valid card: a URL the schema requires takes its object with it.
    assert "provider" not in out
    assert out["documentationUrl"] == "https://docs.example/a" and "iconUrl" not in out
    assert out["capabilities"] == card["capabilities"]
    for scheme in (out["securitySchemes"]["oauth"], out["securitySchemes"]["oauth10"]["oauth2SecurityScheme"]):
        assert scheme["flows"] == {
            "deviceCode": flows["deviceCode"],
            "password": {"tokenUrl": "https://idp.example/t", "scopes": {}},
        }
    assert "oauth2MetadataUrl" not in out["securitySchemes"]["oauth"]
    assert out["securitySchemes"]["oidc"] == card["securitySchemes"]["oidc"]
    assert "oidc10" not in out["securitySchemes"]


def test_rewritten_cards_stay_valid_for_0_3_clients():
    """The a2a-sdk's 0.3 card model accepts what the rewrite leaves of a hostile 0.3 card."""
    card = {
        "name": "a",
        "description": "d",
        "version": "1",
        "url": "javascript:x",
        "capabilities": {},
        "defaultInputModes": [],
        "defaultOutputModes": [],
        "skills": [],
        "provider": {"organization": "o", "url": "file:///x"},
        "securitySchemes": {
            "oauth": {
                "type": "oauth2",
                "flows": {"authorizationCode": {"authorizationUrl": "https://a", "tokenUrl": "//t", "scopes": {}}},
            },
            "oidc": {"type": "openIdConnect", "openIdConnectUrl": "http://idp/oidc"},
        },
        "security": [{"oauth": [], "oidc": []}],
    }
    AgentCard03.model_validate(orjson.loads(rewrite_card(orjson.dumps(card), paths("/p"))))


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b'"card"'])
def test_rewrite_card_refuses_what_is_not_a_card(body):
    with pytest.raises(CardError):
        rewrite_card(body, paths())


@pytest.mark.parametrize(
    "method,path,expected",
    [
        (b"POST", b"/message:send", ("SendMessage", "")),
        (b"POST", b"/t1/message:stream", ("SendStreamingMessage", "")),
        (b"POST", b"/v1/message:send", ("SendMessage", "")),
        (b"GET", b"/tasks/abc", ("GetTask", "abc")),
        (b"GET", b"/agents/x/tasks", ("ListTasks", "")),
        (b"POST", b"/tasks/abc:cancel", ("CancelTask", "abc")),
        (b"POST", b"/tasks/abc:subscribe", ("SubscribeToTask", "abc")),
        (b"GET", b"/v1/tasks/abc:subscribe", ("SubscribeToTask", "abc")),
        (b"POST", b"/tasks/abc/pushNotificationConfigs", ("CreateTaskPushNotificationConfig", "abc")),
        (b"GET", b"/tasks/abc/pushNotificationConfigs", ("ListTaskPushNotificationConfigs", "abc")),
        (b"GET", b"/tasks/abc/pushNotificationConfigs/c1", ("GetTaskPushNotificationConfig", "abc")),
        (b"DELETE", b"/tasks/abc/pushNotificationConfigs/c1", ("DeleteTaskPushNotificationConfig", "abc")),
        (b"GET", b"/extendedAgentCard", ("GetExtendedAgentCard", "")),
        (b"GET", b"/v1/card", ("GetExtendedAgentCard", "")),
        # Not REST operations: JSON-RPC posts and other pages.
        (b"POST", b"/", None),
        (b"POST", b"/tasks", None),
        (b"POST", b"/tasks/abc", None),
        (b"GET", b"/message:send", None),
        (b"GET", b"/card", None),
        (b"GET", b"/healthz", None),
        (b"GET", b"/tasks/abc:cancel", None),
    ],
)
def test_rest_operation(method, path, expected):
    assert rest_operation(method, path) == expected


def test_states_of_both_versions_read_alike():
    assert normalize_state("TASK_STATE_INPUT_REQUIRED") == "input-required" == normalize_state("input-required")
    assert normalize_state("TASK_STATE_CANCELED") == normalize_state("TASK_STATE_CANCELLED") == "canceled"
    assert normalize_state("TASK_STATE_UNSPECIFIED") == "unknown"


@pytest.mark.parametrize(
    "result,expected",
    [
        # 0.3: the result is the object, with a kind.
        ({"kind": "task", "id": "t", "contextId": "c", "status": {"state": "working"}}, ("task", "t", "c", "working")),
        (
            {"kind": "status-update", "taskId": "t", "contextId": "c", "status": {"state": "completed"}, "final": True},
            ("status-update", "t", "c", "completed"),
        ),
        (
            {"kind": "artifact-update", "taskId": "t", "contextId": "c", "artifact": {}},
            ("artifact-update", "t", "c", ""),
        ),
        ({"kind": "message", "messageId": "m", "contextId": "c"}, ("message", "", "c", "")),
        # 1.0: wrapped, ProtoJSON states; a bare Task from GetTask.
        (
            {"task": {"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_SUBMITTED"}}},
            ("task", "t", "c", "submitted"),
        ),
        (
            {"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_AUTH_REQUIRED"}}},
            ("status-update", "t", "c", "auth-required"),
        ),
        ({"artifactUpdate": {"taskId": "t", "contextId": "c"}}, ("artifact-update", "t", "c", "")),
        ({"message": {"messageId": "m", "taskId": "t"}}, ("message", "t", "", "")),
        ({"id": "t", "status": {"state": "TASK_STATE_FAILED"}}, ("task", "t", "", "failed")),
        # Not results we know: nothing learned.
        ({"tasks": []}, ("", "", "", "")),
        ([1, 2], ("", "", "", "")),
    ],
)
def test_results_of_both_versions(result, expected):
    facts = A2aFacts(JSONRPC, "1.0")
    facts.observe_result(result)
    assert (facts.result_kind, facts.task_id, facts.context_id, facts.task_state) == expected


def test_rest_error_codes():
    facts = A2aFacts("HTTP+JSON", "1.0")
    body = {"error": {"code": 404, "status": "NOT_FOUND", "details": [{"@type": "x", "reason": "TASK_NOT_FOUND"}]}}
    facts.observe_rest_error(body, 404)
    assert facts.error_code == "TASK_NOT_FOUND"
    facts.observe_rest_error({"error": {"status": "INTERNAL"}}, 500)
    assert facts.error_code == "INTERNAL"
    facts.observe_rest_error(b"nope", 502)
    assert facts.error_code == "502"
    assert A2aFacts(JSONRPC, "1.0").outcome_code(429) == "429"


def _ctx(method=b"POST", path=b"/", body=None, headers=None, query=b""):
    ctx = RequestCtx(
        method,
        path + (b"?" + query if query else b""),
        path,
        query,
        b"gw.example",
        headers or [],
        "1.1",
        True,
        len(body) if body else None,
        False,
        False,
        "10.0.0.1",
        4000,
        b"http",
        0.0,
        "bind/1",
    )
    ctx.request_body = body
    return ctx


def test_policy_reads_jsonrpc_requests_of_both_versions():
    policy = A2aPolicy(A2aConfig(), "p", None)
    body = b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","taskId":"t","contextId":"c"}}}'
    ctx = _ctx(body=body, headers=[(b"a2a-version", b"1.0")])
    assert policy.on_request(ctx) is None
    assert ctx.cel_vars == {
        "a2a": {
            "method": "SendMessage",
            "binding": "JSONRPC",
            "version": "1.0",
            "task": {"id": "t"},
            "context": {"id": "c"},
            "message": {"id": "m"},
        }
    }
    ctx = _ctx(body=b'{"jsonrpc":"2.0","id":2,"method":"tasks/cancel","params":{"id":"t9"}}')
    policy.on_request(ctx)
    assert ctx.cel_vars["a2a"] == {
        "method": "tasks/cancel",
        "binding": "JSONRPC",
        "version": "0.3",
        "task": {"id": "t9"},
    }
    ctx = _ctx(method=b"GET", path=b"/tasks/t3", query=b"A2A-Version=1.0")
    policy.on_request(ctx)
    assert ctx.cel_vars["a2a"]["method"] == "GetTask" and ctx.cel_vars["a2a"]["version"] == "1.0"
    # Not an A2A operation: nothing learned, nothing refused.
    ctx = _ctx(method=b"GET", path=b"/healthz")
    assert policy.on_request(ctx) is None and ctx.a2a is None


@pytest.mark.parametrize(
    "body,code,reply_id",
    [
        (b"", -32700, None),
        (b"{not json", -32700, None),
        (b'{"jsonrpc":"2.0","id":4}', -32600, 4),
        (b'{"jsonrpc":"2.0","id":"r","result":{}}', -32600, "r"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"GetTask"}]', -32600, None),
    ],
)
def test_policy_answers_what_is_not_a_jsonrpc_request(body, code, reply_id):
    reply = A2aPolicy(A2aConfig(), "p", None).on_request(_ctx(body=body))
    assert reply is not None and reply.status == 200
    answer = orjson.loads(reply.body)
    assert answer["error"]["code"] == code and answer["id"] == reply_id and answer["jsonrpc"] == "2.0"


def test_card_fetch_goes_upstream_uncompressed_and_unconditional():
    ctx = _ctx(
        method=b"GET",
        path=b"/a/.well-known/agent.json",
        headers=[(b"accept-encoding", b"gzip"), (b"if-none-match", b'"x"'), (b"accept", b"*/*")],
    )
    assert A2aPolicy(A2aConfig(), "p", None).on_request(ctx) is None
    assert ctx.headers == [(b"accept", b"*/*"), (b"accept-encoding", b"identity")]
    card = ctx.a2a.card if ctx.a2a is not None else None
    assert card is not None and ctx.a2a is not None and ctx.a2a.extended_card is None
    assert (card.client_base, card.scheme, card.authority, card.if_none_match) == ("/a", "http", "gw.example", b'"x"')
    assert ctx.fetch_timeout == 10.0


@pytest.mark.parametrize(
    "path,binding,expected",
    [
        (b"/a/.well-known/agent-card.json", "", "/a"),
        (b"/.well-known/agent.json", "", ""),
        # Spellings an agent's router takes for the card: encoded, any case, parameters, a slash.
        (b"/a/.well-known/agent-card%2Ejson", "", "/a"),
        (b"/a/%2Ewell-known%2Fagent-card.json", "", "/a"),
        (b"/a/.WELL-KNOWN/Agent-Card.JSON", "", "/a"),
        (b"/a/.well-known/agent-card.json;v=1", "", "/a"),
        (b"/a/.well-known;x/agent-card.json/", "", "/a"),
        (b"/a/.well-known/agent-card.jsonx", "", None),
        (b"/a/.well-known/agent-card.json/x", "", None),
        # The base goes in URLs: what the decoding made of it is quoted again.
        (b"/a%20b%0d%0a/.well-known/agent-card.json", "", "/a%20b%0D%0A"),
        (b"/a%252e/.well-known/agent.json", "", "/a%252e"),
        # The extended card over HTTP+JSON: 1.0, 0.3, 0.2.
        (b"/t/extendedAgentCard", REST, "/t"),
        (b"/v1/card", REST, ""),
        (b"/a/agent/authenticatedExtendedCard", REST, "/a"),
        (b"/a/%65xtendedagentcard/", REST, "/a"),
        (b"/a/V1/CARD;jsessionid=1", REST, "/a"),
        (b"/card", REST, None),
        (b"/a/extendedAgentCards", REST, None),
        # A JSON-RPC endpoint is its own base.
        (b"/a2a/tick/", JSONRPC, "/a2a/tick"),
        (b"/", JSONRPC, ""),
        (b"/rpc", JSONRPC, "/rpc"),
    ],
)
def test_card_base(path, binding, expected):
    assert card_base(path, binding) == expected


@pytest.mark.parametrize(
    "method,path,body,binding,name,base,request_id",
    [
        (b"GET", b"/a/extendedAgentCard", None, REST, "GetExtendedAgentCard", "/a", None),
        (b"GET", b"/v1/card", None, REST, "GetExtendedAgentCard", "", None),
        (b"GET", b"/a/agent/authenticatedExtendedCard", None, REST, "GetExtendedAgentCard", "/a", None),
        (b"GET", b"/a/extended%41gentCard", None, REST, "GetExtendedAgentCard", "/a", None),
        (
            b"POST",
            b"/a/",
            b'{"jsonrpc":"2.0","id":"x","method":"GetExtendedAgentCard","params":{}}',
            JSONRPC,
            "GetExtendedAgentCard",
            "/a",
            b'"x"',
        ),
        (
            b"POST",
            b"/",
            b'{"jsonrpc":"2.0","id":7,"method":"agent/getAuthenticatedExtendedCard"}',
            JSONRPC,
            "agent/getAuthenticatedExtendedCard",
            "",
            b"7",
        ),
        # Escaped, or in another case: the name an agent may still take for the method.
        (
            b"POST",
            b"/",
            b'{"jsonrpc":"2.0","id":8,"method":"GetExtended\\u0041gentCard"}',
            JSONRPC,
            "GetExtendedAgentCard",
            "",
            b"8",
        ),
        (
            b"POST",
            b"/",
            b'{"jsonrpc":"2.0","method":"getextendedagentcard"}',
            JSONRPC,
            "getextendedagentcard",
            "",
            None,
        ),
    ],
)
def test_extended_card_calls_are_card_fetches(method, path, body, binding, name, base, request_id):
    ctx = _ctx(method=method, path=path, body=body, headers=[(b"accept-encoding", b"br"), (b"if-none-match", b"*")])
    assert A2aPolicy(A2aConfig(), "p", None).on_request(ctx) is None
    facts = ctx.a2a
    assert facts is not None and facts.card is None and facts.extended_card is not None
    assert (facts.binding, facts.method) == (binding, name)
    assert (facts.extended_card.client_base, facts.extended_card.request_id) == (base, request_id)
    assert ctx.headers == [(b"accept-encoding", b"identity")] and ctx.fetch_timeout == 10.0
    # Not a card fetch for authorization rules (``a2a.card`` is the public card's).
    assert "card" not in ctx.cel_vars["a2a"]


def test_other_calls_are_not_card_fetches():
    for method, path, body in [
        (b"POST", b"/", b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t"}}'),
        (b"GET", b"/tasks/t1", None),
        (b"GET", b"/a/.well-known/agent-card.json.bak", None),
        (b"POST", b"/extendedAgentCard", b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{}}'),
    ]:
        ctx = _ctx(method=method, path=path, body=body, headers=[(b"accept-encoding", b"gzip")])
        A2aPolicy(A2aConfig(), "p", None).on_request(ctx)
        facts = ctx.a2a
        assert facts is None or (facts.card is None and facts.extended_card is None), path
        assert ctx.headers == [(b"accept-encoding", b"gzip")] and ctx.fetch_timeout is None


def test_a2a_runs_after_authentication_and_before_authorization():
    assert ORDER.index("apiKey") < ORDER.index("a2a") < ORDER.index("authorization") < ORDER.index("localRateLimit")
    chain = PolicyChain([A2aPolicy(A2aConfig(), "p", None)])
    assert chain.first_async == 0 and chain.processors and chain.kinds() == ["a2a"]


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "binds: [{port: 80, listeners: [{routes: [{policies: {a2a: {keepAliveInterval: often}}, backends: [{host: 'a:1'}]}]}]}]",
            "binds[0].listeners[0].routes[0].policies.a2a.keepAliveInterval: invalid duration 'often'",
        ),
        (
            "binds: [{port: 80, listeners: [{routes: [{policies: {a2a: {}}, backends: [{mcp: {targets: [{name: x, sse: {host: 'a:1'}}]}}]}]}]}]",
            "binds[0].listeners[0].routes[0].policies.a2a: a2a needs HTTP backends",
        ),
        (
            "binds: [{port: 80, listeners: [{routes: [{policies: {a2a: {cardPath: /x}}}]}]}]",
            "binds[0].listeners[0].routes[0].policies.a2a.cardPath: unknown field",
        ),
    ],
)
def test_config_errors(text, expected):
    with pytest.raises(ConfigError) as info:
        compile_config(load_text(text))
    assert str(info.value).startswith(expected)


def test_config_defaults():
    runtime = compile_config(
        load_text("binds: [{port: 80, listeners: [{routes: [{policies: {a2a: {}}, backends: [{host: 'a:1'}]}]}]}]")
    )
    route = runtime.binds[80].default_listener.routes.select_rule(b"h", b"GET", b"/", [], b"")
    assert route is not None
    (policy,) = route.route.chain.processors
    assert isinstance(policy, A2aPolicy) and policy.keepalive == 15.0
