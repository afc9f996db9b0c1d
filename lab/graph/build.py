"""A ClusterState as a Graph: the underlay switch and its hosts, one cluster per node (eth0, the pod
network's device, the pods on it), the network backend's links, and the Services with edges to
their endpoints; with Gateways, each with its listeners and arrows to the Services its HTTPRoutes
send to; with Ingresses, the ingress-nginx controller's Ingresses, each with its rules as
arrows to the Services they route to. A running lab passes its readiness (only ready endpoints are drawn); a planned
state draws every selected pod. Above GROUP_ABOVE pods, pods are grouped per node and owner so the
picture stays readable."""
from __future__ import annotations

from ipaddress import ip_address
from typing import Collection, Mapping, Optional

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane import gateway_state, ingress
from lab.controlplane.gateway_state import GatewayState
from lab.controlplane.state import ClusterState, IngressPathState, IngressState, NodeState, PodState, ServiceState
from lab.graph.model import Box, Cluster, Graph, Ids, Link
from lab import routing
from lab.cni import kinds as cni_kinds

GROUP_ABOVE = 40     # pods; beyond this each node shows one box per owner with a count


def build(state: ClusterState, ready: Optional[Mapping[str, bool]] = None, stopped: Collection[str] = ()) -> Graph:
    """ready: {pod key: ready} of a running lab, None for a planned state; stopped: nodes off the
    underlay (lab node stop), drawn with their link cut."""
    ids = Ids()
    grouped = len(state.pods) > GROUP_ABOVE
    switch = Box(ids.new("underlay"), _switch_lines(state), "switch")
    boxes, clusters, links = [switch], [], []
    eth0, vtep, pod_box = {}, {}, {}
    for n in state.nodes:
        cluster, node_links, eth0[n.name], vtep[n.name], mine = _node(state, n, ids, grouped, n.name in stopped)
        clusters.append(cluster)
        links += [Link(eth0[n.name], switch.id, "link down" if n.name in stopped else "",
                       "cut" if n.name in stopped else "wire"), *node_links]
        pod_box.update(mine)
    hosts = {h.name: ids.new("host", h.name) for h in state.hosts}
    public = Box(ids.new("public"), (f"public segment {state.public_subnet}", "the internet"), "switch") \
        if state.public_subnet else None
    if public:
        boxes.append(public)
    for h in state.hosts:
        role = ("NAT gateway", f"public {h.public_ip}") if h.public_ip else ()
        part = routing.backend(state).drawing.role(state, h.name)
        boxes.append(Box(hosts[h.name], (f"host {h.name}", h.ip, *((h.ip6,) if h.ip6 else ()), *role, *part), "host",
                         (f"host/{h.name}",)))
        if h.network == "public":  # behind the NAT gateway: only on the public segment
            links.append(Link(public.id, hosts[h.name], kind="wire"))
            continue
        links.append(Link(switch.id, hosts[h.name], kind="wire"))  # hosts beyond the switch, nodes before it
        if h.public_ip:
            links.append(Link(hosts[h.name], public.id, "SNAT to " + h.public_ip, "wire"))
    drawing = routing.backend(state).drawing
    anchors = {**{("eth0", k): v for k, v in eth0.items()}, **{("vtep", k): v for k, v in vtep.items() if v},
               **{("host", k): v for k, v in hosts.items()}, ("switch", ""): switch.id}
    links += [Link(anchors[a], anchors[b], label, kind) for a, b, label, kind in drawing.links(state)]
    if drawing.controller:
        controller = ids.new("controller")
        boxes.append(Box(controller, drawing.controller, "controller"))
        links.append(Link(switch.id, controller, drawing.controller_link, "control"))
    if state.services:
        cluster, svc_links = _services(state, ready, pod_box, ids)
        clusters.append(cluster)
        links += svc_links
    if state.ingresses:
        svc_box = {k: b.id for c in clusters if c.kind == "services" for b in c.boxes for k in b.keys}
        cluster, ingress_links = _ingresses(state, pod_box, svc_box, ids)
        clusters.append(cluster)
        links += ingress_links
    if state.gateways:
        svc_box = {k: b.id for c in clusters if c.kind == "services" for b in c.boxes for k in b.keys}
        cluster, gateway_links = _gateways(state, pod_box, svc_box, ids)
        clusters.append(cluster)
        links += gateway_links
    notes = (f"{len(state.pods)} pods (more than {GROUP_ABOVE}): grouped per node and owner, with counts",) \
        if grouped else ()
    title = f"lab {state.lab}: network {state.network}, cni {_cni(state)}, kube-proxy {state.proxy}" + \
        (" (planned)" if ready is None else "")
    return Graph(title, tuple(boxes), tuple(clusters), tuple(links), notes)


def _cni(state: ClusterState) -> str:
    return cni_kinds.display_name(state)


def _switch_lines(state: ClusterState) -> tuple[str, ...]:
    return (f"underlay {state.underlay_subnet}", *((f"underlay {state.underlay_subnet6}",) if state.underlay_subnet6 else ()),
            f"{state.switch} {state.switch_name}",
            *routing.backend(state).drawing.switch(state))


def _eth0_lines(state: ClusterState, n: NodeState) -> tuple[str, ...]:
    drawing = routing.backend(state).drawing
    return (f"eth0 {n.ip}", *((n.ip6,) if n.ip6 else ()), *drawing.role(state, n.name), *drawing.eth0(state, n))


def _device_lines(state: ClusterState, n: NodeState) -> tuple[str, ...]:
    return cni_kinds.of(state).drawing(state, n)


def _node(state: ClusterState, n: NodeState, ids: Ids, grouped: bool, stopped: bool):
    """The node's cluster, its links, the ids of its eth0 and VTEP (None without VXLAN), and the box
    of each of its pods."""
    eth0 = Box(ids.new("eth0", n.name), _eth0_lines(state, n), "eth0", (f"node/{n.name}",))
    device = Box(ids.new("podnet", n.name), _device_lines(state, n), "device")
    boxes, links = [eth0, device], []
    vtep, tunnel = None, routing.backend(state).drawing.vtep(state, n)
    if tunnel:
        vtep = ids.new("vtep", n.name)
        boxes.append(Box(vtep, tunnel, "vtep"))
        links += [Link(device.id, vtep, kind="kernel"), Link(vtep, eth0.id, kind="kernel")]
    else:
        links.append(Link(device.id, eth0.id, kind="kernel"))
    pod_box = {}
    for members in _pod_groups(state.pods_on(n.name), grouped):
        p = members[0]
        ident = ids.new("pod", p.namespace, p.name) if len(members) == 1 else \
            ids.new("group", n.name, p.namespace, p.owner or "pods")
        box = Box(ident, _pod_lines(members), "host-pod" if p.host_network else
                  ("group" if len(members) > 1 else "pod"), tuple(m.key for m in members))
        boxes.append(box)
        links.append(Link(box.id, eth0.id if p.host_network else device.id,
                          kind="host-net" if p.host_network else "veth"))
        pod_box.update({m.key: box.id for m in members})
    role = f" ({n.role})" if n.role == "control-plane" != n.name else ""
    title = (f"node {n.name}{role}", *(f"podCIDR {c}" for c in n.cidrs), *(("stopped: off the underlay",) if stopped else ()))
    cluster = Cluster(ids.new("node", n.name), title, "node", tuple(boxes), (n.name,))
    return cluster, links, eth0.id, vtep, pod_box


def _pod_groups(pods: tuple[PodState, ...], grouped: bool) -> list[list[PodState]]:
    if not grouped:
        return [[p] for p in pods]
    groups: dict[tuple, list[PodState]] = {}
    for p in pods:
        groups.setdefault((p.namespace, p.owner or "", p.host_network), []).append(p)
    return list(groups.values())


def _pod_lines(members: list[PodState]) -> tuple[str, ...]:
    p = members[0]
    ns = (f"namespace {p.namespace}",) if p.namespace != "default" else ()
    host = " hostNetwork" if p.host_network else ""
    if len(members) == 1:
        return (p.name, f"{p.ip}{host}", *p.pod_ips[1:], *ns)
    what = p.owner or "pods without owner"
    if p.host_network:
        return (f"{what} ×{len(members)}", f"{p.ip}{host}", *ns)
    ranges = []
    for i in range(len(p.pod_ips)):   # one range per family, in the cluster's order
        addresses = [ip_address(m.pod_ips[i]) for m in members if len(m.pod_ips) > i]
        ranges.append(f"{min(addresses)} … {max(addresses)}")
    return (f"{what} ×{len(members)}", *ranges, *ns)


def _service_lines(s: ServiceState) -> tuple[str, ...]:
    ns = (f"namespace {s.namespace}",) if s.namespace != "default" else ()
    if s.type == "ExternalName":
        return (f"svc {s.name}", f"ExternalName → {s.external_name}", *ns)
    ports = ", ".join(f"{p.port}:{p.node_port}/{p.protocol}" if p.node_port else f"{p.port}/{p.protocol}"
                      for p in s.ports)
    return (f"svc {s.name}", f"{s.type} {s.cluster_ip or 'None (headless)'}", *s.cluster_ips[1:], ports, *ns)


def _services(state: ClusterState, ready: Optional[Mapping[str, bool]], pod_box: dict[str, str], ids: Ids):
    """The Services cluster and one link per Service and endpoint box (ready endpoints only)."""
    slices = endpoint_slices(state, ready)
    boxes, links = [], []
    for s in state.services:
        box_id = ids.new("svc", s.namespace, s.name)
        # one endpoint per pod: a dual-stack Service has a slice per family with the same pods in each
        eps = list({e.pod or e.address: e for sl in slices if (sl.namespace, sl.service) == (s.namespace, s.name)
                    for e in sl.endpoints}.values())
        counted = ((f"endpoints: {sum(e.ready for e in eps)} ready of {len(eps)}",)
                   if ready is not None and eps else ())
        boxes.append(Box(box_id, (*_service_lines(s), *counted), "service", (f"svc/{s.key}",)))
        per_box: dict[str, int] = {}
        for e in eps:
            if e.ready and e.pod in pod_box:
                per_box[pod_box[e.pod]] = per_box.get(pod_box[e.pod], 0) + 1
        links += [Link(box_id, target, f"{k} endpoints" if k > 1 else "", "endpoint") for target, k in per_box.items()]
    return Cluster(ids.new("services"), (f"Services (kube-proxy {state.proxy})",), "services", tuple(boxes)), links


def _gateway_lines(gw: GatewayState) -> tuple[str, ...]:
    listeners = [f"{ls.name} :{ls.port} {ls.protocol}" + (f" {ls.hostname}" if ls.hostname else "") for ls in gw.listeners]
    ns = (f"namespace {gw.namespace}",) if gw.namespace != "default" else ()
    return (f"gateway {gw.name}", *((f"address {gw.address}",) if gw.address else ()), *listeners, *ns)


def _match(m) -> str:
    """An HTTPRoute match in a few words: its path, then any header, query or method it asks for."""
    path = m.path + (" (exact)" if m.path_type == "Exact" else " (regex)" if m.path_type == "RegularExpression" else "")
    asks = [f"{n}: {v}" for _, n, v in m.headers] + [f"?{n}={v}" for _, n, v in m.query] + ([m.method] if m.method else [])
    return " ".join([path, *asks])


def _gateways(state: ClusterState, pod_box: dict[str, str], svc_box: dict[str, str], ids: Ids):
    """The Gateways cluster (drawn as the Ingresses are): one box per Gateway with its address and
    listeners, its Envoy pod's link to it, and one arrow per Gateway and backend Service of the
    HTTPRoutes attached to it, labelled with the route, its paths and, when split, its weight."""
    boxes, links = [], []
    for gw in state.gateways:
        box_id = ids.new("gateway", gw.namespace, gw.name)
        boxes.append(Box(box_id, _gateway_lines(gw), "ingress", (f"gateway/{gw.key}",)))
        envoy = gateway_state.dataplane(state, gw)
        if envoy is not None and envoy.key in pod_box:
            links.append(Link(box_id, pod_box[envoy.key], "served by", "control"))
        routes: dict[str, list[str]] = {}
        for r in state.http_routes:
            if not any(p.gateway == gw.key and p.listeners for p in r.parents):
                continue
            for rule in r.rules:
                split = len(rule.backends) > 1
                paths = ", ".join(_match(m) for m in rule.matches) or "/"
                for b in rule.backends:
                    said = f"{r.name}: {paths}" + (f" (weight {b.weight})" if split else "")
                    routes.setdefault(f"svc/{b.namespace}/{b.service}", []).append(said)
        links += [Link(box_id, svc_box[key], "; ".join(said), "route") for key, said in routes.items() if key in svc_box]
    title = (f"Gateways (Envoy, namespace {gateway_state.NAMESPACE})",)
    return Cluster(ids.new("gateways"), title, "ingresses", tuple(boxes)), links


def _route(p: IngressPathState, default: bool) -> str:
    return "default backend" if default else f"{p.host or '*'}{p.path}" + (" (exact)" if p.path_type == "Exact" else "")


def _ingress_lines(i: IngressState) -> tuple[str, ...]:
    tls = {h for t in i.tls for h in t.hosts}
    hosts = list(dict.fromkeys(p.host for p in i.paths if p.host))
    ns = (f"namespace {i.namespace}",) if i.namespace != "default" else ()
    return (f"ingress {i.name}", *(f"{h} (TLS)" if h in tls else h for h in hosts), *ns)


def _ingresses(state: ClusterState, pod_box: dict[str, str], svc_box: dict[str, str], ids: Ids):
    """The Ingresses cluster: one box per Ingress, the controller pod's link to each, and one arrow per
    Ingress and Service its rules route to, labelled with the rules (host and path)."""
    controller = ingress.controller(state)
    served_by = pod_box.get(controller.key) if controller else None
    boxes, links = [], []
    for i in state.ingresses:
        box_id = ids.new("ingress", i.namespace, i.name)
        boxes.append(Box(box_id, _ingress_lines(i), "ingress", (f"ingress/{i.key}",)))
        if served_by:
            links.append(Link(box_id, served_by, "served by", "control"))
        routes: dict[str, list[str]] = {}
        rules = [(p, False) for p in i.paths] + ([(i.default_backend, True)] if i.default_backend else [])
        for p, default in rules:
            routes.setdefault(f"svc/{i.namespace}/{p.service}", []).append(_route(p, default))
        links += [Link(box_id, svc_box[key], ", ".join(said), "route") for key, said in routes.items() if key in svc_box]
    title = (f"Ingresses (ingress-nginx, namespace {ingress.NAMESPACE})",)
    return Cluster(ids.new("ingresses"), title, "ingresses", tuple(boxes)), links
