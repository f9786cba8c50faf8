"""Top-level ``services`` and ``workloads`` as static backends, through the real daemon: a route
backend ``service: {name: <namespace>/<hostname>, port}`` is load-balanced over the workloads that
claim the service, each at the port its mapping (or the service's) gives; unhealthy workloads are
left out unless the service allows them; a port no workload serves answers 503."""

from __future__ import annotations

import collections

import httpx

from tests.support.gateway import binds, free_port

SERVICE = "default/echo.default.svc.cluster.local"


def _service(ports: dict[int, int], **extra: object) -> dict[str, object]:
    return {
        "name": "echo",
        "namespace": "default",
        "hostname": "echo.default.svc.cluster.local",
        "vips": ["/10.0.0.10"],
        "ports": ports,
        **extra,
    }


def _workload(name: str, port: int | None, **extra: object) -> dict[str, object]:
    mapping = {80: port} if port is not None else {}
    return {"name": name, "namespace": "default", "workloadIps": ["127.0.0.1"], "services": {SERVICE: mapping}, **extra}


def _served(port: int, n: int, path: str = "/") -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    with httpx.Client() as client:
        for _ in range(n):
            r = client.get(f"http://127.0.0.1:{port}{path}")
            assert r.status_code == 200, r.text
            seen[r.headers["x-upstream"]] += 1
    return seen


def test_a_service_backend_balances_over_its_workloads(gateway, upstream):
    a, b, c = upstream("a"), upstream("b"), upstream("c")
    port = free_port()
    route = {"name": "svc", "backends": [{"service": {"name": SERVICE, "port": 80}}]}
    gw = gateway(
        {
            **binds(port, [route]),
            "services": [_service({80: 0})],
            "workloads": [
                _workload("echo-a", a.port),
                _workload("echo-b", b.port),
                # claims the service but not port 80, and the service maps it to 0: no endpoint
                {**_workload("echo-c", None), "services": {SERVICE: {81: c.port}}},
            ],
        }
    )
    seen = _served(port, 60)
    assert set(seen) == {"a", "b"}
    assert min(seen.values()) >= 10  # both picked, about half each (1 in 2**55 to fail by chance)
    assert gw.metric("agentgateway_requests_total", route="svc") == 60


def test_the_service_port_mapping_is_used_when_the_workload_has_none(gateway, upstream):
    a = upstream("a")
    port = free_port()
    gateway(
        {
            **binds(port, [{"backends": [{"service": {"name": SERVICE, "port": 8080}}]}]),
            "services": [_service({8080: a.port})],
            "workloads": [{**_workload("echo-a", None), "services": {SERVICE: {}}}],
        }
    )
    assert _served(port, 3) == {"a": 3}


def test_unhealthy_workloads_are_left_out_unless_the_service_allows_them(gateway, upstream):
    a, b = upstream("a"), upstream("b")
    only_healthy, allow_all = free_port(), free_port()
    workloads = [_workload("echo-a", a.port), _workload("echo-b", b.port, status="Unhealthy")]
    gateway(
        {
            **binds(only_healthy, [{"backends": [{"service": {"name": SERVICE, "port": 80}}]}]),
            "services": [_service({80: 0})],
            "workloads": workloads,
        }
    )
    assert _served(only_healthy, 20) == {"a": 20}
    gateway(
        {
            **binds(allow_all, [{"backends": [{"service": {"name": SERVICE, "port": 80}}]}]),
            "services": [_service({80: 0}, loadBalancer={"healthPolicy": "AllowAll"})],
            "workloads": workloads,
        }
    )
    assert set(_served(allow_all, 40)) == {"a", "b"}


def test_weights_are_shared_by_a_services_endpoints(gateway, upstream):
    a, b, h = upstream("a"), upstream("b"), upstream("h")
    port = free_port()
    # The service (weight 1) against a host (weight 3): the host gets ~3/4, each endpoint ~1/8.
    route = {"backends": [{"service": {"name": SERVICE, "port": 80}, "weight": 1}, {"host": h.address, "weight": 3}]}
    gateway(
        {
            **binds(port, [route]),
            "services": [_service({80: 0})],
            "workloads": [_workload("echo-a", a.port), _workload("echo-b", b.port)],
        }
    )
    seen = _served(port, 200)
    assert 110 <= seen["h"] <= 185, seen
    assert seen["a"] > 0 and seen["b"] > 0


def test_a_port_no_workload_serves_answers_503(gateway, upstream):
    port = free_port()
    gateway(
        {
            **binds(port, [{"backends": [{"service": {"name": SERVICE, "port": 443}}]}]),
            "services": [_service({80: 0})],
            "workloads": [_workload("echo-a", upstream("a").port)],
        }
    )
    r = httpx.get(f"http://127.0.0.1:{port}/")
    assert r.status_code == 503


def test_services_work_in_the_gateways_form_with_backend_policies(gateway, upstream):
    a = upstream("a")
    port = free_port()
    gateway(
        {
            "gateways": {"default": {"port": port}},
            "routes": [
                {
                    "backends": [
                        {
                            "service": {"name": SERVICE, "port": 80},
                            "policies": {"backendAuth": {"key": "svc-secret"}},
                        }
                    ]
                }
            ],
            "services": [_service({80: 0})],
            "workloads": [_workload("echo-a", a.port)],
        }
    )
    r = httpx.get(f"http://127.0.0.1:{port}/x")
    assert r.status_code == 200
    assert ["authorization", "Bearer svc-secret"] in r.json()["headers"]
