"""A small CEL reference for differential tests: expressions of a safe subset, generated as a
pair of CEL source text and a Python evaluator written straight from the CEL spec.

The subset: int, string, bool and list values; `+ - *` on ints (small, so no overflow), `+` on
strings, `== != < <= > >=`, `! && || ?:`, `in`, `size`, `startsWith`, `endsWith`, `contains`,
`lowerAscii`, `upperAscii`, `has()`, `exists`/`all` over lists, and the variables `jwt` (a map
whose claims may be missing) and `request.headers` (a map built from raw header bytes, repeated
names joined with ","). Evaluation errors (a missing key, comparing a string with an int) are
raised as `RefError`; CEL's `&&` and `||` absorb an error when the other side decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


class RefError(Exception):
    """The reference's evaluation error (CEL's error value)."""


Env = dict[str, Any]
Eval = Callable[[Env], Any]


@dataclass(frozen=True)
class Expr:
    source: str
    evaluate: Eval
    kind: str  # "int", "string", "bool", "list"

    def __repr__(self) -> str:
        return self.source


# --- variables ---------------------------------------------------------------------------------

CLAIM_KINDS = {"sub": "string", "role": "string", "level": "int", "tags": "list"}
ALPHABET = "aAbZé-_/"
HEADER_NAMES = ["x-a", "x-b", "user-agent"]

text = st.text(alphabet=ALPHABET, max_size=5)
small_int = st.integers(min_value=-50, max_value=50)


@st.composite
def claims(draw: st.DrawFn) -> dict[str, Any]:
    values = {
        "sub": text,
        "role": st.sampled_from(["admin", "dev", "Admin"]),
        "level": small_int,
        "tags": st.lists(text, max_size=3),
    }
    present = draw(st.sets(st.sampled_from(sorted(values))))
    return {key: draw(values[key]) for key in sorted(present)}


header_value = st.binary(max_size=4) | st.text(alphabet=ALPHABET, max_size=4).map(lambda s: s.encode())
headers = st.lists(st.tuples(st.sampled_from([n.encode() for n in HEADER_NAMES]), header_value), max_size=5)


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key, text_value = name.decode(), value.decode("utf-8", "replace")
        out[key] = f"{out[key]},{text_value}" if key in out else text_value
    return out


# --- helpers -----------------------------------------------------------------------------------


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def lookup(mapping: dict[str, Any], key: str) -> Any:
    if key not in mapping:
        raise RefError(f"no such key {key}")
    return mapping[key]


def same_kind(a: Any, b: Any) -> bool:
    return type(a) is type(b) or (
        isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool)
    )


def equal(a: Any, b: Any) -> bool:
    # CEL equality across types is false, never an error; bool is not an int.
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def compare(op: str, a: Any, b: Any) -> bool:
    if not same_kind(a, b) or isinstance(a, list):
        raise RefError("no matching overload")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def ascii_case(s: str, upper: bool) -> str:
    if upper:
        return "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in s)
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def logical_and(a: Eval, b: Eval, env: Env) -> bool:
    results = []
    for side in (a, b):
        try:
            value = side(env)
        except RefError as exc:
            results.append(exc)
            continue
        if value is False:
            return False
        if value is not True:
            results.append(RefError("no matching overload"))
        else:
            results.append(True)
    for r in results:
        if isinstance(r, RefError):
            raise r
    return True


def logical_or(a: Eval, b: Eval, env: Env) -> bool:
    results = []
    for side in (a, b):
        try:
            value = side(env)
        except RefError as exc:
            results.append(exc)
            continue
        if value is True:
            return True
        if value is not False:
            results.append(RefError("no matching overload"))
        else:
            results.append(False)
    for r in results:
        if isinstance(r, RefError):
            raise r
    return False


def must_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise RefError("no matching overload")
    return value


# --- generators ---------------------------------------------------------------------------------


def leaf(kind: str) -> st.SearchStrategy[Expr]:
    if kind == "int":
        literals = small_int.map(lambda i: Expr(str(i), lambda env, i=i: i, "int"))
        claim = st.just(Expr("jwt.level", lambda env: lookup(env["jwt"], "level"), "int"))
        return literals | claim
    if kind == "string":
        literals = text.map(lambda s: Expr(quote(s), lambda env, s=s: s, "string"))
        claim = st.sampled_from(["sub", "role"]).map(
            lambda k: Expr(f"jwt.{k}", lambda env, k=k: lookup(env["jwt"], k), "string")
        )
        header = st.sampled_from(HEADER_NAMES).map(
            lambda h: Expr(
                f"request.headers[{quote(h)}]", lambda env, h=h: lookup(env["headers"], h), "string"
            )
        )
        return literals | claim | header
    if kind == "list":
        literals = st.lists(text, max_size=3).map(
            lambda items: Expr(
                "[" + ", ".join(map(quote, items)) + "]", lambda env, items=items: list(items), "list"
            )
        )
        return literals | st.just(Expr("jwt.tags", lambda env: lookup(env["jwt"], "tags"), "list"))
    booleans = st.booleans().map(lambda b: Expr("true" if b else "false", lambda env, b=b: b, "bool"))
    presence = st.sampled_from(sorted(CLAIM_KINDS)).map(
        lambda k: Expr(f"has(jwt.{k})", lambda env, k=k: k in env["jwt"], "bool")
    )
    header_presence = st.sampled_from(HEADER_NAMES).map(
        lambda h: Expr(f"({quote(h)} in request.headers)", lambda env, h=h: h in env["headers"], "bool")
    )
    return booleans | presence | header_presence


def extend(children: Callable[[str], st.SearchStrategy[Expr]], kind: str) -> st.SearchStrategy[Expr]:
    if kind == "int":

        def arith(op: str, a: Expr, b: Expr) -> Expr:
            def run(env: Env) -> int:
                x, y = a.evaluate(env), b.evaluate(env)
                return {"+": x + y, "-": x - y, "*": x * y}[op]

            return Expr(f"({a.source} {op} {b.source})", run, "int")

        def size_of(a: Expr) -> Expr:
            return Expr(f"size({a.source})", lambda env: len(a.evaluate(env)), "int")

        return st.builds(arith, st.sampled_from("+-*"), children("int"), children("int")) | st.builds(
            size_of, children("string") | children("list")
        )
    if kind == "string":

        def concat(a: Expr, b: Expr) -> Expr:
            return Expr(f"({a.source} + {b.source})", lambda env: a.evaluate(env) + b.evaluate(env), "string")

        def case(a: Expr, upper: bool) -> Expr:
            name = "upperAscii" if upper else "lowerAscii"
            return Expr(f"{a.source}.{name}()", lambda env: ascii_case(a.evaluate(env), upper), "string")

        return st.builds(concat, children("string"), children("string")) | st.builds(
            case, children("string"), st.booleans()
        )
    if kind == "list":
        return st.builds(
            lambda items: Expr(
                "[" + ", ".join(i.source for i in items) + "]",
                lambda env: [i.evaluate(env) for i in items],
                "list",
            ),
            st.lists(children("string"), max_size=3),
        )

    def comparison(op: str, a: Expr, b: Expr) -> Expr:
        def run(env: Env) -> bool:
            x, y = a.evaluate(env), b.evaluate(env)
            if op == "==":
                return equal(x, y)
            if op == "!=":
                return not equal(x, y)
            return compare(op, x, y)

        return Expr(f"({a.source} {op} {b.source})", run, "bool")

    def string_test(name: str, a: Expr, b: Expr) -> Expr:
        ops = {"startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__}
        return Expr(
            f"{a.source}.{name}({b.source})", lambda env: ops[name](a.evaluate(env), b.evaluate(env)), "bool"
        )

    def membership(a: Expr, b: Expr) -> Expr:
        def run(env: Env) -> bool:
            needle = a.evaluate(env)
            return any(equal(needle, x) for x in b.evaluate(env))

        return Expr(f"({a.source} in {b.source})", run, "bool")

    def negation(a: Expr) -> Expr:
        return Expr(f"!({a.source})", lambda env: not must_bool(a.evaluate(env)), "bool")

    def junction(op: str, a: Expr, b: Expr) -> Expr:
        fn = logical_and if op == "&&" else logical_or
        return Expr(f"({a.source} {op} {b.source})", lambda env: fn(a.evaluate, b.evaluate, env), "bool")

    def conditional(c: Expr, a: Expr, b: Expr) -> Expr:
        return Expr(
            f"({c.source} ? {a.source} : {b.source})",
            lambda env: a.evaluate(env) if must_bool(c.evaluate(env)) else b.evaluate(env),
            "bool",
        )

    def quantifier(name: str, items: Expr, prefix: Expr) -> Expr:
        # x.exists(v, v.startsWith(p)) / x.all(...): the predicate (and so `p`) is evaluated per
        # element, so over an empty list an erroring `p` is never evaluated.
        def run(env: Env) -> bool:
            values = items.evaluate(env)
            if not values:
                return name == "all"
            p = prefix.evaluate(env)
            tests = [v.startswith(p) for v in values]
            return any(tests) if name == "exists" else all(tests)

        return Expr(f"{items.source}.{name}(v, v.startsWith({prefix.source}))", run, "bool")

    scalar = st.sampled_from(["int", "string"])
    return (
        scalar.flatmap(
            lambda k: st.builds(
                comparison, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), children(k), children(k)
            )
        )
        | st.builds(comparison, st.sampled_from(["==", "!="]), children("int"), children("string"))
        | st.builds(
            string_test,
            st.sampled_from(["startsWith", "endsWith", "contains"]),
            children("string"),
            children("string"),
        )
        | st.builds(membership, children("string"), children("list"))
        | st.builds(negation, children("bool"))
        | st.builds(junction, st.sampled_from(["&&", "||"]), children("bool"), children("bool"))
        | st.builds(conditional, children("bool"), children("bool"), children("bool"))
        | st.builds(quantifier, st.sampled_from(["exists", "all"]), children("list"), children("string"))
    )


def expressions(kind: str = "bool", depth: int = 3) -> st.SearchStrategy[Expr]:
    """Expressions of `kind`, nested at most `depth` levels."""
    if depth == 0:
        return leaf(kind)
    return st.one_of(leaf(kind), extend(lambda k: expressions(k, depth - 1), kind))


def run(expr: Expr, env: Env) -> Any:
    """The reference's result: a value, or the RefError class when evaluation fails."""
    try:
        return expr.evaluate(env)
    except RefError:
        return RefError
