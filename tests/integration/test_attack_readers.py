"""Audit 11 through the daemon: bodies the gateway reads differently from the peer behind it.

An ``ai`` backend's passthrough routes send the client's body to the provider as it came, while
the gateway decides on what it read of it (``llm.requestModel`` for rate-limit keys and
descriptors, ``allowedModels``, accounting). A body the gateway's strict JSON parser refuses was
taken for "not JSON" and read as no model at all, yet the provider may well read it as JSON:
Python's ``json.loads`` (FastAPI/Starlette, vLLM) decodes UTF-16/32 and a UTF-8 BOM and takes
``NaN``, ``1e400`` and lone surrogates; Go's ``encoding/json`` and Node take invalid UTF-8 (as
U+FFFD), Go's ``json.Decoder`` (gin, Ollama) the first document of several. Such a body is
refused; a body that is not JSON to anyone (a multipart upload) still passes.

And the config file as the supervisor reads it while someone writes it in place: a read that
lands mid-write must not serve the part written so far (empty, or without a route's policies)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import Gateway, free_port, raw_connection, read_response
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY as PROVIDER_KEY

MODEL = b'{"model":"pricey","messages":[{"role":"user","content":"hi"}]'


@pytest.fixture(scope="module")
def raw_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, FakeProvider]]:
    """An ``ai`` backend (OpenAI, the strict fake) whose every path is ``passthrough``; the answer
    names the model the gateway read (``x-read-model``)."""
    tmp: Path = tmp_path_factory.mktemp("attack-readers-llm")
    procs: list[Any] = []
    try:
        fake = FakeProvider(tmp, "openai")
        procs.append(fake)
        port = free_port()
        backend = {
            "ai": {"name": "openai", "provider": {"openAI": {}}, "hostOverride": f"127.0.0.1:{fake.port}"},
            "policies": {"backendAuth": {"key": PROVIDER_KEY}},
        }
        policies = {
            "ai": {"routes": {"*": "passthrough"}},
            "transformations": {"response": {"set": {"x-read-model": "llm.requestModel"}}},
        }
        route = {"backends": [backend], "policies": policies}
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        procs.append(Gateway(gw_dir, {"binds": [{"port": port, "listeners": [{"routes": [route]}]}]}))
        yield port, fake
    finally:
        for proc in reversed(procs):
            proc.stop()


def _post(port: int, body: bytes, content_type: bytes = b"application/json") -> tuple[int, dict[str, str], bytes]:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: llm.test\r\nContent-Type: " + content_type
    head += b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    with raw_connection(port, timeout=15) as sock:
        sock.sendall(head + body)
        return read_response(sock)


def test_a_passthrough_body_the_gateway_reads_is_served(raw_llm) -> None:
    port, fake = raw_llm
    status, headers, answer = _post(port, MODEL + b"}")
    assert status == 200, answer
    assert headers["x-read-model"] == "pricey"
    assert fake.last()["body"].encode() == MODEL + b"}"


TEXT = MODEL.decode() + "}"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xef\xbb\xbf" + MODEL + b"}", id="utf8-bom"),
        pytest.param(TEXT.encode("utf-16"), id="utf16-bom"),
        pytest.param(TEXT.encode("utf-16-le"), id="utf16le"),
        pytest.param(TEXT.encode("utf-16-be"), id="utf16be"),
        pytest.param(TEXT.encode("utf-32"), id="utf32-bom"),
        pytest.param(TEXT.encode("utf-32-be"), id="utf32be"),
        pytest.param(b" \r\n\t" + b"\xef\xbb\xbf" + MODEL + b"}", id="blank-then-bom"),
        pytest.param(MODEL + b',"temperature":NaN}', id="nan"),
        pytest.param(MODEL + b',"temperature":-Infinity}', id="infinity"),
        pytest.param(MODEL + b',"temperature":1e400}', id="huge-number"),
        pytest.param(MODEL + b',"user":"\\ud800"}', id="lone-surrogate-escape"),
        pytest.param(MODEL + b',"user":"\xed\xa0\x80"}', id="surrogate-bytes"),
        pytest.param(MODEL + b',"user":"\xff"}', id="invalid-utf8"),
        pytest.param(MODEL + b',"user":"\xc0\xaf"}', id="overlong-utf8"),
        pytest.param(MODEL + b"}" + b'{"model":"cheap"}', id="second-document"),
        pytest.param(MODEL + b"}\x00", id="trailing-nul"),
        pytest.param(MODEL + b",}", id="trailing-comma"),
        pytest.param(b"[" + MODEL + b"},]", id="array"),
    ],
)
def test_a_passthrough_body_others_read_as_json_is_refused(raw_llm, body: bytes) -> None:
    """The gateway read no model (``llm.requestModel`` ""), the provider would read ``pricey``:
    a rate limit keyed or a descriptor valued by the model would count another bucket."""
    port, fake = raw_llm
    before = fake.count()
    status, headers, answer = _post(port, body)
    assert status == 400, (status, headers, answer)
    assert b"JSON" in answer
    assert fake.count() == before


def test_a_passthrough_body_that_is_not_json_passes(raw_llm) -> None:
    """A multipart upload (``/v1/audio/transcriptions`` style) is nobody's JSON: it goes as it came."""
    port, fake = raw_llm
    body = b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\npricey\r\n--b--\r\n'
    before = fake.count()
    status, headers, _ = _post(port, body, b"multipart/form-data; boundary=b")
    assert fake.count() == before + 1
    assert fake.last()["body"].encode() == body
    assert headers.get("x-read-model") == "" or status != 200


# ---------------------------------------------------------------------------------------- config reload

RELOAD_KEY = "sk-reload-key"


def _guarded_config(port: int, upstream_address: str) -> dict[str, Any]:
    """One route that needs an API key; ``policies`` is the last thing in the file, so a file
    cut before it is a valid config that serves the route to anyone."""
    route = {
        "name": "guarded",
        "backends": [{"host": upstream_address}],
        "policies": {"apiKey": {"mode": "strict", "keys": [{"key": RELOAD_KEY}]}},
    }
    return {"config": {}, "binds": [{"port": port, "listeners": [{"routes": [route]}]}]}


def _anonymous(port: int) -> int | None:
    """The status an anonymous GET gets (None: no listener)."""
    try:
        with raw_connection(port, timeout=2) as sock:
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: guarded.test\r\nConnection: close\r\n\r\n")
            return read_response(sock)[0]
    except OSError:
        return None


def _probe_for(port: int, seconds: float) -> list[int | None]:
    seen = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seen.append(_anonymous(port))
        time.sleep(0.02)
    return seen


def test_a_config_file_truncated_for_writing_is_not_served(gateway, upstream) -> None:
    """``generate > config.yaml``: the shell truncates the file before the command writes (a
    ``kubectl`` or ``helm`` round trip takes a second). An empty file compiled to a config with
    no binds: every listener closed until the text arrived."""
    port = free_port()
    address = upstream("a").address
    gw = gateway(_guarded_config(port, address))
    assert _anonymous(port) == 401
    text = gw.render(_guarded_config(port, address))
    with open(gw.config_path, "w") as f:  # noqa: PTH123 - written in place on purpose
        seen = _probe_for(port, 1.0)
        f.write(text)
    seen += _probe_for(port, 0.5)
    assert set(seen) == {401}, seen
    assert gw.metric("agentgateway_config_reloads_total", result="success") == 0


def test_a_config_file_written_in_steps_is_read_once_written(gateway, upstream) -> None:
    """A writer that stops between two writes (a pipe, a template renderer): the first part is a
    valid config without the route's ``policies``. Read 50 ms after the change was seen, it was
    served: the route open to anyone until the rest arrived. The watch now waits until the
    file has not changed for 250 ms (agentgateway debounces its watch by 250 ms)."""
    port = free_port()
    address = upstream("a").address
    gw = gateway(_guarded_config(port, address))
    text = gw.render(_guarded_config(port, address))
    cut = text.rindex("\n", 0, text.index("policies:")) + 1
    seen: list[int | None] = []
    for _ in range(4):
        with open(gw.config_path, "w") as f:  # noqa: PTH123 - written in place on purpose
            f.write(text[:cut])
            f.flush()
            seen += _probe_for(port, 0.15)
            f.write(text[cut:])
        seen += _probe_for(port, 0.4)
    assert set(seen) == {401}, seen
    assert gw.metric("agentgateway_config_reloads_total", result="success") == 0
