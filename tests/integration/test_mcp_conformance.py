"""The MCP conformance suite (``@modelcontextprotocol/conformance``, server scenarios) through the
gateway: every scenario that the fixture server (``tests.support.conformance_server``) passes when
the suite talks to it directly must also pass when the suite talks to a gateway whose only target
is that server, over streamable HTTP and over stdio. With one target and the default prefix mode,
names and URIs pass unchanged, so the gateway must look like the server itself.

A scenario's verdict is the worst status among its checks: FAILURE, then WARNING, else pass (the
suite's own baseline logic counts warnings as failures too)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.support.gateway import (
    ServerProcess,
    free_port,
    mcp_config,
    python_stdio_target,
)
from tests.support.node import require_node, run_node

FIXTURES = "tests.support.conformance_server"
SUITE_TIMEOUT = 120.0
RANK = {"fail": 0, "warn": 1, "pass": 2}
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")


def verdict(checks: list[dict[str, Any]]) -> str:
    statuses = {check.get("status") for check in checks}
    return "fail" if "FAILURE" in statuses else "warn" if "WARNING" in statuses else "pass"


def run_suite(url: str, out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Run every server scenario against ``url``; the checks of each scenario, by name."""
    started = time.monotonic()
    proc = run_node("conformance", "server", "--url", url, "--suite", "all", "-o", str(out_dir), timeout=SUITE_TIMEOUT)
    results: dict[str, list[dict[str, Any]]] = {}
    for checks_file in sorted(out_dir.glob("*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        assert match, f"unexpected result directory {checks_file.parent.name}"
        results[match["scenario"]] = json.loads(checks_file.read_text())
    if not results:
        raise AssertionError(f"the suite wrote no results (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    print(f"conformance suite against {url}: {len(results)} scenarios in {time.monotonic() - started:.1f}s")
    return results


def describe(checks: list[dict[str, Any]]) -> str:
    """The checks that did not succeed, with their messages and details."""
    lines = []
    for check in checks:
        if check.get("status") in ("FAILURE", "WARNING"):
            details = json.dumps(check.get("details"), sort_keys=True)
            if len(details) > 1500:
                details = details[:1500] + "…"
            lines.append(
                f"    {check['status']} {check.get('id')}: {check.get('errorMessage') or check.get('description')}"
            )
            lines.append(f"      details: {details}")
    return "\n".join(lines)


def compare(direct: dict[str, list[dict[str, Any]]], through: dict[str, list[dict[str, Any]]], label: str) -> None:
    table = [f"{'scenario':36} {'direct':6} {label.rstrip(',')}"]
    regressions = []
    for scenario in sorted(direct):
        before = verdict(direct[scenario])
        after = verdict(through[scenario]) if scenario in through else "missing"
        table.append(f"{scenario:36} {before:6} {after}")
        if after == "missing" or RANK[after] < RANK[before]:
            regressions.append(
                f"  {scenario}: {before} directly, {after} through the gateway\n{describe(through.get(scenario, []))}"
            )
    print("\n".join(table))
    if regressions:
        listing = "\n".join(regressions)
        pytest.fail(f"scenarios worse through the {label} than directly:\n{listing}\n\n" + "\n".join(table))


@pytest.fixture(scope="module")
def fixture_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("conformance")
    port = free_port()
    args = [sys.executable, "-m", FIXTURES, "--transport", "http", "--port", str(port)]
    server = ServerProcess(args, tmp / "fixtures.log", port, what="conformance fixture server")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def direct_results(fixture_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_node("conformance")
    results = run_suite(fixture_server.endpoint(), tmp_path_factory.mktemp("direct"))
    failing = {name: describe(checks) for name, checks in results.items() if verdict(checks) == "fail"}
    assert not failing, "the fixture server itself fails scenarios:\n" + "\n".join(
        f"{k}\n{v}" for k, v in failing.items()
    )
    return results


def _gateway_config(port: int, target: dict[str, Any]) -> dict[str, Any]:
    # The suite's dns-rebinding-protection scenario tests a server on localhost: it sends
    # `Host: evil.example.com` with the matching `Origin: http://evil.example.com`, which is
    # same-origin and so passes the Origin rule every gateway endpoint applies. The gateway refuses
    # it without `dnsRebindingProtection` set: the suite reaches it at 127.0.0.1, where the
    # protection is on by default.
    config = mcp_config(port, [target])
    # Sessions the suite leaves open keep their GET streams; do not wait long for them on stop.
    config["config"] = {"connectionTerminationDeadline": "1s"}
    return config


def test_suite_through_gateway_streamable_http(gateway, fixture_server, direct_results, tmp_path):
    port = free_port()
    gateway(_gateway_config(port, {"name": "fixtures", "mcp": {"host": fixture_server.endpoint()}}))
    through = run_suite(f"http://127.0.0.1:{port}/mcp", tmp_path / "results")
    compare(direct_results, through, "gateway, streamable HTTP target,")


def test_suite_through_gateway_stdio(gateway, direct_results, tmp_path):
    port = free_port()
    gateway(_gateway_config(port, python_stdio_target("fixtures", FIXTURES, "--transport", "stdio")))
    through = run_suite(f"http://127.0.0.1:{port}/mcp", tmp_path / "results")
    compare(direct_results, through, "gateway, stdio target,")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_stream_closed_mid_call_is_resumed(gateway, fixture_server):
    """SEP-1699 (2025-11-25): after a priming event a server may close a request's SSE stream at any
    time and the client resumes it with GET + ``Last-Event-ID``. ``test_reconnection`` does so; the
    suite's own scenario cannot show it (it sends ``MCP-Protocol-Version: 2025-03-26``, so the
    server never closes the stream when called directly), so a 2025-11-25 client calls it here."""
    port = free_port()
    gateway(_gateway_config(port, {"name": "fixtures", "mcp": {"host": fixture_server.endpoint()}}))
    for url in (fixture_server.endpoint(), f"http://127.0.0.1:{port}/mcp"):
        async with Client(url, mode="legacy") as client:
            assert client.protocol_version == "2025-11-25"
            result = await client.call_tool("test_reconnection", {})
            assert not result.is_error, f"{url}: {result.content}"
            assert result.content[0].text == "Reconnection test completed successfully", url


@pytest.mark.anyio
async def test_stream_that_cannot_be_resumed_fails_the_call(gateway, tmp_path):
    """A server that closes a call's stream and then cannot replay it: the call fails with a clear
    error after a bounded number of attempts, and the gateway keeps serving."""
    port = free_port()
    args = [sys.executable, "-m", FIXTURES, "--transport", "http", "--port", str(port), "--forget-events"]
    server = ServerProcess(args, tmp_path / "forgetful.log", port, what="conformance fixture server")
    try:
        gw_port = free_port()
        gateway(_gateway_config(gw_port, {"name": "fixtures", "mcp": {"host": server.endpoint()}}))
        async with Client(f"http://127.0.0.1:{gw_port}/mcp", mode="legacy") as client:
            started = time.monotonic()
            with pytest.raises(MCPError) as failed:
                await client.call_tool("test_reconnection", {})
            assert "could not be resumed" in failed.value.error.message, failed.value.error.message
            assert time.monotonic() - started < 20
            result = await client.call_tool("test_simple_text", {})
            assert not result.is_error
    finally:
        server.stop()
