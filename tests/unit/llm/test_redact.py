"""Credentials the gateway sent, redacted from provider errors: whole, in runs of 8+ characters,
and in elided quotes (OpenAI's ``sk-proj-****…abcd``), in text, JSON bodies and headers."""

from __future__ import annotations

import orjson
import pytest

from agentgateway.llm.redact import REDACTED, Redactor

KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
R = Redactor([KEY, "AKIDEXAMPLE", "short"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"Incorrect API key provided: {KEY[:8]}{'*' * 30}{KEY[-4:]}. See docs.",
            f"Incorrect API key provided: {REDACTED}. See docs.",
        ),
        (f"key {KEY} bad", f"key {REDACTED} bad"),
        (f"Bearer {KEY}", f"Bearer {REDACTED}"),
        (f"truncated {KEY[10:22]}", f"truncated {REDACTED}"),
        (f"last part {KEY[-9:]}.", f"last part {REDACTED}."),
        (f"{KEY[:3]}...{KEY[-4:]} elided", f"{REDACTED} elided"),
        (f"{KEY[:5]}…{KEY[-2:]} elided", f"{REDACTED} elided"),
        ("id AKIDEXAMPLE in the signature", f"id {REDACTED} in the signature"),
        ("a short one", f"a {REDACTED} one"),
        # not the key: left alone
        ("Loading... done", "Loading... done"),
        ("sk-*** is not a key", "sk-*** is not a key"),
        (f"only {KEY[-3:]} shown", f"only {KEY[-3:]} shown"),
    ],
)
def test_text(text: str, expected: str) -> None:
    assert R.text(text) == expected


def test_json_bodies_and_headers() -> None:
    escaped = KEY.replace("sk", "\\u0073k")
    body = b'{"error": {"message": "bad key ' + escaped.encode() + b'", "code": "invalid_api_key"}}'
    out = orjson.loads(R.body(body))
    assert out == {"error": {"message": f"bad key {REDACTED}", "code": "invalid_api_key"}}
    untouched = b'{"error": {"message": "fine"}}'
    assert R.body(untouched) is untouched
    assert R.body(f"plain {KEY}".encode()) == f"plain {REDACTED}".encode()
    assert R.headers([(b"x-request-id", f"req_{KEY}".encode())]) == ((b"x-request-id", f"req_{REDACTED}".encode()),)
    assert Redactor([]).text(KEY) == KEY
