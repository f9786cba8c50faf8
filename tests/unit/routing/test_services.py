"""The join of ``services`` and ``workloads`` (routing/services.py): endpoints of a service port,
port mappings, health, and the errors that name the key."""

from __future__ import annotations

import msgspec
import pytest

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import LocalService, LocalWorkload
from agentgateway.routing.services import Endpoint, ServiceTable

KEY = "default/echo.local"


def _table(services: list[dict], workloads: list[dict]) -> ServiceTable:
    return ServiceTable(msgspec.convert(services, list[LocalService]), msgspec.convert(workloads, list[LocalWorkload]))


def _svc(ports: dict, **extra: object) -> dict:
    return {"name": "echo", "namespace": "default", "hostname": "echo.local", "vips": [], "ports": ports, **extra}


def _wl(name: str, ip: str, ports: dict, **extra: object) -> dict:
    return {"name": name, "namespace": "ns", "workloadIps": [ip, "10.9.9.9"], "services": {KEY: ports}, **extra}


def test_the_workload_mapping_wins_then_the_services_and_0_means_none():
    table = _table(
        [_svc({80: 8080, "81": 0})],  # a port written as a string, as YAML often quotes them
        [_wl("a", "10.0.0.1", {"80": 9000}), _wl("b", "10.0.0.2", {}), _wl("c", "10.0.0.3", {81: 9100})],
    )
    assert table.endpoints(KEY, 80, "x") == [
        Endpoint("echo/ns/a", "10.0.0.1", 9000),
        Endpoint("echo/ns/b", "10.0.0.2", 8080),
        Endpoint("echo/ns/c", "10.0.0.3", 8080),
    ]
    assert table.endpoints(KEY, 81, "x") == [Endpoint("echo/ns/c", "10.0.0.3", 9100)]
    assert table.endpoints(KEY, 82, "x") == []


def test_unhealthy_workloads_only_with_allow_all():
    workloads = [_wl("a", "10.0.0.1", {80: 1}), _wl("b", "10.0.0.2", {80: 2}, status="Unhealthy")]
    assert [e.name for e in _table([_svc({80: 0})], workloads).endpoints(KEY, 80, "x")] == ["echo/ns/a"]
    allow = _table([_svc({80: 0}, loadBalancer={"healthPolicy": "AllowAll"})], workloads)
    assert [e.name for e in allow.endpoints(KEY, 80, "x")] == ["echo/ns/a", "echo/ns/b"]


@pytest.mark.parametrize(
    ("services", "workloads", "path", "reason"),
    [
        ([_svc({80: 0}), _svc({80: 0})], [], "services[1].hostname", "defined twice"),
        ([_svc({80: 0}, vips=["10.0.0.1"])], [], "services[0].vips[0]", "<network>/<IP address>"),
        ([_svc({80: 0}, appProtocols={80: "Grpc"})], [], "services[0].appProtocols.80", "not supported"),
        ([_svc({"http": 0})], [], "services[0].ports.http", "a port is a number"),
        ([_svc({80: 70000})], [], "services[0].ports.80", "must be 0-65535"),
        ([], [_wl("a", "not-an-ip", {})], "workloads[0].workloadIps[0]", "not an IP address"),
        ([], [_wl("a", "10.0.0.1", {}, protocol="HBONE")], "workloads[0].protocol", "not supported"),
        (
            [],
            [{**_wl("a", "10.0.0.1", {}), "services": {"echo.local": {}}}],
            "workloads[0].services.echo.local",
            "<namespace>/<hostname>",
        ),
        ([], [_wl("a", "10.0.0.1", {80: 0})], f"workloads[0].services.{KEY}.80", "must be 1-65535"),
    ],
)
def test_errors_name_the_key(services, workloads, path, reason):
    with pytest.raises(ConfigError) as info:
        _table(services, workloads)
    assert info.value.path == path and reason in info.value.reason


def test_an_unknown_service_is_named_with_the_known_ones():
    with pytest.raises(ConfigError) as info:
        _table([_svc({80: 0})], []).endpoints("default/other", 80, "routes[0].backends[0].service")
    assert info.value.path == "routes[0].backends[0].service.name"
    assert "known: default/echo.local" in info.value.reason
