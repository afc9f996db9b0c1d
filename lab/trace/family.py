"""One IP family's view of a lab (pure): the trace's models (routes, policies, the wire) read a
node's `ip`, `pod_cidr`, `gateway` and a pod's `ip`; a trace in IPv6 walks a state whose every
address is its IPv6 one, so the same walk predicts both families. Services keep both ClusterIPs:
kube-proxy's model picks the family's (lab.kube_proxy.model.service_ports(family=))."""
from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

from lab.controlplane.state import ClusterState


def of(ip: str) -> int:
    return ip_address(ip).version


def project(state: ClusterState, family: int) -> ClusterState:
    """The state with every node, host and pod address of `family`; a single-stack IPv4 state as it is."""
    if state.families == (family,) and family == 4:
        return state
    nodes = tuple(replace(n, ip=n.address_of(family), pod_cidr=n.pod_cidr_of(family), gateway=n.gateway_of(family),
                          pod_cidrs=(n.pod_cidr_of(family),)) for n in state.nodes)
    node_ip = {n.name: n.ip for n in nodes}
    pods = tuple(replace(p, ip=node_ip[p.node] if p.host_network else p.ip_of(family),
                         ips=(node_ip[p.node] if p.host_network else p.ip_of(family),)) for p in state.pods)
    hosts = tuple(replace(h, ip=h.address_of(family)) for h in state.hosts)
    return replace(state, nodes=nodes, pods=pods, hosts=hosts, pod_cidr=state.pod_cidr_of(family),
                   pod_cidrs=(state.pod_cidr_of(family),),
                   service_cidr=state.service_cidr_of(f"IPv{family}") or state.service_cidr, secondary_service_cidr="",
                   underlay_subnet=state.underlay_subnet6 if family == 6 else state.underlay_subnet)
