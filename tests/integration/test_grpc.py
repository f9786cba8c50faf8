"""gRPC through the real daemon: grpcio clients and a grpcio server (tests/support/grpc_server.py),
the four kinds of RPC, statuses and trailers relayed, deadlines, and the gateway's own errors as
gRPC statuses."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import grpc
import httpx
import pytest
import trustme

from tests.support.gateway import binds, free_port, wait_for
from tests.support.http2 import GrpcServer, RawH2Client


def _same(data: bytes) -> bytes:
    return data


@pytest.fixture
def grpc_server(tmp_path, processes):
    def start() -> GrpcServer:
        server = GrpcServer(tmp_path)
        processes.append(server)
        return server

    return start


class Echo:
    """The test service's four methods on a channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.unary = channel.unary_unary("/test.Echo/Unary", _same, _same)
        self.server_stream = channel.unary_stream("/test.Echo/ServerStream", _same, _same)
        self.client_stream = channel.stream_unary("/test.Echo/ClientStream", _same, _same)
        self.bidi = channel.stream_stream("/test.Echo/Bidi", _same, _same)
        self.events = channel.unary_unary("/test.Echo/Events", _same, _same)


def _events(server: GrpcServer) -> list[str]:
    with grpc.insecure_channel(server.address) as channel:
        return list(json.loads(Echo(channel).events(b"", timeout=10)))


def _route(server: GrpcServer, **policies: object) -> dict:
    route: dict = {"matches": [{"path": {"pathPrefix": "/test.Echo/"}}], "backends": [{"host": server.address}]}
    if policies:
        route["policies"] = policies
    return route


def test_the_four_kinds_of_rpc_and_their_statuses(gateway, grpc_server):
    server = grpc_server()
    port = free_port()
    # No http.version on the backend: gRPC requests go to it over HTTP/2 all the same.
    gateway(binds(port, [_route(server)]))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = Echo(channel)
        response, call = echo.unary.with_call(b"hello", timeout=10, metadata=(("x-request-id", "r1"),))
        assert response == b"hello"
        assert ("x-trailer", "t1") in tuple(call.trailing_metadata())  # the upstream's trailers
        assert list(echo.server_stream(b"5", timeout=10)) == [b"0", b"1", b"2", b"3", b"4"]
        assert echo.client_stream(iter([b"a", b"b", b"c"]), timeout=10) == b"a,b,c"
        assert list(echo.bidi(iter([b"x", b"y", b"z"]), timeout=10)) == [b"X", b"Y", b"Z"]
        # Large messages through the windows both ways.
        big = bytes(range(256)) * 8192  # 2 MiB
        assert echo.unary(big, timeout=30) == big
        assert echo.client_stream(iter([big[:1000], big[1000:]]), timeout=30) == big[:1000] + b"," + big[1000:]
        # The upstream's statuses and messages, as it sent them (UTF-8 kept).
        for code, message in (("NOT_FOUND", "no such thing"), ("INVALID_ARGUMENT", "bad: ünïcode ✓")):
            with pytest.raises(grpc.RpcError) as failed:
                echo.unary(f"error:{code}:{message}".encode(), timeout=10)
            assert failed.value.code() == grpc.StatusCode[code] and failed.value.details() == message
        # A stream that fails after two messages: both arrive, then the status.
        received = []
        with pytest.raises(grpc.RpcError) as failed:
            for message in echo.server_stream(b"error:RESOURCE_EXHAUSTED:quota", timeout=10):
                received.append(message)
        assert received == [b"first", b"second"]
        assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and failed.value.details() == "quota"
        received = []
        with pytest.raises(grpc.RpcError) as failed:
            for message in echo.bidi(iter([b"ok", b"error:ABORTED:stop"]), timeout=10):
                received.append(message)
        assert received == [b"OK"]
        assert failed.value.code() == grpc.StatusCode.ABORTED and failed.value.details() == "stop"


def test_concurrent_large_calls_share_the_upstream_windows(gateway, grpc_server):
    """Eight 2 MiB calls at once over the gateway's HTTP/2 connection to one upstream: the
    connection's and the streams' flow-control windows run out and reopen while the frames of
    several streams are batched into one write; every call completes with its own bytes."""
    server = grpc_server()
    port = free_port()
    gateway(binds(port, [_route(server)]))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = Echo(channel)
        bodies = [bytes([i]) * (2 * 1024 * 1024) for i in range(8)]
        calls = [echo.unary.future(body, timeout=60) for body in bodies]
        assert [call.result() for call in calls] == bodies
        streamed = [echo.client_stream.future(iter([body[:7], body[7:]]), timeout=60) for body in bodies[:4]]
        assert [call.result() for call in streamed] == [body[:7] + b"," + body[7:] for body in bodies[:4]]


def test_deadlines_cancel_the_upstream_call(gateway, grpc_server):
    server = grpc_server()
    port = free_port()
    gw = gateway(binds(port, [_route(server)]))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = Echo(channel)
        with pytest.raises(grpc.RpcError) as failed:
            echo.unary(b"sleep:5", timeout=0.5)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as failed:
            list(echo.server_stream(b"50:0.1", timeout=0.8))
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: {"cancelled:Unary", "cancelled:ServerStream"} <= set(_events(server)), 10, "the cancellations")
    # The gateway's own deadline: a client that sends grpc-timeout but does not enforce it gets
    # DEADLINE_EXCEEDED from the gateway (trailers-only), and the upstream call is cancelled.
    before = _events(server).count("cancelled:Unary")
    with RawH2Client(port) as raw:
        stream = raw.request(
            "/test.Echo/Unary",
            method="POST",
            headers=[("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "300m")],
            body=b"\x00\x00\x00\x00\x07sleep:5",
        )
        response = raw.response(stream)
        assert response.status == 200 and response.headers["grpc-status"] == "4"
        assert "deadline" in response.headers["grpc-message"]
        # A server stream under way when the deadline passes: its status comes in the trailers.
        stream = raw.request(
            "/test.Echo/ServerStream",
            method="POST",
            headers=[("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "500m")],
            body=b"\x00\x00\x00\x00\x0650:0.1",
        )
        response = raw.response(stream)
        assert response.status == 200 and response.body  # some messages arrived
        assert response.trailers["grpc-status"] == "4"
        # An invalid grpc-timeout is refused.
        stream = raw.request(
            "/test.Echo/Unary",
            method="POST",
            headers=[("content-type", "application/grpc"), ("grpc-timeout", "soon")],
            body=b"\x00\x00\x00\x00\x01x",
        )
        assert raw.response(stream).headers["grpc-status"] == "13"  # 400 → INTERNAL
    wait_for(lambda: _events(server).count("cancelled:Unary") > before, 10, "the upstream cancellation")
    assert any('reason="deadline exceeded (grpc-timeout)"' in line for line in gw.access_lines())


def test_the_gateways_own_errors_are_grpc_statuses(gateway, grpc_server):
    server = grpc_server()
    port = free_port()
    down = free_port()  # nothing listens there
    gateway(
        binds(
            port,
            [
                _route(server, apiKey={"mode": "strict", "keys": [{"key": "sk-1"}]},
                       localRateLimit=[{"maxTokens": 1, "tokensPerFill": 1, "fillInterval": "1h"}]),
                {"matches": [{"path": {"pathPrefix": "/down.Svc/"}}], "backends": [{"host": f"127.0.0.1:{down}"}]},
            ],
        )
    )  # fmt: skip
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = Echo(channel)
        cases = [
            (channel.unary_unary("/nope.Svc/Call", _same, _same), {}, grpc.StatusCode.UNIMPLEMENTED, "route not found"),
            (channel.unary_unary("/down.Svc/Call", _same, _same), {}, grpc.StatusCode.UNAVAILABLE, "connect"),
            (echo.unary, {}, grpc.StatusCode.UNAUTHENTICATED, "no API key"),
        ]
        for method, kwargs, code, text in cases:
            with pytest.raises(grpc.RpcError) as failed:
                method(b"x", timeout=10, **kwargs)
            assert failed.value.code() == code, failed.value
            assert text in failed.value.details()
        key = (("authorization", "Bearer sk-1"),)
        assert echo.unary(b"in", timeout=10, metadata=key) == b"in"
        with pytest.raises(grpc.RpcError) as failed:
            echo.unary(b"again", timeout=10, metadata=key)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # 429: the spec's mapping


def test_metadata_and_header_policies(gateway, grpc_server):
    server = grpc_server()
    port = free_port()
    gateway(
        binds(
            port,
            [_route(server, requestHeaderModifier={"add": {"x-from-gateway": "yes"}, "remove": ["x-secret"]})],
        )
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        seen = dict(
            json.loads(Echo(channel).unary(b"meta", timeout=10, metadata=(("x-client", "c1"), ("x-secret", "s"))))
        )
    assert seen["x-client"] == "c1" and seen["x-from-gateway"] == "yes" and "x-secret" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1"


def test_grpc_over_tls_and_an_explicit_http2_backend(gateway, grpc_server, tmp_path: Path):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert_path, key_path = tmp_path / "gw.crt", tmp_path / "gw.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    server = grpc_server()
    port = free_port()
    route = _route(server)
    route["backends"][0]["policies"] = {"http": {"version": "2"}}
    gateway(binds(port, [route], protocol="HTTPS", tls={"cert": str(cert_path), "key": str(key_path)}))
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        echo = Echo(channel)
        assert echo.unary(b"secure", timeout=10) == b"secure"
        assert list(echo.bidi(iter([b"a"]), timeout=10)) == [b"A"]
    # An HTTP/1.1 client on the same listener reaches the backend over HTTP/2 too (its
    # http.version says so): the gRPC server refuses a GET that is not gRPC by resetting the
    # stream, which the client sees as a 502 that says so.
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    with httpx.Client(verify=ctx, timeout=10) as client:
        r = client.get(f"https://localhost:{port}/test.Echo/Unary")
        assert r.http_version == "HTTP/1.1"
        assert r.status_code == 502 and "reset the stream" in r.text
