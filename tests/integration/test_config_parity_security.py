"""Security-relevant config keys mean what they mean in agentgateway, through the real daemon:
``backendTLS`` with both ``insecure`` and ``insecureHost`` (agentgateway still verifies the
chain), and the regexes of route matches and prompt guards, which agentgateway runs with the
``regex`` crate: its syntax, its leftmost-first matching, and time linear in what the client sends
(Python's ``re`` backtracks: one request could hold a worker's CPU for minutes)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trustme
import yaml

from tests.support.gateway import binds, free_port
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY


def _direct(name: str, body: str, match: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "matches": [match], "policies": {"directResponse": {"status": 200, "body": body}}}


_CATCH_ALL = _direct("other", "other", {"path": {"pathPrefix": "/"}})


# ----------------------------------------------------------------------------------- backendTLS


def test_backend_tls_insecure_with_insecure_host_still_verifies_the_chain(gateway, upstream, tmp_path):
    """agentgateway reads ``insecureHost`` before ``insecure``: with both set it verifies the
    certificate chain and skips only the name. Here both set turned every check off, so an
    upstream (or anyone on its path) with a self-made certificate was trusted."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / "up-cert.pem", tmp_path / "up-key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    root = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(root))
    up = upstream("tls", tls=(str(cert_path), str(key_path)))
    both = {"insecure": True, "insecureHost": True}
    port = free_port()
    gateway(
        binds(
            port,
            [
                # the system's roots do not hold the test CA: refused
                {
                    "name": "untrusted",
                    "matches": [{"path": {"pathPrefix": "/untrusted"}}],
                    "backends": [{"host": up.address, "policies": {"backendTLS": both}}],
                },
                # a trusted chain for another name: the name is what is skipped
                {
                    "name": "trusted",
                    "matches": [{"path": {"pathPrefix": "/trusted"}}],
                    "backends": [
                        {
                            "host": up.address,
                            "policies": {"backendTLS": {**both, "root": str(root), "hostname": "other.test"}},
                        }
                    ],
                },
                # insecure alone still skips everything
                {
                    "name": "insecure",
                    "matches": [{"path": {"pathPrefix": "/insecure"}}],
                    "backends": [{"host": up.address, "policies": {"backendTLS": {"insecure": True}}}],
                },
            ],
        )
    )
    r = httpx.get(f"http://127.0.0.1:{port}/untrusted", timeout=10)
    assert r.status_code == 503 and "TLS" in r.text
    assert httpx.get(f"http://127.0.0.1:{port}/trusted", timeout=10).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/insecure", timeout=10).status_code == 200


# ------------------------------------------------------------------------------ route regexes

# Nested repetition: a backtracking engine tries every way to split the a's before it gives up.
_NESTED = r"/api/(\w+/?)+"


def test_route_regexes_run_in_linear_time(gateway):
    """A path, header or query regex with nested repetition, and a client value that almost
    matches it: answered at once (the route does not match), and the worker keeps serving."""
    port = free_port()
    gateway(
        binds(
            port,
            [
                _direct("path", "path", {"path": {"regex": _NESTED}}),
                _direct(
                    "header",
                    "header",
                    {"path": {"exact": "/h"}, "headers": [{"name": "x-v", "value": {"regex": r"(\w+\s?)+"}}]},
                ),
                _direct(
                    "query",
                    "query",
                    {"path": {"exact": "/q"}, "query": [{"name": "v", "value": {"regex": r"(\w+,?)+"}}]},
                ),
            ],
        )
    )
    base = f"http://127.0.0.1:{port}"
    evil = "a" * 40 + "!"
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base}/api/x/y").text == "path"
        assert client.get(f"{base}/h", headers={"x-v": "a b"}).text == "header"
        assert client.get(f"{base}/q", params={"v": "a,b"}).text == "query"
        start = time.monotonic()
        assert client.get(f"{base}/api/{evil}").status_code == 404  # no route matches
        assert client.get(f"{base}/h", headers={"x-v": evil}).status_code == 404
        assert client.get(f"{base}/q", params={"v": evil}).status_code == 404
        assert time.monotonic() - start < 5
        assert client.get(f"{base}/api/x").text == "path"


def test_route_regex_leftmost_match_must_span_the_value(gateway):
    """agentgateway takes the regex's leftmost match and requires it to cover the whole path
    (or value): ``/pub|/pub/admin`` does not match ``/pub/admin`` (its first alternative matches
    ``/pub``). Here any way of matching the whole path counted, so the route took paths that
    agentgateway sends elsewhere (to another route and its policies, or nowhere)."""
    port = free_port()
    gateway(
        binds(
            port,
            [
                _direct("public", "public", {"path": {"regex": "/pub|/pub/admin"}}),
                _direct(
                    "header",
                    "header",
                    {"path": {"exact": "/h"}, "headers": [{"name": "x-role", "value": {"regex": "user|user-admin"}}]},
                ),
                _direct(
                    "query", "query", {"path": {"exact": "/q"}, "query": [{"name": "r", "value": {"regex": "a|ab"}}]}
                ),
            ],
        )
    )
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base}/pub").text == "public"
        assert client.get(f"{base}/pub/admin").status_code == 404
        assert client.get(f"{base}/h", headers={"x-role": "user"}).text == "header"
        assert client.get(f"{base}/h", headers={"x-role": "user-admin"}).status_code == 404
        assert client.get(f"{base}/q?r=a").text == "query"
        assert client.get(f"{base}/q?r=ab").status_code == 404


def test_route_regex_syntax_is_the_regex_crates(tmp_path: Path):
    """Look-around and back-references (which the ``regex`` crate does not have, and which
    backtrack) are config errors naming the key, as agentgateway refuses them."""
    for k, pattern in enumerate((r"/a(?=b)", r"/(a)\1")):
        file = tmp_path / f"c{k}.yaml"
        file.write_text(yaml.safe_dump(binds(free_port(), [_direct("r", "r", {"path": {"regex": pattern}})])))
        out = subprocess.run(
            [sys.executable, "-m", "agentgateway", "-f", str(file), "--validate-only"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0
        assert "path.regex" in out.stderr + out.stdout and "invalid regex" in out.stderr + out.stdout


# ----------------------------------------------------------------------- prompt guard regexes


def test_prompt_guard_regex_runs_in_linear_time(gateway, processes, tmp_path):
    """A custom prompt guard pattern with nested repetition over a prompt the client wrote: the
    guard decides at once (no match: the call goes on), as the ``regex`` crate decides it."""
    fake = FakeProvider(tmp_path, "openai")
    processes.append(fake)
    port = free_port()
    gateway(
        {
            "llm": {
                "port": port,
                "models": [
                    {
                        "name": "gpt-4o-mini",
                        "provider": "openAI",
                        "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1", "model": "gpt-4o-mini"},
                    }
                ],
                "policies": {
                    "ai": {
                        "promptGuard": {
                            "request": [{"regex": {"action": "reject", "rules": [{"pattern": r"^(\w+\s?)+$"}]}}]
                        }
                    }
                },
            }
        }
    )

    def chat(text: str) -> httpx.Response:
        return httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
            timeout=10,
        )

    assert chat("only words here").status_code != 200  # the guard holds
    start = time.monotonic()
    assert chat("a" * 40 + "!").status_code == 200
    assert time.monotonic() - start < 5


def test_regex_route_ranks_with_prefixes_by_length(gateway):
    """agentgateway ranks path prefixes and regexes together by length (after exact paths):
    ``regex: /admin/.*`` (9 characters) before ``pathPrefix: /``. Here every prefix came before
    every regex, so the catch-all took ``/admin/...`` and the admin route's ``apiKey`` was never
    asked for."""
    port = free_port()
    admin = {
        "name": "admin",
        "matches": [{"path": {"regex": "/admin/.*"}}],
        "policies": {
            "apiKey": {"mode": "strict", "keys": [{"key": "admin-key"}]},
            "directResponse": {"status": 200, "body": "admin"},
        },
    }
    gateway(binds(port, [_CATCH_ALL, admin, _direct("short", "short", {"path": {"regex": "/a.*"}})]))
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base}/admin/users").status_code == 401
        r = client.get(f"{base}/admin/users", headers={"authorization": "Bearer admin-key"})
        assert r.status_code == 200 and r.text == "admin"
        assert client.get(f"{base}/about").text == "short"  # a regex longer than the prefix "/"
        assert client.get(f"{base}/x").text == "other"


def test_query_match_reads_the_last_occurrence(gateway):
    """agentgateway collects the query into a map: a parameter given twice is matched by its
    last value. Here the first counted, so ``?debug=no&debug=true`` skipped the route (and its
    ``apiKey``) that ``debug=true`` selects, while an upstream reading the last value (PHP,
    Rails) saw ``debug=true``."""
    port = free_port()
    debug = {
        "name": "debug",
        "matches": [{"path": {"pathPrefix": "/"}, "query": [{"name": "debug", "value": {"exact": "true"}}]}],
        "policies": {
            "apiKey": {"mode": "strict", "keys": [{"key": "dev-key"}]},
            "directResponse": {"status": 200, "body": "debug"},
        },
    }
    gateway(binds(port, [_CATCH_ALL, debug]))
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base}/x?debug=true").status_code == 401
        assert client.get(f"{base}/x?debug=no&debug=true").status_code == 401
        assert client.get(f"{base}/x?debug=true&debug=no").text == "other"
        r = client.get(f"{base}/x?debug=no&debug=true", headers={"authorization": "Bearer dev-key"})
        assert r.text == "debug"
