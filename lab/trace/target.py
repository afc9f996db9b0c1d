"""What `lab trace SRC DST[:PORT]` names, resolved against the lab's state (pure).

A trace needs more than an address: the namespace a probe starts from, the node a pod sits on, the
Service port kube-proxy will translate. A name that does not resolve is an error that lists what
exists, never a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from typing import Optional

from lab.controlplane.state import HOST_PORT, ClusterState, PodState, ServicePortState, ServiceState
from lab.errors import LabError


@dataclass(frozen=True)
class Target:
    kind: str                       # pod | node | host | service | ip
    name: str                       # as shown: pod/ns/name, node/n1, host/h, svc/ns/name, or the IP
    ip: str
    netns: str = ""                 # "" for an address outside the lab
    node: str = ""                  # the node a pod runs on, or the node itself
    pod: Optional[PodState] = None
    service: Optional[ServiceState] = None
    port: Optional[int] = None      # the port asked for (a Service's port for svc/)
    service_port: Optional[ServicePortState] = None
    gateway: str = ""               # a Gateway (namespace/name): its address, then its Envoy's route
    http_host: str = ""             # the HTTP request a Gateway routes: Host, path, headers
    http_path: str = "/"
    http_headers: tuple[tuple[str, str], ...] = ()


def _split_port(text: str) -> tuple[str, Optional[int]]:
    head, sep, tail = text.rpartition(":")
    if not sep:
        return text, None
    if not tail.isdigit() or not 0 < int(tail) < 65536:
        raise LabError(f"{text!r}: the port after ':' must be a number 1-65535")
    return head, int(tail)


def _pods_text(state: ClusterState) -> str:
    return ", ".join(p.key for p in state.pods) or "none"


def _pod(state: ClusterState, ref: str, namespace: str) -> PodState:
    ns, _, name = ref.rpartition("/")
    ns = ns or namespace
    for p in state.pods:
        if p.namespace == ns and p.name == name:
            return p
    raise LabError(f"no pod {ns}/{name} in lab {state.lab}; pods: {_pods_text(state)}; "
                   f"or give node/NAME, host/NAME, svc/NAME[.NS]:PORT or an IP")


def _service(state: ClusterState, ref: str, namespace: str, port: Optional[int]) -> Target:
    name, _, ns = ref.partition(".")
    ns = ns or namespace
    svc = next((s for s in state.services if s.namespace == ns and s.name == name), None)
    if svc is None:
        known = ", ".join(s.key for s in state.services) or "none"
        raise LabError(f"no Service {ns}/{name} in lab {state.lab}; Services: {known}")
    if not svc.cluster_ip:
        raise LabError(f"Service {svc.key} is headless (no ClusterIP): trace one of its pods instead")
    if port is None and len(svc.ports) == 1:
        port = svc.ports[0].port
    sp = next((p for p in svc.ports if p.port == port), None)
    if sp is None:
        ports = ", ".join(f"{p.port}/{p.protocol}" for p in svc.ports)
        raise LabError(f"svc/{name}.{ns}:{port}: the Service's ports are {ports}")
    return Target("service", f"svc/{svc.key}", svc.cluster_ip, service=svc, port=sp.port, service_port=sp)


def _gateway(state: ClusterState, ref: str, namespace: str, port: Optional[int]) -> Target:
    """A Gateway by NS/NAME (or NAME): its LoadBalancer address and a listener port (the first one
    by default); the Host asked is the first hostname it serves, unless --host says."""
    from lab.controlplane.gateway_state import hosts

    ns, _, name = ref.rpartition("/")
    gw = next((g for g in state.gateways if g.namespace == (ns or namespace) and g.name == name), None)
    if gw is None:
        known = ", ".join(g.key for g in state.gateways) or "none"
        raise LabError(f"no Gateway {ns or namespace}/{name} in lab {state.lab}; Gateways: {known}")
    svc = next((s for s in state.services if s.name == gw.service and s.load_balancer_ip == gw.address), None)
    if svc is None or not gw.address:
        raise LabError(f"Gateway {gw.key} has no LoadBalancer address (the lab has no pool): trace its Envoy pod "
                       f"or node/NAME:NODEPORT instead")
    listeners = dict(gw.ports)
    port = port if port is not None else next(iter(listeners), None)
    if port not in listeners:
        raise LabError(f"gateway/{gw.key}:{port}: its listener ports are {', '.join(map(str, listeners))}")
    sp = next(p for p in svc.ports if p.port == port)
    host = next((h for h, a in sorted(hosts(state).items()) if a == gw.address), gw.address)
    return Target("gateway", f"gateway/{gw.key}", gw.address, service=svc, port=port, service_port=sp, gateway=gw.key,
                  http_host=host)


def _by_ip(state: ClusterState, ip: str, port: Optional[int]) -> Target:
    for p in state.pods:
        if p.ip == ip and not p.host_network:
            return Target("pod", f"pod/{p.key}", ip, p.netns, p.node, pod=p, port=port)
    for n in state.nodes:
        if n.ip == ip:
            return Target("node", f"node/{n.name}", ip, n.netns, n.name, port=port)
    for h in state.hosts:
        if h.ip == ip:
            return Target("host", f"host/{h.name}", ip, h.netns, port=port)
    for s in state.services:
        if s.cluster_ip == ip:
            return _service(state, f"{s.name}.{s.namespace}", s.namespace, port)
    for g in state.gateways:
        if g.address == ip:
            return _gateway(state, g.key, g.namespace, port)
    return Target("ip", ip, ip, port=port)


def resolve(state: ClusterState, text: str, namespace: str = "default") -> Target:
    """POD, NS/POD, pod/POD, node/NAME, host/NAME, svc/NAME[.NS], gateway/[NS/]NAME or an IP, each with an
    optional :PORT."""
    ref, port = _split_port(text.strip())
    kind, slash, rest = ref.partition("/")
    try:
        ip_address(ref)
        return _by_ip(state, ref, port)
    except ValueError:
        pass
    if slash and kind in ("node", "no", "host"):
        machines = state.nodes if kind != "host" else state.hosts
        for m in machines:
            if m.name == rest:
                if kind == "host":
                    return Target("host", f"host/{m.name}", m.ip, m.netns, port=port)
                return Target("node", f"node/{m.name}", m.ip, m.netns, m.name, port=port)
        names = ", ".join(m.name for m in machines) or "none"
        raise LabError(f"no {kind} {rest!r} in lab {state.lab}; {'hosts' if kind == 'host' else 'nodes'}: {names}")
    if slash and kind in ("svc", "service"):
        return _service(state, rest, namespace, port)
    if slash and kind in ("gateway", "gtw"):
        return _gateway(state, rest, namespace, port)
    pod = _pod(state, rest if slash and kind in ("pod", "po") else ref, namespace)
    if pod.host_network:
        return Target("node", f"pod/{pod.key} (hostNetwork, node/{pod.node})", pod.ip, pod.netns, pod.node,
                      pod=pod, port=port)
    return Target("pod", f"pod/{pod.key}", pod.ip, pod.netns, pod.node, pod=pod, port=port)


def default_port(state: ClusterState, dst: Target, protocol: str) -> Optional[int]:
    """The port to knock on when none is given: a pod's first netexec port of the protocol, a
    host's netexec (8080). ICMP has none."""
    if protocol == "ICMP":
        return None
    if dst.port is not None:
        return dst.port
    if dst.kind == "host":
        return HOST_PORT
    if dst.pod is not None:
        for c in dst.pod.containers:
            for p in c.ports:
                if p.protocol == protocol:
                    return p.port
    raise LabError(f"say which port of {dst.name} to trace: {dst.name}:PORT")
