"""The Service probes' vocabulary, shared by the Service rows (lab.probe.services) and the
LoadBalancer rows built on them (lab.probe.loadbalancer): a planned probe and what it is for, where
each node's rules send a Service port's traffic, and which endpoints the policies let a client reach.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from lab.controlplane.state import ClusterState, EndpointSliceState, PodState, ServicePortState, ServiceState
from lab.kube_proxy import model
from lab.kube_proxy.model import ServicePort
from lab.policy import model as policy
from lab.probe.engine import REFUSED, REPLY, SILENCE, Probe


@dataclass(frozen=True)
class Ask:
    """One planned probe and what it is for."""

    check: str
    subject: str
    probe: Probe
    group: str = ""                      # aggregate judgments (spread, affinity) group by this
    servers: frozenset = frozenset()     # pods allowed to answer
    source: Optional[str] = None         # the source address the server must see ("" = any)
    reply: bool = True
    client: str = ""                     # the pod key of the client, when it is a pod
    node: str = ""                       # and its node: grouped rows are judged per node
    hairpin: str = ""                    # the client's pod name, if it is itself an endpoint: when it
                                         # answers itself, kube-proxy masquerades (no source check)
    may_drop: bool = False               # the policies deny some endpoints: no reply is what picking
                                         # one of those looks like


def expect(a: Ask) -> Optional[str]:
    """What the probe engine is told to expect (it retries what disagrees): no-endpoints waits for
    a reject, an ICMP error the kernel rate-limits per destination (a burst of 6, then one a
    second), so a lost one is tried again; a may-drop probe's silence is an answer."""
    if a.check == "no-endpoints":
        return REFUSED
    return REPLY if a.reply and not a.may_drop else SILENCE


# Where each node's rules send a Service port's traffic, as lab.kube_proxy.model decides it for
# both renderers (ready endpoints, or the serving-terminating ones when none is ready; a Local
# traffic policy uses the node's own): the probes expect what the rules program. Each returns
# pod key -> (ip, port), empty where the traffic has nowhere to go.

def per_node(state: ClusterState, svc: ServiceState, port: ServicePortState,
             slices: Sequence[EndpointSliceState], family: str = "IPv4") -> dict[str, ServicePort]:
    """The service port as each node's kube-proxy of `family` sees it."""
    eps = model.port_endpoints(svc, port, slices, family)
    return {n.name: model.categorize(svc, port, eps, n.name, family) for n in state.nodes}


def on_node(svc: ServiceState, port: ServicePortState, slices: Sequence[EndpointSliceState], node: str,
            family: str = "IPv4") -> ServicePort:
    """The service port as one node's kube-proxy of `family` sees it."""
    return model.categorize(svc, port, model.port_endpoints(svc, port, slices, family), node, family)


def _by_pod(eps: Sequence[model.Endpoint]) -> dict[str, tuple[str, int]]:
    return {e.pod: (e.ip, e.port) for e in eps}


def internal_endpoints(sp: ServicePort) -> dict[str, tuple[str, int]]:
    """ClusterIP traffic from the node or its pods."""
    return _by_pod(sp.local if sp.internal_local else sp.cluster) if sp.has_internal else {}


def external_endpoints(sp: ServicePort) -> dict[str, tuple[str, int]]:
    """NodePort traffic arriving from outside the node."""
    return _by_pod(sp.local if sp.external_local else sp.cluster) if sp.has_external else {}


def node_local_endpoints(sp: ServicePort) -> dict[str, tuple[str, int]]:
    """NodePort traffic the node sends itself: held to no Local policy (the short-circuit to the
    cluster chain)."""
    return _by_pod(sp.cluster) if sp.uses_external_chain else {}


def reachable_endpoints(sps: Mapping[str, ServicePort]) -> dict[str, tuple[str, int]]:
    """Every endpoint some node's rules may send the service port's traffic to."""
    return {k: v for sp in sps.values() for k, v in _by_pod(sp.reachable).items()}


def netexec_serves(pod, port: int, protocol: str) -> bool:
    """Whether the pod answers the harness's probes there (they speak netexec)."""
    return pod is not None and any(c.image == "netexec" and any(x.port == port and x.protocol == protocol for x in c.ports)
                                   for c in pod.containers)


def not_netexec(eps: Mapping[str, tuple[str, int]], protocol: str, pods: Mapping[str, PodState]) -> list[str]:
    """The endpoints (pod keys) the harness's probes cannot speak to: no netexec at their port."""
    return sorted(k for k, (_, p) in eps.items() if not netexec_serves(pods.get(k), p, protocol))


def allowed_servers(state: ClusterState, src_of, eps: Mapping[str, tuple[str, int]], protocol: str,
                    pods: Mapping[str, PodState]) -> frozenset:
    """The names of the endpoints the policies let this client reach, judged as the filter sees the
    packet after DNAT: src_of(endpoint pod) is the source it carries (a pod, or an address)."""
    return frozenset(pods[k].uts_name for k, (_, port) in eps.items()
                     if not state.policies or policy.allowed(state, src_of(pods[k]), pods[k], port, protocol))


def denied(subject: str, servers: frozenset, everyone: frozenset) -> tuple[str, bool, bool]:
    """(subject, reply expected, may drop) for a client the policies allow `servers` of `everyone`."""
    if servers == everyone:
        return subject, True, False
    if not servers:
        return subject + " (denied by NetworkPolicy)", False, False
    return subject + f" (NetworkPolicy allows {len(servers)} of {len(everyone)} endpoints)", True, True
