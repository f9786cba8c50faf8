"""Fixtures that start real processes on 127.0.0.1 and always stop them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import Gateway, McpServerProcess, Process, RateLimitService, RedisServer, UpstreamServer
from tests.support.idp import IdentityProvider
from tests.support.otlp import OtlpReceiver


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
