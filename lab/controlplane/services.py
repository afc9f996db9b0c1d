"""Service address allocation (pure): ClusterIPs from the service CIDR, NodePorts from 30000-32767.

Kubernetes picks free addresses at random; the lab derives them from the Service's name (a hash,
then the next free one), so the same file gives the same ClusterIPs on every run, and in a running
lab (`lab apply`) existing Services keep theirs whatever is added.
"""
from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Iterable, Mapping, Optional

from lab.errors import LabError
from lab.topology.constants import kube_dns_ip, kubernetes_service_ip

NODE_PORTS = range(30000, 32768)


# kube-proxy watches only the Services without these labels (cmd/kube-proxy: its informers'
# label selector): another proxy serves them, or they are headless by declaration
PROXY_SKIP_LABELS = ("service.kubernetes.io/service-proxy-name", "service.kubernetes.io/headless")


def _start(key: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % size


def reserved_ips(cidr: IPv4Network | IPv6Network) -> set[IPv4Address | IPv6Address]:
    """The network address, the first host (the `kubernetes` Service), the tenth (kube-dns) and
    the broadcast address (IPv6's last address too, as the lab's validation keeps it out)."""
    return {cidr.network_address, kubernetes_service_ip(cidr), kube_dns_ip(cidr), cidr.broadcast_address}


def cluster_ips(cidr: IPv4Network | IPv6Network, services: Iterable[tuple[str, Optional[str]]],
                previous: Optional[Mapping[str, Optional[str]]] = None) -> dict[str, Optional[str]]:
    """One family's allocator (cidr: that family's service CIDR).
    services: (namespace/name, the clusterIP asked for in this family). Requested addresses are kept ("None" is headless),
    the others get the first free address from their name's hash onwards. previous: the running
    lab's allocation (`lab apply`): a Service that exists keeps its address, and a new one may not
    ask for an address a running Service holds (the API server's "already allocated")."""
    services, previous = list(services), previous or {}
    keys = {key for key, _ in services}
    held = {ip: key for key, ip in previous.items() if ip and key in keys}
    taken = reserved_ips(cidr) | {ip_address(ip) for ip in held}
    out: dict[str, Optional[str]] = {}
    for key, requested in services:
        if requested == "None":
            out[key] = None
        elif requested:
            owner = held.get(requested, key)
            if owner != key:
                raise LabError(f"clusterIP {requested} of Service {key} is already allocated to Service {owner}; "
                               "choose another address or leave clusterIP out")
            out[key] = requested
            taken.add(ip_address(requested))
        elif previous.get(key):
            out[key] = previous[key]
    size = cidr.num_addresses
    for key, requested in services:
        if key in out:
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


def node_ports(wanted: Iterable[tuple[str, str, Optional[int]]],
               previous: Optional[Mapping[str, int]] = None) -> dict[str, int]:
    """wanted: (namespace/name:port-name, protocol, spec.nodePort or None) -> the node port.
    previous: the running lab's NodePorts, kept as cluster_ips keeps ClusterIPs."""
    wanted, previous = list(wanted), previous or {}
    keys = {key for key, _, _ in wanted}
    proto_of = {key: proto for key, proto, _ in wanted}
    held = {(proto_of[key], port): key for key, port in previous.items() if key in keys}
    taken = set(held)
    out: dict[str, int] = {}
    for key, proto, port in wanted:
        if port:
            owner = held.get((proto, port), key)
            if owner != key:
                raise LabError(f"nodePort {port}/{proto} of Service {key.rstrip(':')} is already allocated to "
                               f"Service {owner.rstrip(':')}; choose another port or leave nodePort out")
            out[key] = port
            taken.add((proto, port))
        elif key in previous:
            out[key] = previous[key]
    for key, proto, port in wanted:
        if key in out:
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
