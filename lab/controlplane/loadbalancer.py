"""The load-balancer controller and speaker election, MetalLB's L2 mode as pure functions.

"Service type LoadBalancer: the cloud provider creates a load balancer that forwards to NodePorts"
— on bare metal nothing does, and the Service stays <pending>. MetalLB fills the gap: its
controller gives each LoadBalancer Service an address from a pool, and in L2 mode one node (the
"speaker" elected for that address) answers ARP for it, so the underlay sends the address's
traffic to that node, where kube-proxy's load-balancer rules take it. Here the controller is
allocate() (at plan time) and the election is speakers() (run by the lab's agent on every change).
"""
from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable, Mapping, Optional, Sequence

from lab.controlplane.endpoints import ready_by_service
from lab.controlplane.state import EndpointSliceState, ServiceState
from lab.errors import LabError

# The class the lab's implementation answers to; a Service naming another one is left to that
# implementation (none here), so it stays <pending>, as on a cluster.
LAB_CLASS = "k8s-netlab.io/l2"


def ours(load_balancer_class: Optional[str]) -> bool:
    return load_balancer_class in (None, LAB_CLASS)


def allocate(pools: Sequence[IPv4Network], wanted: Iterable[tuple[str, Optional[str]]],
             previous: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """wanted: (namespace/name, spec.loadBalancerIP or None) of each LoadBalancer Service the lab
    serves, in creation (file) order. A running Service keeps its address (previous, from `lab
    apply`); a requested one must be in a pool and free; the others take the lowest free address,
    as MetalLB's allocator does. An empty pool list allocates nothing (no implementation)."""
    wanted, previous = list(wanted), previous or {}
    if not pools:
        return {}
    keys = {key for key, _ in wanted}
    held = {ip: key for key, ip in previous.items() if ip and key in keys}
    out: dict[str, str] = {}
    for key, requested in wanted:
        if requested:
            if not any(IPv4Address(requested) in p for p in pools):
                raise LabError(f"loadBalancerIP {requested} of Service {key} is in no load-balancer pool "
                               f"({', '.join(map(str, pools))}); ask for one of them or leave it out")
            owner = held.get(requested, key)
            if owner != key:
                raise LabError(f"loadBalancerIP {requested} of Service {key} is already allocated to Service {owner}; "
                               "ask for another address or leave it out")
            out[key] = held[requested] = requested
        elif previous.get(key):
            out[key] = previous[key]
    taken = set(out.values()) | set(held)
    free = (str(ip) for p in pools for ip in p if str(ip) not in taken)
    for key, _ in wanted:
        if key not in out:
            ip = next(free, None)
            if ip is None:
                holders = ", ".join(f"{k} ({ip})" for k, ip in out.items())
                raise LabError(f"load-balancer pool {', '.join(map(str, pools))} (cluster.loadBalancer.addresses) is "
                               f"exhausted: no address left for Service {key}; it holds {holders}. Add addresses "
                               "to the pool, or give fewer Services type LoadBalancer")
            out[key] = ip
    return out


def _rank(node: str, ip: str) -> bytes:
    """MetalLB orders the candidate nodes of each address by a hash of node and address, so the
    addresses spread over the nodes and every speaker agrees on the winner without talking."""
    return hashlib.sha256(f"{node}#{ip}".encode()).digest()


def speakers(services: Iterable[ServiceState], slices: Iterable[EndpointSliceState],
             running: Sequence[str]) -> dict[str, str]:
    """LB address -> the node that answers ARP for it. Only running nodes speak; an address is
    announced only while its Service has a ready endpoint, and with externalTrafficPolicy Local
    only from a node with a ready endpoint of its own (MetalLB's L2 ShouldAnnounce)."""
    ready = {key: {e.node for e in eps} for key, eps in ready_by_service(slices).items()}
    out = {}
    for svc in services:
        nodes = ready.get((svc.namespace, svc.name), set())
        if not svc.load_balancer_ip or not nodes:
            continue
        candidates = [n for n in running if n in nodes] if svc.external_traffic_policy == "Local" else list(running)
        if candidates:
            out[svc.load_balancer_ip] = min(candidates, key=lambda n: _rank(n, svc.load_balancer_ip))
    return out
