"""What a pod-network kind is (lab.routing's registry holds one per pod network): its planning,
kernel operations, runtime, trace model, drawing and fault targets. Apart from the registry so a
kind's module imports this, not the registry that imports it (no circle)."""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network
from typing import Any, Callable, Optional

from lab.controlplane import ipam
from lab.controlplane.state import ClusterState, NodeState
from lab.routing.ops import NetOps
from lab.topology.kinds import mtu_overhead


@dataclass(frozen=True)
class Runtime:
    """What a pod network runs as processes (FRR, the fabric controller): `lab up` starts it after
    the nodes' kernel ops, waits for it once the pods are wired; `lab down` stops it first.
    record: the lab's LabRecord (lab.host.record, a layer above)."""

    start: Callable[[ClusterState, Any], None]
    wait_ready: Callable[[ClusterState], float]
    ready: str                                         # what wait_ready waits for, for progress lines
    stop: Callable[[Any], None] = lambda record: None  # daemons in lab namespaces die with them
    # (record, machine, argv) -> argv: a command for that machine's own daemons as `lab exec` and the
    # faults run it (FRR: vtysh pointed at the machine's vty directory); others pass unchanged
    command: Callable[[Any, str, list], list] = lambda record, name, argv: argv
    # (record, machine) -> the PID of its routing daemon (Backend.node_daemon), 0 when none
    daemon_pid: Callable[[Any, str], int] = lambda record, name: 0
    # (state, record) -> an SDN fabric's own tables for `lab get routes fabric` (cloud-routes): its routes
    # as [destination, node, next-hop MAC, switch port] rows, the flows its controller installs, the
    # flows in the switch now; None: the network has no fabric
    fabric_table: Optional[Callable[[ClusterState, Any], tuple[list[list[str]], list[str], list[str]]]] = None


@dataclass(frozen=True)
class NextHop:
    """The route a node picks for a pod on another node, as `ip route get` would show it."""

    dev: str
    via: str
    why: str
    proto: str = ""          # the route's protocol when `ip route get fibmatch` names one (bgp)


@dataclass(frozen=True)
class WireHop:
    """One step of a packet between two nodes, for lab.trace (its Hop without the step number)."""

    component: str
    namespace: str
    interface: str
    what: str
    kind: str = ""
    expect: tuple[str, ...] = ()


@dataclass(frozen=True)
class Crossing:
    hops: tuple[WireHop, ...]
    arrives_on: str          # the receiving node's interface the packet comes out of


@dataclass(frozen=True)
class Drawing:
    """What `lab graph` draws for a pod network, as plain lines and links lab.graph turns into boxes.
    links: (from anchor, to anchor, label, link kind) where an anchor is ("eth0"|"vtep", node name),
    ("host", name) or ("switch", "")."""

    eth0: Callable[[ClusterState, NodeState], tuple[str, ...]] = lambda state, n: ()
    switch: Callable[[ClusterState], tuple[str, ...]] = lambda state: ()
    role: Callable[[ClusterState, str], tuple[str, ...]] = lambda state, name: ()  # a node's or host's part
    vtep: Callable[[ClusterState, NodeState], tuple[str, ...]] = lambda state, n: ()  # a tunnel device's box
    links: Callable[[ClusterState], list[tuple[tuple[str, str], tuple[str, str], str, str]]] = lambda state: []
    controller: tuple[str, ...] = ()           # a box beside the switch, linked to it (cloud-routes)
    controller_link: str = ""


def _pod_ranges(topo: Any, count: int) -> list[IPv4Network]:
    """nodeipam's range allocator: a /nodeCIDRMaskSize of the (primary) podCIDR per node; the
    plan cuts a dual-stack cluster's second podCIDR the same way."""
    primary = topo.cluster.podCIDR[0]
    return ipam.node_pod_cidrs(primary, topo.cluster.node_mask(primary.version), count)


def _tunnel_route(state: ClusterState, node: NodeState, peer: NodeState) -> NextHop:
    return NextHop("eth0", peer.ip, f"{peer.pod_cidr} via {peer.ip} dev eth0: {peer.name}")


def _same_segment(state: ClusterState, a: NodeState, b: NodeState, src: str, dst: str) -> Crossing:
    return Crossing((WireHop("underlay", "", state.switch_name, f"switch {state.switch_name}: {a.ip} → {b.ip} "
                             f"(L2 next hop, the packet keeps {src} → {dst})"),), "eth0")


@dataclass(frozen=True)
class Backend:
    """A pod network's pure description (see the module's docstring)."""

    name: str
    render: Callable[[ClusterState, NodeState], NetOps]  # kernel ops for one node
    tunnel: bool = False     # a tunnel device holds the podCIDR's network address (flannel.1)
    withdraws: bool = False  # dynamic routing: a stopped node's podCIDR leaves the others' kernels
    runtime: str = ""        # the module (in the runtimes layer) whose RUNTIME runs its daemons; "" = kernel only
    ipv6: bool = False       # carries IPv6 pods (dual-stack, IPv6-only); listed in lab/topology/kinds.py too
    # planning (topo: a lab.topology.model.Topology)
    pod_ranges: Callable[[Any, int], list[IPv4Network]] = _pod_ranges  # each node's range, in node order
    cluster_pod_cidr: Callable[[Any], str] = lambda topo: str(topo.cluster.podCIDR[0])  # where (primary) pod IPs come from
    check: Callable[[Any, dict[str, int]], list[str]] = lambda topo, pods: []  # (topo, {node: pod IPs}) -> problems
    # lab trace
    next_hop: Callable[[ClusterState, NodeState, NodeState], NextHop] = _tunnel_route
    crossing: Callable[[ClusterState, NodeState, NodeState, str, str], Crossing] = _same_segment
    # lab graph
    drawing: Drawing = field(default_factory=Drawing)
    # lab fault
    overlay_device: str = ""         # target overlay[/NODE]: the device each node carries pod traffic on
    overlay_device6: str = ""        # ... its IPv6 pods (flannel-v6.1)
    node_daemon: str = ""            # stop|kill node/NAME: the per-node routing daemon ("bgpd")
    faults: tuple[str, ...] = ()     # fault kinds only this network has (bgp-peer-as)
    # its routing sessions, for those faults: (state, node) -> [(peer, its address, iBGP?)], and the
    # node's own AS number (0: the network has no sessions)
    peers: Callable[[ClusterState, str], list[tuple[str, str, bool]]] = lambda state, name: []
    local_as: Callable[[ClusterState, str], int] = lambda state, name: 0

    @property
    def mtu_overhead(self) -> int:
        return mtu_overhead(self.name)

    def node_addresses(self, state: ClusterState, node: str) -> frozenset[str]:
        """Every address traffic from or to the node itself carries: its underlay IP, its pod
        gateway (cni0 / the ptp host side) and the tunnel's address if it has one."""
        n = state.node(node)
        tunnel = {str(ip_network(c, strict=False).network_address) for c in n.cidrs} if self.tunnel else set()
        return frozenset({n.ip, *((n.ip6,) if n.ip6 else ()), *(n.gateway_of(f) for f in state.families), *tunnel})

    def sending_address(self, state: ClusterState, node: str, dst_node: Optional[str], family: int = 4) -> str:
        """The source a node (or a hostNetwork pod on it, or what it SNATs) puts on packets to a pod
        on dst_node (None: not a pod), in a family: the underlay IP, or the tunnel's address across
        nodes."""
        n = state.node(node)
        if self.tunnel and dst_node is not None and dst_node != node:
            return str(ip_network(n.pod_cidr_of(family) or n.pod_cidr, strict=False).network_address)
        return n.address_of(family) or n.ip
