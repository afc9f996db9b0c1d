"""network: vpc — the AWS VPC CNI model. Pods take their addresses from the VPC subnet (the
underlay's) as secondary IPs of the node's ENI (its eth0): no overlay, no podCIDR of their own.
Each node routes its pods with a /32 route per pod veth (the ptp plugin, as the VPC CNI's own
plugin does) and answers ARP on eth0 for them (proxy ARP), so a peer, a node or an underlay host
reaches a pod as any other address of the subnet: no encapsulation, no SNAT inside the VPC. Traffic
that leaves the VPC (to the public segment) is SNATed to the node's address, the VPC CNI's default
(AWS_VPC_K8S_CNI_EXTERNALSNAT=false): kube-proxy's egress masquerade does it, since the cluster's
pod range is the VPC subnet.

The budget: an instance type has so many ENIs and so many IPv4 addresses per ENI, the first of
each being the ENI's own, so a node holds at most ENIs x (IPs per ENI - 1) pod IPs
(cluster.vpc). A plan over budget fails before anything is built, naming the node.

Where the lab differs: ipamd hands out whatever free addresses the subnet has; here each node gets
one aligned block of the subnet, from its top (the machines take the bottom), so the same file gives
the same addresses every run and `lab trace` can tell a pod's node from its address.
"""
from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from lab.controlplane.ipam import underlay_gateway
from lab.controlplane.state import ClusterState, NodeState
from lab.errors import LabError
from lab.routing.kind import Backend, Crossing, Drawing, NextHop, WireHop
from lab.routing.ops import NetOps

RESERVED = 3  # per block, as host-local keeps them: its network, its gateway (the ptp host side), its broadcast


def budget(topo: Any) -> int:
    """Pod IPs per node: ENIs x (IPs per ENI - the ENI's primary address)."""
    return topo.cluster.vpc.enisPerNode * (topo.cluster.vpc.ipsPerEni - 1)


def _block_prefix(topo: Any) -> int:
    return next(p for p in range(30, -1, -1) if 2 ** (32 - p) - RESERVED >= budget(topo))


def pod_ranges(topo: Any, count: int) -> list[IPv4Network]:
    """One block per node from the top of the subnet, clear of the gateway, the machines and the
    LoadBalancer pools."""
    subnet, prefix = topo.underlay.subnet, _block_prefix(topo)
    machines = len(topo.nodes) + sum(1 for h in topo.hosts if h.network == "underlay" and not h.natGateway)
    low = underlay_gateway(subnet) + machines  # the last machine's address
    pools = topo.cluster.loadBalancer.addresses if topo.cluster.loadBalancer else []
    free = [b for b in (reversed(list(subnet.subnets(new_prefix=prefix))) if prefix >= subnet.prefixlen else ())
            if b.network_address > low and not any(b.overlaps(p) for p in pools)]
    if len(free) < count:
        vpc, larger = topo.cluster.vpc, subnet.supernet(new_prefix=max(0, subnet.prefixlen - 2))
        raise LabError(
            f"underlay subnet {subnet} (the VPC subnet) has room for {len(free)} nodes' pod IPs, the topology has {count} "
            f"nodes: each needs a /{prefix} for its budget of {budget(topo)} (cluster.vpc: {vpc.enisPerNode} ENIs x "
            f"{vpc.ipsPerEni} IPs); use a larger underlay.subnet (e.g. {larger}) or a smaller cluster.vpc budget")
    return free[:count]


def check(topo: Any, pods: dict[str, int]) -> list[str]:
    """The seeds' "IP exhaustion risk per node": a node with more pods than its ENIs hold (the CNI it
    needs, ptp, is checked with the topology: lab/topology/kinds.py)."""
    out = []
    per_node, vpc = budget(topo), topo.cluster.vpc
    for node, n in pods.items():
        if n > per_node:
            out.append(
                f"IP exhaustion risk per node: node {node} has {n} pods with their own IP, its budget is "
                f"{vpc.enisPerNode} ENIs x ({vpc.ipsPerEni} IPs per ENI - 1 primary) = {per_node}; "
                "raise cluster.vpc.enisPerNode or ipsPerEni (a larger instance type), add nodes, "
                "or place fewer pods on it (replicas, nodeName)")
    return out


def render(state: ClusterState, node: NodeState) -> NetOps:
    """Proxy ARP on eth0: the node answers for every address it routes through another device,
    its pods' /32s, so no per-peer route is needed. The ptp plugin makes the /32s."""
    return NetOps(sysctls=(("net.ipv4.conf.eth0.proxy_arp", "1"),))


def next_hop(state: ClusterState, node: NodeState, peer: NodeState) -> NextHop:
    return NextHop("eth0", "", f"{state.underlay_subnet} dev eth0: the VPC subnet; {peer.name} answers ARP for "
                               f"its pods ({peer.pod_cidr}, proxy ARP)")


def crossing(state: ClusterState, a: NodeState, b: NodeState, src: str, dst: str) -> Crossing:
    return Crossing((WireHop("VPC subnet", "", state.switch_name,
                             f"switch {state.switch_name}: to {b.name}'s MAC (proxy ARP for {dst}); no encapsulation, "
                             f"the packet keeps {src} → {dst}"),), "eth0")


DRAWING = Drawing(
    switch=lambda state: ("VPC subnet: nodes and pods",),
    eth0=lambda state, n: (f"ENI: pods' secondary IPs {n.pod_cidr}", "proxy ARP, a /32 route per pod"),
)
BACKEND = Backend("vpc", render, pod_ranges=pod_ranges, cluster_pod_cidr=lambda topo: str(topo.underlay.subnet),
                  check=check, next_hop=next_hop, crossing=crossing, drawing=DRAWING)
