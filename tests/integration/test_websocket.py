"""WebSocket (and other HTTP/1.1 upgrades) through the real daemon: the ``websockets`` library as
client and as server (tests/support/websocket_server.py), raw sockets where the bytes on the wire
matter. The upgrade is routed and policed like any request; once the backend answers 101 the
gateway relays bytes both ways."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.gateway import ResponseReader, binds, free_port, raw_connection, wait_for
from tests.support.idp import new_key, public_jwk
from tests.support.websocket_server import WebSocketServer

_HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
)


@pytest.fixture
def ws_server() -> Iterator[WebSocketServer]:
    server = WebSocketServer()
    yield server
    server.stop()


def _route(server: WebSocketServer, **policies: object) -> dict[str, object]:
    route: dict[str, object] = {"backends": [{"host": server.address}]}
    if policies:
        route["policies"] = policies
    return route


async def _session(port: int, path: str = "/echo", **kwargs: object) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=10, **kwargs)  # type: ignore[arg-type]


def _frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """A masked client frame (RFC 6455 §5.2), written by hand for raw-socket tests."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_text_binary_large_and_fragmented_messages(gateway, ws_server):
    port = free_port()
    gateway(binds(port, [_route(ws_server)]))

    async def run() -> None:
        async with await _session(port) as ws:
            await ws.send("hello, gateway")
            assert await ws.recv() == "hello, gateway"
            await ws.send(b"\x00\x01binary\xff")
            assert await ws.recv() == b"\x00\x01binary\xff"
            # Several MiB each way, more than any socket buffer: back-pressure on both legs.
            big = os.urandom(6 * 1024 * 1024)
            await ws.send(big)
            assert await ws.recv() == big
            text = "é" * (1024 * 1024)
            await ws.send(text)
            assert await ws.recv() == text
            # A message sent in fragments (continuation frames) arrives whole at the server.
            await ws.send([b"frag-1|", b"frag-2|", os.urandom(300_000), b"|end"])
            echoed = await ws.recv()
            assert isinstance(echoed, bytes) and echoed.startswith(b"frag-1|frag-2|") and echoed.endswith(b"|end")
            await ws.send(["un", "deux", "trois"])
            assert await ws.recv() == "undeuxtrois"
            # Ping and pong are control frames: relayed like the rest.
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 10)
            # Many small messages in flight at once.
            for i in range(200):
                await ws.send(f"m{i}")
            for i in range(200):
                assert await ws.recv() == f"m{i}"

    asyncio.run(run())


def test_close_started_by_the_client(gateway, ws_server):
    port = free_port()
    gw = gateway(binds(port, [_route(ws_server)]))

    async def run() -> None:
        ws = await _session(port)
        await ws.send("bye soon")
        assert await ws.recv() == "bye soon"
        await ws.close(1000, "client done")
        assert ws.close_code == 1000

    asyncio.run(run())
    # The server saw the client's close frame, code and reason, through the gateway.
    wait_for(lambda: ws_server.closes, 10, "the server to see the close")
    assert ws_server.closes == [(1000, "client done")]
    # The access log tells one 101 line for the whole session, with the bytes each way.
    line = wait_for(lambda: [x for x in gw.access_lines() if "http.status=101" in x], 10, "the tunnel's log line")[0]
    assert "http.path=/echo" in line and "bytes.received=" in line and "bytes.sent=" in line


def test_close_started_by_the_server(gateway, ws_server):
    port = free_port()
    gateway(binds(port, [_route(ws_server)]))

    async def run() -> tuple[int | None, str | None]:
        ws = await _session(port, "/close")
        await ws.send("please close")
        with pytest.raises(ConnectionClosed):  # (4001 is not a "normal" code: ConnectionClosedError)
            await asyncio.wait_for(ws.recv(), 10)
        await ws.wait_closed()
        assert ws.close_code is not None
        return ws.close_code, ws.close_reason

    assert asyncio.run(run()) == (4001, "server says bye")
    wait_for(lambda: ws_server.closes, 10, "the server's close to complete")
    assert ws_server.closes == [(4001, "server says bye")]


def test_upgrade_headers_reach_the_upstream_and_header_modifiers_apply(gateway, ws_server):
    port = free_port()
    route = _route(
        ws_server,
        requestHeaderModifier={"add": {"x-added": "by-gateway"}, "remove": ["x-secret"]},
        responseHeaderModifier={"set": {"x-from-gateway": "yes"}},
    )
    gateway(binds(port, [route]))

    async def run_plain() -> tuple[dict[str, str], dict[str, str]]:
        async with await _session(port, "/headers?x=1", additional_headers={"x-secret": "hide", "x-kept": "1"}) as ws:
            seen = json.loads(await ws.recv())
            response = ws.response
            assert response is not None
            return seen, {k.lower(): v for k, v in response.headers.raw_items()}

    seen, response = asyncio.run(run_plain())
    assert seen["upgrade"].lower() == "websocket"
    assert "upgrade" in seen["connection"].lower()
    assert seen["sec-websocket-version"] == "13" and seen["sec-websocket-key"]
    assert seen["x-added"] == "by-gateway" and seen["x-kept"] == "1" and "x-secret" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert response["x-from-gateway"] == "yes"
    assert response["upgrade"].lower() == "websocket" and response["connection"].lower() == "upgrade"
    assert response["sec-websocket-accept"]


def test_upgrade_refused_by_jwt_auth_and_rate_limit(gateway, ws_server):
    key = new_key()
    port = free_port()
    jwt_route = {
        "matches": [{"path": {"pathPrefix": "/secure"}}],
        "backends": [{"host": ws_server.address}],
        "policies": {
            "jwtAuth": {"mode": "strict", "issuer": "https://idp.test", "jwks": {"keys": [public_jwk("k1", key)]}}
        },
    }
    limited = {
        "matches": [{"path": {"pathPrefix": "/limited"}}],
        "backends": [{"host": ws_server.address}],
        "policies": {"localRateLimit": [{"maxTokens": 1, "tokensPerFill": 1, "fillInterval": "1h"}]},
    }
    gateway(binds(port, [jwt_route, limited]))

    async def status_of(path: str, **kwargs: object) -> int:
        try:
            async with await _session(port, path, **kwargs) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    async def run() -> None:
        assert await status_of("/secure") == 401
        token = jwt.encode(
            {"iss": "https://idp.test", "sub": "alice", "exp": int(time.time()) + 600},
            key,
            algorithm="RS256",
            headers={"kid": "k1"},
        )
        assert await status_of("/secure", additional_headers={"authorization": f"Bearer {token}"}) == 101
        assert await status_of("/limited") == 101
        assert await status_of("/limited") == 429

    asyncio.run(run())
    # Refused upgrades never reached the server: only the two accepted ones did.
    assert ws_server.connections == 2
    # jwtAuth removed the validated token from the forwarded handshake.
    assert all("authorization" not in h for h in ws_server.handshakes)


def test_upgrade_behind_an_asynchronous_policy(gateway, ws_server, authz):
    """extAuthz (a gRPC call) holds the upgrade until it answers: allowed, the tunnel opens with
    the service's header mutations; denied, its answer reaches the client."""
    authz_port = authz("grpc").port
    port = free_port()
    gateway(binds(port, [_route(ws_server, extAuthz={"host": f"127.0.0.1:{authz_port}"})]))

    async def run() -> None:
        async with await _session(port, "/headers", additional_headers={"x-authz": "allow"}) as ws:
            seen = json.loads(await ws.recv())
            assert seen["x-authz-user"] == "alice"
            await ws.send(b"through")
            assert await ws.recv() == b"through"
        with pytest.raises(InvalidStatus) as refused:
            await _session(port, "/headers", additional_headers={"x-authz": "deny"})
        assert refused.value.response.status_code == 401

    asyncio.run(run())
    assert ws_server.connections == 1


def test_refused_upgrade_keeps_the_connection_for_http(gateway, ws_server, upstream):
    """A policy's answer, or a backend that does not switch, is an ordinary response: the next
    request on the same connection is served."""
    up = upstream()
    port = free_port()
    routes = [
        {"matches": [{"path": {"pathPrefix": "/plain"}}], "backends": [{"host": up.address}]},
        {
            "matches": [{"path": {"pathPrefix": "/denied"}}],
            "backends": [{"host": ws_server.address}],
            "policies": {"authorization": {"rules": ["false"]}},
        },
        _route(ws_server),
    ]
    gateway(binds(port, routes))
    with raw_connection(port) as s:
        reader = ResponseReader(s)
        for path in ("/refuse", "/denied", "/plain/echo"):
            # An upgrade the backend refuses (403), one a policy refuses (403), one to a plain
            # HTTP upstream (it answers 200 and does not switch); each followed by a request.
            s.sendall(_HANDSHAKE.format(path=path, extra="").encode())
            status, headers, _ = reader.read()
            assert status in (403, 200), (path, status)
            assert headers.get("connection") != "close"
            s.sendall(b"GET /plain/echo HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            status, headers, body = reader.read()
            assert status == 200 and headers["x-upstream"] == "up", body
    # The plain upstream saw the upgrade headers of the request it did not switch for.
    first = next(dict(r["headers"]) for r in up.requests() if dict(r["headers"]).get("upgrade"))
    assert first["upgrade"] == "websocket" and first["connection"] == "upgrade"


def test_a_request_behind_a_refused_upgrade_is_policed(gateway, ws_server, upstream):
    """Bytes pipelined behind an upgrade the backend refuses are the next request: routed and
    policed as such, never relayed to the backend that refused (no tunnel without a 101)."""
    up = upstream()
    port = free_port()
    routes = [
        {
            "matches": [{"path": {"pathPrefix": "/admin"}}],
            "backends": [{"host": up.address}],
            "policies": {"authorization": {"rules": ["false"]}},
        },
        _route(ws_server),
    ]
    gateway(binds(port, routes))
    with raw_connection(port) as s:
        smuggled = b"GET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n"
        s.sendall(_HANDSHAKE.format(path="/refuse", extra="").encode() + smuggled)
        reader = ResponseReader(s)
        assert reader.read()[0] == 403  # the WebSocket server refused the handshake
        status, _, body = reader.read()
        assert status == 403 and b"authorization" in body.lower()  # the policy refused the request
    assert up.requests() == []


def test_websocket_over_an_https_listener(gateway, ws_server, tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert("ws.example.com")
    cert, key = tmp_path / "ws.crt", tmp_path / "ws.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    port = free_port()
    gateway(binds(port, [_route(ws_server)], protocol="HTTPS", tls={"cert": str(cert), "key": str(key)}))
    client = ssl.create_default_context()
    ca.configure_trust(client)

    async def run() -> None:
        async with connect(
            f"wss://127.0.0.1:{port}/echo", ssl=client, server_hostname="ws.example.com", max_size=None, open_timeout=10
        ) as ws:
            big = os.urandom(3 * 1024 * 1024)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.close(1000, "tls done")

    asyncio.run(run())
    wait_for(lambda: ws_server.closes, 10, "the server to see the close")
    assert ws_server.closes == [(1000, "tls done")]


def test_bytes_after_the_handshake_and_early_server_data(gateway, ws_server):
    """Raw frames written right behind the handshake (before the 101) reach the server, and the
    server's frames written right behind its 101 reach the client."""
    port = free_port()
    gateway(binds(port, [_route(ws_server)]))
    with raw_connection(port) as s:
        s.sendall(_HANDSHAKE.format(path="/echo", extra="").encode() + _frame(b"early bird"))
        reader = ResponseReader(s)
        status, headers, _ = reader.read()
        assert status == 101 and headers["upgrade"].lower() == "websocket"
        while len(reader.buf) < 12:
            reader._fill()
        # An unmasked server text frame: 0x81, length, payload.
        assert reader.buf[:2] == b"\x81\x0a" and reader.buf[2:12] == b"early bird"


@pytest.mark.parametrize(
    "headers",
    [
        "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n",
        "Upgrade: H2C, websocket\r\nConnection: UPGRADE\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n",
    ],
)
def test_upgrade_spellings(gateway, ws_server, headers):
    """Case, token lists and an empty body all upgrade; h2c is dropped from the list."""
    port = free_port()
    gateway(binds(port, [_route(ws_server)]))
    with raw_connection(port) as s:
        s.sendall(
            (
                "GET /echo HTTP/1.1\r\nHost: gw.test\r\n" + headers + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status, response, _ = ResponseReader(s).read()
        assert status == 101, response
    seen = ws_server.handshakes[-1]
    assert seen["upgrade"].lower() == "websocket" and "h2c" not in seen["upgrade"].lower()


@pytest.mark.parametrize("framing", ["Content-Length: 5\r\n", "Transfer-Encoding: chunked\r\n"])
def test_upgrade_request_with_any_body_framing_is_refused(gateway, ws_server, framing):
    port = free_port()
    gateway(binds(port, [_route(ws_server)]))
    with raw_connection(port) as s:
        s.sendall(_HANDSHAKE.format(path="/echo", extra=framing).encode() + b"5\r\nhello\r\n0\r\n\r\n")
        status, _, body = ResponseReader(s).read()
        assert status == 400 and b"cannot carry a body" in body
    assert ws_server.connections == 0


def test_upgrade_request_with_a_body_is_refused(gateway, ws_server):
    port = free_port()
    gateway(binds(port, [_route(ws_server)]))
    with raw_connection(port) as s:
        s.sendall(_HANDSHAKE.format(path="/echo", extra="Content-Length: 5\r\n").encode() + b"hello")
        status, headers, body = ResponseReader(s).read()
        assert status == 400 and b"cannot carry a body" in body
        assert headers.get("connection") == "close"
    assert ws_server.connections == 0


def test_h2c_upgrade_is_served_as_plain_http(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    with raw_connection(port) as s:
        reader = ResponseReader(s)
        for _ in range(2):
            s.sendall(
                b"GET /echo HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
            )
            status, headers, _ = reader.read()
            assert status == 200 and headers["x-upstream"] == "up"
    for request in up.requests():
        names = dict(request["headers"])
        assert "upgrade" not in names and "http2-settings" not in names


def test_other_upgrade_tokens_are_relayed(gateway):
    """Any protocol the client names (not only websocket) is asked of the upstream, and relayed
    once it switches: here a raw upstream that switches to ``echo/1`` and echoes bytes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(10)
    port = free_port()
    try:
        gateway(binds(port, [{"backends": [{"host": f"127.0.0.1:{listener.getsockname()[1]}"}]}]))
        with raw_connection(port) as client:
            client.sendall(b"GET /x HTTP/1.1\r\nHost: gw.test\r\nUpgrade: echo/1, h2c\r\nConnection: upgrade\r\n\r\n")
            server, _ = listener.accept()
            with server:
                server.settimeout(10)
                head = b""
                while b"\r\n\r\n" not in head:
                    head += server.recv(4096)
                assert b"\r\nupgrade: echo/1\r\n" in head.lower() and b"h2c" not in head.lower()
                server.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo/1\r\nConnection: Upgrade\r\n\r\n")
                reader = ResponseReader(client)
                status, headers, _ = reader.read()
                assert status == 101 and headers["upgrade"] == "echo/1"
                client.sendall(b"ping-1")
                assert server.recv(100) == b"ping-1"
                server.sendall(b"pong-1")
                while len(reader.buf) < 6:
                    reader._fill()
                assert reader.buf == b"pong-1"
                # Half-close: the client's EOF reaches the server, which can still answer.
                client.shutdown(socket.SHUT_WR)
                assert server.recv(100) == b""
                server.sendall(b"after-eof")
                got = b""
                while len(got) < 9:
                    got += client.recv(100)
                assert got == b"after-eof"
                server.shutdown(socket.SHUT_WR)
                assert client.recv(100) == b""
    finally:
        listener.close()


def test_unasked_101_is_a_bad_gateway(gateway):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(10)
    port = free_port()
    try:
        gateway(binds(port, [{"backends": [{"host": f"127.0.0.1:{listener.getsockname()[1]}"}]}]))
        with raw_connection(port) as client:
            client.sendall(b"GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            server, _ = listener.accept()
            with server:
                server.recv(4096)
                server.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: Upgrade\r\n\r\nxx")
                status, _, body = ResponseReader(client).read()
                assert status == 502 and b"switched protocols unasked" in body
    finally:
        listener.close()


def test_idle_tunnel_is_closed(gateway, ws_server):
    port = free_port()
    config = binds(port, [_route(ws_server)])
    config["frontendPolicies"] = {"tcp": {"idleTimeout": "1s"}}
    gw = gateway(config)

    async def run() -> None:
        ws = await _session(port, ping_interval=None)
        await ws.send("hi")
        assert await ws.recv() == "hi"
        # Nothing either way: the gateway cuts the tunnel after about a second.
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 15)
        await ws.close()

    asyncio.run(run())
    line = wait_for(lambda: [x for x in gw.access_lines() if "http.status=101" in x], 10, "the tunnel's log line")[0]
    assert "idle for 1s" in line


def test_drain_lets_a_session_run_until_the_termination_deadline(gateway, ws_server):
    import signal

    port = free_port()
    config = binds(port, [_route(ws_server)])
    config["config"] = {"connectionTerminationDeadline": "2s"}
    gw = gateway(config)

    async def run() -> None:
        async with await _session(port, ping_interval=None) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            gw.proc.send_signal(signal.SIGTERM)
            # Draining: the session still works...
            await ws.send("during")
            assert await ws.recv() == "during"
            # ...until the deadline cuts it.
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 20)

    asyncio.run(run())
    assert gw.proc.wait(20) == 0


def test_many_sessions_at_once(gateway, ws_server):
    port = free_port()
    gateway(binds(port, [_route(ws_server)]), workers=2)

    async def one(i: int) -> None:
        async with await _session(port) as ws:
            for j in range(20):
                await ws.send(f"{i}-{j}")
                assert await ws.recv() == f"{i}-{j}"

    async def run() -> None:
        await asyncio.gather(*(one(i) for i in range(30)))

    asyncio.run(run())
    wait_for(lambda: len(ws_server.closes) == 30, 10, "every session to close")
    assert all(code == 1000 for code, _ in ws_server.closes)
