"""The native CEL engine through its Python API, and differential tests of a safe expression
subset and of rule-set decisions against `cel_reference`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentgateway._native import CelCompileError, CelEvaluationError, CelProgram, CelRules
from tests.native import cel_reference as ref

HEAD = (b"GET", b"https", b"api.example.com:8443", b"/a/b", b"/a/b?x=1", "HTTP/1.1", [(b"x-user", b"alice")])

# --- API ---------------------------------------------------------------------------------------


def test_program_attributes() -> None:
    p = CelProgram("request.headers['x'] == jwt.sub && request.path != '' && has(source.port)")
    assert p.expression == "request.headers['x'] == jwt.sub && request.path != '' && has(source.port)"
    assert p.variables == frozenset({"request", "jwt", "source"})
    assert p.request_fields == frozenset({"headers", "path"})
    assert p.needs_headers
    assert not CelProgram("request.path == '/'").needs_headers
    assert CelProgram("size(request) > 0").request_fields == frozenset(
        {"method", "uri", "host", "scheme", "path", "pathAndQuery", "version", "headers"}
    )
    assert CelProgram("[1].exists(x, x > 0)").variables == frozenset()
    assert repr(CelProgram("1")) == "CelProgram('1')"


def test_compile_error_attributes() -> None:
    with pytest.raises(CelCompileError) as info:
        CelProgram("true &&\n  nope")
    e = info.value
    assert (e.message, e.line, e.column, e.expression, e.index) == (
        "undeclared reference to 'nope'",
        2,
        3,
        "true &&\n  nope",
        None,
    )
    assert str(e) == "undeclared reference to 'nope' (line 2, column 3 of the expression)"
    with pytest.raises(CelCompileError) as info:
        CelRules([("allow", "true"), ("deny", "x.y()")])
    assert info.value.index == 1
    assert info.value.message == "undeclared function 'x.y'"
    assert issubclass(CelCompileError, ValueError)


def test_rules_codes_and_explain() -> None:
    rules = CelRules(
        [("deny", "request.method == 'POST'"), ("require", "has(jwt.sub)"), ("allow", "jwt.sub == 'a'")]
    )
    assert len(rules) == 3
    assert rules.variables == frozenset({"request", "jwt"})
    assert rules.request_fields == frozenset({"method"})
    assert not rules.needs_headers
    assert rules.evaluate(HEAD, None, {"jwt": {"sub": "a"}}) == 2
    assert rules.evaluate(HEAD, None, {"jwt": {"sub": "b"}}) == -2
    assert rules.evaluate(HEAD, None, {"jwt": {}}) == 1
    assert rules.explain(HEAD, None, {"jwt": {}}) == [False, False, "No such key: sub"]
    assert CelRules([]).evaluate() == -1
    assert CelRules([("deny", "false")]).evaluate() == -1
    with pytest.raises(ValueError, match="allow, deny or require"):
        CelRules([("permit", "true")])


def test_variables_from_the_dict() -> None:
    # request and source may come as plain maps too
    assert (
        CelProgram("request.path + source.address").evaluate(
            None, None, {"request": {"path": "/p"}, "source": {"address": "x"}}
        )
        == "/px"
    )
    # the tuple wins over the dict
    assert CelProgram("request.path").evaluate(HEAD, None, {"request": {"path": "/other"}}) == "/a/b"


def test_conversions() -> None:
    value = {
        "s": "é",
        "b": b"\xc3\xa9\xff",
        "i": -(2**63),
        "u": 2**64 - 1,
        "f": 0.5,
        "t": True,
        "n": None,
        "l": [1, (2, 3)],
    }
    assert CelProgram("jwt").evaluate(variables={"jwt": value}) == {
        "s": "é",
        "b": "é\ufffd",
        "i": -(2**63),
        "u": 2**64 - 1,
        "f": 0.5,
        "t": True,
        "n": None,
        "l": [1, [2, 3]],
    }
    assert (
        CelProgram("jwt[2] + jwt[true] + jwt['k']").evaluate(
            variables={"jwt": {2: "a", True: "b", b"k": "c"}}
        )
        == "abc"
    )
    with pytest.raises(OverflowError):
        CelProgram("jwt").evaluate(variables={"jwt": 2**64})
    with pytest.raises(TypeError, match="map key"):
        CelProgram("jwt").evaluate(variables={"jwt": {1.5: 1}})
    with pytest.raises(TypeError, match="not set"):
        CelProgram("jwt").evaluate(variables={"jwt": {1, 2}})
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="deeper than 64"):
        CelProgram("jwt").evaluate(variables={"jwt": cycle})


def test_bad_request_tuples() -> None:
    p = CelProgram("request.headers")
    with pytest.raises(TypeError, match="must be a tuple"):
        p.evaluate([b"GET"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="7 items"):
        p.evaluate((b"GET",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="method must be bytes or str"):
        p.evaluate((1, b"", b"", b"", b"", "HTTP/1.1", None))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"\(name, value\) tuples"):
        p.evaluate((b"GET", b"", b"", b"", b"", "HTTP/1.1", [b"x"]))  # type: ignore[list-item]
    assert p.evaluate((b"GET", b"", b"", b"", b"", "HTTP/1.1", None)) == {}
    assert p.evaluate(("GET", "", "", "", "", "HTTP/1.1", [("X-A", "1")])) == {"x-a": "1"}
    with pytest.raises(TypeError, match="source must be a tuple"):
        CelProgram("source.port").evaluate(None, "10.0.0.1:80")  # type: ignore[arg-type]


def test_results() -> None:
    assert CelProgram("[1, 'a', 2.5, b'x', null, true, {'k': [1u]}]").evaluate() == [
        1,
        "a",
        2.5,
        b"x",
        None,
        True,
        {"k": [1]},
    ]
    assert CelProgram("ip('::1')").evaluate() == "::1"
    assert CelProgram("optional.of(3)").evaluate() == 3
    assert CelProgram("optional.none()").evaluate() is None
    assert CelProgram("request.headers").evaluate(HEAD) == {"x-user": "alice"}
    with pytest.raises(CelEvaluationError, match="No such key: y"):
        CelProgram("{'x': 1}.y").evaluate()


# --- differential: expressions ---------------------------------------------------------------------


def _env(claims: dict[str, Any], raw_headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"jwt": claims, "headers": ref.header_map(raw_headers)}


def _native(expr: ref.Expr, claims: dict[str, Any], raw_headers: list[tuple[bytes, bytes]]) -> Any:
    head = (b"GET", b"http", b"h", b"/", b"/", "HTTP/1.1", raw_headers)
    try:
        return CelProgram(expr.source).evaluate(head, None, {"jwt": claims})
    except CelEvaluationError:
        return ref.RefError


@settings(max_examples=400, deadline=None)
@given(ref.expressions("bool"), ref.claims(), ref.headers)
def test_bool_expressions_match_the_reference(
    expr: ref.Expr, claims: dict[str, Any], raw: list[tuple[bytes, bytes]]
) -> None:
    assert _native(expr, claims, raw) == ref.run(expr, _env(claims, raw)), expr.source


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["int", "string", "list"]).flatmap(ref.expressions), ref.claims(), ref.headers)
def test_value_expressions_match_the_reference(
    expr: ref.Expr, claims: dict[str, Any], raw: list[tuple[bytes, bytes]]
) -> None:
    expected = ref.run(expr, _env(claims, raw))
    got = _native(expr, claims, raw)
    assert got == expected and type(got) is type(expected), expr.source


# --- differential: rule sets -----------------------------------------------------------------------


def reference_decision(kinds: list[str], results: list[Any]) -> int:
    """agentgateway's semantics over each rule's own result (True, False or RefError)."""
    for i, (kind, result) in enumerate(zip(kinds, results, strict=True)):
        if kind == "deny" and result is True:
            return i
    for i, (kind, result) in enumerate(zip(kinds, results, strict=True)):
        if kind == "require" and result is not True:
            return i
    for i, (kind, result) in enumerate(zip(kinds, results, strict=True)):
        if kind == "allow" and result is True:
            return i
    return -2 if "allow" in kinds else -1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["allow", "deny", "require"]), ref.expressions("bool", depth=2)), max_size=6
    ),
    ref.claims(),
    ref.headers,
)
def test_rule_sets_match_the_reference(
    rules: list[tuple[str, ref.Expr]], claims: dict[str, Any], raw: list[tuple[bytes, bytes]]
) -> None:
    env = _env(claims, raw)
    kinds = [kind for kind, _ in rules]
    results = [ref.run(expr, env) for _, expr in rules]
    compiled = CelRules([(kind, expr.source) for kind, expr in rules])
    head = (b"GET", b"http", b"h", b"/", b"/", "HTTP/1.1", raw)
    assert compiled.evaluate(head, None, {"jwt": claims}) == reference_decision(kinds, results)
    explained = compiled.explain(head, None, {"jwt": claims})
    assert [r if isinstance(r, bool) else ref.RefError for r in explained] == results


def test_only_headers_named_by_literal_keys_are_converted() -> None:
    head = (b"GET", b"", b"", b"", b"", "HTTP/1.1", [(b"x-b", 5), (b"X-A", b"1"), (b"x-a", b"2")])
    assert CelProgram("request.headers['x-a']").evaluate(head) == "1,2"  # type: ignore[arg-type]
    assert CelProgram("request.headers").evaluate(head[:6] + ([(b"x-a", b"1")],)) == {"x-a": "1"}  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a header value must be bytes or str, not int"):
        CelProgram("size(request.headers)").evaluate(head)  # type: ignore[arg-type]


def test_a_named_header_whose_name_is_not_utf8_is_converted() -> None:
    # Found by fuzzing (native/fuzz, cel_compile): `request.headers` holds such a name with a
    # replacement character, so converting only the named headers must match it that way too.
    head = (b"GET", b"", b"", b"", b"", "HTTP/1.1", [(b"X-\xffName", b"v"), (b"other", b"o")])
    assert CelProgram("request.headers").evaluate(head) == {"x-\ufffdname": "v", "other": "o"}  # type: ignore[arg-type]
    assert CelProgram('request.headers["x-\\ufffdname"]').evaluate(head) == "v"  # type: ignore[arg-type]


def test_a_range_that_spans_ipv6_is_in_no_ipv4_range() -> None:
    # Found by fuzzing (native/fuzz, cel_eval): a range taken from the request, written with an
    # IPv4-mapped address and a prefix under 96, was "in" 10.0.0.0/8 though it spans IPv6.
    rule = CelProgram("cidr('10.0.0.0/8').containsCIDR(request.headers['x-net'])")
    head = (b"GET", b"", b"", b"", b"", "HTTP/1.1", [(b"x-net", b"::ffff:10.0.0.0/95")])
    assert rule.evaluate(head) is False  # type: ignore[arg-type]
    head = (b"GET", b"", b"", b"", b"", "HTTP/1.1", [(b"x-net", b"::ffff:10.1.0.0/112")])
    assert rule.evaluate(head) is True  # type: ignore[arg-type]


def test_a_pattern_from_the_request_is_compiled_within_a_budget() -> None:
    # Found while writing the cel_eval fuzz target: a pattern taken from request data was compiled
    # with the limits of the config's own patterns, and thousands were kept.
    rule = CelProgram("request.path.matches(request.headers['x-re'])")
    head = (b"GET", b"", b"", b"/v1/items", b"", "HTTP/1.1", [(b"x-re", b"^/v[0-9]+/")])
    assert rule.evaluate(head) is True  # type: ignore[arg-type]
    head = (b"GET", b"", b"", b"/v1/items", b"", "HTTP/1.1", [(b"x-re", rb"\w{101}")])
    with pytest.raises(CelEvaluationError, match="size limit"):
        rule.evaluate(head)  # type: ignore[arg-type]
