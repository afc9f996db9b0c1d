"""What `lab trace SRC DST[:PORT]` names, resolved against the lab's state (pure).

A trace needs more than an address: the namespace a probe starts from, the node a pod sits on, the
Service port kube-proxy will translate. A name that does not resolve is an error that lists what
exists, never a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
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
    family: int = 4                 # the IP family the trace walks (ip's)


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


def _service(state: ClusterState, ref: str, namespace: str, port: Optional[int],
             family: Optional[int] = None) -> Target:
    """family None: the cluster's primary if the Service has a ClusterIP of it, else its own."""
    name, _, ns = ref.partition(".")
    ns = ns or namespace
    svc = next((s for s in state.services if s.namespace == ns and s.name == name), None)
    if svc is None:
        known = ", ".join(s.key for s in state.services) or "none"
        raise LabError(f"no Service {ns}/{name} in lab {state.lab}; Services: {known}")
    if not svc.cluster_ip:
        raise LabError(f"Service {svc.key} is headless (no ClusterIP): trace one of its pods instead")
    if family is None:
        primary = f"IPv{state.families[0]}"
        family = int((primary if primary in svc.families() else svc.families()[0])[-1])
    cluster_ip = svc.cluster_ip_of(f"IPv{family}")
    if cluster_ip is None:
        raise LabError(f"Service {svc.key} has no IPv{family} ClusterIP (ipFamilies: {', '.join(svc.families())}): "
                       f"trace it with --family {4 if family == 6 else 6}")
    if port is None and len(svc.ports) == 1:
        port = svc.ports[0].port
    sp = next((p for p in svc.ports if p.port == port), None)
    if sp is None:
        ports = ", ".join(f"{p.port}/{p.protocol}" for p in svc.ports)
        raise LabError(f"svc/{name}.{ns}:{port}: the Service's ports are {ports}")
    return Target("service", f"svc/{svc.key}", cluster_ip, service=svc, port=sp.port, service_port=sp, family=family)


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
    family = ip_address(ip).version
    for p in state.pods:
        if ip in p.pod_ips and not p.host_network:
            return Target("pod", f"pod/{p.key}", ip, p.netns, p.node, pod=p, port=port, family=family)
    for n in state.nodes:
        if ip in (n.ip, n.ip6):
            return Target("node", f"node/{n.name}", ip, n.netns, n.name, port=port, family=family)
    for h in state.hosts:
        if ip in (h.ip, h.ip6):
            return Target("host", f"host/{h.name}", ip, h.netns, port=port, family=family)
    for s in state.services:
        if ip in (s.cluster_ip, *s.cluster_ips):
            return _service(state, f"{s.name}.{s.namespace}", s.namespace, port, family)
    for g in state.gateways:
        if g.address == ip:
            return _gateway(state, g.key, g.namespace, port)
    return Target("ip", ip, ip, port=port, family=family)


def _unbracket(text: str) -> str:
    """[fd00::1]:80 → fd00::1:80 as _split_port reads it; a bare IPv6 address has no port."""
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        return addr + rest
    return text


def resolve(state: ClusterState, text: str, namespace: str = "default", family: Optional[int] = None) -> Target:
    """POD, NS/POD, pod/POD, node/NAME, host/NAME, svc/NAME[.NS], gateway/[NS/]NAME or an IP, each with an
    optional :PORT ([IPv6]:PORT). family: which address of a named pod, node, host or Service (default
    the cluster's primary); an IP says its own."""
    text = text.strip()
    try:
        ip_address(text)      # a bare IPv6 address: its last group is no port
        return _by_ip(state, text, None)
    except ValueError:
        pass
    ref, port = _split_port(_unbracket(text))
    kind, slash, rest = ref.partition("/")
    try:
        ip_address(ref)
        return _by_ip(state, ref, port)
    except ValueError:
        pass
    return _named(state, ref, kind, slash, rest, namespace, port, family)


def in_family(state: ClusterState, target: Target, family: int) -> Target:
    """The same pod, node or host at its address of `family` (a trace's source follows its
    destination's family); an error if it has none."""
    if target.family == family:
        return target
    if target.pod is not None and not target.pod.host_network:
        ip = target.pod.ip_of(family)
    elif target.node:
        ip = state.node(target.node).address_of(family)
    else:
        ip = next((h.address_of(family) for h in state.hosts if h.netns == target.netns and target.netns), "")
    if not ip:
        raise LabError(f"{target.name} has no IPv{family} address: the cluster's families are "
                       f"{', '.join(f'IPv{f}' for f in state.families)}")
    return replace(target, ip=ip, family=family)


def _named(state: ClusterState, ref: str, kind: str, slash: str, rest: str, namespace: str,
           port: Optional[int], asked: Optional[int]) -> Target:
    family = asked or state.families[0]
    if slash and kind in ("node", "no", "host"):
        machines = state.nodes if kind != "host" else state.hosts
        for m in machines:
            if m.name == rest:
                if kind == "host":
                    return in_family(state, Target("host", f"host/{m.name}", m.ip, m.netns, port=port), family)
                return in_family(state, Target("node", f"node/{m.name}", m.ip, m.netns, m.name, port=port), family)
        names = ", ".join(m.name for m in machines) or "none"
        raise LabError(f"no {kind} {rest!r} in lab {state.lab}; {'hosts' if kind == 'host' else 'nodes'}: {names}")
    if slash and kind in ("svc", "service"):
        return _service(state, rest, namespace, port, asked)
    if slash and kind in ("gateway", "gtw"):
        return _gateway(state, rest, namespace, port)
    pod = _pod(state, rest if slash and kind in ("pod", "po") else ref, namespace)
    if pod.host_network:
        return in_family(state, Target("node", f"pod/{pod.key} (hostNetwork, node/{pod.node})", pod.ip, pod.netns,
                                       pod.node, pod=pod, port=port), family)
    return in_family(state, Target("pod", f"pod/{pod.key}", pod.ip, pod.netns, pod.node, pod=pod, port=port), family)


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
