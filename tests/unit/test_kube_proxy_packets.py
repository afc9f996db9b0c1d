"""One table of packets through both of kube-proxy's modes, kube-proxy-test style.

The iptables rules run in tests/unit/iptables_sim.py, the nftables table in tests/unit/nft_sim.py;
both are held to the same expectations (the DNAT target set, masquerading, the verdict) except
where a row says how kube-proxy's nftables mode differs by design. Partial syncs are traced too:
render_update() applied over render() of one state must leave what render() of the next state
leaves, and the packets must still hold.

The world is topologies/services.yaml with every pod ready except the never-ready `warming` ones,
plus small topologies built from dicts (web pods on n1 and n2, nothing on n3).
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from ipaddress import ip_network
from typing import NamedTuple, Optional, Union

import pytest

from lab.controlplane.endpoints import endpoint_slices, initial_readiness
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, EndpointSliceState, ServicePortState, ServiceState
from lab.kube_proxy import iptables, nftables
from lab.topology.model import Topology
from tests.unit import iptables_sim, nft_sim
from tests.unit.golden import shipped_state
from tests.unit.iptables_sim import Packet

MODES = ("iptables", "nftables")
STATE = shipped_state("services")
READY = {p.key: not p.name.startswith("warming") for p in STATE.pods}   # warming never passes its probe


# --- the world ---

def pod_ip(state: ClusterState, prefix: str, node: str) -> str:
    return next(p.ip for p in state.pods if p.name.startswith(prefix + "-") and p.node == node)


def pod_ips(state: ClusterState, prefix: str) -> set[str]:
    return {p.ip for p in state.pods if p.name.startswith(prefix + "-")}


def pod_key(state: ClusterState, prefix: str, node: str) -> str:
    return next(p.key for p in state.pods if p.name.startswith(prefix + "-") and p.node == node)


def cluster_ip(state: ClusterState, name: str) -> str:
    return state.service("default", name).cluster_ip


def local_addresses(state: ClusterState, node: str) -> list[str]:
    """The node's own addresses: eth0, cni0 (the gateway), flannel.1 (the podCIDR's first), loopback."""
    n = state.node(node)
    return [n.ip, n.gateway, str(ip_network(n.pod_cidr).network_address), "127.0.0.0/8"]


def slices_of(state: ClusterState, ready=None) -> tuple[EndpointSliceState, ...]:
    return endpoint_slices(state, READY if ready is None else ready)


def at(ips, port: int) -> set[str]:
    return {f"{ip}:{port}" for ip in ([ips] if isinstance(ips, str) else ips)}


def web_pod(node: str) -> dict:
    ports = [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"web-{node}", "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "netexec", "ports": ports}]}}


def small(**spec) -> ClusterState:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"clusterIP": "10.96.0.50", "selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8080}], **spec}}
    doc = {"name": "kp", "cluster": {"dns": {"enabled": False}}, "nodes": [{"name": "n1"}, {"name": "n2"}, {"name": "n3"}],
           "manifests": [web_pod("n1"), web_pod("n2"), service]}
    return plan(Topology.model_validate(doc))


CASES = {
    "affinity": dict(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
    "etp-local": dict(type="NodePort", externalTrafficPolicy="Local",
                      ports=[{"port": 80, "targetPort": 8080, "nodePort": 30090}]),
    "headless": dict(clusterIP="None", ports=[{"port": 8080}]),
    "no-endpoints": dict(type="NodePort", selector={"app": "nothing"},
                         ports=[{"port": 80, "targetPort": 8080, "nodePort": 30091}]),
    "udp": dict(ports=[{"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]),
    "itp-local": dict(internalTrafficPolicy="Local"),
}

Sim = Union[iptables_sim.Ruleset, nft_sim.Ruleset]


def apply(mode: str, rs: Sim, text: str) -> None:
    """What the sync runs: `iptables-restore --noflush` or `nft -f`."""
    rs.restore(text) if mode == "iptables" else rs.load(text)


def render(mode: str, state: ClusterState, node: str, slices) -> str:
    return (iptables if mode == "iptables" else nftables).render(state, node, slices)


def render_update(mode: str, old: ClusterState, new: ClusterState, node: str, old_slices, new_slices, only) -> str:
    return (iptables if mode == "iptables" else nftables).render_update(old, new, node, old_slices, new_slices, only)


def fresh_node(mode: str, state: ClusterState, node: str, slices=None, **sim) -> Sim:
    """A node as the lab sets it up: kube-proxy's base rules, ip-masq-agent, then one full sync."""
    slices = slices_of(state) if slices is None else slices
    local = local_addresses(state, node)
    if mode == "iptables":
        rs = iptables_sim.Ruleset(local, **sim)
        rs.restore(iptables.base_rules() + iptables.masq_agent_rules(state))
    else:
        rs = nft_sim.Ruleset(local, **sim)
        rs.load(nftables.masq_agent_rules(state))
    apply(mode, rs, render(mode, state, node, slices))
    return rs


# --- one table of packets ---

W1 = "worker1"
OUTSIDE = "172.18.0.5"                     # the `internet` host on the underlay
BACKEND = pod_ips(STATE, "backend")
WARMING = pod_ips(STATE, "warming")
CLIENT = pod_ip(STATE, "client", W1)


def node_ip(name: str) -> str:
    return STATE.node(name).ip


class Row(NamedTuple):
    what: str
    node: str
    hook: str
    src: str
    dst: str
    proto: str
    dport: int
    dnat: Optional[set[str]]         # the DNAT targets allowed; None: no DNAT
    masq: bool
    verdict: str
    nftables: Optional[tuple] = None  # (dnat, masq, verdict) where the nftables mode differs by design

    def expected(self, mode: str) -> tuple:
        return self.nftables if mode == "nftables" and self.nftables else (self.dnat, self.masq, self.verdict)


PACKETS = [
    Row("pod -> ClusterIP lands on a ready backend at its named target port, unmasqueraded",
        W1, "PREROUTING", CLIENT, cluster_ip(STATE, "backend"), "tcp", 80, at(BACKEND, 8080), False, "ACCEPT"),
    Row("the same on control-plane",
        "control-plane", "PREROUTING", pod_ip(STATE, "client", "control-plane"), cluster_ip(STATE, "backend"),
        "tcp", 80, at(BACKEND, 8080), False, "ACCEPT"),
    Row("the UDP port goes to the named UDP target port",
        W1, "PREROUTING", CLIENT, cluster_ip(STATE, "backend"), "udp", 53, at(BACKEND, 5353), False, "ACCEPT"),
    Row("the UDP port over TCP: iptables passes it on untouched, nftables rejects a port the ClusterIP does not serve",
        W1, "PREROUTING", CLIENT, cluster_ip(STATE, "backend"), "tcp", 53, None, False, "ACCEPT",
        nftables=(None, False, "REJECT")),
    Row("a source outside the cluster -> ClusterIP is masqueraded",
        W1, "PREROUTING", OUTSIDE, cluster_ip(STATE, "backend"), "tcp", 80, at(BACKEND, 8080), True, "ACCEPT"),
    Row("the node itself -> ClusterIP is masqueraded (its source is not a pod's)",
        W1, "OUTPUT", node_ip(W1), cluster_ip(STATE, "backend"), "tcp", 80, at(BACKEND, 8080), True, "ACCEPT"),
    Row("no ready endpoints: rejected from a pod",
        W1, "PREROUTING", CLIENT, cluster_ip(STATE, "warming"), "tcp", 80, None, False, "REJECT"),
    Row("no ready endpoints: rejected from the node",
        W1, "OUTPUT", node_ip(W1), cluster_ip(STATE, "warming"), "tcp", 80, None, False, "REJECT"),
    Row("publishNotReadyAddresses: the unready pods are used",
        W1, "PREROUTING", CLIENT, cluster_ip(STATE, "warming-published"), "tcp", 80, at(WARMING, 8080), False,
        "ACCEPT"),
    Row("NodePort from outside: DNAT to any backend, masqueraded",
        W1, "PREROUTING", OUTSIDE, node_ip(W1), "tcp", 30080, at(BACKEND, 8080), True, "ACCEPT"),
    Row("NodePort on another node's address is not this node's business",
        W1, "PREROUTING", OUTSIDE, node_ip("worker2"), "tcp", 30080, None, False, "ACCEPT"),
    Row("NodePort from a pod: masqueraded too (eTP Cluster masquerades all external destinations)",
        W1, "PREROUTING", CLIENT, node_ip(W1), "tcp", 30080, at(BACKEND, 8080), True, "ACCEPT"),
    Row("NodePort on 127.0.0.1 from the node: iptables serves it (addrtype LOCAL), nftables does not",
        W1, "OUTPUT", "127.0.0.1", "127.0.0.1", "tcp", 30080, at(BACKEND, 8080), True, "ACCEPT",
        nftables=(None, False, "ACCEPT")),
    Row("eTP Local from outside: the local backend, client address kept",
        W1, "PREROUTING", OUTSIDE, node_ip(W1), "tcp", 30081, at(pod_ip(STATE, "backend", W1), 8080), False, "ACCEPT"),
    Row("eTP Local from a pod: short-circuited to all backends, not masqueraded",
        W1, "PREROUTING", CLIENT, node_ip(W1), "tcp", 30081, at(BACKEND, 8080), False, "ACCEPT"),
    Row("eTP Local from the node itself: all backends, masqueraded",
        W1, "OUTPUT", node_ip(W1), node_ip(W1), "tcp", 30081, at(BACKEND, 8080), True, "ACCEPT"),
    Row("iTP Local: only this node's endpoint",
        W1, "PREROUTING", CLIENT, cluster_ip(STATE, "node-local"), "tcp", 80,
        at(pod_ip(STATE, "backend", W1), 8080), False, "ACCEPT"),
    Row("iTP Local on control-plane: its own endpoint",
        "control-plane", "PREROUTING", pod_ip(STATE, "client", "control-plane"), cluster_ip(STATE, "node-local"),
        "tcp", 80, at(pod_ip(STATE, "backend", "control-plane"), 8080), False, "ACCEPT"),
    Row("a wrong port on a ClusterIP: iptables matches nothing, nftables rejects it",
        W1, "PREROUTING", CLIENT, cluster_ip(STATE, "backend"), "tcp", 8080, None, False, "ACCEPT",
        nftables=(None, False, "REJECT")),
    Row("an unallocated address of the service CIDR: iptables routes it on, nftables drops it",
        W1, "PREROUTING", CLIENT, "10.96.0.99", "tcp", 80, None, False, "ACCEPT", nftables=(None, False, "DROP")),
    Row("a headless Service's pods are reached directly, untouched",
        W1, "PREROUTING", CLIENT, pod_ip(STATE, "backend", "worker2"), "tcp", 8080, None, False, "ACCEPT"),
    Row("pod -> pod outside any Service is untouched",
        W1, "PREROUTING", CLIENT, pod_ip(STATE, "client", "worker2"), "tcp", 80, None, False, "ACCEPT"),
    Row("the node -> outside keeps its address",
        W1, "OUTPUT", node_ip(W1), OUTSIDE, "tcp", 80, None, False, "ACCEPT"),
    Row("a pod -> outside is masqueraded by ip-masq-agent",
        W1, "PREROUTING", CLIENT, OUTSIDE, "tcp", 80, None, True, "ACCEPT"),
]


def packet(what: str) -> Row:
    return next(r for r in PACKETS if r.what.startswith(what))


def check(rs: Sim, row: Row, mode: str, connections: int = 20) -> None:
    """Several connections: every backend the dice pick must be allowed."""
    dnat, masq, verdict = row.expected(mode)
    for _ in range(connections):
        out = rs.trace(Packet(row.src, row.dst, row.proto, row.dport), row.hook)
        assert (out.dnat in dnat) if dnat else out.dnat is None, (out.dnat, out.path)
        assert out.masquerade is masq, out.path
        assert out.verdict == verdict, out.path


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("row", PACKETS, ids=[r.what for r in PACKETS])
def test_packet(mode, row):
    check(fresh_node(mode, STATE, row.node, random=random.Random(row.what).random), row, mode)


# --- behaviours over many connections ---

AFFINITY_HIT = {"iptables": "--rcheck", "nftables": "ip saddr @affinity-"}   # the rule that pins a client


@pytest.mark.parametrize("mode", MODES)
def test_hairpin_is_masqueraded(mode):
    """A backend reaching its own Service: only when it lands on itself is it masqueraded (else
    the reply would come from its own address and be dropped)."""
    me = pod_ip(STATE, "backend", W1)
    rs = fresh_node(mode, STATE, W1, random=random.Random(3).random)
    outs = [rs.trace(Packet(me, cluster_ip(STATE, "backend"), "tcp", 80), "PREROUTING") for _ in range(60)]
    assert {o.masquerade for o in outs if o.dnat == f"{me}:8080"} == {True}
    assert {o.masquerade for o in outs if o.dnat != f"{me}:8080"} == {False}


@pytest.mark.parametrize("mode", MODES)
def test_spreading_is_even(mode):
    rs = fresh_node(mode, STATE, W1, random=random.Random(2024).random)
    hits = Counter(rs.trace(Packet(CLIENT, cluster_ip(STATE, "backend")), "PREROUTING").dnat for _ in range(3000))
    assert set(hits) == at(BACKEND, 8080)
    assert all(abs(n - 1000) <= 150 for n in hits.values()), hits     # 1/3 each, within 5 points


@pytest.mark.parametrize("mode", MODES)
def test_session_affinity(mode):
    now = [1000.0]
    rs = fresh_node(mode, STATE, W1, random=random.Random(5).random, clock=lambda: now[0])
    sticky = cluster_ip(STATE, "sticky")
    trace = lambda src: rs.trace(Packet(src, sticky), "PREROUTING")   # noqa: E731
    pinned = lambda out: any(AFFINITY_HIT[mode] in r for r in out.path)   # noqa: E731
    first = trace(CLIENT)
    assert first.dnat in at(BACKEND, 8080) and not pinned(first)
    for _ in range(30):
        now[0] += 10
        again = trace(CLIENT)
        assert again.dnat == first.dnat and pinned(again)
    # other clients are spread independently
    assert len({trace(f"10.244.1.{i}").dnat for i in range(100, 130)}) > 1
    # idle past the timeout (600 s): the next connection is balanced afresh
    now[0] += 600 + 1
    assert not pinned(trace(CLIENT))
    picks = set()
    for _ in range(30):
        now[0] += 601
        picks.add(trace(CLIENT).dnat)
    assert len(picks) > 1


@pytest.mark.parametrize("mode", MODES)
def test_etp_local_drops_on_a_node_without_local_endpoints(mode):
    ready = {**READY, pod_key(STATE, "backend", "worker2"): False}
    rs = fresh_node(mode, STATE, "worker2", slices_of(STATE, ready), random=random.Random(1).random)
    out = rs.trace(Packet(OUTSIDE, node_ip("worker2"), "tcp", 30081), "PREROUTING")
    assert (out.dnat, out.verdict) == (None, "DROP"), out.path
    # pods on that node are not held to the policy: they still reach the remaining backends
    out = rs.trace(Packet(pod_ip(STATE, "client", "worker2"), node_ip("worker2"), "tcp", 30081), "PREROUTING")
    assert out.dnat in at(BACKEND - {pod_ip(STATE, "backend", "worker2")}, 8080) and out.verdict == "ACCEPT"
    # the eTP Cluster NodePort is unaffected
    out = rs.trace(Packet(OUTSIDE, node_ip("worker2"), "tcp", 30080), "PREROUTING")
    assert out.dnat in at(BACKEND, 8080) and out.masquerade


@pytest.mark.parametrize("mode", MODES)
def test_itp_local_without_local_endpoints_drops(mode):
    state = small(**CASES["itp-local"])
    out = fresh_node(mode, state, "n3").trace(Packet("10.244.2.9", "10.96.0.50", "tcp", 80), "PREROUTING")
    assert (out.dnat, out.verdict) == (None, "DROP"), out.path


@pytest.mark.parametrize("mode", MODES)
def test_no_endpoints_nodeport_rejects(mode):
    state = small(**CASES["no-endpoints"])
    rs = fresh_node(mode, state, "n1")
    for dst, port in ((state.node("n1").ip, 30091), ("10.96.0.50", 80)):
        out = rs.trace(Packet(OUTSIDE, dst, "tcp", port), "PREROUTING")
        assert (out.dnat, out.verdict) == (None, "REJECT"), out.path


@pytest.mark.parametrize("mode", MODES)
def test_initial_readiness_rejects_until_probes_pass(mode):
    """Right after `lab up` every probed pod is unready: backend's Services reject, except for
    publishNotReadyAddresses."""
    rs = fresh_node(mode, STATE, W1, slices_of(STATE, initial_readiness(STATE)))
    assert rs.trace(Packet(CLIENT, cluster_ip(STATE, "backend")), "PREROUTING").verdict == "REJECT"
    assert rs.trace(Packet(CLIENT, cluster_ip(STATE, "warming-published")), "PREROUTING").dnat in at(WARMING, 8080)


# --- serving-terminating endpoints (the model's fallback, hand-built slices) ---

def terminating(slices, addresses: set[str], serving: bool = True):
    """The slices with the endpoints at `addresses` terminating: not ready, serving or not."""
    return tuple(replace(s, endpoints=tuple(
        replace(e, ready=False, serving=serving, terminating=True) if e.address in addresses else e
        for e in s.endpoints)) for s in slices)


@pytest.mark.parametrize("mode", MODES)
def test_terminating_endpoints_serve_only_when_nothing_is_ready(mode):
    backend = cluster_ip(STATE, "backend")
    w1, w2 = pod_ip(STATE, "backend", W1), pod_ip(STATE, "backend", "worker2")
    # one endpoint still ready: the terminating ones get nothing
    rs = fresh_node(mode, STATE, W1, terminating(slices_of(STATE), BACKEND - {w1}), random=random.Random(1).random)
    check(rs, Row("", W1, "PREROUTING", CLIENT, backend, "tcp", 80, at(w1, 8080), False, "ACCEPT"), mode)
    # none ready: the serving-terminating ones take the traffic, the not-serving one does not
    slices = terminating(terminating(slices_of(STATE), BACKEND - {w1}), {w1}, serving=False)
    rs = fresh_node(mode, STATE, W1, slices, random=random.Random(1).random)
    check(rs, Row("", W1, "PREROUTING", CLIENT, backend, "tcp", 80, at(BACKEND - {w1}, 8080), False, "ACCEPT"), mode)
    # eTP Local: this node's only endpoint terminating while others are ready elsewhere: outside
    # clients still reach it (they were sent here), pods short-circuit to the ready ones
    rs = fresh_node(mode, STATE, "worker2", terminating(slices_of(STATE), {w2}), random=random.Random(1).random)
    nodeport = Row("", "worker2", "PREROUTING", OUTSIDE, node_ip("worker2"), "tcp", 30081, at(w2, 8080), False, "ACCEPT")
    check(rs, nodeport, mode)
    check(rs, nodeport._replace(src=pod_ip(STATE, "client", "worker2"), dnat=at(BACKEND - {w2}, 8080)), mode)


# --- partial syncs: render_update over render, traced ---

def changed(old: ClusterState, old_slices, new: ClusterState, new_slices) -> set[str]:
    """The Services whose spec or slices differ: what the sync passes as `only`."""
    def index(state, slices):
        out = {s.key: [s] for s in state.services}
        for sl in slices:
            out.setdefault(f"{sl.namespace}/{sl.service}", []).append(sl)
        return out
    a, b = index(old, old_slices), index(new, new_slices)
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def _service(state: ClusterState, name: str, **fields) -> ClusterState:
    return replace(state, services=tuple(replace(s, **fields) if s.name == name else s for s in state.services))


def _port(state: ClusterState, name: str, **fields) -> ClusterState:
    svc = state.service("default", name)
    return _service(state, name, ports=tuple(replace(p, **fields) for p in svc.ports))


EXTRA = ServiceState("default", "extra", "ClusterIP", "10.96.0.200",
                     (ServicePortState(name="", protocol="TCP", port=80, target_port="8080"),),
                     selector=(("app", "backend"),))

# name -> (state, readiness): each a step away from (STATE, READY)
CHANGES = {
    "nothing": (STATE, READY),
    "a Service added": (replace(STATE, services=STATE.services + (EXTRA,)), READY),
    "a Service removed": (replace(STATE, services=tuple(s for s in STATE.services if s.name != "sticky")), READY),
    "an endpoint unready": (STATE, {**READY, pod_key(STATE, "backend", "worker2"): False}),
    "every backend unready": (STATE, {**READY, **{p.key: False for p in STATE.pods if p.name.startswith("backend-")}}),
    "warming ready at last": (STATE, {p.key: True for p in STATE.pods}),
    "iTP Local to Cluster": (_service(STATE, "node-local", internal_traffic_policy="Cluster"), READY),
    "eTP Local to Cluster": (_service(STATE, "backend-local", external_traffic_policy="Cluster"), READY),
    "a NodePort moved": (_port(STATE, "backend-nodeport", node_port=30085), READY),
    "affinity off": (_service(STATE, "sticky", session_affinity="None"), READY),
    "a ClusterIP moved": (_service(STATE, "loner", cluster_ip="10.96.0.201"), READY),
}


def iptables_view(rs: iptables_sim.Ruleset) -> dict:
    """The node's rules; kube-proxy's shared chains as multisets (render_update inserts at the top,
    and their rules are disjoint), except that the NodePorts jump stays last."""
    shared = {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"}
    view = {t: {c: sorted(r.text for r in rules) if c in shared else [r.text for r in rules]
                for c, rules in chains.items()} for t, chains in rs.tables.items()}
    view["nat-last"] = rs.tables["nat"]["KUBE-SERVICES"][-1].text
    return view


def nftables_view(rs: nft_sim.Ruleset) -> dict:
    return {name: ({c: (chain.hook, [r.text for r in chain.rules]) for c, chain in t.chains.items()},
                   {s: (c.kind, c.interval, c.timeout, c.elements) for s, c in t.sets.items()})
            for name, t in rs.tables.items()}


def view(mode: str, rs: Sim) -> dict:
    return iptables_view(rs) if mode == "iptables" else nftables_view(rs)


def updated(mode: str, old: tuple, new: tuple, node: str, **sim) -> tuple[Sim, str]:
    """A node synced to `old`, then partially synced to `new` as the agent does it."""
    (old_state, old_ready), (new_state, new_ready) = old, new
    old_slices, new_slices = slices_of(old_state, old_ready), slices_of(new_state, new_ready)
    rs = fresh_node(mode, old_state, node, old_slices, **sim)
    text = render_update(mode, old_state, new_state, node, old_slices, new_slices,
                         changed(old_state, old_slices, new_state, new_slices))
    apply(mode, rs, text)
    return rs, text


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("node", [W1, "worker2"])
@pytest.mark.parametrize("change", CHANGES)
def test_update_leaves_what_a_full_sync_leaves(mode, node, change):
    new = CHANGES[change]
    rs, text = updated(mode, (STATE, READY), new, node)
    assert view(mode, rs) == view(mode, fresh_node(mode, new[0], node, slices_of(*new)))
    assert (text == "") is (change == "nothing")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("change", [c for c in CHANGES if c != "nothing"])
def test_packets_hold_after_an_update_back(mode, change):
    """From each changed state back to services.yaml by a partial sync: the whole table holds."""
    rs, _ = updated(mode, CHANGES[change], (STATE, READY), W1, random=random.Random(change).random)
    for row in PACKETS:
        if row.node == W1:
            check(rs, row, mode, connections=5)


@pytest.mark.parametrize("mode", MODES)
def test_update_moves_traffic_at_once(mode):
    """The changes themselves, traced: new Service reachable, removed one gone, unready endpoint
    skipped, NodePort answering on its new port only."""
    rs, _ = updated(mode, (STATE, READY), CHANGES["a Service added"], W1, random=random.Random(7).random)
    assert rs.trace(Packet(CLIENT, "10.96.0.200"), "PREROUTING").dnat in at(BACKEND, 8080)
    rs, _ = updated(mode, (STATE, READY), CHANGES["a Service removed"], W1)
    assert rs.trace(Packet(CLIENT, cluster_ip(STATE, "sticky")), "PREROUTING").dnat is None
    rs, _ = updated(mode, (STATE, READY), CHANGES["an endpoint unready"], W1, random=random.Random(7).random)
    gone = pod_ip(STATE, "backend", "worker2")
    check(rs, packet("pod -> ClusterIP")._replace(dnat=at(BACKEND - {gone}, 8080)), mode)
    rs, _ = updated(mode, (STATE, READY), CHANGES["a NodePort moved"], W1, random=random.Random(7).random)
    check(rs, packet("NodePort from outside")._replace(dport=30085), mode)
    assert rs.trace(Packet(OUTSIDE, node_ip(W1), "tcp", 30080), "PREROUTING").dnat is None
