"""VXLAN like flannel: flannel.1 (VNI 1, UDP 8472, no learning); per remote node one route, one
neighbour entry and one FDB entry, all known up front because VTEP MACs derive from node IPs."""
from __future__ import annotations

from ipaddress import IPv4Network
from itertools import combinations

from lab.controlplane.state import ClusterState, NodeState
from lab.routing.kind import Backend, Crossing, Drawing, NextHop, WireHop
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


MESH_UP_TO = 4  # nodes; beyond this lab graph links each VTEP to the underlay instead of to every peer


def next_hop(state: ClusterState, node: NodeState, peer: NodeState) -> NextHop:
    gw = IPv4Network(peer.pod_cidr).network_address
    return NextHop(DEVICE, str(gw), f"{peer.pod_cidr} via {gw} dev {DEVICE} onlink (VXLAN to {peer.name})")


def crossing(state: ClusterState, a: NodeState, b: NodeState, src: str, dst: str) -> Crossing:
    return Crossing((
        WireHop(f"{DEVICE} (VXLAN) on {a.name}", a.netns, "eth0",
                f"encapsulates: outer {a.ip} → {b.ip} UDP dport {PORT}, VNI {VNI}; inner {src} → {dst}",
                "encap", (a.ip, b.ip, str(PORT))),
        WireHop("underlay", "", state.switch_name, f"switch {state.switch_name} carries UDP {a.ip} → {b.ip}:{PORT}"),
        WireHop(f"{DEVICE} (VXLAN) on {b.name}", b.netns, "eth0",
                f"eth0 receives UDP {PORT}; {DEVICE} decapsulates VNI {VNI}: inner {src} → {dst}",
                "arrive", ("eth0", str(PORT), a.ip, b.ip)),
    ), DEVICE)


def _vtep(state: ClusterState, n: NodeState) -> tuple[str, ...]:
    return (f"{DEVICE} VTEP", f"{IPv4Network(n.pod_cidr).network_address}/32")


def _tunnels(state: ClusterState) -> list:
    label = f"VXLAN VNI {VNI}, UDP {PORT}"
    if len(state.nodes) <= MESH_UP_TO:
        return [(("vtep", a.name), ("vtep", b.name), label, "tunnel") for a, b in combinations(state.nodes, 2)]
    return [(("vtep", n.name), ("switch", ""), f"{label} to every node", "tunnel") for n in state.nodes]


BACKEND = Backend("vxlan", render, tunnel=True, next_hop=next_hop, crossing=crossing,
                  drawing=Drawing(vtep=_vtep, links=_tunnels), overlay_device=DEVICE)
