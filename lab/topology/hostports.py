"""hostPorts as the scheduler sees them: which a pod asks for, and when two collide on one node."""
from __future__ import annotations

from lab.topology.model import PodSpec

HostPort = tuple[int, str, str]  # (hostPort, protocol, hostIP: "" for every address of the node)


def host_ports(spec: PodSpec) -> frozenset[HostPort]:
    return frozenset((p.hostPort, p.protocol, str(p.hostIP or "")) for c in spec.containers for p in c.ports if p.hostPort)


def clash(a: HostPort, b: HostPort) -> bool:
    """Same port and protocol, and an address in common (no hostIP means every address)."""
    return a[:2] == b[:2] and (not a[2] or not b[2] or a[2] == b[2])
