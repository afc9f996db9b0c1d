"""The kubelet's Service environment variables (pkg/kubelet/envvars, FromServices), pure.

For each Service of the pod's namespace that has a ClusterIP when the pod starts (not headless,
not ExternalName), in the kubelet's order:
  FOO_SERVICE_HOST=10.96.0.5   FOO_SERVICE_PORT=80 (the first port)   FOO_SERVICE_PORT_<NAME>=80 (named ports)
and the docker-link ones, the first port also as FOO_PORT:
  FOO_PORT=tcp://10.96.0.5:80   FOO_PORT_80_TCP=tcp://10.96.0.5:80   FOO_PORT_80_TCP_PROTO=tcp
  FOO_PORT_80_TCP_PORT=80       FOO_PORT_80_TCP_ADDR=10.96.0.5
Names are upper-cased with '-' -> '_'. With enableServiceLinks: false only the master Service
`kubernetes` (default namespace) is given; the lab has none, so then nothing is.
"""
from __future__ import annotations

from collections.abc import Iterable

from lab.controlplane.state import ServiceState


def variable_name(name: str) -> str:
    """makeEnvVariableName."""
    return name.replace("-", "_").upper()


def from_services(services: Iterable[ServiceState]) -> list[tuple[str, str]]:
    """FromServices: the variables of `services`, in the kubelet's order."""
    out: list[tuple[str, str]] = []
    for s in services:
        if not s.cluster_ip or not s.ports:  # headless or ExternalName: no ClusterIP
            continue
        prefix = variable_name(s.name)
        out.append((f"{prefix}_SERVICE_HOST", s.cluster_ip))
        out.append((f"{prefix}_SERVICE_PORT", str(s.ports[0].port)))
        out += [(f"{prefix}_SERVICE_PORT_{variable_name(p.name)}", str(p.port)) for p in s.ports if p.name]
        for i, p in enumerate(s.ports):  # makeLinkVariables
            proto = p.protocol.lower()
            url = f"{proto}://{s.cluster_ip}:{p.port}"
            if i == 0:
                out.append((f"{prefix}_PORT", url))
            port_prefix = f"{prefix}_PORT_{p.port}_{p.protocol.upper()}"
            out += [(port_prefix, url), (f"{port_prefix}_PROTO", proto), (f"{port_prefix}_PORT", str(p.port)),
                    (f"{port_prefix}_ADDR", s.cluster_ip)]
    return out


def for_pod(namespace: str, services: Iterable[ServiceState], enable_service_links: bool = True) -> tuple[tuple[str, str], ...]:
    """getServiceEnvVarMap: the Services of the pod's namespace (when enableServiceLinks), and the
    master Service `kubernetes` of `default` always; a later definition of a name wins, so a Service
    of the pod's own namespace named `kubernetes` wins over the master one."""
    services = sorted(services, key=lambda s: (s.namespace, s.name))
    chosen = [s for s in services if s.namespace == "default" and s.name == "kubernetes"]
    if enable_service_links:
        chosen += [s for s in services if s.namespace == namespace and not (namespace == "default" and s.name == "kubernetes")]
    merged: dict[str, str] = {}
    for name, value in from_services(chosen):
        merged[name] = value
    return tuple(merged.items())
