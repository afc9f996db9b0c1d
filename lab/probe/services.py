"""What Kubernetes promises about Services, as checks (Services issue): ClusterIPs are virtual and
reach every ready endpoint from every pod and node, spreading looks random, affinity pins a client,
a Service without endpoints rejects at once, NodePorts follow their traffic policy, and pod traffic
leaving the cluster is masqueraded to the node's address.

Probes are planned here (pure), run by the probe engine in one batch with the invariants', and
judged here (pure) — per pair, or per Service port and client node where only the aggregate means
something: each node runs its own rules, so a stale rule on one node fails that node's row (pooled
over every node, the healthy nodes' replies hid it). A Service port whose endpoints the probes
cannot speak to (no netexec there) is listed as unchecked, with the reason.
Every path is judged with the NetworkPolicies in mind: after kube-proxy's DNAT the filter sees the
endpoint, so a client that the policies deny every endpoint must get no reply, and one they allow
some endpoints may only be answered by those. A Service whose pods exist but none is ready is a
failure that says why (the readiness probe's last result), never a row that silently vanishes.
"""
from __future__ import annotations

import math
from ipaddress import ip_address, ip_network
from collections import Counter
from typing import Mapping, Optional, Sequence

from lab.controlplane.endpoints import ready_by_service
from lab.controlplane.state import (
    HOST_PORT, ClusterState, EndpointSliceState, HostState, PodState, ServiceState, container_key,
)
from lab.kube_proxy import proxiers
from lab.kube_proxy.model import ServicePort, service_port_name
from lab.policy import model as policy
from lab.topology.kinds import ADDON_IMAGES
from lab.probe import coverage, loadbalancer, ping
from lab.probe.asks import (Ask, allowed_servers, denied, external_endpoints, internal_endpoints,
                            node_local_endpoints, not_netexec, per_node, reachable_endpoints)
from lab.probe.engine import REFUSED, SILENCE, Probe, ProbeResult
from lab.probe.outcome import Outcome, describe, refused_hint
from lab.topology.refs import Ref, parse_ref

CHECKS = {
    "clusterip-virtual": "a ClusterIP is on no interface and answers no ping, only its ports",
    "service": "every Service port answers from every pod and node, from a ready endpoint, seeing the client's pod IP",
    "service-spread": "connections spread over every ready endpoint (random, kube-proxy style)",
    "session-affinity": "sessionAffinity: ClientIP pins each client to one endpoint",
    "no-endpoints": "a Service port without ready endpoints rejects at once",
    "nodeport": "NodePorts answer on every node per externalTrafficPolicy (Local: client IP kept, only nodes with endpoints)",
    "loadbalancer": "every LoadBalancer address and externalIP answers the hosts per externalTrafficPolicy and "
                    "loadBalancerSourceRanges (lab.probe.loadbalancer)",
    "egress": "pod traffic leaving the pod range is masqueraded to the node's IP (and, behind a NAT gateway, to its public IP)",
}
SAMPLES = 24       # connections per Service port and endpoint, spread over the clients
SAMPLED_SHARE = 25  # in a sampled check, connections per Service port stop growing past this many endpoints
ALPHA = 1e-6       # the chance that a fair spread fails service-spread, whatever the number of endpoints


# The add-ons' images (lab.controlplane.addons): rows of their own check their Services (lab.probe.dns,
# lab.probe.ingress, lab.probe.gateway), so they are not unchecked. A new add-on brings its rows. Read from
# the names list: the registry loads the topology model, ~0.3 s of every `lab check`.
CHECKED_ELSEWHERE = frozenset(ADDON_IMAGES)


def unchecked(state: ClusterState, slices: Sequence[EndpointSliceState]) -> list[Outcome]:
    """One unchecked `service` row per Service port whose endpoints do not all speak netexec (a
    program of the user's): the harness cannot tell their answers, so it says so rather than
    skipping them silently or calling them a pass."""
    pods = {p.key: p for p in state.pods}
    out = []
    for svc in state.services:
        if svc.cluster_ip is None:
            continue
        for port in svc.ports:
            eps = reachable_endpoints(per_node(state, svc, port, slices))
            odd = [k for k in not_netexec(eps, port.protocol, pods)
                   if not any(c.image in CHECKED_ELSEWHERE for c in pods[k].containers)]
            if not odd:
                continue
            what = ", ".join(f"{k} ({'; '.join(c.image if not c.argv else ' '.join(c.argv)[:40] for c in pods[k].containers)})"
                             for k in odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
            out.append(Outcome("service", f"{service_port_name(svc, port)} ({svc.cluster_ip}:{port.port}/{port.protocol})",
                               False, "endpoints the probes can speak to (netexec)",
                               f"unchecked: endpoints without netexec (the probes speak netexec only): {what}",
                               target=f"{svc.cluster_ip}:{port.port}/{port.protocol}", unchecked=True))
    return out


def plan(state: ClusterState, slices: Sequence[EndpointSliceState], sample: Optional[int] = None) -> list[Ask]:
    """The Service probes. sample: a seed to draw a covering sample of clients from (large labs),
    None for every pod."""
    clients = [p for p in state.pods if not p.host_network]
    if sample is not None:
        clients = coverage.service_clients(clients, lambda p: p.node, sample)
    pod_names = {p.key: p.name for p in state.pods}
    pods = {p.key: p for p in state.pods}
    asks: list[Ask] = []
    for svc, family, cluster_ip in _families(state):
        if not svc.proxied:  # no rules: nothing to expect of its ClusterIP
            continue
        for port in svc.ports:
            spn = service_port_name(svc, port)
            target = f"{cluster_ip}:{port.port}/{port.protocol}"
            sps = per_node(state, svc, port, slices, family)
            eps = reachable_endpoints(sps)
            if not_netexec(eps, port.protocol, pods):
                continue  # listed by `unchecked`, or checked by rows of their own (kube-dns)
            if not any(sp.has_endpoints for sp in sps.values()):  # the rules reject
                for c in clients[:1] if port.protocol == "TCP" else ():
                    asks.append(Ask("no-endpoints", f"{spn} ({target}) from {c.key}",
                                    Probe(c.netns, cluster_ip, port.port, port.protocol), reply=False))
                continue
            per_node_clients = Counter(c.node for c in clients)
            affinity = svc.session_affinity == "ClientIP"
            for c in clients:
                reachable = internal_endpoints(sps[c.node])
                if not reachable:
                    continue  # iTP Local and no endpoint on this node: nothing is promised
                # SAMPLES connections per endpoint from each node, spread over its clients; in a
                # sampled check (a big lab) the SAMPLED_SHARE budget is split between the nodes
                share = len(reachable) if sample is None else min(len(reachable), SAMPLED_SHARE) / len(per_node_clients)
                rounds = max(1, math.ceil(SAMPLES * share / per_node_clients[c.node]))
                everyone = frozenset(pod_names[k] for k in reachable)
                names = allowed_servers(state, lambda _: c, reachable, port.protocol, pods)
                source = c.ip_of(6 if family == "IPv6" else 4)   # the client's address of the Service's family
                subject, reply, may_drop = denied(f"{c.key} ({source}) -> {spn} ({target})", names, everyone)
                hairpin = c.name if c.key in reachable and c.name in names else ""
                # Judged per client node (each node's rules are its own), over the endpoints its
                # clients may reach: all of them, or with internalTrafficPolicy Local those of the
                # node. Clients the policies restrict are judged one probe at a time.
                # each family's rules are their own too: an IPv6 ClusterIP's probes are a group of their own
                over = "" if family == "IPv4" else f" over {family}"
                group = "" if not reply or may_drop else f"{spn}{over}|{c.key}" if affinity else \
                    f"{spn}{over} from node {c.node}"
                for i in range(rounds if not affinity else max(rounds, 4)):
                    asks.append(Ask("session-affinity" if affinity and group else "service", subject,
                                    Probe(c.netns, cluster_ip, port.port, port.protocol),
                                    group=group, servers=names, source=source, client=c.key, node=c.node, hairpin=hairpin,
                                    reply=reply, may_drop=may_drop))
                    if not group:
                        break  # one probe says it: the engine retries before judging
            for n in state.nodes:
                reachable = internal_endpoints(sps[n.name])
                if reachable:
                    everyone = frozenset(pod_names[k] for k in reachable)
                    names = allowed_servers(state, lambda pod: policy.sending_address(state, n.name, pod),
                                            reachable, port.protocol, pods)
                    subject, reply, may_drop = denied(f"node/{n.name} -> {spn} ({target})", names, everyone)
                    asks.append(Ask("service", subject, Probe(n.netns, cluster_ip, port.port, port.protocol),
                                    servers=names, source="", reply=reply, may_drop=may_drop))
            if port.node_port and all(n.address_of(6 if family == "IPv6" else 4) for n in state.nodes):
                asks += _node_port(state, sps, pods, family)   # on the nodes' addresses of the ClusterIP's family
            if (svc.load_balancer_ip or svc.external_ips) and family == "IPv4":
                asks += loadbalancer.asks(state, svc, port, sps, pods, slices)
    gateway = state.nat_gateway()
    for h in state.hosts:
        for c in clients:
            for family in (f for f in state.families if c.ip_of(f) and h.address_of(f)):  # a row per family
                asks.append(_egress(state, c, h, family, gateway))
    return asks



def _egress(state: ClusterState, c: PodState, h: HostState, family: int, gateway: Optional[HostState]) -> Ask:
    """A pod's connection to a host in one family. The node masquerades what leaves the pod range
    (ip-masq-agent's rule, per family: `-s podCIDR ! -d podCIDR`) to its address of that family;
    behind a NAT gateway (IPv4 only) the public segment sees the gateway's. A host inside the pod
    range (network: vpc: the VPC subnet) sees the pod's own address."""
    src, dst = c.ip_of(family), h.address_of(family)
    allowed = policy.allowed(state, c, dst, HOST_PORT, "TCP", family)  # an egress policy may forbid it
    seen = gateway.public_ip if h.network == "public" and gateway else \
        src if ip_address(dst) in ip_network(state.pod_cidr_of(family)) else state.node(c.node).address_of(family)
    target = f"[{dst}]:{HOST_PORT}" if family == 6 else f"{dst}:{HOST_PORT}"
    return Ask("egress", f"{c.key} ({src}) -> host/{h.name} ({target}), seen as {seen}"
               + ("" if allowed else " (denied by NetworkPolicy)"),
               Probe(c.netns, dst, HOST_PORT), servers=frozenset({h.name}), source=seen, reply=allowed)


def _families(state: ClusterState):
    """(Service, family, its ClusterIP of that family) for every ClusterIP of every Service: a
    dual-stack Service is checked on each (each family's kube-proxy rules are their own)."""
    for svc in state.services:
        for family in svc.families():
            cluster_ip = svc.cluster_ip_of(family)
            if cluster_ip:
                yield svc, family, cluster_ip


def unready(state: ClusterState, slices: Sequence[EndpointSliceState], pod_ready: Mapping[str, bool],
            probe_detail: Mapping[str, str]) -> list[Outcome]:
    """A failing `service` row for each Service whose selector picks pods of which none is ready,
    saying why (each readiness probe's last result); it passes only where the topology's checks
    expect the Service to refuse (kube-proxy rejects a Service without endpoints). A selector that
    picks no pod is the no-endpoints check's case."""
    out, ready = [], ready_by_service(slices)
    for svc in state.services:
        if not svc.selector:
            continue  # endpoints not managed by a selector: nothing to be ready
        selected = [p for p in state.pods if p.namespace == svc.namespace and
                    all(p.label_dict().get(k) == v for k, v in svc.selector)]
        if not selected or ready.get((svc.namespace, svc.name)):
            continue
        why = []
        for p in selected:
            reasons = [f"{c.name}: {probe_detail.get(container_key(p, c)) or 'not ready'}"
                       for c in p.containers if c.readiness]
            running = pod_ready.get(p.key) is not None
            why.append(f"{p.name} ({'; '.join(reasons) or ('not ready' if running else 'not running')})")
        expected = any(c.expect == "refused" and _names(parse_ref(c.dst), svc) for c in state.checks)
        out.append(Outcome("service", f"{svc.key}: 0 of {len(selected)} pods ready", expected,
                           "ready endpoints" if not expected else "no ready endpoint (the topology's checks expect "
                                                                  "it refused)",
                           "no ready endpoint: " + "; ".join(why[:5]) + (f"; and {len(why) - 5} more" if len(why) > 5 else ""),
                           target=svc.cluster_ip or ""))
    return out


def _names(ref: Ref, svc: ServiceState) -> bool:
    """Whether a check's reference is this Service (validated references: parse_ref cannot fail)."""
    return ref.kind == "svc" and (ref.namespace, ref.name) == (svc.namespace, svc.name)


def _node_port(state: ClusterState, sps: Mapping[str, ServicePort], pods: Mapping[str, PodState],
               family: str = "IPv4") -> list[Ask]:
    """From every plain host and every other node to every node's IP of `family` (the traffic policy
    decides who answers and what source the backend sees), and from each node to its own addresses.
    Policies judge what the endpoint sees: with Cluster the receiving node's address (SNAT),
    with Local the client's own."""
    asks: list[Ask] = []
    v = 6 if family == "IPv6" else 4
    for node in state.nodes:
        node_ip = node.address_of(v)
        sp = sps[node.name]
        port, spn, local = sp.port, sp.spn, sp.external_local
        # With Cluster both are every usable endpoint; with Local, outside traffic gets this node's.
        inside, outside_eps = node_local_endpoints(sp), external_endpoints(sp)
        everywhere = frozenset(pods[k].name for k in inside)
        here = frozenset(pods[k].name for k in outside_eps)
        target = f"node/{node.name} ({node_ip}:{port.node_port}/{port.protocol})"
        snat = allowed_servers(state, lambda pod: policy.sending_address(state, node.name, pod, v), inside,
                               port.protocol, pods)
        # From outside the cluster, and from the other nodes (also outside, for this node's rules).
        outside = [(f"host/{h.name}", h.netns, h.address_of(v)) for h in state.underlay_hosts()] + \
                  [(f"node/{o.name}", o.netns, o.address_of(v)) for o in state.nodes if o.name != node.name]
        for who, netns, ip in outside:
            if not ip:
                continue   # a machine without an address of this family
            probe = Probe(netns, node_ip, port.node_port, port.protocol)
            if local:
                names = allowed_servers(state, lambda _: ip, outside_eps, port.protocol, pods)
                subject, reply, may_drop = denied(f"{who} -> {spn} at {target}, Local", names, here)
                asks.append(Ask("nodeport", subject, probe, servers=names, source=ip, reply=bool(names) and reply,
                                may_drop=may_drop))
            else:
                subject, reply, may_drop = denied(f"{who} -> {spn} at {target}, Cluster", snat, everywhere)
                asks.append(Ask("nodeport", subject, probe, servers=snat, source="node", reply=reply,
                                may_drop=may_drop))
        # From the node itself any endpoint may answer; on 127.0.0.1 too where the mode serves
        # NodePorts on localhost (iptables: route_localnet, IPv4 only; kube-proxy's nftables mode does not).
        localhost = ("127.0.0.1",) if proxiers.of(state).localhost_nodeports and v == 4 else ()
        for addr in (node_ip, *localhost):
            subject, reply, may_drop = denied(
                f"node/{node.name} -> {spn} at {addr}:{port.node_port}/{port.protocol}", snat, everywhere)
            asks.append(Ask("nodeport", subject, Probe(node.netns, addr, port.node_port, port.protocol),
                            servers=snat, source="", reply=reply, may_drop=may_drop))
    return asks


def node_addresses(state: ClusterState) -> dict[str, str]:
    """Every address a node may masquerade to, -> the node (one definition: lab.policy.model)."""
    return {addr: n.name for n in state.nodes for addr in policy.node_addresses(state, n.name)}


def judge(state: ClusterState, asks: Sequence[Ask], results: Sequence[ProbeResult]) -> list[Outcome]:
    """Outcomes for every planned probe and every aggregate."""
    if len(asks) != len(results):
        raise ValueError(f"{len(asks)} probes planned but {len(results)} results")
    out = []
    node_ips = node_addresses(state)
    groups: dict[tuple[str, str], list[tuple[Ask, ProbeResult]]] = {}
    for a, r in zip(asks, results):
        if a.group and a.check in ("service", "session-affinity"):
            groups.setdefault((a.check, a.group), []).append((a, r))  # judged per group below
        elif a.check == "no-endpoints":
            out.append(Outcome(a.check, a.subject, r.seen == REFUSED, "rejected at once (refused)", _seen(r),
                               **_where(a, r)))
        elif not a.reply:
            observed = _seen(r) + (refused_hint(r) if r.seen == REFUSED else "")
            out.append(Outcome(a.check, a.subject, r.seen == SILENCE, "no reply at any try (denied)", observed,
                               **_where(a, r)))
        elif a.may_drop and r.seen == SILENCE:
            out.append(Outcome(a.check, a.subject, True, _expected(a) + ", or no reply (a denied endpoint picked)",
                               _seen(r), **_where(a, r)))
        else:
            problems = _problems(a, r, node_ips)
            out.append(Outcome(a.check, a.subject, not problems, _expected(a), "; ".join(problems) or _seen(r),
                               **_where(a, r)))
    for (check, group), pairs in groups.items():
        out += _judge_group(check, group, pairs, node_ips)
    return out


def _where(a: Ask, r: Optional[ProbeResult] = None) -> dict:
    return {"source": a.probe.src_netns, "target": f"{a.probe.dst_ip}:{a.probe.port}/{a.probe.protocol}",
            "attempts": r.attempts if r else 1, "settled": r.settled if r else True}


def _problems(a: Ask, r: ProbeResult, node_ips: dict[str, str]) -> list[str]:
    """Why a reply is not what the Ask wanted (empty: it is)."""
    if not r.ok:
        return [describe(r)]
    problems = []
    if a.servers and r.server not in a.servers:
        problems.append(f"answered by {r.server}, not one of {', '.join(sorted(a.servers))}")
    if a.source == "node" and r.seen_source not in node_ips:
        problems.append(f"source seen {r.seen_source}, not an address of a node")
    elif a.source and a.source != "node" and r.seen_source != a.source and not (a.hairpin and r.server == a.hairpin):
        problems.append(f"source seen {r.seen_source}, expected {a.source}")
    return problems


def _expected(a: Ask) -> str:
    text = "reply" + (f" from {'/'.join(sorted(a.servers))}" if a.servers and len(a.servers) < 4 else
                      " from a ready endpoint" if a.servers else "")
    if a.source == "node":
        return text + ", source seen an address of a node (SNAT)"
    return text + (f", source seen {a.source}" if a.source else "")


def _seen(r: ProbeResult) -> str:
    return f"reply from {r.server}, source seen {r.seen_source}" if r.ok else describe(r)


def _judge_group(check: str, group: str, pairs, node_ips: dict[str, str]) -> list[Outcome]:
    """service: each probe answered by an allowed pod (and seeing the client, unless hairpin),
    then the spread over endpoints; session-affinity: one endpoint per client."""
    a0 = pairs[0][0]
    counts = Counter(r.server for _, r in pairs if r.ok)
    failed = [(a, r, p) for a, r in pairs for p in [_problems(a, r, node_ips)] if p]
    late = sum(r.attempts > 1 for a, r in pairs if r.ok)
    where = {"source": "", "target": _where(a0)["target"], "node": a0.node}
    tries = {"attempts": max(r.attempts for _, r in pairs), "settled": all(r.settled for _, r in pairs)}
    retried = f" ({late} only after retries)" if late else ""
    if check == "session-affinity":
        passed = not failed and len(counts) == 1
        note = f"; {len(failed)} failed: {'; '.join(failed[0][2])}" if failed else ""
        return [Outcome(check, f"{a0.subject}: {len(pairs)} connections", passed, "every connection to one endpoint",
                        _counts(counts) + retried + note, **where, **tries)]
    out = [Outcome("service", a.subject, False, _expected(a), "; ".join(p), **_where(a, r)) for a, r, p in failed]
    passes = len(pairs) - len(failed)
    out.append(Outcome("service", f"{group}: {passes} of {len(pairs)} connections from pods", not failed,
                       "every connection answered", f"{passes} answered{retried}", **where, **tries))
    allowed = set().union(*(a.servers for a, _ in pairs))
    out.append(_spread(group, counts, allowed, where))
    return out


def _binomial_bounds(total: int, n: int) -> tuple[int, int]:
    """(low, high): an endpoint picked at most `low` or at least `high` times out of `total` uniform
    picks among n is implausible even counting all n endpoints (n x tail probability < ALPHA)."""
    return binomial_bounds(total, 1 / n, ALPHA / n)


def binomial_bounds(total: int, p: float, alpha: float) -> tuple[int, int]:
    """(low, high): a count of at most `low` or at least `high` successes in `total` trials of
    chance p has a tail probability below alpha (exact binomial tails, each side)."""

    def pmf(k: int) -> float:
        if p >= 1 or p <= 0:
            return 1.0 if k == (total if p >= 1 else 0) else 0.0
        return math.exp(math.lgamma(total + 1) - math.lgamma(k + 1) - math.lgamma(total - k + 1)
                        + k * math.log(p) + (total - k) * math.log(1 - p))

    low, tail = -1, 0.0
    while low < total and tail + pmf(low + 1) < alpha:
        low += 1
        tail += pmf(low)
    high, tail = total + 1, 0.0
    while high > 0 and tail + pmf(high - 1) < alpha:
        high -= 1
        tail += pmf(high)
    return low, high


def _spread(group: str, counts: Counter, allowed: set, where: dict) -> Outcome:
    """kube-proxy picks endpoints at random: fail only on counts that uniform picks would not give,
    with the exact binomial tails corrected for the number of endpoints (a 1000-endpoint Service
    must not fail by chance). A sampled check of a big Service has too few connections to expect
    every endpoint; there, as many endpoints must be hit as random picks give."""
    total, n = sum(counts.values()), max(1, len(allowed))
    low, high = _binomial_bounds(total, n)
    odd = sorted(k for k in allowed if not low < counts.get(k, 0) < high)
    hit = len(set(counts) & allowed)
    miss = (1 - 1 / n) ** total  # chance that one given endpoint is never picked
    mean = n * (1 - miss)
    var = n * miss + n * (n - 1) * (1 - 2 / n) ** total - (n * miss) ** 2
    few = hit < mean - 4 * math.sqrt(max(var, 0.0)) - 1
    passed = not odd and not few
    expected = f"every endpoint about {total / n:.0f} of {total} ({low + 1} to {high - 1})" if low >= 0 else \
        f"about {mean:.0f} of {n} endpoints hit in {total} random picks, none more than {high - 1} times"
    never = [k for k in odd if not counts.get(k)]
    skewed = [k for k in odd if counts.get(k)]
    note = f"; {hit} of {n} endpoints hit" if hit < n and not never else ""
    if never:
        note += f"; never hit: {', '.join(never[:10])}"
    if skewed:
        note += f"; implausible: {', '.join(f'{k}={counts[k]}' for k in skewed[:10])}"
    return Outcome("service-spread", f"{group} over {n} endpoints", passed, expected,
                   _counts(counts, 12) + note, **where)


def _counts(counts: Counter, most: int = 0) -> str:
    """name=count for every endpoint (or the `most` busiest, and how many more)."""
    items = sorted(counts.items()) if not most or len(counts) <= most else counts.most_common(most)
    text = ", ".join(f"{k}={v}" for k, v in items) or "no replies"
    return text + (f", and {len(counts) - most} more" if most and len(counts) > most else "")


def ping_client(state: ClusterState) -> tuple[str, str]:
    """(netns, name) the ClusterIP pings leave from: an ordinary pod, or a node when the lab has
    none (never no ping at all)."""
    return next(((p.netns, p.key) for p in state.pods if not p.host_network),
                next((n.netns, f"node/{n.name}") for n in state.nodes))


def clusterip_pings(state: ClusterState) -> ping.Echoes:
    """An echo to every ClusterIP, sent now: `lab check` sends them before its probes."""
    return ping.Echoes(ping_client(state)[0], [ip for _, _, ip in _families(state)])


def clusterip_virtual(state: ClusterState, wait: float, echoes: ping.Echoes) -> list[Outcome]:
    """No namespace of the lab has a ClusterIP on an interface, and the echo `echoes` sent to one
    gets no reply (kube-proxy only translates the Service's ports) within `wait` seconds of leaving:
    the caller adapts it to the round trips its probes measured, as the engine does for a silence
    it judges."""
    from lab.probe.netns import interface_addresses_many

    namespaces = sorted({p.netns for p in state.pods} | {n.netns for n in state.nodes} | {h.netns for h in state.hosts})
    held = {a: ns for (ns, _), addrs in interface_addresses_many([(ns, "*") for ns in namespaces]).items() for a in addrs}
    client = ping_client(state)[1]
    heard = echoes.answered(wait)
    out = []
    for s, _, ip in _families(state):   # every ClusterIP of every family
        problems = ([f"on an interface of {held[ip]}"] if ip in held else []) + \
                   ([f"ping failed: {echoes.error}"] if echoes.error else []) + \
                   ([f"answered a ping from {client}"] if ip in heard else [])
        out.append(Outcome("clusterip-virtual", f"{s.key} ({ip})", not problems,
                           "on no interface, no ping reply", "; ".join(problems) or
                           f"on no interface, no reply to a ping from {client}", target=ip))
    return out
