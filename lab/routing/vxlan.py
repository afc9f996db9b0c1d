"""VXLAN like flannel: flannel.1 (VNI 1, UDP 8472, no learning); per remote node one route, one
neighbour entry and one FDB entry, all known up front because VTEP MACs derive from node IPs."""
from __future__ import annotations

from ipaddress import IPv4Network

from lab.controlplane.state import ClusterState, NodeState
from lab.routing import Backend
from lab.routing.ops import NetOps
from lab.topology.constants import VXLAN_OVERHEAD

VNI = 1
PORT = 8472
DEVICE = "flannel.1"


def render(state: ClusterState, node: NodeState) -> NetOps:
    own = IPv4Network(node.pod_cidr).network_address
    lines = [
        f"link add {DEVICE} address {node.vtep_mac} type vxlan id {VNI} local {node.ip} dev eth0 "
        f"dstport {PORT} nolearning",
        f"link set {DEVICE} mtu {state.underlay_mtu - VXLAN_OVERHEAD} up",
        f"addr add {own}/32 dev {DEVICE}",
    ]
    fdb = []
    for peer in state.nodes:
        if peer.name == node.name:
            continue
        gw = IPv4Network(peer.pod_cidr).network_address
        lines += [
            f"neigh replace {gw} lladdr {peer.vtep_mac} dev {DEVICE} nud permanent",
            f"route replace {peer.pod_cidr} via {gw} dev {DEVICE} onlink",
        ]
        fdb.append(f"fdb append {peer.vtep_mac} dev {DEVICE} dst {peer.ip}")
    return NetOps(ip=tuple(lines), bridge=tuple(fdb))


BACKEND = Backend("vxlan", render, tunnel=True)
