"""kube-proxy's iptables mode (lab.kube_proxy): goldens, packets traced through the rules, resyncs.

The goldens in tests/golden/iptables-<case>.txt hold the exact iptables-restore input: base_rules(),
masq_agent_rules(), render() for worker1 of the shipped topologies/services.yaml (every pod ready
except the never-ready `warming` ones), and small focused cases built from dicts. To regenerate them
after an intended change:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_kube_proxy_iptables.py

then review `git diff tests/golden` by eye before keeping it.

The packet tests load the same text into tests/unit/iptables_sim.py (strict about what
iptables-restore would refuse) and trace new connections through it, kube-proxy-test style.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import replace
from ipaddress import ip_network

import pytest

from lab.controlplane.endpoints import endpoint_slices, initial_readiness
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, ServicePortState, ServiceState
from lab.kube_proxy import chains as ch
from lab.kube_proxy.iptables import base_rules, declared_chains, masq_agent_rules, render
from lab.topology.model import Topology
from tests.unit.golden import check_golden, shipped_state
from tests.unit.iptables_sim import Packet, Ruleset

STATE = shipped_state("services")
READY = {p.key: not p.name.startswith("warming") for p in STATE.pods}   # warming never passes its probe


# --- helpers ---

def pod_ip(state: ClusterState, prefix: str, node: str) -> str:
    return next(p.ip for p in state.pods if p.name.startswith(prefix + "-") and p.node == node)


def pod_ips(state: ClusterState, prefix: str) -> set[str]:
    return {p.ip for p in state.pods if p.name.startswith(prefix + "-")}


def cluster_ip(state: ClusterState, name: str) -> str:
    return state.service("default", name).cluster_ip


def local_addresses(state: ClusterState, node: str) -> list[str]:
    """The node's own addresses: eth0, cni0 (the gateway), flannel.1 (the podCIDR's first), loopback."""
    n = state.node(node)
    return [n.ip, n.gateway, str(ip_network(n.pod_cidr).network_address), "127.0.0.0/8"]


def slices_of(state: ClusterState, ready=None):
    return endpoint_slices(state, READY if ready is None else ready)


def ruleset(state: ClusterState, node: str, ready=None, **sim) -> Ruleset:
    """A fresh node as the lab sets it up: kube-proxy's jumps, ip-masq-agent, then one sync."""
    rs = Ruleset(local_addresses(state, node), **sim)
    rs.restore(base_rules())
    rs.restore(masq_agent_rules(state))
    rs.restore(render(state, node, slices_of(state, ready)))
    return rs


def at(ips, port: int) -> set[str]:
    return {f"{ip}:{port}" for ip in ([ips] if isinstance(ips, str) else ips)}


def snapshot(rs: Ruleset) -> dict:
    return {t: {c: [r.text for r in rules] for c, rules in chains.items()} for t, chains in rs.tables.items()}


# --- small topologies built from dicts: web pods on n1 and n2, nothing on n3 ---

def web_pod(node: str) -> dict:
    ports = [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"web-{node}", "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "netexec", "ports": ports}]}}


def small(**spec) -> ClusterState:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"clusterIP": "10.96.0.50", "selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8080}], **spec}}
    doc = {"name": "kp", "nodes": [{"name": "n1"}, {"name": "n2"}, {"name": "n3"}],
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
GOLDEN_CASES = [("affinity", "n1"), ("etp-local", "n1"), ("etp-local", "n3"), ("headless", "n1"),
                ("no-endpoints", "n1"), ("udp", "n1"), ("itp-local", "n1"), ("itp-local", "n3")]


# --- goldens ---

def test_golden_services_worker1():
    check_golden("iptables-services-worker1.txt", render(STATE, "worker1", slices_of(STATE)))


def test_golden_base_rules():
    check_golden("iptables-base.txt", base_rules())


def test_golden_masq_agent():
    check_golden("iptables-masq-agent.txt", masq_agent_rules(STATE))


@pytest.mark.parametrize("case,node", GOLDEN_CASES)
def test_golden_small(case, node):
    state = small(**CASES[case])
    check_golden(f"iptables-{case}-{node}.txt", render(state, node, slices_of(state)))


@pytest.mark.parametrize("node", [n.name for n in STATE.nodes])
@pytest.mark.parametrize("readiness", ["golden", "initial"])
def test_every_rendering_restores(node, readiness):
    """The simulator refuses what iptables-restore would: unknown options, undeclared chains,
    jumps to missing chains. Applying the same sync twice changes nothing."""
    ready = READY if readiness == "golden" else initial_readiness(STATE)
    rs = ruleset(STATE, node, ready)
    before = snapshot(rs)
    rs.restore(render(STATE, node, slices_of(STATE, ready)))
    assert snapshot(rs) == before


@pytest.mark.parametrize("case,node", GOLDEN_CASES)
def test_small_cases_restore(case, node):
    state = small(**CASES[case])
    Ruleset(local_addresses(state, node)).restore(base_rules() + render(state, node, slices_of(state)))


def test_text_shape():
    """One table after the other, each chain declared before it is used, COMMIT closing each."""
    text = render(STATE, "worker1", slices_of(STATE))
    assert [l for l in text.splitlines() if l.startswith(("*", "COMMIT"))] == ["*filter", "COMMIT", "*nat", "COMMIT"]
    assert text.endswith("COMMIT\n")
    assert not re.search(r"^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ", text, re.M), "never reset a builtin"


# --- packets, kube-proxy-test style ---

W1 = "worker1"
OUTSIDE = "172.18.0.5"                     # the `internet` host on the underlay
BACKEND = pod_ips(STATE, "backend")
WARMING = pod_ips(STATE, "warming")


def node_ip(name: str) -> str:
    return STATE.node(name).ip


# (what, node, hook, src, dst, proto, dport, allowed DNAT targets (None: none), masquerade, verdict)
PACKETS = [
    ("pod -> ClusterIP lands on a ready backend at its named target port, unmasqueraded",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), cluster_ip(STATE, "backend"), "tcp", 80, at(BACKEND, 8080), False, "ACCEPT"),
    ("the same on control-plane",
     "control-plane", "PREROUTING", pod_ip(STATE, "client", "control-plane"), cluster_ip(STATE, "backend"), "tcp", 80,
     at(BACKEND, 8080), False, "ACCEPT"),
    ("the UDP port goes to the named UDP target port",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), cluster_ip(STATE, "backend"), "udp", 53, at(BACKEND, 5353), False, "ACCEPT"),
    ("the UDP port is not reachable over TCP",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), cluster_ip(STATE, "backend"), "tcp", 53, None, False, "ACCEPT"),
    ("a source outside the cluster -> ClusterIP is masqueraded",
     W1, "PREROUTING", OUTSIDE, cluster_ip(STATE, "backend"), "tcp", 80, at(BACKEND, 8080), True, "ACCEPT"),
    ("the node itself -> ClusterIP is masqueraded (its source is not a pod's)",
     W1, "OUTPUT", node_ip(W1), cluster_ip(STATE, "backend"), "tcp", 80, at(BACKEND, 8080), True, "ACCEPT"),
    ("no ready endpoints: rejected from a pod",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), cluster_ip(STATE, "warming"), "tcp", 80, None, False, "REJECT"),
    ("no ready endpoints: rejected from the node",
     W1, "OUTPUT", node_ip(W1), cluster_ip(STATE, "warming"), "tcp", 80, None, False, "REJECT"),
    ("publishNotReadyAddresses: the unready pods are used",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), cluster_ip(STATE, "warming-published"), "tcp", 80, at(WARMING, 8080),
     False, "ACCEPT"),
    ("NodePort from outside: DNAT to any backend, masqueraded",
     W1, "PREROUTING", OUTSIDE, node_ip(W1), "tcp", 30080, at(BACKEND, 8080), True, "ACCEPT"),
    ("NodePort on another node's address is not this node's business",
     W1, "PREROUTING", OUTSIDE, node_ip("worker2"), "tcp", 30080, None, False, "ACCEPT"),
    ("NodePort from a pod: masqueraded too (eTP Cluster masquerades all external destinations)",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), node_ip(W1), "tcp", 30080, at(BACKEND, 8080), True, "ACCEPT"),
    ("NodePort on 127.0.0.1 from the node (addrtype LOCAL)",
     W1, "OUTPUT", "127.0.0.1", "127.0.0.1", "tcp", 30080, at(BACKEND, 8080), True, "ACCEPT"),
    ("eTP Local from outside: the local backend, client address kept",
     W1, "PREROUTING", OUTSIDE, node_ip(W1), "tcp", 30081, at(pod_ip(STATE, "backend", W1), 8080), False, "ACCEPT"),
    ("eTP Local from a pod: short-circuited to all backends, not masqueraded",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), node_ip(W1), "tcp", 30081, at(BACKEND, 8080), False, "ACCEPT"),
    ("eTP Local from the node itself: all backends, masqueraded",
     W1, "OUTPUT", node_ip(W1), node_ip(W1), "tcp", 30081, at(BACKEND, 8080), True, "ACCEPT"),
    ("iTP Local: only this node's endpoint",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), cluster_ip(STATE, "node-local"), "tcp", 80,
     at(pod_ip(STATE, "backend", W1), 8080), False, "ACCEPT"),
    ("iTP Local on control-plane: its own endpoint",
     "control-plane", "PREROUTING", pod_ip(STATE, "client", "control-plane"), cluster_ip(STATE, "node-local"), "tcp", 80,
     at(pod_ip(STATE, "backend", "control-plane"), 8080), False, "ACCEPT"),
    ("a wrong port on a ClusterIP matches nothing",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), cluster_ip(STATE, "backend"), "tcp", 8080, None, False, "ACCEPT"),
    ("a headless Service's pods are reached directly, untouched",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), pod_ip(STATE, "backend", "worker2"), "tcp", 8080, None, False, "ACCEPT"),
    ("pod -> pod outside any Service is untouched",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), pod_ip(STATE, "client", "worker2"), "tcp", 80, None, False, "ACCEPT"),
    ("the node -> outside keeps its address",
     W1, "OUTPUT", node_ip(W1), OUTSIDE, "tcp", 80, None, False, "ACCEPT"),
    ("a pod -> outside is masqueraded by ip-masq-agent",
     W1, "PREROUTING", pod_ip(STATE, "client", W1), OUTSIDE, "tcp", 80, None, True, "ACCEPT"),
]


@pytest.mark.parametrize("what,node,hook,src,dst,proto,dport,dnat,masq,verdict", PACKETS, ids=[p[0] for p in PACKETS])
def test_packet(what, node, hook, src, dst, proto, dport, dnat, masq, verdict):
    rs = ruleset(STATE, node, random=random.Random(what).random)
    for _ in range(20):                  # several connections: every backend the dice pick must fit
        out = rs.trace(Packet(src, dst, proto, dport), hook)
        assert (out.dnat in dnat) if dnat else out.dnat is None, (out.dnat, out.path)
        assert out.masquerade is masq, out.path
        assert out.verdict == verdict, out.path


def test_hairpin_is_masqueraded():
    """A backend reaching its own Service: only when it lands on itself is it masqueraded (else
    the reply would come from its own address and be dropped)."""
    me = pod_ip(STATE, "backend", W1)
    rs = ruleset(STATE, W1, random=random.Random(3).random)
    outs = [rs.trace(Packet(me, cluster_ip(STATE, "backend"), "tcp", 80), "PREROUTING") for _ in range(60)]
    assert {o.masquerade for o in outs if o.dnat == f"{me}:8080"} == {True}
    assert {o.masquerade for o in outs if o.dnat != f"{me}:8080"} == {False}


def test_spreading_is_even():
    rs = ruleset(STATE, W1, random=random.Random(2024).random)
    src = pod_ip(STATE, "client", W1)
    hits = Counter(rs.trace(Packet(src, cluster_ip(STATE, "backend")), "PREROUTING").dnat for _ in range(3000))
    assert set(hits) == at(BACKEND, 8080)
    assert all(abs(n - 1000) <= 150 for n in hits.values()), hits     # 1/3 each, within 5 points


def test_session_affinity():
    now = [1000.0]
    rs = ruleset(STATE, W1, random=random.Random(5).random, clock=lambda: now[0])
    sticky = cluster_ip(STATE, "sticky")
    trace = lambda src: rs.trace(Packet(src, sticky), "PREROUTING")   # noqa: E731
    client = pod_ip(STATE, "client", W1)
    first = trace(client)
    assert first.dnat in at(BACKEND, 8080) and not any("--rcheck" in r for r in first.path)
    for _ in range(30):
        now[0] += 10
        again = trace(client)
        assert again.dnat == first.dnat and any("--rcheck" in r for r in again.path)
    # other clients are spread independently
    others = {trace(f"10.244.1.{i}").dnat for i in range(100, 130)}
    assert len(others) > 1
    # idle past the timeout (600 s): the next connection is balanced afresh
    now[0] += 600 + 1
    fresh = trace(client)
    assert not any("--rcheck" in r for r in fresh.path)
    picks = set()
    for _ in range(30):
        now[0] += 601
        picks.add(trace(client).dnat)
    assert len(picks) > 1


def test_etp_local_drops_on_a_node_without_local_endpoints():
    ready = {**READY, next(p.key for p in STATE.pods if p.name.startswith("backend-") and p.node == "worker2"): False}
    rs = ruleset(STATE, "worker2", ready, random=random.Random(1).random)
    out = rs.trace(Packet(OUTSIDE, node_ip("worker2"), "tcp", 30081), "PREROUTING")
    assert (out.dnat, out.verdict) == (None, "DROP")
    assert "has no local endpoints" in out.path[-1]
    # pods on that node are not held to the policy: they still reach the remaining backends
    out = rs.trace(Packet(pod_ip(STATE, "client", "worker2"), node_ip("worker2"), "tcp", 30081), "PREROUTING")
    assert out.dnat in at(BACKEND - {pod_ip(STATE, "backend", "worker2")}, 8080) and out.verdict == "ACCEPT"
    # the eTP Cluster NodePort is unaffected
    out = rs.trace(Packet(OUTSIDE, node_ip("worker2"), "tcp", 30080), "PREROUTING")
    assert out.dnat in at(BACKEND, 8080) and out.masquerade


def test_itp_local_without_local_endpoints_drops():
    state = small(**CASES["itp-local"])
    rs = Ruleset(local_addresses(state, "n3"))
    rs.restore(base_rules() + render(state, "n3", slices_of(state)))
    out = rs.trace(Packet("10.244.2.9", "10.96.0.50", "tcp", 80), "PREROUTING")
    assert (out.dnat, out.verdict) == (None, "DROP")


def test_no_endpoints_nodeport_rejects():
    state = small(**CASES["no-endpoints"])
    rs = Ruleset(local_addresses(state, "n1"))
    rs.restore(base_rules() + render(state, "n1", slices_of(state)))
    for dst, port in ((state.node("n1").ip, 30091), ("10.96.0.50", 80)):
        out = rs.trace(Packet(OUTSIDE, dst, "tcp", port), "PREROUTING")
        assert (out.dnat, out.verdict) == (None, "REJECT"), out.path


def test_headless_service_has_no_rules():
    assert "backend-headless" not in render(STATE, W1, slices_of(STATE))
    state = small(**CASES["headless"])
    assert not declared_chains(render(state, "n1", slices_of(state)))


def test_initial_readiness_rejects_until_probes_pass():
    """Right after `lab up` every probed pod is unready: backend's Services reject, except for
    publishNotReadyAddresses."""
    rs = ruleset(STATE, W1, initial_readiness(STATE))
    src = pod_ip(STATE, "client", W1)
    assert rs.trace(Packet(src, cluster_ip(STATE, "backend")), "PREROUTING").verdict == "REJECT"
    assert rs.trace(Packet(src, cluster_ip(STATE, "warming-published")), "PREROUTING").dnat in at(WARMING, 8080)


# --- resync ---

def test_render_is_deterministic():
    assert render(STATE, W1, slices_of(STATE)) == render(STATE, W1, slices_of(STATE))
    assert render(STATE, W1, tuple(reversed(slices_of(STATE)))) == render(STATE, W1, slices_of(STATE))


def without(state: ClusterState, name: str) -> ClusterState:
    return replace(state, services=tuple(s for s in state.services if s.name != name))


def test_removed_service_chains_are_deleted():
    first = render(STATE, W1, slices_of(STATE))
    existing = declared_chains(first)
    state = without(STATE, "sticky")
    second = render(state, W1, slices_of(state), existing=existing)
    gone = existing - declared_chains(second)
    assert gone and all(c.startswith(("KUBE-SVC-", "KUBE-SEP-")) for c in gone)
    for c in gone:
        assert f":{c} - [0:0]" in second and f"-X {c}" in second.splitlines()
        assert not re.search(rf"^-A {c} |-j {c}$", second, re.M)
    assert "default/sticky" not in second
    # on the node: the result is exactly what a fresh node gets from the new state
    rs = ruleset(STATE, W1)
    rs.restore(second)
    assert snapshot(rs) == snapshot(ruleset(state, W1))


def test_endpoint_gone_deletes_its_chains():
    backend_w2 = next(p.key for p in STATE.pods if p.name.startswith("backend-") and p.node == "worker2")
    ready = {**READY, backend_w2: False}
    first = render(STATE, W1, slices_of(STATE))
    second = render(STATE, W1, slices_of(STATE, ready), existing=declared_chains(first))
    gone = declared_chains(first) - declared_chains(second)
    assert gone and all(c.startswith("KUBE-SEP-") for c in gone)
    rs = ruleset(STATE, W1)
    rs.restore(second)
    assert snapshot(rs) == snapshot(ruleset(STATE, W1, ready))


def test_partial_sync_writes_only_the_changed_services():
    full = render(STATE, W1, slices_of(STATE))
    partial = render(STATE, W1, slices_of(STATE), only={"default/backend"})
    alone = replace(STATE, services=(STATE.service("default", "backend"),))
    assert declared_chains(partial) == declared_chains(render(alone, W1, slices_of(alone)))
    assert all(c.startswith(("KUBE-SVC-", "KUBE-SEP-")) for c in declared_chains(partial))
    shared = lambda text: [l for l in text.splitlines()                       # noqa: E731
                           if l.startswith(("-A KUBE-SERVICES", "-A KUBE-NODEPORTS", "-A KUBE-EXTERNAL",
                                            "-A KUBE-POSTROUTING", "-A KUBE-MARK-MASQ", "-A KUBE-FORWARD"))]
    assert shared(partial) == shared(full)          # KUBE-SERVICES still lists every Service
    assert "default/sticky cluster IP" in partial and "KUBE-SVC-" + ch.port_proto_hash("default/sticky", "tcp") in partial
    assert declared_chains(partial, existing=declared_chains(full)) == declared_chains(full)


def test_adding_one_service_is_a_partial_sync():
    extra = ServiceState(namespace="default", name="extra", type="ClusterIP", cluster_ip="10.96.0.200",
                         ports=(ServicePortState(name="", protocol="TCP", port=80, target_port="8080"),),
                         selector=(("app", "backend"),))
    state = replace(STATE, services=STATE.services + (extra,))
    first = render(STATE, W1, slices_of(STATE))
    step = render(state, W1, slices_of(state), existing=declared_chains(first), only={"default/extra"})
    assert len(step) < len(first) / 2
    rs = ruleset(STATE, W1)
    rs.restore(step)
    assert snapshot(rs) == snapshot(ruleset(state, W1))
    out = rs.trace(Packet(pod_ip(STATE, "client", W1), "10.96.0.200"), "PREROUTING")
    assert out.dnat in at(BACKEND, 8080)


# --- names ---

@pytest.mark.parametrize("spn,proto,chain", [
    ("default/kubernetes:https", "TCP", "KUBE-SVC-NPX46M4PTMTKRN6Y"),      # on every real cluster
    ("kube-system/kube-dns:dns", "UDP", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
    ("kube-system/kube-dns:dns-tcp", "TCP", "KUBE-SVC-ERIFXISQEP7F7OF4"),
    ("ns1/svc1:p80", "TCP", "KUBE-SVC-XPGD46QRK7WJZT7O"),                 # kube-proxy's proxier_test.go
])
def test_known_service_chain_names(spn, proto, chain):
    assert ch.svc_chain(spn, proto) == chain
    assert ch.svl_chain(spn, proto) == chain.replace("SVC", "SVL")


def test_known_endpoint_chain_names():
    assert ch.sep_chain("ns1/svc1:p80", "TCP", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert ch.sep_chain("ns1/svc1:p80", "tcp", "10.180.0.2:80") == "KUBE-SEP-LXVODXWDISEETFEF"


def test_service_port_name():
    svc = STATE.service("default", "backend")
    assert [ch.service_port_name(svc, p) for p in svc.ports] == ["default/backend:http", "default/backend:dns"]
    sticky = STATE.service("default", "sticky")
    assert ch.service_port_name(sticky, sticky.ports[0]) == "default/sticky"


def test_chain_names_fit_the_kernel():
    text = "".join(render(STATE, n.name, slices_of(STATE)) for n in STATE.nodes)
    names = set(re.findall(r"^:(\S+) ", text, re.M))
    assert max(len(n) for n in names) <= 28
    for name in names:
        if ch.is_service_chain(name):
            assert len(name) == 25
            assert re.fullmatch(r"KUBE-(SVC|SVL|EXT|SEP)-[A-Z2-7]{16}", name), name
    assert ch.port_proto_hash("default/web", "TCP") == ch.port_proto_hash("default/web", "tcp")
