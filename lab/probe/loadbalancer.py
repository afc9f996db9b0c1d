"""`lab check`'s loadbalancer row: from every plain host, every load-balancer address (and every
externalIP that is a node's address, the only ones the underlay delivers) answers on each port from
a ready endpoint; with externalTrafficPolicy Local the endpoint sees the host's own address, with
Cluster the receiving node's; a host outside loadBalancerSourceRanges gets no reply. Which node
receives an LB address is the speaker the lab elects (lab.controlplane.loadbalancer), with every
node running. Judged under the NetworkPolicies as the nodeport row is (pure; the probe engine runs it)."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Mapping, Sequence

from lab.controlplane.loadbalancer import speakers
from lab.controlplane.state import ClusterState, EndpointSliceState, PodState, ServicePortState, ServiceState
from lab.kube_proxy.model import ServicePort, service_port_name
from lab.policy import model as policy
from lab.probe.engine import Probe
from lab.probe.asks import Ask, allowed_servers, denied, external_endpoints

CHECK = "loadbalancer"


def receivers(state: ClusterState, svc: ServiceState, slices: Sequence[EndpointSliceState]) -> dict[str, str]:
    """Address -> the node the underlay delivers it to: the LB IP's speaker, a node's own address."""
    out = speakers([svc], slices, [n.name for n in state.nodes])
    nodes = {n.ip: n.name for n in state.nodes}
    return out | {ip: nodes[ip] for ip in svc.external_ips if ip in nodes}


def asks(state: ClusterState, svc: ServiceState, port: ServicePortState, sps: Mapping[str, ServicePort],
         pods: Mapping[str, PodState], slices: Sequence[EndpointSliceState]) -> list[Ask]:
    out = []
    spn = service_port_name(svc, port)
    for addr, node in receivers(state, svc, slices).items():
        sp = sps[node]
        eps = external_endpoints(sp)
        everyone = frozenset(pods[k].name for k in eps)
        local = sp.external_local
        for h in state.underlay_hosts():
            fenced = addr == svc.load_balancer_ip and svc.source_ranges and \
                not any(IPv4Address(h.ip) in IPv4Network(r) for r in svc.source_ranges)
            src = (lambda _: h.ip) if local else (lambda pod: policy.sending_address(state, node, pod))
            names = allowed_servers(state, src, eps, port.protocol, pods)
            subject, reply, may_drop = denied(
                f"host/{h.name} -> {spn} at {addr}:{port.port}/{port.protocol} (node/{node}, "
                f"{'Local' if local else 'Cluster'})", names, everyone)
            if fenced:
                subject, reply, may_drop = subject + " (outside loadBalancerSourceRanges)", False, False
            out.append(Ask(CHECK, subject, Probe(h.netns, addr, port.port, port.protocol), servers=names,
                           source=h.ip if local else "node", reply=reply and bool(names), may_drop=may_drop))
    return out
