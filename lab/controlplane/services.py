"""Service address allocation (pure): ClusterIPs from the service CIDR, NodePorts from 30000-32767.

Kubernetes picks free addresses at random; the lab derives them from the Service's name (a hash,
then the next free one), so the same file gives the same ClusterIPs on every run and adding a
Service never moves the others.
"""
from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable, Optional

from lab.errors import LabError

NODE_PORTS = range(30000, 32768)


def _start(key: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % size


def reserved_ips(cidr: IPv4Network) -> set[IPv4Address]:
    """The network address, the first host (the `kubernetes` Service) and the tenth (kube-dns)."""
    base = cidr.network_address
    return {base, base + 1, base + 10, cidr.broadcast_address}


def cluster_ips(cidr: IPv4Network, services: Iterable[tuple[str, Optional[str]]]) -> dict[str, Optional[str]]:
    """services: (namespace/name, spec.clusterIP). Requested addresses are kept ("None" is headless),
    the others get the first free address from their name's hash onwards."""
    services = list(services)
    taken = reserved_ips(cidr)
    out: dict[str, Optional[str]] = {}
    for key, requested in services:
        if requested == "None":
            out[key] = None
        elif requested:
            out[key] = requested
            taken.add(IPv4Address(requested))
    size = cidr.num_addresses
    for key, requested in services:
        if requested:
            continue
        offset = _start(key, size)
        for i in range(size):
            ip = cidr.network_address + (offset + i) % size
            if ip not in taken:
                taken.add(ip)
                out[key] = str(ip)
                break
        else:
            raise LabError(f"service CIDR {cidr} is full: no ClusterIP left for {key}")
    return out


def node_ports(wanted: Iterable[tuple[str, str, Optional[int]]]) -> dict[str, int]:
    """wanted: (namespace/name:port-name, protocol, spec.nodePort or None) -> the node port."""
    wanted = list(wanted)
    taken = {(proto, port) for _, proto, port in wanted if port}
    out = {key: port for key, _, port in wanted if port}
    for key, proto, port in wanted:
        if port:
            continue
        offset = _start(key, len(NODE_PORTS))
        for i in range(len(NODE_PORTS)):
            candidate = NODE_PORTS[(offset + i) % len(NODE_PORTS)]
            if (proto, candidate) not in taken:
                taken.add((proto, candidate))
                out[key] = candidate
                break
        else:
            raise LabError(f"no NodePort left for {key}")
    return out
