"""host-gw (flannel's backend of that name): one route per remote podCIDR via the owner's node IP.
Needs every node on one L2 segment, which the underlay switch gives. Per family: a node's IPv6
pod subnet is routed via its IPv6 underlay address."""
from __future__ import annotations

from lab.controlplane.state import ClusterState, NodeState
from lab.routing.kind import Backend, Drawing, NextHop
from lab.routing.ops import NetOps


def render(state: ClusterState, node: NodeState) -> NetOps:
    return NetOps(ip=tuple(
        f"route replace {peer.pod_cidr_of(family)} via {peer.address_of(family)} dev eth0"
        for peer in state.nodes if peer.name != node.name for family in state.families
    ))


def next_hop(state: ClusterState, node: NodeState, peer: NodeState) -> NextHop:
    return NextHop("eth0", peer.ip, f"{peer.pod_cidr} via {peer.ip} dev eth0: {peer.name}, host-gw")


def _eth0(state: ClusterState, n: NodeState) -> tuple[str, ...]:
    return tuple(f"{p.pod_cidr_of(family)} via {p.address_of(family)}"
                 for p in state.nodes if p.name != n.name for family in state.families)


BACKEND = Backend("host-gw", render, next_hop=next_hop, drawing=Drawing(eth0=_eth0), ipv6=True)
