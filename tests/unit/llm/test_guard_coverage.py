"""Prompt guards against the ways a secret can be written so a plain regex misses it (look-alike
letters, fullwidth forms, invisible characters, JSON escapes, other scripts' digits), masked in
the original text; and the walks that hand every text of requests and responses to a guard."""

from __future__ import annotations

import copy

import orjson
import pytest

from agentgateway.llm.errors import CHAT, MESSAGES, RESPONSES, LlmError
from agentgateway.llm.guards import ChunkGuard, GuardSet, RegexGuard, Rejection, StreamGuard, builtin_rule, custom_rule
from agentgateway.llm.shaping import collect_texts, walk_request_texts, walk_response_texts
from agentgateway.llm.textfold import IndexMap, fold, fold_char, plain

SECRET = r"sk-live-[0-9a-z]{8}"


def guard(*names: str, reject: bool = False, patterns: tuple[str, ...] = ()) -> GuardSet:
    rules = tuple(builtin_rule(n) for n in names) + tuple(custom_rule(p) for p in patterns)
    return GuardSet((RegexGuard(rules, reject, Rejection(403, "nope")),))


def test_fold_characters() -> None:
    assert fold_char("ѕ") == "s" and fold_char("Ѕ") == "S"  # Cyrillic dze
    assert fold_char("а") == "a" and fold_char("ο") == "o"  # Cyrillic a, Greek omicron
    assert fold_char("＠") == "@" and fold_char("５") == "5"  # fullwidth
    assert fold_char("٣") == "3" and fold_char("३") == "3"  # Arabic-Indic, Devanagari digits
    assert fold_char("𝐬") == "s"  # mathematical bold
    assert fold_char("é") == "e" and fold_char("\u0336") == ""  # accents, strike-through marks
    for invisible in ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e"):
        assert fold_char(invisible) == ""
    assert fold_char("\U000e0073") == "s"  # a tag character hides ASCII
    assert fold_char("–") == "-" and fold_char("。") == "."
    assert fold_char("비") == "비" and fold_char("中") == "中"  # other scripts are left alone


def test_fold_and_index_map() -> None:
    assert plain("plain ascii") and not plain("caf\u00e9") and not plain("\\u0073k")
    original = "key: \u0455k-l\u200bive-ａｂ"
    index = IndexMap(original)
    assert index.text == fold(original) == "key: sk-live-ab"
    start = index.text.index("sk")
    assert index.span(start, len(index.text)) == (original.index("\u0455"), len(original))
    escaped = '{"k": "\\u0073k-\\ud835\\udc2c"}'
    assert fold(escaped) == IndexMap(escaped).text == '{"k": "sk-s"}'


@pytest.mark.parametrize(
    "text",
    [
        "token sk-live-abcd1234 here",
        "token \u0455k-live-abcd1234 here",  # Cyrillic ѕ
        "token ѕк-lіvе-аbcd1234 here",  # several look-alikes
        "token sk-live-ａｂｃｄ１２３４ here",  # fullwidth
        "token s\u200bk\u200c-li\u200dve-ab\u2060cd\ufeff1234 here",  # zero-width inside
        "token s\u0336k\u0336-live-abcd1234 here",  # strike-through marks
        "token \\u0073k-live-abcd1234 here",  # a JSON escape in tool arguments
        "token sk\u2013live\u2014abcd1234 here",  # dashes
    ],
)
def test_secret_variants_are_masked_in_the_original_text(text: str) -> None:
    masked = guard(patterns=(SECRET,)).apply(text)
    assert masked == "token <MASKED> here"
    with pytest.raises(LlmError):
        guard(patterns=(SECRET,), reject=True).apply(text)


def test_builtins_see_look_alikes() -> None:
    g = guard("email", "ssn", "creditCard")
    assert g.apply("mail bob＠example。com") == "mail <EMAIL_ADDRESS>"
    assert g.apply("ssn ١٢٣-٤٥-٦٧٨٩ ok") == "ssn <SSN> ok"
    assert g.apply("card ４１１１ １１１１ １１１１ １１１１ ok") == "card <CREDIT_CARD> ok"
    assert g.apply("ssn 123\u200b-45-6789") == "ssn <SSN>"
    # text around the match keeps its own characters
    assert g.apply("Привет, ssn 123-45-6789 — спасибо") == "Привет, ssn <SSN> — спасибо"


def test_patterns_with_non_ascii_literals_still_match_the_original() -> None:
    g = guard(patterns=("пароль",))
    assert g.apply("мой пароль тут") == "мой <MASKED> тут"


def test_stream_window_counts_folded_characters() -> None:
    """Zero-width characters between every digit must not stretch a card past the hold window."""
    card = "\u200b".join("4111111111111111") * 1
    sg = StreamGuard(guard("creditCard"))
    text = "card " + card + " end" + " pad" * 30
    out = [sg.feed(text[i : i + 2]) for i in range(0, len(text), 2)]
    out.append(sg.flush())
    assert "".join(out) == "card <CREDIT_CARD> end" + " pad" * 30


def test_stream_reject_on_a_look_alike() -> None:
    sg = StreamGuard(guard(patterns=(SECRET,), reject=True))
    with pytest.raises(LlmError):
        for piece in ("here: \u0455k-", "live-ab", "cd1234 and more"):
            sg.feed(piece)
        sg.flush()


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_chunk_guard_holds_tool_call_arguments_across_deltas() -> None:
    cg = ChunkGuard(guard(patterns=(SECRET,)))
    args = '{"token": "sk-live-abcd1234", "n": 1}'
    chunks = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "calling"}),
        _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}]}),
        *(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 4]}}]}) for i in range(0, 40, 4)),
        _chunk(
            {"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "sk-live-abcd1234"}}]}
        ),
        _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        _chunk({}, "tool_calls"),
    ]
    out = [g for c in chunks if (g := cg.feed(copy.deepcopy(c))) is not None]
    tail = cg.finish()
    assert tail is None
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in out)
    assert text == "calling"
    args_by_call: dict[int, str] = {}
    names = {}
    order = []
    for c in out:
        for call in c["choices"][0]["delta"].get("tool_calls") or []:
            fn = call.get("function") or {}
            args_by_call[call["index"]] = args_by_call.get(call["index"], "") + (fn.get("arguments") or "")
            if fn.get("name"):
                names[call["index"]] = fn["name"]
            order.append(call["index"])
    assert args_by_call == {0: '{"token": "<MASKED>", "n": 1}', 1: "{}"}
    assert names == {0: "f", 1: "<MASKED>"}
    assert order == sorted(order)  # the first call's held arguments come before the second call


def test_request_walks_cover_tool_calls_and_results() -> None:
    chat = {
        "messages": [
            {"role": "system", "content": "sys sk-live-aaaaaaa1"},
            {"role": "user", "content": [{"type": "text", "text": "u sk-live-aaaaaaa2"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "sk-live-aaaaaaa3", "arguments": '{"a": "sk-live-aaaaaaa4"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "result sk-live-aaaaaaa5"},
        ]
    }
    messages = {
        "system": [{"type": "text", "text": "sk-live-bbbbbbb1"}],
        "messages": [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "t",
                        "name": "get",
                        "input": {"k": ["sk-live-bbbbbbb2"], "sk-live-bbbbbbb3": 4111111111111111},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "text", "text": "sk-live-bbbbbbb4"}],
                    }
                ],
            },
        ],
    }
    responses = {
        "instructions": "sk-live-ccccccc1",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "sk-live-ccccccc2"}]},
            {"type": "function_call", "call_id": "x", "name": "f", "arguments": '{"q": "sk-live-ccccccc3"}'},
            {"type": "function_call_output", "call_id": "x", "output": "sk-live-ccccccc4"},
        ],
    }
    g = guard("creditCard", patterns=(SECRET,))
    for api, body, count in ((CHAT, chat, 5), (MESSAGES, messages, 5), (RESPONSES, responses, 4)):
        assert sum("sk-live-" in t for t in collect_texts(api, body)) == count - (api == MESSAGES)
        walk_request_texts(api, body, g.apply)
        dumped = orjson.dumps(body).decode()
        assert "sk-live" not in dumped and "4111111111111111" not in dumped, (api, dumped)


def test_response_walks_cover_tool_calls() -> None:
    g = guard(patterns=(SECRET,))
    chat = {
        "choices": [
            {
                "message": {
                    "content": "x",
                    "tool_calls": [{"function": {"name": "n", "arguments": '{"t":"\\u0073k-live-abcd1234"}'}}],
                }
            }
        ]
    }
    messages = {
        "content": [
            {"type": "thinking", "thinking": "sk-live-abcd1234"},
            {"type": "tool_use", "name": "n", "input": {"t": "ѕk-live-abcd1234"}},
        ]
    }
    responses = {
        "output": [
            {"type": "function_call", "name": "n", "arguments": '{"t":"sk-live-abcd1234"}'},
            {"type": "message", "content": [{"type": "output_text", "text": "sk-live-abcd1234"}]},
        ]
    }
    for api, body in ((CHAT, chat), (MESSAGES, messages), (RESPONSES, responses)):
        walk_response_texts(api, body, g.apply)
        dumped = orjson.dumps(body).decode()
        assert "live" not in dumped and "<MASKED>" in dumped, (api, dumped)


def test_chunk_guard_keeps_choices_apart() -> None:
    """n > 1: each choice's text is held and released in its own chunks."""
    cg = ChunkGuard(guard(patterns=(SECRET,)))

    def chunk(index: int, text: str, finish: str | None = None) -> dict:
        return {
            "id": "c",
            "model": "m",
            "choices": [{"index": index, "delta": {"content": text}, "finish_reason": finish}],
        }

    pieces = [chunk(0, "zero sk-li"), chunk(1, "one sk-live-"), chunk(0, "ve-abcd1234 end"), chunk(1, "aaaa1111 end")]
    out = [g for c in pieces if (g := cg.feed(c)) is not None]
    out += [cg.feed(chunk(0, "", "stop")), cg.feed(chunk(1, "", "stop"))]
    texts: dict[int, str] = {0: "", 1: ""}
    for c in out:
        assert c is not None
        for choice in c["choices"]:
            texts[choice["index"]] += choice["delta"].get("content") or ""
    assert texts == {0: "zero <MASKED> end", 1: "one <MASKED> end"}
