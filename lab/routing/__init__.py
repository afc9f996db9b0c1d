"""Cross-node pod routing: how node 1 learns that 10.244.2.0/24 lives on node 3.

Each pod network is a Backend registered here (containerlab's registry of node kinds is the
model): the kernel operations per node (pure), the addresses traffic from a node carries, and
whether the others withdraw a stopped node's routes. Whatever a backend runs as a process (FRR,
the fabric controller) is its runtime, in lab.routing.runtimes. Adding a backend is one module
with its BACKEND, one line below, and its runtime if it has daemons.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_network
from typing import Callable, Optional

from lab.controlplane.state import ClusterState, NodeState
from lab.routing.ops import NetOps


@dataclass(frozen=True)
class Backend:
    """A pod network's pure description."""

    name: str
    render: Callable[[ClusterState, NodeState], NetOps]  # kernel ops for one node
    tunnel: bool = False     # a tunnel device holds the podCIDR's network address (flannel.1)
    withdraws: bool = False  # dynamic routing: a stopped node's podCIDR leaves the others' kernels

    def node_addresses(self, state: ClusterState, node: str) -> frozenset[str]:
        """Every address traffic from or to the node itself carries: its underlay IP, its pod
        gateway (cni0 / the ptp host side) and the tunnel's address if it has one."""
        n = state.node(node)
        tunnel = {str(ip_network(n.pod_cidr, strict=False).network_address)} if self.tunnel else set()
        return frozenset({n.ip, n.gateway, *tunnel})

    def sending_address(self, state: ClusterState, node: str, dst_node: Optional[str]) -> str:
        """The source a node (or a hostNetwork pod on it, or what it SNATs) puts on packets to a pod
        on dst_node (None: not a pod): the underlay IP, or the tunnel's address across nodes."""
        n = state.node(node)
        if self.tunnel and dst_node is not None and dst_node != node:
            return str(ip_network(n.pod_cidr, strict=False).network_address)
        return n.ip


def _registry() -> dict[str, Backend]:
    from lab.routing import bgp, fabric, hostgw, vxlan

    return {b.name: b for b in (hostgw.BACKEND, vxlan.BACKEND, bgp.BACKEND, fabric.BACKEND)}


BACKENDS = _registry()


def backend(state: ClusterState) -> Backend:
    try:
        return BACKENDS[state.network]
    except KeyError:
        raise ValueError(f"network {state.network!r} is not supported; supported: {', '.join(BACKENDS)}") from None


def render(state: ClusterState, node: NodeState) -> NetOps:
    """The operations that give `node` a path to every other node's podCIDR."""
    return backend(state).render(state, node)
