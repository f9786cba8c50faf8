"""The top-level ``services`` and ``workloads`` of the config, joined: where a route backend
``service: {name: <namespace>/<hostname>, port}`` sends its requests.

As agentgateway's service model: a service is a hostname in a namespace with ports; a workload is
an address that claims membership of services (``services: {<namespace>/<hostname>: {service
port: workload port}}``). The endpoints of a service port are its member workloads, each at its
first address and at the port its own mapping gives, else the service's ``ports`` mapping (a
mapping of 0 gives none). Workloads whose status is ``Unhealthy`` are left out unless the
service's ``loadBalancer.healthPolicy`` is ``AllowAll``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import LocalService, LocalWorkload


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One workload of a service port: its name in logs and metrics, address and port."""

    name: str
    address: str
    port: int


class ServiceTable:
    """Services by ``<namespace>/<hostname>`` and the workloads that serve each."""

    __slots__ = ("_services", "_members")

    def __init__(self, services: list[LocalService], workloads: list[LocalWorkload]) -> None:
        # key -> (service, its port mapping)
        self._services: dict[str, tuple[LocalService, dict[int, int]]] = {}
        for i, svc in enumerate(services):
            where = f"services[{i}]"
            key = f"{svc.namespace}/{svc.hostname}"
            if key in self._services:
                raise ConfigError(f"{where}.hostname", f"service {key} is defined twice")
            for j, vip in enumerate(svc.vips):
                _network_address(vip, f"{where}.vips[{j}]")
            for port, protocol in svc.app_protocols.items():
                if protocol != "Http11":
                    raise ConfigError(f"{where}.appProtocols.{port}", f"{protocol} is not supported (only Http11)")
            self._services[key] = (svc, _port_map(svc.ports, f"{where}.ports", allow_zero=True))
        # key -> [(workload, its port mapping for the service)]
        self._members: dict[str, list[tuple[LocalWorkload, dict[int, int]]]] = {}
        for i, wl in enumerate(workloads):
            where = f"workloads[{i}]"
            if wl.protocol not in (None, "TCP"):
                raise ConfigError(f"{where}.protocol", f"{wl.protocol} is not supported (only TCP)")
            if wl.network_mode not in (None, "Standard"):
                raise ConfigError(f"{where}.networkMode", f"{wl.network_mode} is not supported (only Standard)")
            if not wl.workload_ips:
                raise ConfigError(f"{where}.workloadIps", "a workload needs an address")
            for j, ip in enumerate(wl.workload_ips):
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    raise ConfigError(f"{where}.workloadIps[{j}]", f"{ip!r} is not an IP address") from None
            for key, ports in wl.services.items():
                swhere = f"{where}.services.{key}"
                if "/" not in key:
                    raise ConfigError(swhere, "a service is named <namespace>/<hostname>")
                self._members.setdefault(key, []).append((wl, _port_map(ports, swhere, allow_zero=False)))

    def endpoints(self, name: str, port: int, where: str) -> list[Endpoint]:
        """The endpoints of service ``name`` (``<namespace>/<hostname>``) at ``port``; an unknown
        service is a config error, a port no workload serves gives none (503 when requested)."""
        found = self._services.get(name)
        if found is None:
            known = ", ".join(sorted(self._services)) or "none"
            raise ConfigError(f"{where}.name", f"no service {name!r} in services (known: {known})")
        svc, service_ports = found
        if not 0 < port < 65536:
            raise ConfigError(f"{where}.port", "must be 1-65535")
        allow_all = svc.load_balancer is not None and svc.load_balancer.health_policy == "AllowAll"
        out = []
        for wl, ports in self._members.get(name, []):
            if wl.status == "Unhealthy" and not allow_all:
                continue
            target = ports.get(port) or service_ports.get(port) or 0
            if target == 0:
                continue
            # named in logs and metrics by its service and itself: <service>/<namespace>/<workload>
            label = f"{svc.name}/{wl.namespace}/{wl.name or wl.uid or wl.workload_ips[0]}"
            out.append(Endpoint(label, wl.workload_ips[0], target))
        return out


def _network_address(value: str, where: str) -> None:
    """A VIP is ``<network>/<ip>`` (the network may be empty)."""
    _, sep, ip = value.rpartition("/")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise ConfigError(where, f"{value!r} is not <network>/<IP address>") from None
    if not sep:
        raise ConfigError(where, f"{value!r} is not <network>/<IP address>")


def _port_map(ports: dict[int | str, int], where: str, allow_zero: bool) -> dict[int, int]:
    """``{port: port}`` with the keys as numbers (YAML often quotes them)."""
    out = {}
    for key, target in ports.items():
        try:
            port = int(key)
        except ValueError:
            raise ConfigError(f"{where}.{key}", "a port is a number") from None
        if not 0 < port < 65536:
            raise ConfigError(f"{where}.{key}", "a port is 1-65535")
        if not (0 if allow_zero else 1) <= target < 65536:
            raise ConfigError(f"{where}.{key}", "must be 0-65535" if allow_zero else "must be 1-65535")
        out[port] = target
    return out
