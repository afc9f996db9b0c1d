"""The EndpointSlice controller (pure): which pods back which Service ports, and whether they are
ready. Readiness is the only runtime input: the lab's prober supplies it as {pod key: ready}."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, TypeVar

from lab.controlplane.state import (
    ClusterState, EndpointPortState, EndpointSliceState, EndpointState, PodState, ServicePortState, ServiceState,
)


def selects(service: ServiceState, pod: PodState) -> bool:
    if service.selector is None or not service.selector or pod.namespace != service.namespace:
        return False
    labels = pod.label_dict()
    return all(labels.get(k) == v for k, v in service.selector)


def target_port(pod: PodState, target: str, protocol: str) -> Optional[int]:
    """A numeric targetPort is used as is; a named one is looked up in the pod's containers."""
    if target.isdigit():
        return int(target)
    for c in pod.containers:
        for p in c.ports:
            if p.name == target and p.protocol == protocol:
                return p.port
    return None


def pod_address(pod: PodState, family: str) -> Optional[str]:
    """The pod's address of that family (status.podIPs), None if it has none."""
    return pod.ip_of(6 if family == "IPv6" else 4) or None


def slices_for(service: ServiceState, state: ClusterState, ready: Mapping[str, bool]) -> tuple[EndpointSliceState, ...]:
    """One slice per family of the Service (addressType IPv4 or IPv6, each with the pods'
    addresses of that family) and distinct port mapping, as the controller does (named ports may
    differ per pod). A Service with a selector and no pods still gets one empty slice per family."""
    return tuple(s for family in service.families() for s in _family_slices(service, state, ready, family))


def _family_slices(service: ServiceState, state: ClusterState, ready: Mapping[str, bool],
                   family: str) -> tuple[EndpointSliceState, ...]:
    groups: dict[tuple[EndpointPortState, ...], list[EndpointState]] = {}
    for pod in state.pods:
        address = pod_address(pod, family)
        if not selects(service, pod) or address is None:
            continue
        ports = []
        for sp in service.ports:
            port = target_port(pod, sp.target_port, sp.protocol)
            if port is not None:
                ports.append(EndpointPortState(sp.name, sp.protocol, port))
        if not ports:
            continue
        is_ready = ready.get(pod.key, True)
        groups.setdefault(tuple(ports), []).append(EndpointState(
            address=address, node=pod.node, pod=pod.key,
            ready=is_ready or service.publish_not_ready, serving=is_ready,
        ))
    if not groups:
        groups[()] = []
    salt = "" if family == "IPv4" else family   # the IPv4 slices keep the names they had before dual-stack
    return tuple(
        EndpointSliceState(
            namespace=service.namespace,
            name=f"{service.name}-{hashlib.sha256((salt + repr(ports)).encode()).hexdigest()[:5]}",
            service=service.name, ports=ports, endpoints=tuple(eps), address_type=family,
        )
        for ports, eps in groups.items()
    )


def endpoint_slices(state: ClusterState, ready: Optional[Mapping[str, bool]] = None) -> tuple[EndpointSliceState, ...]:
    ready = ready or {}
    return tuple(s for svc in state.services if svc.selector is not None for s in slices_for(svc, state, ready))


def initial_readiness(state: ClusterState) -> dict[str, bool]:
    """Before its first successful probe a pod with a readinessProbe is not ready; others are."""
    return {p.key: not any(c.readiness for c in p.containers) for p in state.pods}


def slices_by_service(slices: Iterable[EndpointSliceState]) -> dict[tuple[str, str], list[EndpointSliceState]]:
    """(namespace, service) -> its slices, in name order: what a proxy looks up per Service."""
    out: dict[tuple[str, str], list[EndpointSliceState]] = {}
    for sl in sorted(slices, key=lambda s: s.name):
        out.setdefault((sl.namespace, sl.service), []).append(sl)
    return out


# --- reading EndpointSlices, as kube-proxy's cache does: every consumer reads them through these ---

@dataclass(frozen=True)
class Endpoint:
    """One ip:port of a service port, with its EndpointSlice conditions."""

    ip: str
    port: int
    node: str
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    pod: str = ""          # the slice's targetRef (namespace/name): kube-proxy never reads it, the probes do

    def __str__(self) -> str:
        """ip:port, [ip]:port for IPv6 (as kube-proxy's endpoint strings and nft's dnat write it)."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def fallback(self) -> bool:
        """Serving but terminating: used only when nothing is ready."""
        return self.serving and self.terminating


def port_endpoints(svc: ServiceState, port: ServicePortState,
                   slices: Iterable[EndpointSliceState], family: Optional[str] = None) -> tuple[Endpoint, ...]:
    """Every endpoint of one service port, whatever its conditions: from the Service's slices (of
    one addressType if `family` is given: each of kube-proxy's per-family proxiers reads only its
    own), those with a port of the same name and protocol (its number from that slice), each
    ip:port once, sorted by "ip:port" as kube-proxy's EndpointSlice cache sorts them (byEndpoint)."""
    found: dict[str, Endpoint] = {}
    for s in sorted(slices, key=lambda s: s.name):
        if (s.namespace, s.service) != (svc.namespace, svc.name) or family not in (None, s.address_type):
            continue
        number = next((sp.port for sp in s.ports if (sp.name, sp.protocol) == (port.name, port.protocol)), None)
        if number is None:
            continue
        for e in s.endpoints:
            ep = Endpoint(e.address, number, e.node, e.ready, e.serving, e.terminating, e.pod)
            found.setdefault(str(ep), ep)
    return tuple(sorted(found.values(), key=str))


EP = TypeVar("EP")  # an EndpointState (a slice's) or an Endpoint (a service port's): both say whether ready


def ready(endpoints: Iterable[EP]) -> tuple[EP, ...]:
    """The ready ones: the one readiness filter of every consumer of EndpointSlices (DNS, ingress-nginx,
    MetalLB's speaker, the probes; kube-proxy through usable())."""
    return tuple(e for e in endpoints if e.ready)


def usable(eps: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """kube-proxy's endpoints for one traffic policy: the ready ones, else the serving-terminating
    ones (its fallback, KEP-1669)."""
    eps = tuple(eps)
    return ready(eps) or tuple(e for e in eps if e.fallback)


def ready_by_service(slices: Iterable[EndpointSliceState]) -> dict[tuple[str, str], tuple[EndpointState, ...]]:
    """(namespace, service) -> its ready endpoints over all its slices (any port)."""
    out: dict[tuple[str, str], tuple[EndpointState, ...]] = {}
    for (ns, name), mine in slices_by_service(slices).items():
        out[(ns, name)] = ready(e for sl in mine for e in sl.endpoints)
    return out
