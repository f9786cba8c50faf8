from __future__ import annotations

import pytest

from agentgateway.llm.errors import LlmError
from agentgateway.llm.guards import GuardSet, RegexGuard, Rejection, StreamGuard, builtin_rule, custom_rule


def guard(*names: str, reject: bool = False, patterns: tuple[str, ...] = ()) -> GuardSet:
    rules = tuple(builtin_rule(n) for n in names) + tuple(custom_rule(p) for p in patterns)
    return GuardSet((RegexGuard(rules, reject, Rejection(403, "nope")),))


@pytest.mark.parametrize(
    ("name", "text", "masked"),
    [
        ("email", "write to jane.doe+x@example.co.uk now", "write to <EMAIL_ADDRESS> now"),
        ("creditCard", "card 4111-1111-1111-1111 ok", "card <CREDIT_CARD> ok"),
        ("creditCard", "card 4111 1111 1111 1112 fails Luhn", "card 4111 1111 1111 1112 fails Luhn"),
        ("ssn", "ssn 123-45-6789", "ssn <SSN>"),
        ("ssn", "not 000-12-3456", "not 000-12-3456"),
        ("phoneNumber", "call (415) 555-0123 or +1 415.555.0199", "call <PHONE_NUMBER> or <PHONE_NUMBER>"),
        ("caSin", "sin 046 454 286", "sin <CA_SIN>"),
    ],
)
def test_builtins(name: str, text: str, masked: str) -> None:
    assert guard(name).apply(text) == masked


def test_custom_and_reject() -> None:
    assert guard(patterns=(r"proj-\d+",)).apply("see proj-17 and proj-2") == "see <MASKED> and <MASKED>"
    with pytest.raises(LlmError) as err:
        guard("email", reject=True).apply("a@b.example")
    assert (err.value.status, err.value.message) == (403, "nope")
    assert guard("email", reject=True).apply("no address here") == "no address here"


def test_stream_guard_catches_matches_split_across_chunks() -> None:
    sg = StreamGuard(guard("ssn", "email"))
    text = "Here it is: 123-45-6789 and mail bob@example.com, bye. " + "x" * 100
    out = []
    for i in range(0, len(text), 3):
        out.append(sg.feed(text[i : i + 3]))
    out.append(sg.flush())
    assert "".join(out) == "Here it is: <SSN> and mail <EMAIL_ADDRESS>, bye. " + "x" * 100
    # text is released before the end: the stream still streams
    assert sum(len(o) for o in out[:-1]) > 50


def test_stream_guard_reject_raises_early() -> None:
    sg = StreamGuard(guard("ssn", reject=True))
    assert sg.feed("hello ") == ""
    with pytest.raises(LlmError):
        sg.feed("123-45-6789")
