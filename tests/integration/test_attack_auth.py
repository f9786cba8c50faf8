"""Attacks on authentication and authorization through the daemon: where a credential policy
reads a request differently from the upstream behind it. Raw sockets, so that repeated and empty
fields, blanks and separators reach the gateway as written. One gateway serves the routes of the
credential tests."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import Gateway, UpstreamServer, free_port, raw_connection, read_response, stdio_target
from tests.support.idp import new_key, public_jwk

API_KEY = "sk-the-one-key"
USER, PASSWORD = "ann", "ann-pass"
HTPASSWD = f"{USER}:{{SHA}}{base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()}\n"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, UpstreamServer]]:
    """Credential policies in ``mode: optional`` (a credential that is present must be valid),
    one route per location: ``header.test`` reads ``x-api-key`` (no prefix), ``query.test`` the
    query parameter ``api_key``, ``cookie.test`` the cookie ``tok``, ``bearer.test`` the default
    ``Authorization: Bearer``, ``basic.test`` basicAuth's ``Authorization: Basic``."""
    tmp: Path = tmp_path_factory.mktemp("attack-auth")
    procs: list[Any] = []
    try:
        up = UpstreamServer(tmp, "up")
        procs.append(up)
        backends = [{"host": up.address}]

        def api_key(location: dict[str, Any] | None) -> dict[str, Any]:
            policy: dict[str, Any] = {"mode": "optional", "keys": [{"key": API_KEY}]}
            if location is not None:
                policy["location"] = location
            return {"apiKey": policy}

        routes = [
            {"hostnames": ["header.test"], "policies": api_key({"header": {"name": "x-api-key"}})},
            {"hostnames": ["query.test"], "policies": api_key({"queryParameter": {"name": "api_key"}})},
            {"hostnames": ["cookie.test"], "policies": api_key({"cookie": {"name": "tok"}})},
            {"hostnames": ["bearer.test"], "policies": api_key(None)},
            {"hostnames": ["basic.test"], "policies": {"basicAuth": {"mode": "optional", "htpasswd": HTPASSWD}}},
        ]
        for route in routes:
            route["backends"] = backends
        port = free_port()
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        procs.append(Gateway(gw_dir, {"binds": [{"port": port, "listeners": [{"routes": routes}]}]}))
        yield port, up
    finally:
        for proc in reversed(procs):
            proc.stop()


def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with raw_connection(port, timeout=5) as sock:
        sock.sendall(raw)
        return read_response(sock)


def _request(host: str, target: str = "/echo", headers: bytes = b"") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {host}\r\n".encode() + headers + b"\r\n"


_BASIC_FORGED = base64.b64encode(b"ann:forged")
_BASIC_GOOD = base64.b64encode(f"{USER}:{PASSWORD}".encode())

# Requests carrying a credential nothing may let through unchecked: each spelling puts a forged
# credential where a common upstream reads one, next to (or instead of) what the policy read.
_HIDDEN = {
    # An empty first field: PHP, Express and Go's Header.Values()[-1] readers take the last.
    "empty header, then forged": ("header.test", "/echo", b"x-api-key:\r\nx-api-key: forged\r\n"),
    "blank header, then forged": ("header.test", "/echo", b"x-api-key:  \r\nx-api-key: forged\r\n"),
    # CGI-style upstreams (WSGI, PHP, Rack) read x_api_key as x-api-key (both HTTP_X_API_KEY).
    "underscore spelling": ("header.test", "/echo", b"X_Api_Key: forged\r\n"),
    "empty header, then the underscore spelling": ("header.test", "/echo", b"x-api-key:\r\nx_api_key: forged\r\n"),
    "empty parameter, then forged": ("query.test", "/echo?api_key=&api_key=forged", b""),
    # PHP reads the last of a repeated query parameter.
    "encoded empty parameter, then forged": ("query.test", "/echo?api%5Fkey=&api_key=forged", b""),
    # Rack 2, Go before 1.17 and Python before 3.9.2 also split a query at ';' (CVE-2021-23336).
    "semicolon-separated parameter": ("query.test", "/echo?x=1;api_key=forged", b""),
    "empty cookie, then forged": ("cookie.test", "/echo", b"Cookie: tok=; tok=forged\r\n"),
    "quoted empty cookie, then forged": ("cookie.test", "/echo", b'Cookie: tok=""\r\nCookie: tok=forged\r\n'),
    # Rails reads the scheme with /^(Token|Bearer)\s+/: a tab separates it as well as a space.
    "bearer and a tab": ("bearer.test", "/echo", b"Authorization: Bearer\tforged\r\n"),
    "bearer, a space and a tab": ("bearer.test", "/echo", b"Authorization: bearer \tforged\r\n"),
    "basic and a tab": ("basic.test", "/echo", b"Authorization: Basic\t" + _BASIC_FORGED + b"\r\n"),
}


@pytest.mark.parametrize(("host", "target", "headers"), list(_HIDDEN.values()), ids=list(_HIDDEN))
def test_a_credential_in_an_unusual_spelling_is_checked(edge, host: str, target: str, headers: bytes) -> None:
    """``mode: optional`` lets a request without a credential through, and checks one that is
    there. An empty first occurrence, a ``;``-separated query parameter or a tab after the scheme
    once counted as no credential: the forged one beside it reached the upstream unchecked."""
    port, up = edge
    before = len(up.requests())
    status, _, body = _exchange(port, _request(host, target, headers))
    assert status == 401, body
    assert len(up.requests()) == before


_GOOD = {
    "empty header, then the key": ("header.test", "/echo", b"x-api-key:\r\nx-api-key: " + API_KEY.encode() + b"\r\n"),
    # Accepted, the key is removed in both spellings: a CGI-style upstream must not read the
    # second as the caller's key.
    "the key, then the underscore spelling": (
        "header.test",
        "/echo",
        b"x-api-key: " + API_KEY.encode() + b"\r\nx_api_key: sk-someone-else\r\n",
    ),
    "empty parameter, then the key": ("query.test", f"/echo?api_key=&api_key={API_KEY}&x=1", b""),
    "semicolon-separated key": ("query.test", f"/echo?x=1;api_key={API_KEY};y=2&z=3", b""),
    "empty cookie, then the key": ("cookie.test", "/echo", f"Cookie: tok=; tok={API_KEY}; other=1\r\n".encode()),
    "bearer and a tab": ("bearer.test", "/echo", f"Authorization: Bearer\t{API_KEY}\r\n".encode()),
    "basic and a tab": ("basic.test", "/echo", b"Authorization: Basic\t" + _BASIC_GOOD + b"\r\n"),
}


@pytest.mark.parametrize(("host", "target", "headers"), list(_GOOD.values()), ids=list(_GOOD))
def test_a_valid_credential_in_those_spellings_is_accepted_and_removed(
    edge, host: str, target: str, headers: bytes
) -> None:
    port, _ = edge
    status, _, body = _exchange(port, _request(host, target, headers))
    assert status == 200, body
    seen = json.loads(body)
    sent = json.dumps(seen)
    assert API_KEY not in sent and _BASIC_GOOD.decode() not in sent, seen
    assert [k for k, _ in seen["headers"] if k in ("authorization", "x-api-key", "x_api_key")] == []
    if host == "query.test":
        # The other parameters as sent, each with its separator.
        assert seen["target"] in ("/echo?x=1", "/echo?x=1;y=2&z=3"), seen["target"]
    if host == "cookie.test":
        assert dict(seen["headers"])["cookie"] == "other=1"


@pytest.mark.parametrize(
    ("host", "target", "headers"),
    [
        ("header.test", "/echo", b"x-api-key:\r\n"),
        ("query.test", "/echo?api_key=&x=1", b""),
        ("cookie.test", "/echo", b"Cookie: tok=\r\n"),
        ("bearer.test", "/echo", b"Authorization: Bearer\r\n"),
        ("bearer.test", "/echo", b"Authorization: Token other-scheme\r\n"),
    ],
)
def test_no_credential_is_still_let_through_in_optional_mode(edge, host: str, target: str, headers: bytes) -> None:
    port, _ = edge
    status, _, body = _exchange(port, _request(host, target, headers))
    assert status == 200, body


# ---------------------------------------------------------------------------------------- extAuthz


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_an_authorizer_header_replaces_the_clients_underscore_spelling(gateway, upstream, authz, mode: str) -> None:
    """An allowing authorizer names the user in ``x-authz-user`` (and, over gRPC, removes
    ``x-remove-me``); the client's own ``x_authz_user: mallory`` reached a CGI-style upstream
    (WSGI, PHP, Rack) as the same ``HTTP_X_AUTHZ_USER``, beside the authorizer's or in its place."""
    up, svc = upstream(), authz(mode)
    protocol: dict[str, Any] = (
        {"grpc": {}} if mode == "grpc" else {"http": {"includeResponseHeaders": ["x-authz-user"]}}
    )
    port = free_port()
    ext_authz = {"host": f"127.0.0.1:{svc.port}", "protocol": protocol, "includeRequestHeaders": ["x-authz"]}
    gateway(
        {
            "binds": [
                {
                    "port": port,
                    "listeners": [
                        {"routes": [{"policies": {"extAuthz": ext_authz}, "backends": [{"host": up.address}]}]}
                    ],
                }
            ]
        }
    )
    raw = b"GET /echo HTTP/1.1\r\nHost: gw.test\r\nx-authz: allow\r\nX_Authz_User: mallory\r\nx_remove_me: 1\r\n\r\n"
    status, _, body = _exchange(port, raw)
    assert status == 200, body
    sent = [[k, v] for k, v in json.loads(body)["headers"] if k.replace("_", "-") == "x-authz-user"]
    assert sent == [["x-authz-user", "alice"]], sent
    if mode == "grpc":  # the service removes x-remove-me: in every spelling
        assert [k for k, _ in json.loads(body)["headers"] if k.replace("_", "-") == "x-remove-me"] == []


# ---------------------------------------------------------------------------------------- mcpAuthentication


class _CountingIssuer:
    """An issuer whose metadata fetches are counted and answered ``status`` (after ``delay``)."""

    def __init__(self, status: int, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.fetches = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with lock:
                    outer.fetches += 1
                time.sleep(outer.delay)
                body = b'{"issuer": "x"}' if outer.status == 200 else b"unavailable"
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [503, 200])
def test_authorization_server_metadata_requests_cannot_flood_the_issuer(gateway, status: int) -> None:
    """``GET /.well-known/oauth-authorization-server`` needs no token and is answered from the
    issuer's own metadata. Each request once fetched it again while the issuer failed (and every
    concurrent request at a cold start): anyone could make the gateway send the identity provider
    one request per request. Fetches are shared and at most one per 2 s, as JWKS fetches are."""
    issuer = _CountingIssuer(status, delay=0.3)
    try:
        port = free_port()
        policy = {
            "issuer": issuer.url,
            "audiences": [f"http://127.0.0.1:{port}/mcp"],
            "jwks": {"keys": [public_jwk("k1", new_key())]},
            "resourceMetadata": {},
        }
        gateway({"mcp": {"port": port, "targets": [stdio_target("alpha")], "policies": {"mcpAuthentication": policy}}})
        url = f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server/mcp"
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: httpx.get(url, timeout=10).status_code, range(32)))
        assert set(answers) == ({502} if status != 200 else {200}), answers
        for _ in range(10):
            assert httpx.get(url, timeout=10).status_code == (502 if status != 200 else 200)
        assert issuer.fetches == 1, issuer.fetches
        if status != 200:
            time.sleep(2.2)  # the next fetch may start now
            issuer.status = 200
            assert httpx.get(url, timeout=10).status_code == 200
            assert issuer.fetches == 2
    finally:
        issuer.stop()


def test_oidc_discovery_requests_cannot_flood_the_provider(gateway, upstream) -> None:
    """Every request without a session needs the provider's discovery document. While the
    provider failed, each such request (and every concurrent one at a cold start) fetched it
    again: anyone could make the gateway call the provider once per request. Fetches are shared
    and at most one per 2 s."""
    issuer = _CountingIssuer(503, delay=0.3)
    try:
        up = upstream()
        port = free_port()
        oidc = {
            "issuer": issuer.url,
            "clientId": "gw",
            "clientSecret": "s3cret",
            "redirectURI": f"http://127.0.0.1:{port}/oauth/callback",
        }
        routes = [{"policies": {"oidc": oidc}, "backends": [{"host": up.address}]}]
        gateway(
            {"binds": [{"port": port, "listeners": [{"routes": routes}]}]},
            env={"SESSION_KEY": "ab" * 32},
        )
        url = f"http://127.0.0.1:{port}/app"
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: httpx.get(url, timeout=10).status_code, range(32)))
        answers += [httpx.get(f"{url}?n={i}", timeout=10).status_code for i in range(10)]
        assert set(answers) == {503}, answers
        assert issuer.fetches == 1, issuer.fetches
    finally:
        issuer.stop()


# ---------------------------------------------------------------------------------------- reload

_MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _mcp_post(url: str, body: dict[str, Any], session: str | None = None) -> httpx.Response:
    headers = dict(_MCP_HEADERS)
    if session is not None:
        headers["mcp-session-id"] = session
        headers["mcp-protocol-version"] = "2025-06-18"
    return httpx.post(url, json=body, headers=headers, timeout=20)


def _mcp_result(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    text = r.text
    if r.headers["content-type"].startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    return json.loads(text)


def test_a_reload_that_tightens_mcp_authorization_applies_to_open_sessions(gateway, tmp_path) -> None:
    """An operator revokes a tool by editing ``mcpAuthorization``: a session opened before the
    reload must not keep calling it under the rules it started with."""
    port = free_port()
    target = stdio_target("alpha")

    def config(rules: list[Any]) -> dict[str, Any]:
        backend = {"mcp": {"targets": [target]}}
        route = {"name": "mcp", "backends": [backend], "policies": {"mcpAuthorization": {"rules": rules}}}
        return {"binds": [{"port": port, "listeners": [{"routes": [route]}]}]}

    gw = gateway(config(["true"]))
    url = f"http://127.0.0.1:{port}/mcp"
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    r = _mcp_post(url, init)
    _mcp_result(r)
    session = r.headers["mcp-session-id"]
    _mcp_post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hi"}}}
    assert "result" in _mcp_result(_mcp_post(url, call, session))

    before = gw.metric("agentgateway_config_reloads_total", result="success")
    gw.write_config(config(["true", {"deny": 'has(mcp.tool) && mcp.tool.name == "echo"'}]))
    deadline = time.monotonic() + 10
    while gw.metric("agentgateway_config_reloads_total", result="success") == before:
        assert time.monotonic() < deadline, "no reload"
        time.sleep(0.1)
    time.sleep(0.3)  # the workers take the new config

    # A new session is refused the tool; so must the one opened before.
    r = _mcp_post(url, init)
    fresh = r.headers["mcp-session-id"]
    _mcp_post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, fresh)
    assert _mcp_result(_mcp_post(url, call, fresh))["error"]["message"] == "Unknown tool: echo"
    answer = _mcp_post(url, call, session)
    if answer.status_code == 404:
        return  # the old session was ended: its client starts a new one
    assert _mcp_result(answer)["error"]["message"] == "Unknown tool: echo"
    listed = _mcp_result(_mcp_post(url, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, session))
    assert "echo" not in {t["name"] for t in listed["result"]["tools"]}
