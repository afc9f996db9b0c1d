"""What kube-proxy decides about a Service port on one node, once, for both of its modes. Pure.

kube-proxy's backends share one EndpointSlice cache, one ServicePortName and one
CategorizeEndpoints (pkg/proxy/topology.go); its iptables and nftables proxiers only write those
decisions down. Here likewise: lab.kube_proxy.iptables and .nftables take every decision from
ServicePort and differ only in how they spell it.

Usable endpoints are the ready ones; when a traffic policy (Cluster or Local, each on its own)
finds none ready, the serving-but-terminating ones are used instead: kube-proxy's fallback
(KEP-1669), which today's CategorizeEndpoints applies to both policies. The lab's EndpointSlice
controller never marks an endpoint terminating (a deleted pod is gone at once), so today only
hand-built slices reach the fallback; it is kept so both modes act as a real node would.
Topology hints are not modelled.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import AbstractSet, Iterable, Optional

from lab.controlplane.endpoints import Endpoint, port_endpoints, slices_by_service, usable
from lab.controlplane.state import ClusterState, EndpointSliceState, ServicePortState, ServiceState

MASQ_MARK = "0x4000"   # 1 << --masquerade-bit (14), kube-proxy's default in both modes


def service_port_name(svc: ServiceState, port: ServicePortState) -> str:
    """"namespace/name:port", or "namespace/name" for an unnamed port (ServicePortName.String)."""
    return f"{svc.namespace}/{svc.name}" + (f":{port.name}" if port.name else "")


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service on one node: kube-proxy's servicePortInfo with the results of
    CategorizeEndpoints. Built by categorize()."""

    svc: ServiceState
    port: ServicePortState
    cluster: tuple[Endpoint, ...] = ()    # for traffic policy Cluster; () if no traffic uses it
    local: tuple[Endpoint, ...] = ()      # for traffic policy Local: this node's; () if unused
    reachable: tuple[Endpoint, ...] = ()  # cluster and local together: those written on this node
    has_endpoints: bool = False           # usable endpoints anywhere in the cluster
    family: str = "IPv4"                  # the proxier's family (kube-proxy runs one per family)

    @cached_property
    def spn(self) -> str:
        return service_port_name(self.svc, self.port)

    @cached_property
    def proto(self) -> str:
        return self.port.protocol.lower()

    @cached_property
    def cluster_ip(self) -> str:
        """Its ClusterIP of this proxier's family (service_ports keeps only Services that have one)."""
        return self.svc.cluster_ip_of(self.family) or ""

    @cached_property
    def external_ips(self) -> tuple[str, ...]:
        """The externalIPs of this family: kube-proxy drops the others from each family's proxier."""
        return tuple(ip for ip in self.svc.external_ips if of_family(ip, self.family))

    @cached_property
    def load_balancer_ip(self) -> str:
        lb = self.svc.load_balancer_ip
        return lb if lb and of_family(lb, self.family) else ""

    @property
    def affinity(self) -> bool:
        return self.svc.session_affinity == "ClientIP"

    @property
    def external(self) -> bool:
        """Reachable from outside (ExternallyAccessible): a NodePort, an externalIP or a load-balancer IP."""
        return bool(self.port.node_port or self.external_ips or self.load_balancer_ip)

    @property
    def uses_firewall(self) -> bool:
        """loadBalancerSourceRanges on a load-balancer IP: the firewall chain between it and the external one."""
        return self.has_endpoints and bool(self.load_balancer_ip and self.svc.source_ranges)

    @property
    def internal_local(self) -> bool:
        return self.svc.internal_traffic_policy == "Local"

    @property
    def external_local(self) -> bool:
        return self.external and self.svc.external_traffic_policy == "Local"

    @property
    def uses_cluster(self) -> bool:
        """iTP Cluster, or any external traffic: eTP Local short-circuits pods and the node to all."""
        return not self.internal_local or self.external

    @property
    def uses_local(self) -> bool:
        return self.internal_local or self.external_local

    @property
    def has_internal(self) -> bool:
        """ClusterIP traffic has somewhere to go from this node."""
        return self.has_endpoints and (not self.internal_local or bool(self.local))

    @property
    def has_external(self) -> bool:
        """NodePort traffic from outside has somewhere to go from this node."""
        return self.has_endpoints and (not self.external_local or bool(self.local))

    @property
    def uses_external_chain(self) -> bool:
        """NodePort traffic is dispatched (to the external chain) only if endpoints exist somewhere."""
        return self.external and self.has_endpoints

    @property
    def no_endpoints_verdict(self) -> str:
        """For traffic with nowhere to go: "reject" if the Service has no endpoints at all, "drop"
        if it has some but its Local policy finds none on this node."""
        return "drop" if self.has_endpoints else "reject"


def of_family(ip: str, family: str) -> bool:
    return (":" in ip) == (family == "IPv6")


def pod_cidr_of(state: ClusterState, family: str) -> str:
    """kube-proxy's --cluster-cidr of one family (its local-traffic detector): "" if the cluster
    has no pod range of that family (then nothing is masqueraded for being off-cluster)."""
    return state.pod_cidr_of(6 if family == "IPv6" else 4)


def categorize(svc: ServiceState, port: ServicePortState, eps: tuple[Endpoint, ...], node: str,
               family: str = "IPv4") -> ServicePort:
    """proxy.CategorizeEndpoints without topology hints, with its terminating fallback."""
    p = ServicePort(svc, port, family=family)
    cluster = usable(eps) if p.uses_cluster else ()
    if not p.uses_local:
        return replace(p, cluster=cluster, reachable=cluster, has_endpoints=bool(cluster))
    local = usable(e for e in eps if e.node == node)
    reachable = tuple(sorted({str(e): e for e in cluster + local}.values(), key=str))
    return replace(p, cluster=cluster, local=local, reachable=reachable,
                   has_endpoints=bool(cluster) or any(e.ready or e.fallback for e in eps))


def service_ports(state: ClusterState, node: str, slices: Iterable[EndpointSliceState],
                  only: Optional[AbstractSet[str]] = None, family: str = "IPv4") -> list[ServicePort]:
    """Every proxied service port on `node` for one family's proxier (of the Services in `only`,
    if given: a partial sync costs what the change costs): Services by namespace/name, ports in
    spec order. Headless Services (no ClusterIP), those without a ClusterIP of this family and
    those with a skip label are not proxied; endpoints come from the slices of this family."""
    services = [s for s in state.services
                if s.cluster_ip_of(family) and s.proxied and (only is None or s.key in only)]
    if only is not None:
        slices = [s for s in slices if f"{s.namespace}/{s.service}" in only]
    by_service = slices_by_service(slices)
    out = []
    for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
        mine = by_service.get((svc.namespace, svc.name), ())
        out += [categorize(svc, port, port_endpoints(svc, port, mine, family), node, family) for port in svc.ports]
    return out


def stale_udp(old: ClusterState, old_slices: Iterable[EndpointSliceState], new: ClusterState,
              new_slices: Iterable[EndpointSliceState], first: bool) -> list[tuple[str, Optional[int]]]:
    """(ClusterIP, nodePort) of the UDP service ports whose conntrack entries kube-proxy deletes:
    those that now have endpoints and had none (all of them at the first sync). A UDP client that
    sent before (its packets rejected, or not translated yet at all: the startup race) keeps an
    un-NATed entry that its retries refresh forever; the entry, not the rules, would decide."""
    old_slices, new_slices = tuple(old_slices), tuple(new_slices)
    out = []
    for family in new.service_families():
        before = {(s.key, p.name): bool(usable(port_endpoints(s, p, old_slices, family)))
                  for s in old.services for p in s.ports}
        for svc in new.services:
            ip = svc.cluster_ip_of(family)
            for port in svc.ports:
                if port.protocol == "UDP" and ip and svc.proxied and usable(port_endpoints(svc, port, new_slices, family)) \
                        and (first or not before.get((svc.key, port.name))):
                    out.append((ip, port.node_port))
    return out
