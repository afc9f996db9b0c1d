"""VXLAN like flannel: flannel.1 (VNI 1, UDP 8472, no learning); per remote node one route, one
neighbour entry and one FDB entry, all known up front because VTEP MACs derive from node IPs.
With an IPv6 family, flannel's second VTEP flannel-v6.1 does the same for the IPv6 pod subnets
over the IPv6 underlay (its address added with nodad: no DAD delay before the first packet)."""
from __future__ import annotations

from ipaddress import ip_address, ip_network
from itertools import combinations

from lab.controlplane import naming
from lab.controlplane.state import ClusterState, NodeState
from lab.routing.kind import Backend, Crossing, Drawing, NextHop, WireHop
from lab.routing.ops import NetOps
from lab.topology.constants import VXLAN_OVERHEAD, VXLAN_PORT
from lab.topology.kinds import IPV6_HEADER_GROWTH

VNI = 1
PORT = VXLAN_PORT
DEVICE = "flannel.1"
DEVICE6 = "flannel-v6.1"


def device(family: int) -> str:
    return DEVICE if family == 4 else DEVICE6


def vtep_mac(node: NodeState, family: int) -> str:
    """Each VTEP's MAC derives from the underlay address it sends from."""
    return node.vtep_mac if family == 4 else naming.vtep_mac6(node.ip6)


def render(state: ClusterState, node: NodeState) -> NetOps:
    lines, fdb = [], []
    for family in state.families:
        dev, cidr = device(family), node.pod_cidr_of(family)
        own, host = ip_network(cidr).network_address, ip_network(cidr).max_prefixlen
        mtu = state.underlay_mtu - VXLAN_OVERHEAD - (IPV6_HEADER_GROWTH if family == 6 else 0)
        lines += [
            f"link add {dev} address {vtep_mac(node, family)} type vxlan id {VNI} local {node.address_of(family)} "
            f"dev eth0 dstport {PORT} nolearning",
            f"link set {dev} mtu {mtu} up",
            f"addr add {own}/{host} dev {dev}" + (" nodad" if family == 6 else ""),
        ]
        for peer in state.nodes:
            if peer.name == node.name:
                continue
            peer_cidr = peer.pod_cidr_of(family)
            gw = ip_network(peer_cidr).network_address
            lines += [
                f"neigh replace {gw} lladdr {vtep_mac(peer, family)} dev {dev} nud permanent",
                f"route replace {peer_cidr} via {gw} dev {dev} onlink",
            ]
            fdb.append(f"fdb append {vtep_mac(peer, family)} dev {dev} dst {peer.address_of(family)}")
    return NetOps(ip=tuple(lines), bridge=tuple(fdb))


MESH_UP_TO = 4  # nodes; beyond this lab graph links each VTEP to the underlay instead of to every peer


def next_hop(state: ClusterState, node: NodeState, peer: NodeState) -> NextHop:
    """The route to a peer's pod subnet (an IPv6 one through flannel-v6.1: lab.trace walks one
    family's view of the state, lab.trace.family)."""
    gw = ip_network(peer.pod_cidr).network_address
    dev = device(gw.version)
    return NextHop(dev, str(gw), f"{peer.pod_cidr} via {gw} dev {dev} onlink (VXLAN to {peer.name})")


def crossing(state: ClusterState, a: NodeState, b: NodeState, src: str, dst: str) -> Crossing:
    dev = device(ip_address(dst).version)
    return Crossing((
        WireHop(f"{dev} (VXLAN) on {a.name}", a.netns, "eth0",
                f"encapsulates: outer {a.ip} → {b.ip} UDP dport {PORT}, VNI {VNI}; inner {src} → {dst}",
                "encap", (a.ip, b.ip, str(PORT))),
        WireHop("underlay", "", state.switch_name, f"switch {state.switch_name} carries UDP {a.ip} → {b.ip}:{PORT}"),
        WireHop(f"{dev} (VXLAN) on {b.name}", b.netns, "eth0",
                f"eth0 receives UDP {PORT}; {dev} decapsulates VNI {VNI}: inner {src} → {dst}",
                "arrive", ("eth0", str(PORT), a.ip, b.ip)),
    ), dev)


def _vtep(state: ClusterState, n: NodeState) -> tuple[str, ...]:
    """One box for the node's VTEPs, one per family (flannel.1, flannel-v6.1 with an IPv6 family)."""
    lines: tuple[str, ...] = ()
    for family in state.families:
        own = ip_network(n.pod_cidr_of(family))
        lines += (f"{device(family)} VTEP", f"{own.network_address}/{own.max_prefixlen}")
    return lines


def _tunnels(state: ClusterState) -> list:
    label = f"VXLAN VNI {VNI}, UDP {PORT}" + (" over IPv4 and IPv6" if len(state.families) > 1 else "")
    if len(state.nodes) <= MESH_UP_TO:
        return [(("vtep", a.name), ("vtep", b.name), label, "tunnel") for a, b in combinations(state.nodes, 2)]
    return [(("vtep", n.name), ("switch", ""), f"{label} to every node", "tunnel") for n in state.nodes]


BACKEND = Backend("vxlan", render, tunnel=True, next_hop=next_hop, crossing=crossing,
                  drawing=Drawing(vtep=_vtep, links=_tunnels), overlay_device=DEVICE, overlay_device6=DEVICE6,
                  ipv6=True)
