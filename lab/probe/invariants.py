"""The Kubernetes network model as checks: which probes to send, what each must find.

Pure planning (`expectations`) and pure judging (`judge`); only `run` touches the network, through
the probe engine, which retries every probe that disagrees with its expectation before a verdict.
Every outcome names its pair, what was expected and what was seen. Up to
lab.probe.coverage.ALL_PAIRS_UP_TO pods every pair is probed, beyond that a covering sample.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from ipaddress import ip_address
from itertools import permutations
from typing import Collection, Mapping, Optional

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import ClusterState, PodState
from lab.kube_proxy.runtimes import socket_cgroups
from lab.policy import model as policy
from lab.probe import dns, gateway, ingress, services
from lab.probe.asks import expect
from lab.probe.coverage import ALL_PAIRS, Coverage, covering_pairs
from lab.probe.outcome import Outcome, describe, mark_flaky, refused_hint
from lab.probe.engine import (
    REFUSED, REPLY, SILENCE, Probe, ProbeResult, adapted_timeout, interface_addresses_many, run_probes,
)
from lab.topology.refs import Ref, parse_ref

PING_WAIT = 0.25  # the least a ClusterIP ping waits for the answer it must not get (more when the lab is slow)
INVARIANTS = {
    "pod-to-pod": "every pod reaches every other pod, and the receiver sees the sender's pod IP (no NAT)",
    "node-to-pod": "every node reaches every pod",
    "pod-ip": "the IP on a pod's eth0 = the source IP other pods see = the IP in `lab get pods`",
    "hostnetwork-to-pod": "hostNetwork pods reach every pod",
    "localhost": "containers of one pod reach each other on localhost",
    "hostport": "every hostPort answers at its node's address from outside (the plain hosts), from its own pod, "
                "which sees the client's address",
    **services.CHECKS,
    **dns.CHECKS,
    **ingress.CHECKS,
    **gateway.CHECKS,
    "checks": "the topology's own checks",
}


@dataclass(frozen=True)
class Expectation:
    """One probe and what it must find: a reply (optionally seeing `source`), silence (a deny), or
    a refusal (`refused`: nothing serves the port, a REJECT)."""

    check: str
    subject: str
    probe: Probe
    reply: bool = True
    source: Optional[str] = None
    server: Optional[str] = None  # the pod that must answer (a hostPort's own)
    refused: bool = False

    @property
    def want(self) -> str:
        """The kind of result the probe must see (lab.probe.engine)."""
        return REPLY if self.reply else REFUSED if self.refused else SILENCE


def _target(p: PodState, family: int = 0) -> str:
    ip = p.ip_of(family) if family else p.ip
    return f"{p.key} ({_hostport(ip, p.probe_port())}{', hostNetwork' if p.host_network else ''})"


def _hostport(ip: str, port) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _families(state: ClusterState, t: PodState) -> list[int]:
    """The families a pod-to-pod row is probed in: each of the cluster's, where the target has an
    address of it (a dual-stack cluster gets one row per family and pair)."""
    return [f for f in state.families if t.ip_of(f)]


def _pairs(sources: list, targets: list[PodState], cov: Coverage, key, node) -> list[tuple]:
    """Every (source, target) pair but an object with itself, or a covering sample of them."""
    if cov.all_pairs:
        return [(s, t) for s in sources for t in targets if key(s) != t.key]
    return covering_pairs(sources, targets, key, lambda t: t.key, node, lambda t: t.node, cov.seed)


def _node_expectations(state: ClusterState, targets: list[PodState], cov: Coverage) -> list[Expectation]:
    out = []
    pods = [t for t in targets if not t.host_network]
    for node, t in _pairs(list(state.nodes), pods, cov, lambda n: f"node/{n.name}", lambda n: n.name):
        out += [Expectation("node-to-pod", f"node/{node.name} -> {_target(t, f)}",
                            Probe(node.netns, t.ip_of(f), t.probe_port())) for f in _families(state, t)]
    hostnet = [p for p in state.pods if p.host_network]
    for src, t in _pairs(hostnet, targets, cov, lambda p: p.key, lambda p: p.node):
        out += [Expectation("hostnetwork-to-pod", f"{src.key} (hostNetwork) -> {_target(t, f)}",
                            Probe(src.netns, t.ip_of(f), t.probe_port())) for f in _families(state, t)]
    return out


def _localhost_expectations(state: ClusterState) -> list[Expectation]:
    out = []
    for pod in state.pods:
        for a, b in permutations(pod.containers, 2):
            for port in (p for p in b.ports if b.image == "netexec"):
                out.append(Expectation(
                    "localhost", f"{pod.key}: {a.name} -> {b.name} (127.0.0.1:{port.port}/{port.protocol})",
                    Probe(pod.netns, "127.0.0.1", port.port, port.protocol)))
    return out


def _hostport_expectations(state: ClusterState) -> list[Expectation]:
    """From every plain host to every hostPort, at its node's address (or its hostIP): the CNI
    portmap plugin DNATs it to the pod without SNAT, so the pod sees the client."""
    out = []
    for pod in state.pods:
        node = state.node(pod.node)
        for p in (p for c in pod.containers if c.image == "netexec" for p in c.ports if p.host_port):
            address = p.host_ip or node.ip
            for h in state.underlay_hosts():
                reply = not state.policies or policy.allowed(state, h.ip, pod, p.port, p.protocol)
                out.append(Expectation(
                    "hostport", f"host/{h.name} -> node/{node.name} {address}:{p.host_port}/{p.protocol} -> "
                                f"{pod.key}:{p.port}" + ("" if reply else " (denied by NetworkPolicy)"),
                    Probe(h.netns, address, p.host_port, p.protocol), reply=reply,
                    source=h.ip if reply else None, server=pod.uts_name if reply else None))
    return out


def expectations(state: ClusterState, cov: Coverage = ALL_PAIRS) -> list[Expectation]:
    targets = [p for p in state.pods if p.probe_port() is not None]
    senders = [p for p in state.pods if not p.host_network]
    # To a hostNetwork pod (a node address) only reachability is the model's promise: a CNI may
    # masquerade pod traffic leaving the pod network, as flannel does.
    out = [
        Expectation("pod-to-pod", f"{src.key} ({src.ip_of(f)}) -> {_target(t, f)}",
                    Probe(src.netns, t.ip_of(f), t.probe_port()), source=None if t.host_network else src.ip_of(f))
        for src, t in _pairs(senders, targets, cov, lambda p: p.key, lambda p: p.node) for f in _families(state, t)
    ]
    out = _under_policies(state, out + _node_expectations(state, targets, cov))
    return out + _localhost_expectations(state) + _hostport_expectations(state) + check_expectations(state)


def _under_policies(state: ClusterState, exps: list[Expectation]) -> list[Expectation]:
    """With NetworkPolicies the model's promise becomes theirs: a pair the policies deny must get
    no reply (lab.policy.model decides, as for `lab netpol matrix`)."""
    if not state.policies:
        return exps
    pods = {p.netns: p for p in state.pods if not p.host_network}
    ips = {ip: p for p in state.pods if not p.host_network for ip in p.pod_ips}
    nodes = {n.netns: n.name for n in state.nodes} | {p.netns: p.node for p in state.pods if p.host_network}
    out = []
    for e in exps:
        dst = ips.get(e.probe.dst_ip, e.probe.dst_ip)
        family = ip_address(e.probe.dst_ip).version
        src = pods.get(e.probe.src_netns) or policy.sending_address(state, nodes[e.probe.src_netns], dst, family)
        if not policy.allowed(state, src, dst, e.probe.port, e.probe.protocol, family):
            e = Expectation(e.check, e.subject + " (denied by NetworkPolicy)", e.probe, reply=False)
        out.append(e)
    return out


# --- the topology's `checks:` ---

def _endpoints(state: ClusterState, ref: Ref, protocol: str) -> list[tuple[str, str, dict[int, str], Optional[int]]]:
    """(label, netns, {family: ip}, default port) for every object a reference names. A Service is
    its ClusterIPs (it has no namespace to send from); its default port is its first of the protocol."""
    if ref.kind == "svc":
        svcs = [s for s in state.services if s.namespace == ref.namespace and s.name == ref.name and s.cluster_ip]
        return [(f"svc/{s.key}", "", _by_family(s.cluster_ips or (s.cluster_ip,)),
                 next((p.port for p in s.ports if p.protocol == protocol), None)) for s in svcs]
    if ref.kind in ("node", "host"):
        machines = state.nodes if ref.kind == "node" else state.hosts
        return [(f"{ref.kind}/{m.name}", m.netns, _by_family((m.ip, m.ip6)), None) for m in machines if m.name == ref.name]
    if ref.kind == "pod":
        pods = [p for p in state.pods if p.namespace == ref.namespace and p.name == ref.name]
    else:
        pods = [p for p in state.pods if p.namespace == ref.namespace and p.owner == f"Deployment/{ref.name}"]
    return [(p.key, p.netns, _by_family(p.pod_ips), _netexec_port(p, protocol)) for p in pods]


def _by_family(addresses) -> dict[int, str]:
    return {ip_address(a).version: a for a in addresses if a}


def _netexec_port(pod: PodState, protocol: str) -> Optional[int]:
    for c in pod.containers:
        for p in c.ports:
            if c.image == "netexec" and p.protocol == protocol:
                return p.port
    return None


def check_expectations(state: ClusterState) -> list[Expectation]:
    """A row per check, source, target and family both ends have (a dual-stack pod to a
    dual-stack pod: an IPv4 row and an IPv6 row, each to the target's address of that family)."""
    out = []
    for c in state.checks:
        src_ref, dst_ref = parse_ref(c.src), parse_ref(c.dst)
        for s_label, s_netns, s_ips, _ in _endpoints(state, src_ref, c.protocol):
            if not s_netns:
                continue  # a Service sends nothing
            for d_label, _, d_ips, default_port in _endpoints(state, dst_ref, c.protocol):
                port = dst_ref.port if dst_ref.port is not None else default_port
                for family in (f for f in state.families if f in s_ips and f in d_ips):
                    d_ip = d_ips[family]
                    subject = f"{c.name}: {s_label} -> {d_label} ({_hostport(d_ip, port)}/{c.protocol})"
                    out.append(Expectation("checks", subject, Probe(s_netns, d_ip, port or 0, c.protocol),
                                           reply=c.expect == "allow", refused=c.expect == "refused"))
    return out


# --- judging ---

def judge(e: Expectation, r: ProbeResult) -> Outcome:
    where = {"source": e.probe.src_netns, "target": f"{e.probe.dst_ip}:{e.probe.port}/{e.probe.protocol}",
             "attempts": r.attempts, "settled": r.settled}
    if e.probe.port == 0:
        return Outcome(e.check, e.subject, False, "a port to probe",
                       "the target serves no port for this protocol; write it as kind/name:PORT", **where)
    if e.want == REPLY:
        expected = (f"reply, source seen {e.source}" if e.source else "reply") + (f", from {e.server}" if e.server else "")
        right_server = e.server is None or r.server == e.server
        passed = r.ok and (e.source is None or r.seen_source == e.source) and right_server
        observed = describe(r) + (f", from {r.server}" if e.server and r.ok else "")
        if r.ok and r.seen_source != e.source and e.source is not None:
            observed += " (the source address was rewritten: NAT)"
        return Outcome(e.check, e.subject, passed, expected, observed, **where)
    if e.want == REFUSED:
        return Outcome(e.check, e.subject, r.seen == REFUSED, "refused (a reset or an ICMP unreachable)",
                       describe(r), **where)
    observed = describe(r) + (refused_hint(r) if r.seen == REFUSED else "")
    return Outcome(e.check, e.subject, r.seen == SILENCE, "no reply at any try (denied)", observed, **where)


def judge_pod_ips(state: ClusterState, eth0: dict[str, list[str]],
                  results: list[tuple[Expectation, ProbeResult]]) -> list[Outcome]:
    """Invariant 3, per pod: its eth0, what the others saw, and the model agree. Without a reply
    from another pod there is no evidence: a failure when its probes went unanswered, unchecked
    when none could be sent (no other pod serves netexec, or the policies deny them all)."""
    seen: dict[str, set[str]] = {}
    sent: set[str] = set()
    for e, r in results:
        if e.check == "pod-to-pod" and e.source:  # not via egress NAT, not denied
            sent.add(e.probe.src_netns)
            if r.ok and r.seen_source:
                seen.setdefault(e.probe.src_netns, set()).add(r.seen_source)
    out = []
    for pod in state.pods:
        if pod.host_network:
            continue
        own = eth0.get(pod.netns, [])
        others = sorted(seen.get(pod.netns, set()))
        observed = f"eth0={','.join(own) or 'none'}, seen by others={','.join(others) or 'nothing'}"
        mine = sorted(pod.pod_ips)  # one address per family (dual-stack: both on eth0, both seen)
        passed = sorted(own) == mine and bool(others) and all(s in mine for s in others)
        unchecked = sorted(own) == mine and pod.netns not in sent
        if not others:
            observed += " (no pod can be probed from it: no evidence)" if unchecked else \
                " (none of its pod-to-pod probes was answered: no evidence)"
        out.append(Outcome("pod-ip", pod.key, passed, f"{', '.join(pod.pod_ips)} everywhere", observed, source=pod.netns,
                           unchecked=unchecked))
    return out


def run(state: ClusterState, timeout: float = 1.0, pod_ready: Optional[Mapping[str, bool]] = None,
        probe_detail: Optional[Mapping[str, str]] = None, cov: Coverage = ALL_PAIRS,
        only: Collection[str] = ()) -> list[Outcome]:
    """Every check in one batch of probes. pod_ready: the lab's readiness (what its EndpointSlices
    and kube-proxy rules are built from); probe_detail: what each readiness probe last saw; only:
    these rows (their probes alone are sent; pod-ip needs pod-to-pod's)."""
    def want(*rows: str) -> bool:
        return not only or any(r in only for r in rows)

    exps = [e for e in expectations(state, cov) if want(e.check) or (e.check == "pod-to-pod" and want("pod-ip"))]
    slices = endpoint_slices(state, pod_ready or {})
    asks = services.plan(state, slices, sample=None if cov.all_pairs else cov.seed) if want(*services.CHECKS) else []
    wanted = {e.probe: e.want for e in exps if e.probe.port}
    unique = list(wanted)
    # DNS lookups wait on other processes: they run beside the probes.
    with ThreadPoolExecutor(3) as pool:
        names = pool.submit(dns.run, state, slices) if want(*dns.CHECKS) else None
        rules = pool.submit(ingress.run, state, slices) if want(*ingress.CHECKS) else None  # curl from the hosts
        # the ClusterIP pings leave now and are watched while the probes run (lab.probe.ping)
        echoes = services.clusterip_pings(state) if state.services and want("clusterip-virtual") else None
        routes = pool.submit(gateway.run, state, slices, want("gateway-weights")) if want(*gateway.CHECKS) else None
        answers = run_probes(unique + [a.probe for a in asks], timeout=timeout,
                             expect=[wanted[p] for p in unique] + [expect(a) for a in asks],
                             cgroups=socket_cgroups(state))
        results = dict(zip(unique, answers))
        missing = ProbeResult(Probe("", "", 0), False, None, "not probed", 0.0)  # port 0: judged before
        pairs = [(e, results.get(e.probe, missing)) for e in exps]
        outcomes = [judge(e, r) for e, r in pairs]
        if want("pod-ip"):
            eth0 = interface_addresses_many([(p.netns, "eth0") for p in state.pods if not p.host_network],
                                            ipv6=6 in state.families)
            outcomes += judge_pod_ips(state, {ns: a for (ns, _), a in eth0.items()}, pairs)
        outcomes += services.judge(state, asks, answers[len(unique):])
        if want("service"):
            outcomes += services.unchecked(state, slices)
        if pod_ready is not None and want("service"):
            outcomes += services.unready(state, slices, pod_ready, probe_detail or {})
        if echoes is not None:
            # after the probes: a ClusterIP's silence is judged with their round trips
            wait = adapted_timeout(PING_WAIT, [r.elapsed for r in answers if r.ok], 2)
            outcomes += services.clusterip_virtual(state, wait, echoes)
        outcomes += [o for job in (names, rules, routes) if job for o in job.result()]
    nodes = {p.netns: p.node for p in state.pods} | {n.netns: n.name for n in state.nodes}
    outcomes = mark_flaky([o if o.node else replace(o, node=nodes.get(o.source, "")) for o in outcomes])
    order = list(INVARIANTS)
    return sorted((o for o in outcomes if want(o.check)), key=lambda o: order.index(o.check))
