"""The predicted walk of one connection (pure): the hops a packet takes from SRC to DST and back,
as the lab's own models say.

Nothing is derived twice: which endpoints a Service port has and how it is categorized comes from
lab.kube_proxy.model, which policy decides from lab.policy.model's primitives, how a node reaches
another's podCIDR from the routing Backend, bridge or ptp from the state's CNI. Each hop carries a
`kind` and an `expect`ation that lab.trace.compare holds an observation against.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import ip_address, ip_network
from typing import Iterable, Optional

from lab import routing
from lab.cni import kinds as cni_kinds
from lab.controlplane.ipam import underlay_gateway
from lab.controlplane.state import ClusterState, EndpointSliceState, PodState
from lab.kube_proxy import proxiers
from lab.kube_proxy.model import Endpoint, ServicePort, service_ports
from lab.policy import model as policy
from lab.trace import family
from lab.trace.target import Target

MASQ = "masquerade"


@dataclass(frozen=True)
class Hop:
    step: int
    component: str                  # who acts: "pod/default/a", "node n1 netfilter", "flannel.1 (VXLAN)"
    namespace: str                  # the network namespace it happens in ("" on the wire)
    interface: str
    what: str                       # one line, real names and addresses
    kind: str = ""                  # send|route|dnat|filter|snat|encap|deliver|reply: what compare checks
    expect: tuple[str, ...] = ()    # kind-specific: route (dev, via, dst[, proto]); dnat endpoints; filter (verdict, by);
                                    # send (src, dst); arrive (dev, dport, src, dst); encap (outer src, dst, dport)...


@dataclass(frozen=True)
class Flow:
    """The connection as the hops so far have made it: addresses after NAT, the node it is on."""

    src_ip: str
    dst_ip: str
    port: Optional[int]
    dst: Target
    endpoint: Optional[Endpoint] = None     # the Service endpoint the walk follows
    marked: bool = False                    # KUBE-MARK-MASQ: masquerade in KUBE-POSTROUTING
    snat: str = ""
    socket_lb: bool = False                 # a socket LB (proxy ebpf): the socket, not netfilter, has the Service address
    tc: str = ""                            # the program at a node's ingress that translated it (proxy ebpf's tc_nodeport)


def _pod_at(state: ClusterState, ip: str) -> Optional[PodState]:
    return next((p for p in state.pods if p.ip == ip and not p.host_network), None)


def _node_of(state: ClusterState, ip: str) -> Optional[str]:
    """The node an address lives on: a pod's node, or the node with that underlay address."""
    pod = _pod_at(state, ip)
    if pod is not None:
        return pod.node
    return next((n.name for n in state.nodes if ip in routing.backend(state).node_addresses(state, n.name)), None)


def _in(ip: str, cidr: str) -> bool:
    return ip_address(ip) in ip_network(cidr, strict=False)


def route(state: ClusterState, node: str, dst_ip: str) -> tuple[str, str, str, str]:
    """(dev, via, why, proto) of the route `node` picks for dst_ip, as the backend and the CNI set
    them up; proto: the route's protocol when `ip route get fibmatch` names one (the pod network's)."""
    n = state.node(node)
    owner = _node_of(state, dst_ip)
    if owner == node:
        pod = _pod_at(state, dst_ip)
        if pod is None:
            return "lo", "", "local: the node's own address (INPUT)", ""
        cni = cni_kinds.of(state)
        return cni.device, "", cni.local_route(state, n, dst_ip), ""
    peer = state.node(owner) if owner else None
    if peer is not None and _in(dst_ip, peer.pod_cidr):
        hop = routing.backend(state).next_hop(state, n, peer)
        return hop.dev, hop.via, hop.why, hop.proto
    if _in(dst_ip, state.underlay_subnet):
        return "eth0", "", f"{state.underlay_subnet} dev eth0: the underlay", ""
    gw = str(underlay_gateway(state.underlay_subnet))
    return "eth0", gw, f"default via {gw} dev eth0", ""


def _service_port(state: ClusterState, node: str, slices: Iterable[EndpointSliceState],
                  flow: Flow) -> Optional[ServicePort]:
    """The Service port kube-proxy on `node` translates this flow for: a ClusterIP or LoadBalancer
    address, or a NodePort on one of the node's addresses."""
    if flow.port is None:
        return None
    for p in service_ports(state, node, slices, family=f"IPv{flow.dst.family}"):
        if flow.dst.kind == "service" and flow.dst_ip in (p.cluster_ip, p.load_balancer_ip) and \
                p.port.port == flow.port:
            return p
        if flow.dst.kind == "node" and p.port.node_port == flow.port and flow.dst_ip == state.node(node).ip:
            return p
    return None


def _decide(state: ClusterState, pod: PodState, direction: str, peer_ip: str, dst_pod: Optional[PodState],
            port: int, protocol: str) -> tuple[bool, str]:
    """(allowed, by what) for one pod and direction, with lab.policy.model's semantics: the first
    policy rule that allows, or the pod's 'not allowed by any policy' DROP."""
    policies = policy.selecting_policies(state, pod, direction)
    if not policies:
        return True, f"{pod.key} is not isolated for {direction.lower()}"
    peer_pod = _pod_at(state, peer_ip)
    for pol in policies:
        rules = pol.ingress if direction == policy.INGRESS else pol.egress
        for i, r in enumerate(rules):
            if policy.rule_allows(state, pol, r, peer_pod, peer_ip, dst_pod, port, protocol):
                return True, f"{pol.key} {direction.lower()}[{i}]"
    names = ", ".join(p.key for p in policies)
    return False, f"{pod.key}: {direction.lower()} not allowed by any policy ({names})"


class _Walk:
    def __init__(self, state: ClusterState, src: Target, dst: Target, protocol: str,
                 slices: Iterable[EndpointSliceState], picked: Optional[str]):
        self.state, self.src, self.dst, self.protocol = state, src, dst, protocol
        self.slices, self.picked = tuple(slices), picked
        self.hops: list[Hop] = []
        self.dropped = False

    def add(self, component: str, namespace: str, interface: str, what: str, kind: str = "",
            expect: tuple[str, ...] = ()) -> None:
        self.hops.append(Hop(len(self.hops) + 1, component, namespace, interface, what, kind, expect))

    def proto(self, flow: Flow, src: str = "", dst: str = "") -> str:
        port = f":{flow.port}" if flow.port else ""
        return f"{self.protocol} {src or flow.src_ip} → {dst or flow.dst_ip}{port}"

    def speaker(self, ip: str) -> Optional[str]:
        """The node that answers ARP for a LoadBalancer address (the lab's MetalLB-style L2 speaker)."""
        from lab.controlplane.loadbalancer import speakers

        node = speakers(self.state.services, self.slices, [n.name for n in self.state.nodes]).get(ip)
        if node:
            self.add("load-balancer speaker", self.state.node(node).netns, "eth0",
                     f"node {node} answers ARP for {ip} (L2 announcement): the frame goes to it")
        return node

    # --- a socket load balancer (proxy ebpf) ---

    def socket_lb(self, src: Target, flow: Flow) -> Flow:
        """The node's connect4/sendmsg4 program (lab/kube_proxy/bpf/sock_lb.c) rewrites a ClusterIP
        destination in the socket, from the maps the model fills: the packet is born addressed to
        the backend, and netfilter never sees a DNAT."""
        where = f"node {src.node} socket LB (cgroup connect4)"
        sp = _service_port(self.state, src.node, self.slices, flow)
        if sp is None:
            self.add(where, src.netns, "", f"connect(): {flow.dst_ip}:{flow.port} is no lb_services entry: "
                     "the destination stays", "socklb", ())
            return flow
        eps, refused = proxiers.of(self.state).socket_lb(sp)
        if not eps:
            self.add(where, src.netns, "", f"connect() to {sp.spn} fails at once, no packet sent: " + (
                "no endpoints, ECONNREFUSED" if refused else "internalTrafficPolicy Local and none on this node, EPERM"),
                "socklb", ("refuse" if refused else "drop",))
            self.dropped = True
            return flow
        ep = next((e for e in eps if str(e) == self.picked), eps[0])
        choice = "picked: see the observed column" if self.picked is None and len(eps) > 1 else f"to {ep}"
        self.add(where, src.netns, "", f"socket LB rewrote the destination at connect(): {flow.dst_ip}:{flow.port} "
                 f"({sp.spn}) → one of {', '.join(map(str, eps))} ({choice}); no DNAT in netfilter",
                 "socklb", tuple(map(str, eps)))
        return replace(flow, dst_ip=ep.ip, port=ep.port, endpoint=ep, socket_lb=True)

    # --- a program at the node's ingress (proxy ebpf's tc) ---

    def external_lb(self, node: str, flow: Flow, dev: str) -> Optional[Flow]:
        """A NodePort from outside under a mode whose tc program translates it before netfilter
        (lab/kube_proxy/bpf/sock_lb.c tc_nodeport): the lb_external entry chooses an lb_backends slot,
        the program rewrites the destination (and the source for externalTrafficPolicy Cluster) and
        remembers the flow in lb_nat / lb_nat_rev; netfilter sees it already translated, no DNAT.
        None: not this program's flow (kube-proxy's rules, or no NodePort there)."""
        choose = proxiers.of(self.state).external_lb
        sp = _service_port(self.state, node, self.slices, flow) if choose and flow.dst.kind == "node" else None
        if sp is None:
            return None
        ns, c = self.state.node(node).netns, choose(self.state, node, sp)
        where = f"node {node} {c.program} (tc ingress {dev})"
        arrived = f"arrives on {dev}: {self.proto(flow)}; {c.entry}"
        if c.verdict != "balance":
            self.add(where, ns, dev, f"{arrived}: " + (
                "no endpoints: passes untouched, the node's stack refuses it (connection refused)" if c.verdict == "refuse"
                else f"externalTrafficPolicy Local and no endpoint of {sp.spn} on {node}: TC_ACT_SHOT (dropped)"),
                "tclb", (c.verdict,))
            self.dropped = True
            return flow
        ep = next((e for e in c.endpoints if str(e) == self.picked), c.endpoints[0])
        choice = "picked: see the observed column" if self.picked is None and len(c.endpoints) > 1 else f"to {ep}"
        source = c.snat.get(str(ep), "")
        nat = f"SNAT to {source} (externalTrafficPolicy Cluster)" if source else \
            "no SNAT: the client's address is kept (externalTrafficPolicy Local)"
        self.add(where, ns, dev, f"{arrived} → lb_backends slot of one of {', '.join(map(str, c.endpoints))} ({choice}): "
                 f"DNAT to {ep}, {nat}; the flow in lb_nat/lb_nat_rev; netfilter sees it translated, no DNAT",
                 "tclb", (flow.src_ip, source or flow.src_ip, *map(str, c.endpoints)))
        return replace(flow, src_ip=source or flow.src_ip, dst_ip=ep.ip, port=ep.port, endpoint=ep, snat=source,
                       tc=f"{c.program} on {node}")

    # --- inside one node ---

    def nat_in(self, node: str, flow: Flow, hook: str) -> Flow:
        sp = _service_port(self.state, node, self.slices, flow)
        ns = self.state.node(node).netns
        if sp is None:
            why = "its rules match a protocol and port, and ICMP has none" if flow.port is None and \
                flow.dst.kind == "service" else f"{flow.dst_ip} is no Service address"
            self.add(f"node {node} netfilter", ns, "", f"nat {hook}: KUBE-SERVICES matches nothing ({why}): no DNAT",
                     "dnat", ())
            return flow
        balancer = bool(sp.svc.load_balancer_ip) and flow.dst_ip == sp.svc.load_balancer_ip
        external = flow.dst.kind == "node" or balancer
        eps = (sp.local if sp.external_local else sp.cluster) if external else \
            (sp.local if sp.internal_local else sp.cluster)
        chain = "KUBE-EXT → " if balancer else "KUBE-NODEPORTS → KUBE-EXT → " if external else ""
        if not eps:
            self.add(f"node {node} netfilter", ns, "", f"filter: {sp.spn} has no endpoints: "
                     f"{sp.no_endpoints_verdict.upper()}", "filter", ("drop", f"{sp.spn} has no endpoints"))
            self.dropped = True
            return flow
        ep = next((e for e in eps if str(e) == self.picked), eps[0])
        choice = "picked: see the observed column" if self.picked is None and len(eps) > 1 else f"to {ep}"
        self.add(f"node {node} kube-proxy (nat {hook})", ns, "",
                 f"{chain}KUBE-SVC ({sp.spn}): DNAT to one of {', '.join(map(str, eps))} ({choice})",
                 "dnat", tuple(map(str, eps)))
        from_outside = not _in(flow.src_ip, self.state.pod_cidr)
        marked = (external and not sp.external_local) or (from_outside and not external) or ep.ip == flow.src_ip
        return replace(flow, dst_ip=ep.ip, port=ep.port, endpoint=ep, marked=flow.marked or marked)

    def forward(self, node: str, flow: Flow) -> bool:
        """The policies in FORWARD on `node`: egress of a local source pod, ingress of a local destination."""
        ns = self.state.node(node).netns
        checks = []
        src_pod, dst_pod = _pod_at(self.state, flow.src_ip), _pod_at(self.state, flow.dst_ip)
        same = src_pod is not None and dst_pod is not None and src_pod.key == dst_pod.key
        node_ips = policy.node_addresses
        if src_pod is not None and src_pod.node == node and not same and \
                flow.dst_ip not in node_ips(self.state, src_pod.node):
            checks.append(_decide(self.state, src_pod, policy.EGRESS, flow.dst_ip, dst_pod, flow.port or 0, self.protocol))
        if dst_pod is not None and dst_pod.node == node and not same and \
                flow.src_ip not in node_ips(self.state, dst_pod.node):
            checks.append(_decide(self.state, dst_pod, policy.INGRESS, flow.src_ip, dst_pod, flow.port or 0,
                                  self.protocol))
        denied = next((by for ok, by in checks if not ok), None)
        if denied:
            self.add(f"node {node} NetworkPolicy (filter FORWARD)", ns, "", f"LAB-NETPOL: DROP by {denied}",
                     "filter", ("drop", denied))
            self.dropped = True
            return False
        why = "; ".join(by for _, by in checks) or "no NetworkPolicy applies"
        self.add(f"node {node} NetworkPolicy (filter FORWARD)", ns, "", f"LAB-NETPOL: accept ({why})",
                 "filter", ("accept", why))
        return True

    def snat(self, node: str, flow: Flow, dev: str, dst_node: Optional[str]) -> Flow:
        ns, st = self.state.node(node).netns, self.state
        out = st.node(node).gateway if dev in ("cni0", "veth") else \
            routing.backend(st).sending_address(st, node, dst_node if dst_node != node else None)
        if flow.marked:
            what = f"KUBE-POSTROUTING: marked 0x4000 → MASQUERADE --random-fully to {out}"
        elif _in(flow.src_ip, st.pod_cidr) and not _in(flow.dst_ip, st.pod_cidr) and \
                not _in(flow.dst_ip, st.service_cidr) and dev != "lo":
            what, out = f"IP-MASQ-AGENT: leaves the pod and service CIDRs → MASQUERADE to {st.node(node).ip}", \
                st.node(node).ip
        else:
            self.add(f"node {node} netfilter (nat POSTROUTING)", ns, dev, "no SNAT: the source stays "
                     f"{flow.src_ip}", "snat", ())
            return flow
        self.add(f"node {node} netfilter (nat POSTROUTING)", ns, dev, what, "snat", (out,))
        return replace(flow, src_ip=out, snat=out)

    def node_pass(self, node: str, flow: Flow, entered: str, local_out: bool) -> tuple[Flow, str, str]:
        """A packet through one node: nat, route, FORWARD, POSTROUTING. (flow, dev, next node)."""
        ns = self.state.node(node).netns
        translated = self.external_lb(node, flow, entered) if not local_out and entered == "eth0" \
            and flow.endpoint is None else None
        if translated is not None:
            flow = translated
            if self.dropped:
                return flow, "", ""
        elif not local_out and entered:
            self.add(f"node {node}", ns, entered, f"arrives on {entered}: {self.proto(flow)}", "arrive",
                     (entered, "", flow.src_ip, flow.dst_ip))
        if flow.endpoint is None:
            flow = self.nat_in(node, flow, "OUTPUT" if local_out else "PREROUTING")
            if self.dropped:
                return flow, "", ""
        dev, via, why, proto = route(self.state, node, flow.dst_ip)
        nxt = _node_of(self.state, flow.dst_ip) or ""
        self.add(f"node {node} routing", ns, dev, f"ip route get {flow.dst_ip}: {why}", "route",
                 (dev, via, flow.dst_ip, *((proto,) if proto else ())))
        if dev == "lo":
            return flow, dev, node
        if not local_out and not self.forward(node, flow):
            return flow, dev, nxt
        flow = self.snat(node, flow, dev, nxt or None)
        return flow, dev, nxt

    # --- between nodes ---

    def wire(self, node: str, nxt: str, flow: Flow) -> str:
        """From `node` to node `nxt` or to an outside address; the interface it arrives on."""
        st = self.state
        a = st.node(node)
        if not nxt:
            self.add("underlay", "", st.switch_name, f"eth0 of {node} → switch {st.switch_name} → {flow.dst_ip}")
            return ""
        crossing = routing.backend(st).crossing(st, a, st.node(nxt), flow.src_ip, flow.dst_ip)
        for h in crossing.hops:
            self.add(h.component, h.namespace, h.interface, h.what, h.kind, h.expect)
        return crossing.arrives_on

    # --- the whole walk ---

    def run(self) -> list[Hop]:
        src, dst, st = self.src, self.dst, self.state
        src_ip = src.ip
        if src.kind == "node" and dst.kind == "pod":  # the kernel's source for that route (flannel.1's, across nodes)
            src_ip = routing.backend(st).sending_address(st, src.node, dst.node)
        flow = Flow(src_ip, dst.ip, dst.port, dst)
        if proxiers.of(st).socket_lb and dst.kind == "service" and src.kind in ("pod", "node"):  # before any packet
            flow = self.socket_lb(src, flow)
            if self.dropped:
                return self.hops
        self.add(src.name, src.netns, "eth0" if src.kind != "node" else "", f"sends {self.proto(flow)}", "send",
                 (flow.src_ip, flow.dst_ip))
        if src.kind == "pod":
            gw, cidr = st.node(src.node).gateway, st.node(src.node).pod_cidr
            cni = cni_kinds.of(st)
            if cni.bridged and _in(flow.dst_ip, cidr):   # the same bridge: the connected route, no gateway
                gw, why = "", f"{cidr} dev eth0 (the same cni0 bridge)"
            else:
                why = f"default via {gw} dev eth0"
            self.add(f"{src.name} routing", src.netns, "eth0", f"ip route get {flow.dst_ip}: {why}", "route",
                     ("eth0", gw, flow.dst_ip))
            self.add(f"CNI {st.cni}", "", "veth", f"{cni.link(st)} into node {src.node}")
            node, entered, local_out = src.node, cni.device, False
        elif src.kind == "node":
            node, entered, local_out = src.node, "", True
        else:
            local = _in(dst.ip, st.underlay_subnet)
            gw = "" if local else str(underlay_gateway(st.underlay_subnet))
            why = f"{st.underlay_subnet} dev eth0: the underlay" if local else f"default via {gw} dev eth0"
            self.add(f"{src.name} routing", src.netns, "eth0", f"ip route get {dst.ip}: {why}", "route", ("eth0", gw, dst.ip))
            self.add("underlay", "", st.switch_name, f"switch {st.switch_name}: {src.ip} → {dst.ip}")
            node, entered, local_out = _node_of(st, dst.ip) or self.speaker(dst.ip), "eth0", False
            if node is None:
                return self.finish(flow)
        for _ in range(len(st.nodes) + 1):
            flow, dev, nxt = self.node_pass(node, flow, entered, local_out)
            if self.dropped or nxt == node:
                break
            entered, local_out = self.wire(node, nxt, flow), False
            if not nxt:
                break
            node, flow = nxt, replace(flow, marked=False)   # the 0x4000 mark lives in one node's skb only
        return self.finish(flow)

    def finish(self, flow: Flow) -> list[Hop]:
        if self.dropped:
            return self.hops
        st, dst = self.state, flow.dst
        pod = _pod_at(st, flow.dst_ip)
        target = f"pod/{pod.key}" if pod else next((f"node/{n.name}" for n in st.nodes if n.ip == flow.dst_ip),
                                                     next((f"host/{h.name}" for h in st.hosts if h.ip == flow.dst_ip),
                                                          flow.dst_ip))
        netns = pod.netns if pod else next((n.netns for n in st.nodes if n.ip == flow.dst_ip),
                                           next((h.netns for h in st.hosts if h.ip == flow.dst_ip), ""))
        if not netns:  # a ClusterIP's ICMP (kube-proxy translates ports only), or an address no machine has
            why = "a ClusterIP is on no interface and kube-proxy translates only its ports" \
                if dst.kind == "service" else f"no machine of the lab has {flow.dst_ip}"
            self.add(target, "", "", f"unanswered: {why}; the packet leaves by the default route", "unanswered")
            return self.hops
        self.add(target, netns, "eth0", f"delivered: the server sees {self.proto(flow)}", "deliver",
                 (flow.src_ip, f"{flow.dst_ip}:{flow.port}" if flow.port else flow.dst_ip))
        undo = []
        if flow.socket_lb:
            undo.append(f"recvmsg/getpeername (socket LB) give {dst.ip}:{dst.port} back for {flow.endpoint}")
        elif flow.tc:
            back = f"destination {flow.snat} → {self.src.ip}, " if flow.snat else ""
            how = f"; {flow.tc} reverses it from lb_nat_rev at the node's ingress ({back}source {flow.endpoint} → " \
                  f"{dst.ip}:{dst.port}), no conntrack NAT"
            self.add(self.src.name, self.src.netns, "eth0", f"reply {flow.dst_ip} → {flow.src_ip} takes the way back{how}; "
                     f"the client sees it from {dst.ip}", "reply", (dst.ip,))
            return self.hops
        elif flow.endpoint is not None:
            undo.append(f"source {flow.endpoint} → {dst.ip}:{dst.port} (un-DNAT)")
        if flow.snat:
            undo.append(f"destination {flow.snat} → {self.src.ip} (un-SNAT)")
        if flow.socket_lb and not flow.snat:
            how = f"; no NAT to undo: {undo[0]}"
        else:
            how = "; conntrack reverses the NAT: " + ", ".join(undo) if undo else "; no NAT to undo"
        self.add(self.src.name, self.src.netns, "eth0",
                 f"reply {flow.dst_ip} → {flow.src_ip} takes the way back{how}; the client sees it from {dst.ip}",
                 "reply", (dst.ip,))
        return self.hops


def walk(state: ClusterState, src: Target, dst: Target, protocol: str = "TCP",
         slices: Iterable[EndpointSliceState] = (), picked: Optional[str] = None) -> list[Hop]:
    """Every hop from src to dst and the reply. picked: the endpoint ("ip:port") kube-proxy chose,
    once observed; before that the walk follows the first possible endpoint and says so. A Gateway
    is three legs: to its Envoy (its LoadBalancer Service), Envoy's routing, Envoy to a backend."""
    state = family.project(state, dst.family)
    if dst.kind == "gateway":
        return _through_gateway(state, src, dst, protocol.upper(), tuple(slices), picked)
    return _Walk(state, src, dst, protocol.upper(), slices, picked).run()


def _through_gateway(state: ClusterState, src: Target, dst: Target, protocol: str,
                     slices: tuple[EndpointSliceState, ...], picked: Optional[str]) -> list[Hop]:
    """To the Gateway's address (its LoadBalancer Service: kube-proxy's DNAT to the Envoy pod, which
    the observed column checks), then Envoy's decision for the HTTP request (listener, virtual host,
    route, cluster: lab.gateway.simulate over the configuration Envoy was given), then Envoy's own
    connection to a backend endpoint (predicted only: the probe's connection ends at Envoy), then the
    reply the client sees from the Gateway's address."""
    from lab.controlplane.gateway_state import RouteBackendState, dataplane
    from lab.gateway import envoy, simulate

    hops = _Walk(state, src, replace(dst, kind="service"), protocol, slices, picked).run()
    if not hops or hops[-1].kind != "reply" or protocol != "TCP":
        return hops
    reply = hops.pop()
    gw = next(g for g in state.gateways if g.key == dst.gateway)
    pod = dataplane(state, gw)
    config = envoy.route_config(state, gw, dst.port)
    req = simulate.Request(dst.http_host, dst.http_path, {k.lower(): v for k, v in dst.http_headers})
    vhost, entry = simulate.virtual_host(config, req.host), simulate.route(config, req)
    asked = f"{req.method} {req.path} Host: {req.host}" + "".join(f", {k}: {v}" for k, v in dst.http_headers)
    where = f"Envoy {pod.key if pod else gw.service}"
    ns = pod.netns if pod else ""
    leg2: list[Hop] = []
    if entry is None:
        what, answer = (f"listener-{dst.port}: {asked} → " + (f"virtual host {vhost['name']}: no route matches" if vhost
                        else "no virtual host takes that Host")), "404 from Envoy (no route)"
    elif "redirect" in entry:
        code = {v: k for k, v in envoy.REDIRECT_CODES.items()}[entry["redirect"]["response_code"]]
        location = simulate.redirect_location(entry, req, "http", dst.port)
        what, answer = f"listener-{dst.port}: {asked} → {vhost['name']} → {entry['name']}: redirect", \
            f"{code} to {location} from Envoy"
    elif "direct_response" in entry:
        what, answer = f"listener-{dst.port}: {asked} → {entry['name']}: a rule without backends", \
            f"{entry['direct_response']['status']} from Envoy"
    else:
        action = entry["route"]
        weighted = action.get("weighted_clusters", {}).get("clusters") or [{"name": action["cluster"], "weight": 1}]
        total = sum(c["weight"] for c in weighted)
        split = ", ".join(f"{c['name']} {c['weight'] / total:.0%}" for c in weighted) if len(weighted) > 1 else ""
        cluster = weighted[0]["name"]
        what = f"listener-{dst.port}: {asked} → virtual host {vhost['name']} → route {entry['name']} → cluster " + \
            (f"one of {split} (weighted; following {cluster})" if split else cluster)
        eps = [] if cluster == envoy.INVALID else envoy.endpoints(state, slices, RouteBackendState(*cluster.split("/")[:2],
                                                                                                    int(cluster.split("/")[2])))
        if cluster == envoy.INVALID:
            answer = "500 from Envoy (the backend did not resolve: see the route's ResolvedRefs)"
        elif not eps:
            answer = "503 from Envoy (no healthy upstream: the Service has no ready endpoint)"
        else:
            ip, port = eps[0]
            answer = "the backend's answer, through Envoy"
            backend = _pod_at(state, ip)
            if pod is not None and backend is not None:
                what += f"; endpoints {', '.join(f'{a}:{p}' for a, p in eps)} (round robin; following {ip}:{port})"
                frm = Target("pod", f"pod/{pod.key}", pod.ip, pod.netns, pod.node, pod=pod)
                to = Target("pod", f"pod/{backend.key}", ip, backend.netns, backend.node, pod=backend, port=port)
                leg2 = [replace(h, component=f"{h.component} (Envoy's connection)", kind="", expect=())
                        for h in _Walk(state, frm, to, "TCP", slices, None).run() if h.kind != "reply"]
    out = [*hops, Hop(0, where, ns, "eth0", what, "proxy", (answer,)), *leg2,
           replace(reply, what=f"{answer}: {reply.what}")]
    return [replace(h, step=i + 1) for i, h in enumerate(out)]
