"""HTTP/2 through the real daemon: clients over TLS (ALPN) and plaintext (prior knowledge), with
httpx, curl and a raw h2 client; policies, MCP and limits as over HTTP/1.1; flow control, stream
limits, resets and GOAWAY; HTTP/2 upstreams and the independence of the two sides' versions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import httpx2
import pytest
import trustme
from h2.errors import ErrorCodes
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.gateway import binds, free_port, mcp_config, raw_connection, stdio_target, wait_for
from tests.support.http2 import PREFACE, H2UpstreamServer, RawH2Client


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[trustme.CA, str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / "localhost.crt", tmp_path / "localhost.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return ca, str(cert_path), str(key_path)


@pytest.fixture
def h2_upstream(tmp_path, processes):
    def start(tls: tuple[str, str] | None = None) -> H2UpstreamServer:
        server = H2UpstreamServer(tmp_path, tls)
        processes.append(server)
        return server

    return start


def _client_tls(ca: trustme.CA, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(alpn)
    return ctx


def _headers(echo: dict) -> dict[str, str]:
    return {k: v for k, v in echo["headers"]}


# ---------------------------------------------------------------- clients


def test_h2c_prior_knowledge_with_httpx(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        r = client.get(f"http://127.0.0.1:{port}/a/./b/../echo?q=1", headers={"x-custom": "yes"})
        assert r.http_version == "HTTP/2" and r.status_code == 200
        echo = r.json()
        # The upstream gets an HTTP/1.1 request (it was not told it speaks HTTP/2): the same
        # normalized target, Host from :authority, the forwarded headers the gateway writes.
        assert echo["version"] == "HTTP/1.1" and echo["target"] == "/a/echo?q=1"
        headers = _headers(echo)
        assert headers["host"] == f"127.0.0.1:{port}" and headers["x-custom"] == "yes"
        assert headers["x-forwarded-proto"] == "http" and headers["x-forwarded-for"] == "127.0.0.1"
        # A body of unknown length reaches the HTTP/1.1 upstream chunked.
        body = os.urandom(300_000)
        r = client.post(f"http://127.0.0.1:{port}/echo", content=iter([body[:1000], body[1000:]]))
        assert r.json()["body_length"] == len(body) and r.json()["chunked"] is True

    async def many() -> list[int]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=20) as client:
            rs = await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/echo?i={i}") for i in range(20)))
            return [r.json()["target"] == f"/echo?i={i}" and r.http_version == "HTTP/2" for i, r in enumerate(rs)]

    assert all(asyncio.run(many()))  # 20 streams multiplexed on one connection
    # HTTP/1.1 clients on the same port are served as before.
    assert httpx.get(f"http://127.0.0.1:{port}/echo", timeout=10).http_version == "HTTP/1.1"


def test_h2_over_tls_by_alpn(gateway, upstream, tls_files):
    ca, cert, key = tls_files
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}], protocol="HTTPS", tls={"cert": cert, "key": key}))
    with httpx.Client(http2=True, verify=_client_tls(ca, ["h2", "http/1.1"]), timeout=10) as client:
        r = client.get(f"https://localhost:{port}/echo")
        assert r.http_version == "HTTP/2"
        assert _headers(r.json())["x-forwarded-proto"] == "https"
    with httpx.Client(verify=_client_tls(ca, ["http/1.1"]), timeout=10) as client:
        assert client.get(f"https://localhost:{port}/echo").http_version == "HTTP/1.1"
    # Without ALPN at all: HTTP/1.1.
    no_alpn = ssl.create_default_context()
    ca.configure_trust(no_alpn)
    with httpx.Client(verify=no_alpn, timeout=10) as client:
        assert client.get(f"https://localhost:{port}/echo").status_code == 200


def test_alpn_setting_limits_what_is_offered(gateway, upstream, tls_files):
    ca, cert, key = tls_files
    up = upstream()
    port = free_port()
    config = binds(port, [{"backends": [{"host": up.address}]}], protocol="HTTPS", tls={"cert": cert, "key": key})
    config["frontendPolicies"] = {"tls": {"alpn": [list(b"http/1.1")]}}  # the reference's form: bytes
    gateway(config)
    with httpx.Client(http2=True, verify=_client_tls(ca, ["h2", "http/1.1"]), timeout=10) as client:
        assert client.get(f"https://localhost:{port}/echo").http_version == "HTTP/1.1"


def _curl(*args: str) -> tuple[str, str]:
    out = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_version}", *args], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    body, _, version = out.stdout.rpartition("\n")
    return body, version


def test_curl_http2_and_prior_knowledge(gateway, upstream, tls_files, tmp_path):
    ca, cert, key = tls_files
    up = upstream()
    plain, secure = free_port(), free_port()
    route = [{"backends": [{"host": up.address}]}]
    gateway(
        {
            "binds": [
                {"port": plain, "listeners": [{"routes": route}]},
                {
                    "port": secure,
                    "listeners": [{"protocol": "HTTPS", "tls": {"cert": cert, "key": key}, "routes": route}],
                },
            ]
        }
    )
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    body, version = _curl("--http2", "--cacert", str(ca_path), f"https://localhost:{secure}/echo")
    assert version == "2" and json.loads(body)["method"] == "GET"
    body, version = _curl("--http2-prior-knowledge", "-d", "hello", f"http://127.0.0.1:{plain}/echo")
    assert version == "2" and json.loads(body)["body_length"] == 5
    # `Upgrade: h2c` is not accepted (as agentgateway): the request is answered over HTTP/1.1.
    body, version = _curl("--http2", f"http://127.0.0.1:{plain}/echo")
    assert version == "1.1" and json.loads(body)["method"] == "GET"
    assert "upgrade" not in _headers(json.loads(body))


# ---------------------------------------------------------------- the same policies


def test_route_policies_apply_over_h2_as_over_h1(gateway, upstream):
    up = upstream()
    port = free_port()
    route = {
        "policies": {
            "apiKey": {"mode": "strict", "keys": [{"key": "sk-one", "metadata": {"team": "red"}}]},
            "requestHeaderModifier": {"set": {"x-added": "by-gateway"}, "remove": ["x-drop"]},
            "responseHeaderModifier": {"add": {"x-resp": "r1"}},
            "transformations": {"request": {"set": {"x-team": "apiKey.team"}}},
            "localRateLimit": [{"maxTokens": 2, "tokensPerFill": 1, "fillInterval": "1h"}],
        },
        "backends": [{"host": up.address}],
    }
    gateway(binds(port, [route]))
    url = f"http://127.0.0.1:{port}/echo"
    auth = {"authorization": "Bearer sk-one", "x-drop": "secret"}
    outcomes = {}
    for name, client in (
        ("h1", httpx.Client(timeout=10)),
        ("h2", httpx.Client(http1=False, http2=True, timeout=10)),
    ):
        with client:
            missing = client.get(url)
            assert missing.status_code == 401 and "no API key" in missing.text
            ok = client.get(url, headers=auth)
            assert ok.status_code == 200 and ok.headers["x-resp"] == "r1"
            headers = _headers(ok.json())
            assert headers["x-added"] == "by-gateway" and headers["x-team"] == "red"
            assert "x-drop" not in headers and "authorization" not in headers
            outcomes[name] = (missing.status_code, ok.status_code, ok.http_version)
    # The limit (2, counted after authentication) is one bucket whatever the protocol: the two
    # authenticated requests above took it; the next is refused.
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        limited = client.get(url, headers=auth)
        assert limited.status_code == 429 and limited.http_version == "HTTP/2"
    assert outcomes == {"h1": (401, 200, "HTTP/1.1"), "h2": (401, 200, "HTTP/2")}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_over_h2_with_the_sdk(gateway, anyio_backend):
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha")]))
    url = f"http://127.0.0.1:{port}/mcp"
    async with (
        httpx2.AsyncClient(http1=False, http2=True, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        names = {t.name for t in (await client.list_tools()).tools}
        assert "echo" in names  # one target: its tools are not prefixed
        result = await client.call_tool("echo", {"text": "over h2"})
        assert result.content[0].text == "alpha: over h2"
    # (a request's line is written once its response has ended, which may be after the client
    # has read the answer it waited for)
    served = wait_for(lambda: [line for line in gw.access_lines() if "http.path=/mcp" in line], 10, "access lines")
    assert all("http.version=HTTP/2" in line for line in served)
    # And the plain JSON-RPC of an initialize request over h2 (the response is the upstream's).
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.post(
            url,
            headers={"accept": "application/json, text/event-stream", "content-type": "application/json"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw-h2", "version": "1"},
                },
            },
        )
        assert r.status_code == 200 and r.http_version == "HTTP/2"
        assert r.headers.get("mcp-session-id")


# ---------------------------------------------------------------- flow control and limits


def test_large_bodies_both_ways_in_bounded_memory(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    # Upload and download of several MiB through windows that are far smaller.
    body = os.urandom(6 * 1024 * 1024)
    with httpx.Client(http1=False, http2=True, timeout=60) as client:
        r = client.post(f"http://127.0.0.1:{port}/echo", content=body)
        assert r.json()["body_length"] == len(body)
        assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        r = client.get(f"http://127.0.0.1:{port}/bytes?n={8 * 1024 * 1024}")
        assert len(r.content) == 8 * 1024 * 1024
    # A client that stops reading: the gateway holds at most about a window and its high-water
    # mark, pausing the upstream, while the upstream has 64 MiB to send.
    baseline = gw.worker_rss()
    size = 64 * 1024 * 1024
    with RawH2Client(port, auto_ack=False) as client:
        stream = client.request(f"/bytes?n={size}")
        client.wait(lambda: len(client.responses[stream].body) >= 65_535, what="a window of data")
        time.sleep(1.5)  # the upstream would fill the gateway's memory now if nothing paused it
        assert gw.worker_rss() - baseline < 24 * 1024 * 1024
        assert len(client.responses[stream].body) <= 65_535  # the client's window was respected
        # Reading again: the data flows again (then the client gives up on the rest).
        response = client.responses[stream]
        while len(response.body) < 8 * 1024 * 1024:
            client.ack(stream)
            client.read_once()
        client.reset(stream)
        client.auto_ack = True
        client.ack(stream)  # what arrived since counts against the connection's window
        assert client.fetch("/echo").status == 200


def test_stream_limit_and_settings(gateway, upstream):
    up = upstream()
    port = free_port()
    config = binds(port, [{"backends": [{"host": up.address}]}])
    config["frontendPolicies"] = {
        "http": {"http2MaxConcurrentStreams": 2, "http2MaxHeaderSize": 4096, "http2WindowSize": 100_000}
    }
    gateway(config)
    with RawH2Client(port) as client:
        client.wait(lambda: client.max_concurrent_streams is not None, what="the server's SETTINGS")
        assert client.max_concurrent_streams == 2
        # A header list over http2MaxHeaderSize is answered 431; the connection stays.
        big = client.fetch("/echo", headers=[("x-big", "a" * 5000)])
        assert big.status == 431
        assert client.fetch("/echo").status == 200
    with RawH2Client(port, respect_stream_limit=False) as client:
        client.wait(lambda: client.max_concurrent_streams is not None, what="the server's SETTINGS")
        # A client that opens a third stream while two are open breaks the protocol: nghttp2
        # ends the connection (GOAWAY, PROTOCOL_ERROR).
        for _ in range(3):
            client.request("/slow?delay=1")
        client.wait(lambda: client.goaway is not None, what="the GOAWAY")
        assert client.goaway.error_code == ErrorCodes.PROTOCOL_ERROR
    # Clients that respect the limit queue their requests: all succeed.

    async def many() -> list[int]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as c:
            rs = await asyncio.gather(*(c.get(f"http://127.0.0.1:{port}/slow?delay=0.2") for _ in range(6)))
            return [r.status_code for r in rs]

    assert asyncio.run(many()) == [200] * 6


def _refused(response) -> bool:
    """Refused before anything is forwarded: 400 from the gateway's checks, or a stream reset
    (PROTOCOL_ERROR) from nghttp2's (RFC 9113 §8.2, §8.3)."""
    return response.status == 400 or response.reset == ErrorCodes.PROTOCOL_ERROR


def test_bad_requests_are_refused_per_stream(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with RawH2Client(port) as client:
        # Path checks are the same as over HTTP/1.1 (core/request.py).
        assert client.fetch("/api/%2e%2e/%2e%2e/etc").status == 200  # normalized to /etc, not refused
        for path in ("/a%2Fb", "/a%5Cb", "/a%00b", "/..;/admin", "/%c0%af", "*", "relative"):
            assert _refused(client.fetch(path)), path
        for authority in ("bad host", "user@host", "", "a\tb"):
            assert _refused(client.fetch("/echo", authority=authority)), authority
        conflicting = client.fetch("/echo", method="POST", headers=[("content-length", "x1")], body=b"x")
        assert _refused(conflicting)
        # Forwarded headers from an untrusted peer are dropped at the edge.
        echo = json.loads(client.fetch("/echo", headers=[("x-forwarded-for", "6.6.6.6")]).body)
        assert _headers(echo)["x-forwarded-for"] == "127.0.0.1"
        assert client.fetch("/echo").status == 200  # the connection is still good
    # A malformed request (RFC 9113 §8.2: an upper-case field name, a connection-specific
    # field) is a stream error: that stream is reset, the connection goes on.
    with RawH2Client(port) as client:
        client.conn.config.validate_outbound_headers = False
        client.conn.config.normalize_outbound_headers = False
        for bad in (("X-Upper", "1"), ("connection", "close"), ("te", "gzip")):
            assert client.fetch("/echo", headers=[bad]).reset == ErrorCodes.PROTOCOL_ERROR
        assert client.fetch("/echo").status == 200
    # Nothing refused reached the upstream.
    assert sorted(r["target"] for r in up.requests()) == ["/echo", "/echo", "/echo", "/etc"]
    # Bytes that are not HTTP/2 after the preface end that connection; the gateway serves others.
    with raw_connection(port) as sock:
        sock.sendall(PREFACE + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"HTTP/1.1 200" not in sock.recv(4096)
    with httpx.Client(http1=False, http2=True, timeout=10) as c:
        assert c.get(f"http://127.0.0.1:{port}/echo").status_code == 200


def test_client_reset_cancels_the_upstream_request(gateway, upstream, h2_upstream):
    up = upstream()
    h2up = h2_upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {"matches": [{"path": {"pathPrefix": "/h2"}}], "policies": {"urlRewrite": {"path": {"prefix": "/"}}},
                 "backends": [{"host": h2up.address, "policies": {"http": {"version": "2"}}}]},
                {"backends": [{"host": up.address}]},
            ],
        )
    )  # fmt: skip
    with RawH2Client(port) as client:
        stream = client.request("/hang")
        wait_for(lambda: any(r["target"] == "/hang" for r in up.requests()), 10, "the request upstream")
        before = up.open_connections()
        client.reset(stream)
        # The HTTP/1.1 upstream connection carrying it is closed (it cannot be reused mid-request).
        wait_for(lambda: up.open_connections() < before, 10, "the upstream connection to close")
        # An HTTP/2 upstream sees the stream reset, the connection stays.
        stream = client.request("/h2/slow?delay=5")
        wait_for(lambda: _h2_log(h2up, "requests", "/slow?delay=5"), 10, "the request on the HTTP/2 upstream")
        client.reset(stream)
        wait_for(lambda: _h2_log(h2up, "resets", "/slow?delay=5"), 10, "the reset on the HTTP/2 upstream")
        assert client.fetch("/echo").status == 200


def _h2_log(server: H2UpstreamServer, kind: str, path: str) -> bool:
    with httpx.Client(http1=False, http2=True, timeout=5) as c:
        log = c.get(f"http://{server.address}/__log").json()
    items = log[kind]
    return any((item.get(":path") if isinstance(item, dict) else item) == path for item in items)


def test_goaway_on_drain_lets_streams_in_flight_finish(gateway, upstream):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with RawH2Client(port) as client:
        assert client.fetch("/echo").status == 200
        stream = client.request("/slow?delay=1.5")
        time.sleep(0.3)
        os.kill(gw.pid, signal.SIGTERM)
        client.wait(lambda: client.goaway is not None, what="the GOAWAY")
        assert client.goaway.error_code == ErrorCodes.NO_ERROR
        assert client.goaway.last_stream_id == stream
        response = client.response(stream)
        assert response.status == 200 and response.ended
    gw.proc.wait(20)


def test_goaway_on_reload_that_changes_http2_settings(gateway, upstream):
    up = upstream()
    port = free_port()
    config = binds(port, [{"backends": [{"host": up.address}]}])
    config["frontendPolicies"] = {"http": {"http2MaxConcurrentStreams": 50}}
    gw = gateway(config)
    with RawH2Client(port) as client:
        client.wait(lambda: client.max_concurrent_streams == 50, what="the server's SETTINGS")
        assert client.fetch("/echo").status == 200
        config["frontendPolicies"] = {"http": {"http2MaxConcurrentStreams": 7}}
        gw.write_config(config)
        client.wait(lambda: client.goaway is not None, timeout=20, what="the GOAWAY after the reload")
        assert client.goaway.error_code == ErrorCodes.NO_ERROR
    with RawH2Client(port) as client:
        client.wait(lambda: client.max_concurrent_streams is not None, what="the server's SETTINGS")
        assert client.max_concurrent_streams == 7


# ---------------------------------------------------------------- HTTP/2 upstreams


def test_upstream_versions_are_independent_of_the_client(gateway, upstream, h2_upstream, tls_files):
    ca, cert, key = tls_files
    h1 = upstream()
    h2c = h2_upstream()
    h2tls = h2_upstream(tls=(cert, key))
    ca_path = Path(cert).parent / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    port = free_port()
    gateway(
        binds(
            port,
            [
                {"matches": [{"path": {"pathPrefix": "/h2c/"}}], "policies": {"urlRewrite": {"path": {"prefix": "/"}}},
                 "backends": [{"host": h2c.address, "policies": {"http": {"version": "2"}}}]},
                {"matches": [{"path": {"pathPrefix": "/h2tls/"}}], "policies": {"urlRewrite": {"path": {"prefix": "/"}}},
                 "backends": [{"host": h2tls.address, "policies": {
                     "http": {"version": "HTTP/2"},
                     "backendTLS": {"root": str(ca_path), "hostname": "localhost"}}}]},
                {"matches": [{"path": {"pathPrefix": "/wrong/"}}], "policies": {"urlRewrite": {"path": {"prefix": "/"}}},
                 "backends": [{"host": h1.address, "policies": {"http": {"version": 2}}}]},
                {"backends": [{"host": h1.address}]},
            ],
        )
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for client in (httpx.Client(timeout=20), httpx.Client(http1=False, http2=True, timeout=20)):
        with client:
            # To an HTTP/2 upstream (h2c and TLS): the same request, as HTTP/2.
            for prefix, scheme in (("/h2c", "http"), ("/h2tls", "https")):
                r = client.post(f"{base}{prefix}/trailers?x=1", content=b"payload", headers={"x-c": "1"})
                assert r.status_code == 200 and r.headers["x-upstream-version"] == "2"
                echo = r.json()
                assert echo["version"] == "HTTP/2" and echo["path"] == "/trailers?x=1"
                assert echo["scheme"] == scheme and echo["authority"] == f"127.0.0.1:{port}"
                assert echo["body_length"] == 7
                headers = _headers(echo)
                assert headers["x-c"] == "1" and headers["x-forwarded-for"] == "127.0.0.1"
                assert not {"connection", "keep-alive", "transfer-encoding", "host"} & set(headers)
            # A large download from the HTTP/2 upstream, through both windows.
            big = client.get(f"{base}/h2c/bytes?n={5 * 1024 * 1024}")
            assert len(big.content) == 5 * 1024 * 1024
            # To an HTTP/1.1 upstream without a version: HTTP/1.1, whatever the client spoke.
            assert client.get(f"{base}/echo").json()["version"] == "HTTP/1.1"
            # Told HTTP/2 for an upstream that only speaks HTTP/1.1: a clear 502.
            wrong = client.get(f"{base}/wrong/echo")
            assert wrong.status_code == 502 and "HTTP/2" in wrong.text
    # Trailers of an HTTP/2 upstream reach HTTP/2 clients.
    with RawH2Client(port) as raw:
        r = raw.fetch("/h2c/trailers", method="POST", body=b"abc")
        assert r.status == 200 and r.trailers["x-done"] == "yes"
        assert r.trailers["x-checksum"] == json.loads(r.body)["body_sha256"]


def test_a_paused_request_body_resumes_when_its_queue_drains_without_a_window_update(gateway, h2_upstream):
    """A request body past the stream's high-water mark pauses the client; the upstream then opens
    its window once, wide, and never again (as a gRPC peer whose window grew does). What waited
    leaves in the next write, and that write, not a later window update that never comes, must
    resume the client: over HTTP/1.1 and HTTP/2 clients alike."""
    h2c = h2_upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": h2c.address, "policies": {"http": {"version": "2"}}}]}]))
    body = os.urandom(2 * 1024 * 1024)
    for client in (httpx.Client(timeout=15), httpx.Client(http1=False, http2=True, timeout=15)):
        with client:
            for _ in range(2):
                r = client.post(f"http://127.0.0.1:{port}/lazyack", content=body)
                assert r.status_code == 200, r.text
                assert r.json()["body_length"] == len(body)
                assert r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_a_paused_response_resumes_when_its_queue_drains_without_a_window_update(gateway, upstream):
    """The mirror case: a response past the stream's mark pauses the upstream; the client then
    opens its windows once, wide (16 MiB), and never again. The write that sends what waited must
    resume the upstream, or the response stops there for good."""
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    size = 4 * 1024 * 1024
    with RawH2Client(port, auto_ack=False) as client:
        stream = client.request(f"/bytes?n={size}")
        client.wait(lambda: len(client.responses[stream].body) >= 32 * 1024, what="the first window of data")
        client.conn.increment_flow_control_window(16 * 1024 * 1024)
        client.conn.increment_flow_control_window(16 * 1024 * 1024, stream)
        client.flush()
        response = client.response(stream, timeout=10)
        assert response.status == 200 and len(response.body) == size


def test_upgrades_have_no_http2_form(gateway, upstream, h2_upstream):
    """Neither side turns an upgrade into HTTP/2: a WebSocket upgrade to a backend set to HTTP/2
    is refused (502), and CONNECT over HTTP/2 (extended CONNECT, RFC 8441, included) with 501 or
    a stream reset; nothing reaches an upstream."""
    up = upstream()
    h2up = h2_upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {"matches": [{"path": {"pathPrefix": "/h2"}}],
                 "backends": [{"host": h2up.address, "policies": {"http": {"version": "2"}}}]},
                {"backends": [{"host": up.address}]},
            ],
        )
    )  # fmt: skip
    with raw_connection(port) as sock:
        sock.sendall(
            b"GET /h2/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 502"), answer
    with RawH2Client(port) as client:
        client.conn.config.validate_outbound_headers = False
        for path in ("/ws", "/h2/ws"):
            extended = client.fetch(path, method="CONNECT", headers=[(":protocol", "websocket")])
            assert extended.status == 501 or extended.reset == ErrorCodes.PROTOCOL_ERROR, path
        assert client.fetch("/echo").status == 200  # the connection is still good
    assert [r["target"] for r in up.requests()] == ["/echo"]
    assert not _h2_log(h2up, "requests", "/h2/ws")


def test_backend_auth_reaches_an_http2_upstream(gateway, h2_upstream):
    """backendAuth is applied to a request sent over HTTP/2 as over HTTP/1.1 (the client's own
    credentials replaced)."""
    h2up = h2_upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [{"backends": [{"host": h2up.address, "policies": {
                "http": {"version": "2"},
                "backendAuth": {"key": {"value": "k2", "location": {"header": {"name": "x-api-key"}}}}}}]}],
        )
    )  # fmt: skip
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        r = client.get(f"http://127.0.0.1:{port}/echo", headers={"x-api-key": "client-key"})
    assert r.status_code == 200
    assert _headers(r.json())["x-api-key"] == "k2"
