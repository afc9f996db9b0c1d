"""host-gw (flannel's backend of that name): one route per remote podCIDR via the owner's node IP.
Needs every node on one L2 segment, which the underlay switch gives."""
from __future__ import annotations

from lab.controlplane.state import ClusterState, NodeState
from lab.routing import Backend
from lab.routing.ops import NetOps


def render(state: ClusterState, node: NodeState) -> NetOps:
    return NetOps(ip=tuple(
        f"route replace {peer.pod_cidr} via {peer.ip} dev eth0"
        for peer in state.nodes if peer.name != node.name
    ))


BACKEND = Backend("host-gw", render)
