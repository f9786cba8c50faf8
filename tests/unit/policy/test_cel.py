"""The CEL facade: compiling rules as written in the config, decisions, and the request context."""

from __future__ import annotations

import pytest

from agentgateway.config.errors import ConfigError
from agentgateway.core.context import RequestCtx
from agentgateway.policy.cel import CelEvaluationError, CelExpression, CelRuleSet, Decision

WHERE = "binds[0].listeners[0].routes[0].policies.authorization.rules"


def make_ctx(
    method: bytes = b"GET",
    target: bytes = b"/api/v1/items?limit=5",
    host: bytes = b"api.example.com:8080",
    headers: list[tuple[bytes, bytes]] | None = None,
    client_ip: str = "10.1.2.3",
    scheme: bytes = b"http",
    version: str = "1.1",
) -> RequestCtx:
    path, _, query = target.partition(b"?")
    if headers is None:
        headers = [(b"host", host), (b"x-user", b"alice"), (b"accept", b"text/html"), (b"accept", b"*/*")]
    return RequestCtx(
        method,
        target,
        path,
        query,
        host,
        headers,
        version,
        True,
        None,
        False,
        False,
        client_ip,
        40000,
        scheme,
        0.0,
        "gw",
    )


CLAIMS = {"sub": "alice", "groups": ["dev", "admin"], "level": 3, "nested": {"key": "value"}}


def decide(
    rules: list[str | dict[str, str]], ctx: RequestCtx | None = None, extra: dict[str, object] | None = None
) -> Decision:
    return CelRuleSet.compile(rules, WHERE).evaluate(ctx or make_ctx(), {"jwt": CLAIMS} if extra is None else extra)


# --- compiling ---------------------------------------------------------------------------------


def test_compile_errors_name_the_rule() -> None:
    with pytest.raises(ConfigError) as info:
        CelRuleSet.compile(["true", {"deny": "false"}, "jwt.sub == user"], WHERE)
    assert info.value.path == f"{WHERE}[2]"
    assert info.value.reason == "undeclared reference to 'user' (column 12 of 'jwt.sub == user')"
    assert str(info.value) == f"{WHERE}[2]: {info.value.reason}"


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("request.path ==", "Syntax error: mismatched input '<EOF>'"),
        ("request.body == ''", "request has no field 'body'"),
        ("nope(1)", "undeclared function 'nope'"),
        ("request.path.matches('[')", "invalid regular expression: unclosed character class"),
        ("responses.code == 200", "undeclared reference to 'responses'"),
    ],
)
def test_compile_error_reasons(rule: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        CelRuleSet.compile([{"require": rule}], WHERE)
    assert info.value.path == f"{WHERE}[0]"
    assert info.value.reason.startswith(reason), info.value.reason


@pytest.mark.parametrize(
    "rule",
    [{"allow": "true", "deny": "false"}, {"permit": "true"}, {"allow": 1}, {}, 7, ["true"]],
)
def test_rule_shape_errors(rule: object) -> None:
    with pytest.raises(ConfigError) as info:
        CelRuleSet.compile(["true", rule], WHERE)  # type: ignore[list-item]
    assert info.value.path == f"{WHERE}[1]"
    assert info.value.reason == "a rule is a CEL expression or {allow|deny|require: <CEL expression>}"


def test_expression_compile_error() -> None:
    with pytest.raises(ConfigError) as info:
        CelExpression("size(", "routes[1].policies.transformations.request.set.x")
    assert info.value.path == "routes[1].policies.transformations.request.set.x"
    assert "Syntax error" in info.value.reason


def test_referenced_variables() -> None:
    rules = CelRuleSet.compile(["jwt.sub == 'a'", {"deny": "cidr('10.0.0.0/8').containsIP(source.address)"}], WHERE)
    assert rules.variables == {"jwt", "source"}
    assert len(rules) == 2
    assert rules.kinds == ("allow", "deny")
    assert CelExpression("mcp.tool.name + request.method").variables == {"mcp", "request"}


# --- decisions ---------------------------------------------------------------------------------

TRUE, FALSE, ERROR = "request.method == 'GET'", "request.method == 'POST'", "request.headers['cookie'] == 'x'"


@pytest.mark.parametrize(
    ("rules", "allowed", "rule"),
    [
        ([], True, None),
        ([TRUE], True, 0),
        ([FALSE, TRUE], True, 1),
        ([FALSE], False, None),
        ([ERROR], False, None),  # an error in an allow rule is false
        ([{"deny": TRUE}], False, 0),
        ([{"deny": FALSE}], True, None),
        ([{"deny": ERROR}], True, None),  # an erroring deny rule does not match (unsafe)
        ([TRUE, {"deny": TRUE}], False, 1),
        ([{"require": TRUE}], True, None),
        ([{"require": FALSE}], False, 0),
        ([{"require": ERROR}], False, 0),  # an erroring require rule fails
        ([{"require": "request.path"}], False, 0),  # so does a non-bool one
        ([TRUE, {"require": FALSE}], False, 1),
        ([{"require": TRUE}, FALSE], False, None),
        ([TRUE, {"require": FALSE}, {"deny": TRUE}], False, 2),
    ],
)
def test_decisions(rules: list[str | dict[str, str]], allowed: bool, rule: int | None) -> None:
    decision = decide(rules)
    assert (decision.allowed, decision.rule) == (allowed, rule)


def test_decision_reasons() -> None:
    assert decide([]) == Decision(True, None, "no rules")
    assert decide([TRUE]) == Decision(True, 0, "allow rule 0 matched")
    assert decide([FALSE]) == Decision(False, None, "no allow rule matched")
    assert decide([{"deny": TRUE}]) == Decision(False, 0, "deny rule 0 matched")
    assert decide([{"require": FALSE}]) == Decision(False, 0, "require rule 0 failed")
    assert decide([{"deny": FALSE}]) == Decision(True, None, "no deny or require rule applied")


def test_decisions_are_made_once() -> None:
    rules = CelRuleSet.compile([TRUE], WHERE)
    assert rules.evaluate(make_ctx(), None) is rules.evaluate(make_ctx(), None)


def test_explain() -> None:
    results = CelRuleSet.compile([TRUE, {"deny": ERROR}, {"require": FALSE}], WHERE).explain(make_ctx())
    assert results == [True, "No such key: cookie", False]


def test_missing_variables_fail_the_rule() -> None:
    # No jwt: the allow rule errors (false), the require rule fails.
    assert decide(["jwt.sub == 'alice'"], extra={}).allowed is False
    assert decide([{"require": "has(jwt.sub)"}], extra={}) == Decision(False, 0, "require rule 0 failed")
    assert decide(["jwt.sub == 'alice'"]).allowed is True


# --- the request context -------------------------------------------------------------------------


def value(expression: str, ctx: RequestCtx | None = None, extra: dict[str, object] | None = None) -> object:
    return CelExpression(expression).evaluate(ctx or make_ctx(), extra)


def test_request_fields() -> None:
    assert value("request.method") == "GET"
    assert value("request.path") == "/api/v1/items"
    assert value("request.pathAndQuery") == "/api/v1/items?limit=5"
    assert value("request.host") == "api.example.com"
    assert value("request.scheme") == "http"
    assert value("request.uri") == "http://api.example.com:8080/api/v1/items?limit=5"
    assert value("request.version") == "HTTP/1.1"
    assert value("request.version", make_ctx(version="1.0")) == "HTTP/1.0"
    assert value("request.scheme", make_ctx(scheme=b"https")) == "https"


def test_headers_from_bytes() -> None:
    ctx = make_ctx(
        headers=[
            (b"x-a", b"1"),
            (b"x-b", b"caf\xc3\xa9"),
            (b"x-a", b"2"),
            (b"x-bad", b"a\xffb"),
            (b"X-Up", b"v"),
        ]
    )
    assert value("request.headers", ctx) == {"x-a": "1,2", "x-b": "café", "x-bad": "a\ufffdb", "x-up": "v"}
    assert value("request.headers['x-a'].split(',')", ctx) == ["1", "2"]
    assert value("has(request.headers.cookie)", ctx) is False
    assert value("'x-b' in request.headers && size(request.headers) == 4", ctx) is True


def test_headers_are_handed_over_only_when_read() -> None:
    ctx = make_ctx()
    ctx.headers = "not a header list"  # type: ignore[assignment]
    assert value("request.path", ctx) == "/api/v1/items"
    with pytest.raises(TypeError):
        value("request.headers", ctx)
    assert CelExpression("request.path").evaluate(ctx) == "/api/v1/items"
    assert CelRuleSet.compile(["request.method == 'GET'"], WHERE).evaluate(ctx).allowed


def test_unread_variables_are_not_converted() -> None:
    extra: dict[str, object] = {"jwt": CLAIMS, "llm": object()}
    assert value("jwt.sub", extra=extra) == "alice"
    with pytest.raises(TypeError, match="not object"):
        value("llm", extra=extra)


def test_cidr_and_ip() -> None:
    rule = "cidr('10.0.0.0/8').containsIP(source.address)"
    assert decide([rule]).allowed
    assert not decide([rule], make_ctx(client_ip="192.168.1.1")).allowed
    assert decide([rule], make_ctx(client_ip="::ffff:10.9.8.7")).allowed
    assert not decide([rule], make_ctx(client_ip="2001:db8::1")).allowed
    assert value("source.port") == 40000
    assert value("ip(source.address)") == "10.1.2.3"
    assert value("cidr('10.1.2.3/8').masked()") == "10.0.0.0/8"
    assert value("ip(source.address).family()") == 4


def test_extra_variables_and_values() -> None:
    mcp = {"methodName": "tools/call", "tool": {"target": "github", "name": "create_issue"}}
    extra: dict[str, object] = {
        "jwt": CLAIMS,
        "mcp": mcp,
        "apiKey": {"team": "blue"},
        "basicAuth": {"username": "bob"},
    }
    assert value("jwt.groups", extra=extra) == ["dev", "admin"]
    assert value("jwt", extra=extra) == CLAIMS
    assert value("mcp.tool.name == 'create_issue' && apiKey.team == 'blue' && basicAuth.username == 'bob'", extra=extra)
    assert value("{'a': [1, 2.5, null, true, b'x']}", None) == {"a": [1, 2.5, None, True, b"x"]}
    assert value("jwt.?email", extra=extra) is None
    assert value("18446744073709551615u") == 2**64 - 1
    assert value("type(1)") == "int"


def test_evaluation_errors() -> None:
    with pytest.raises(CelEvaluationError, match="No such key: email"):
        value("jwt.email", extra={"jwt": CLAIMS})
    with pytest.raises(CelEvaluationError, match="jwt"):
        value("jwt.sub", extra={})
    with pytest.raises(CelEvaluationError):
        value("1 / 0")
    assert issubclass(CelEvaluationError, ValueError)


def test_expression_without_request() -> None:
    assert CelExpression("1 + 2").evaluate() == 3
    with pytest.raises(CelEvaluationError, match="request"):
        CelExpression("request.path").evaluate()
    assert repr(CelExpression("1 + 2")) == "CelExpression('1 + 2')"
