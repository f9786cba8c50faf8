"""Fixtures that start real processes on 127.0.0.1 and always stop them."""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx._transports.default as httpx_transport
import pytest

from tests.support.gateway import (
    AuthzServer,
    Gateway,
    McpServerProcess,
    Process,
    RateLimitService,
    RedisServer,
    UpstreamServer,
)
from tests.support.idp import IdentityProvider
from tests.support.otlp import OtlpReceiver


def _share_httpx_default_tls_context() -> None:
    """httpx builds a new SSL context with certifi's CA bundle (~40 ms of CPU) for every
    ``httpx.get`` and every Client, TLS or not: hundreds of one-off calls per test file, a
    third of some files' time. The default context is built once per thread instead (httpcore
    sets its ALPN list on it before each handshake, which is safe within one thread); a test
    that passes its own ``verify`` context is untouched."""
    build = httpx_transport.create_ssl_context
    built: dict[tuple[object, ...], ssl.SSLContext] = {}

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
        if verify is not True or cert is not None:
            return build(verify=verify, cert=cert, trust_env=trust_env)
        key = (threading.get_ident(), trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        context = built.get(key)
        if context is None:
            context = built[key] = build(verify=verify, cert=cert, trust_env=trust_env)
        return context

    httpx_transport.create_ssl_context = create_ssl_context  # type: ignore[assignment]


_share_httpx_default_tls_context()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def upstream(tmp_path: Path, processes: list[Process]) -> Callable[..., UpstreamServer]:
    def start(name: str = "up", **kwargs: Any) -> UpstreamServer:
        server = UpstreamServer(tmp_path, name, **kwargs)
        processes.append(server)
        return server

    return start


@pytest.fixture
def mcp_server(tmp_path: Path, processes: list[Process]) -> Callable[..., McpServerProcess]:
    def start(name: str, transport: str = "http", **kwargs: Any) -> McpServerProcess:
        server = McpServerProcess(tmp_path, name, transport, **kwargs)
        processes.append(server)
        return server

    return start


@pytest.fixture
def authz(tmp_path: Path, processes: list[Process]) -> Callable[..., AuthzServer]:
    """Starts the tests' external authorizer: ``authz("grpc")`` or ``authz("http")``."""

    def start(mode: str = "grpc") -> AuthzServer:
        server = AuthzServer(tmp_path, mode)
        processes.append(server)
        return server

    return start


@pytest.fixture
def rls(tmp_path: Path, processes: list[Process]) -> Callable[..., RateLimitService]:
    def start(**kwargs: Any) -> RateLimitService:
        service = RateLimitService(tmp_path, **kwargs)
        processes.append(service)
        return service

    return start


@pytest.fixture
def redis_server(tmp_path: Path, processes: list[Process]) -> Callable[[], RedisServer]:
    def start() -> RedisServer:
        server = RedisServer(tmp_path)
        processes.append(server)
        return server

    return start


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    """An OAuth authorization server and JWKS host in a thread (tests/support/idp.py)."""
    provider = IdentityProvider()
    yield provider
    provider.stop()


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    """A real OTLP collector endpoint (gRPC and HTTP/protobuf) in threads (tests/support/otlp.py)."""
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def gateway(tmp_path: Path, processes: list[Process], request: pytest.FixtureRequest) -> Callable[..., Gateway]:
    def start(config: dict[str, Any] | str, **kwargs: Any) -> Gateway:
        gw_dir = tmp_path / f"gw{sum(isinstance(p, Gateway) for p in processes)}"
        gw_dir.mkdir()
        wait = kwargs.pop("wait", True)
        gw = Gateway(gw_dir, config, wait=False, **kwargs)
        processes.append(gw)  # stopped (and its log closed) even if it never gets ready
        if wait:
            gw.wait_ready()
        return gw

    return start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On failure, attach the gateway's log to the report."""
    report = yield
    if report.failed and call.when == "call":
        procs = item.funcargs.get("processes") if hasattr(item, "funcargs") else None
        for proc in procs or []:
            if isinstance(proc, Gateway):
                report.sections.append(("gateway log", proc.output()[-20000:]))
    return report
