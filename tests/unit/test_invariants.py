"""lab.probe.invariants, the pure parts: which probes the harness sends and how it judges replies.

Only expectations(), check_expectations(), judge() and judge_pod_ips() are exercised; run() needs
real network namespaces and is covered by the integration tests.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lab.controlplane.plan import plan
from lab.controlplane.state import CheckState, ClusterState
from lab.probe.engine import REFUSED, SILENCE, Probe, ProbeResult
from lab.probe.invariants import (
    INVARIANTS, Expectation, check_expectations, expectations, judge, judge_pod_ips,
)
from lab.topology.model import Topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def state() -> ClusterState:
    """The shipped vxlan topology without the kube-dns add-on, so the counts below are its own pods'."""
    doc = yaml.safe_load((ROOT / "topologies" / "vxlan.yaml").read_text())
    doc["cluster"]["dns"] = {"enabled": False}
    return plan(Topology.model_validate(doc))


@pytest.fixture(scope="module")
def exps(state) -> list[Expectation]:
    return expectations(state)


def of(exps, check):
    return [e for e in exps if e.check == check]


def pod(state, prefix):
    return [p for p in state.pods if p.name.startswith(prefix)]


def reply(e: Expectation, source: str | None) -> ProbeResult:
    return ProbeResult(e.probe, True, source, None, 0.01)


def no_reply(e: Expectation, error: str = "timeout after 1.0s (connecting)") -> ProbeResult:
    return ProbeResult(e.probe, False, None, error, 1.0)


# --- expectations() on the shipped vxlan topology ---

def test_expectation_counts(state, exps):
    sources = [p for p in state.pods if not p.host_network]
    targets = [p for p in state.pods if p.probe_port() is not None]
    assert (len(sources), len(targets)) == (6, 7)
    pairs = sum(1 for s in sources for t in targets if t.key != s.key)
    assert pairs == len(sources) * len(targets) - len([s for s in sources if s in targets]) == 36
    counts = Counter(e.check for e in exps)
    assert counts == {"pod-to-pod": 36, "node-to-pod": 3 * 6, "hostnetwork-to-pod": 1 * 6,
                      "localhost": 2, "checks": 6 + 6 + 3}
    assert set(counts) <= set(INVARIANTS)


def test_pod_to_pod_expects_the_senders_pod_ip(state, exps):
    by_netns = {p.netns: p for p in state.pods if not p.host_network}
    seen_pairs = set()
    for e in of(exps, "pod-to-pod"):
        src = by_netns[e.probe.src_netns]
        dst = next(p for p in state.pods if p.ip == e.probe.dst_ip and p.probe_port() == e.probe.port)
        # to a hostNetwork pod (a node address) only reachability is promised: CNIs may masquerade
        assert e.source == (None if dst.host_network else src.ip)
        assert e.reply is True and e.probe.protocol == "TCP"
        assert src.key != dst.key
        note = ", hostNetwork" if dst.host_network else ""
        assert e.subject == f"{src.key} ({src.ip}) -> {dst.key} ({dst.ip}:{dst.probe_port()}{note})"
        seen_pairs.add((src.key, dst.key))
    assert len(seen_pairs) == 36  # no pair twice


def test_pod_to_pod_ports_are_each_targets_first_tcp_netexec_port(state, exps):
    port = {"backend": 8080, "frontend": 80, "sidecar-demo": 8080, "node-agent": 10250}
    want = {(p.ip, port[p.owner.split("/")[1] if p.owner else p.name]) for p in state.pods}
    assert {(e.probe.dst_ip, e.probe.port) for e in of(exps, "pod-to-pod")} == want
    assert ("172.18.0.3", 10250) in want  # the hostNetwork pod is a target, at its node's IP


def test_node_to_pod(state, exps):
    got = of(exps, "node-to-pod")
    assert {e.probe.src_netns for e in got} == {n.netns for n in state.nodes}
    assert {e.probe.dst_ip for e in got} == {p.ip for p in state.pods if not p.host_network}
    assert all(e.source is None and e.reply for e in got)
    assert "node/worker1 -> default/sidecar-demo (10.244.2.3:8080)" in {e.subject for e in got}


def test_hostnetwork_to_pod(state, exps):
    got = of(exps, "hostnetwork-to-pod")
    assert {e.probe.src_netns for e in got} == {"vxlan-worker1"}
    assert sorted(e.probe.dst_ip for e in got) == sorted(p.ip for p in state.pods if not p.host_network)
    assert all(e.subject.startswith("default/node-agent (hostNetwork) -> ") for e in got)


def test_localhost_only_for_the_two_container_pod(state, exps):
    got = of(exps, "localhost")
    assert [(e.subject, e.probe) for e in got] == [
        ("default/sidecar-demo: app -> proxy (127.0.0.1:9090/TCP)",
         Probe("vxlan-default-sidecar-demo", "127.0.0.1", 9090, "TCP")),
        ("default/sidecar-demo: proxy -> app (127.0.0.1:8080/TCP)",
         Probe("vxlan-default-sidecar-demo", "127.0.0.1", 8080, "TCP")),
    ]


def test_expectations_are_deterministic(state):
    assert expectations(state) == expectations(state)


# --- the topology's checks ---

def test_deploy_to_deploy_check_expands_to_every_pair(state, exps):
    got = [e for e in of(exps, "checks") if e.subject.startswith("deploy/frontend -> deploy/backend:8080")]
    frontends, backends = pod(state, "frontend-"), pod(state, "backend-")
    assert len(got) == len(frontends) * len(backends) == 2 * 3
    assert {(e.probe.src_netns, e.probe.dst_ip) for e in got} == {(f.netns, b.ip) for f in frontends for b in backends}
    assert all(e.probe.port == 8080 and e.probe.protocol == "TCP" and e.reply is True and e.source is None
               for e in got)


def test_udp_check(state, exps):
    got = [e for e in of(exps, "checks") if "(UDP)" in e.subject]
    assert len(got) == 6
    assert {e.probe.port for e in got} == {8081} and {e.probe.protocol for e in got} == {"UDP"}


def test_refused_check_expects_a_refusal(state, exps):
    got = [e for e in of(exps, "checks") if " refused" in e.subject]
    assert len(got) == 3
    assert all(e.reply is False and e.want == REFUSED for e in got)
    assert {e.probe.src_netns for e in got} == {"vxlan-default-sidecar-demo"}
    assert {(e.probe.dst_ip, e.probe.port) for e in got} == {(b.ip, 9999) for b in pod(state, "backend-")}


def with_checks(state, *checks) -> ClusterState:
    return replace(state, checks=tuple(CheckState(name=n, src=s, dst=d, protocol=p, expect=x)
                                       for n, s, d, p, x in checks))


def test_check_port_defaults_to_the_targets_port_for_the_protocol(state):
    s = with_checks(state, ("tcp", "pod/sidecar-demo", "deploy/backend", "TCP", "allow"),
                    ("udp", "pod/sidecar-demo", "deploy/backend", "UDP", "allow"))
    got = check_expectations(s)
    assert sorted({(e.subject.split(":")[0], e.probe.port) for e in got}) == [("tcp", 8080), ("udp", 8081)]


def test_check_between_machines_and_pods(state):
    s = with_checks(state, ("n2p", "node/worker1", "pod/sidecar-demo", "TCP", "allow"),
                    ("h2p", "host/internet", "default/pod/node-agent", "TCP", "allow"),
                    ("p2h", "pod/sidecar-demo", "host/internet:80", "TCP", "deny"))
    got = {e.subject.split(":")[0]: e for e in check_expectations(s)}
    assert got["n2p"].probe == Probe("vxlan-worker1", "10.244.2.3", 8080, "TCP")
    assert got["h2p"].probe == Probe("vxlan-internet", "172.18.0.3", 10250, "TCP")
    assert got["p2h"].probe == Probe("vxlan-default-sidecar-demo", "172.18.0.5", 80, "TCP")
    assert got["p2h"].reply is False
    assert got["p2h"].subject == "p2h: default/sidecar-demo -> host/internet (172.18.0.5:80/TCP)"


def test_check_to_a_target_without_port_gets_port_0(state):
    s = with_checks(state, ("noport", "pod/sidecar-demo", "node/worker2", "TCP", "allow"),
                    ("noudp", "pod/sidecar-demo", "deploy/frontend", "UDP", "allow"))
    got = check_expectations(s)
    assert len(got) == 1 + 2
    assert all(e.probe.port == 0 for e in got)
    assert got[0].subject == "noport: default/sidecar-demo -> node/worker2 (172.18.0.4:None/TCP)"


# --- judge() ---

@pytest.fixture(scope="module")
def p2p(exps) -> Expectation:
    return of(exps, "pod-to-pod")[0]


def test_judge_reply_with_the_right_source_passes(p2p):
    o = judge(p2p, reply(p2p, p2p.source))
    assert (o.check, o.subject, o.passed) == ("pod-to-pod", p2p.subject, True)
    assert o.expected == f"reply, source seen {p2p.source}"
    assert o.observed == f"reply, source seen {p2p.source}"


def test_judge_reply_with_the_wrong_source_fails_and_says_nat(p2p):
    o = judge(p2p, reply(p2p, "172.18.0.2"))
    assert o.passed is False
    assert o.expected == f"reply, source seen {p2p.source}"
    assert "172.18.0.2" in o.observed and "NAT" in o.observed


def test_judge_timeout_fails_with_the_error(p2p):
    o = judge(p2p, no_reply(p2p, "timeout after 1.0s (connecting)"))
    assert o.passed is False
    assert o.observed == "no reply at any of 1 try: timeout after 1.0s (connecting)"
    assert "NAT" not in o.observed


def test_judge_reply_without_expected_source_accepts_any(exps):
    e = of(exps, "node-to-pod")[0]
    o = judge(e, reply(e, "10.9.9.9"))
    assert o.passed is True and o.expected == "reply"


def test_judge_deny(state):
    st = with_checks(state, ("d", "pod/sidecar-demo", "deploy/backend:8080", "TCP", "deny"))
    e = check_expectations(st)[0]
    assert e.want == SILENCE
    ok = judge(e, no_reply(e, "timeout after 1.0s (connecting)"))
    assert ok.passed is True
    assert ok.expected == "no reply at any try (denied)"
    assert ok.observed == "no reply at any of 1 try: timeout after 1.0s (connecting)"
    bad = judge(e, reply(e, "10.244.2.3"))
    assert bad.passed is False
    assert bad.observed == "reply, source seen 10.244.2.3"


@pytest.mark.parametrize("expect_reply", [True, False])
@pytest.mark.parametrize("result_ok", [True, False])
def test_judge_port_0_fails_with_a_hint(expect_reply, result_ok):
    e = Expectation("checks", "c: a -> node/n (1.2.3.4:None/TCP)", Probe("ns", "1.2.3.4", 0), reply=expect_reply)
    r = ProbeResult(Probe("", "", 0), result_ok, "1.1.1.1" if result_ok else None, None if result_ok else "x", 0.0)
    o = judge(e, r)
    assert o.passed is False
    assert o.expected == "a port to probe"
    assert "kind/name:PORT" in o.observed


# --- judge_pod_ips() ---

def all_good(state, exps):
    eth0 = {p.netns: [p.ip] for p in state.pods if not p.host_network}
    results = [(e, reply(e, e.source)) for e in exps if e.check == "pod-to-pod"]
    return eth0, results


def test_judge_pod_ips_passes_when_everything_agrees(state, exps):
    eth0, results = all_good(state, exps)
    out = judge_pod_ips(state, eth0, results)
    assert [o.subject for o in out] == [p.key for p in state.pods if not p.host_network]
    assert all(o.passed and o.check == "pod-ip" for o in out)
    sidecar = next(o for o in out if o.subject == "default/sidecar-demo")
    assert sidecar.expected == "10.244.2.3 everywhere"
    assert sidecar.observed == "eth0=10.244.2.3, seen by others=10.244.2.3"


def test_judge_pod_ips_fails_when_eth0_differs(state, exps):
    eth0, results = all_good(state, exps)
    eth0["vxlan-default-sidecar-demo"] = ["10.244.2.99"]
    out = {o.subject: o for o in judge_pod_ips(state, eth0, results)}
    assert out["default/sidecar-demo"].passed is False
    assert out["default/sidecar-demo"].observed.startswith("eth0=10.244.2.99,")
    assert [k for k, o in out.items() if not o.passed] == ["default/sidecar-demo"]


def test_judge_pod_ips_fails_on_a_second_address_or_none(state, exps):
    eth0, results = all_good(state, exps)
    eth0["vxlan-default-sidecar-demo"] = ["10.244.2.3", "10.244.2.4"]
    del eth0[pod(state, "frontend-")[0].netns]
    out = {o.subject: o for o in judge_pod_ips(state, eth0, results)}
    assert out["default/sidecar-demo"].passed is False
    front = out[pod(state, "frontend-")[0].key]
    assert front.passed is False and front.observed.startswith("eth0=none,")


def test_judge_pod_ips_fails_when_a_seen_source_differs(state, exps):
    eth0, _ = all_good(state, exps)
    sender = pod(state, "backend-")[0]
    results = []
    for e in of(exps, "pod-to-pod"):
        nat = e.probe.src_netns == sender.netns and e.probe.dst_ip == "10.244.2.3"
        results.append((e, reply(e, "172.18.0.2" if nat else e.source)))
    out = {o.subject: o for o in judge_pod_ips(state, eth0, results)}
    assert [k for k, o in out.items() if not o.passed] == [sender.key]
    assert out[sender.key].observed == f"eth0={sender.ip}, seen by others={sender.ip},172.18.0.2"


def test_judge_pod_ips_ignores_failures_and_other_checks(state, exps):
    eth0, results = all_good(state, exps)
    results = [(e, no_reply(e)) for e, _ in results]
    results += [(e, reply(e, "6.6.6.6")) for e in exps if e.check in ("node-to-pod", "checks", "localhost")]
    out = judge_pod_ips(state, eth0, results)
    assert not any(o.passed or o.unchecked for o in out)  # probes were sent, none answered: no evidence
    assert all(o.observed.endswith("seen by others=nothing (none of its pod-to-pod probes was answered: no evidence)")
               for o in out)


def test_a_run_for_some_rows_sends_only_their_probes(monkeypatch):
    """`check: {only: [...]}` (scenarios, exercises) must not pay for every other row."""
    from lab.probe import invariants

    state = plan(Topology.model_validate({**yaml.safe_load((ROOT / "topologies" / "vxlan.yaml").read_text()),
                                          "cluster": {"network": "vxlan", "dns": {"enabled": False}}}))
    sent = []

    def probes(batch, timeout, expect, cgroups):
        sent.extend(batch)
        return [ProbeResult(p, True, None, None, 0.01) for p in batch]

    monkeypatch.setattr(invariants, "run_probes", probes)
    monkeypatch.setattr(invariants, "interface_addresses_many", lambda pairs: {})
    outcomes = invariants.run(state, only=["node-to-pod"])
    assert {o.check for o in outcomes} == {"node-to-pod"}
    assert len(sent) == len(of(expectations(state), "node-to-pod"))


# --- the topology's checks on a dual-stack cluster: a row per family ---

@pytest.fixture(scope="module")
def dual() -> ClusterState:
    return plan(Topology.model_validate(yaml.safe_load((ROOT / "topologies" / "dual-stack.yaml").read_text())))


def test_a_dual_stack_check_has_a_row_per_family_to_that_familys_address(dual):
    rows = check_expectations(dual)
    backends = pod(dual, "backend")
    assert len(backends) == 3 and len(rows) == 6
    assert {e.probe.dst_ip for e in rows} == {ip for p in backends for ip in p.pod_ips}
    assert {e.probe.src_netns for e in rows} == {next(p.netns for p in dual.pods if p.name == "client")}
    b, name = backends[0], "pod/client -> deploy/backend:8080 (TCP) allow"
    assert {e.subject for e in rows if e.probe.dst_ip in b.pod_ips} == {
        f"{name}: default/client -> {b.key} ({b.ip_of(4)}:8080/TCP)",
        f"{name}: default/client -> {b.key} ([{b.ip_of(6)}]:8080/TCP)"}


def test_each_row_probes_only_the_families_both_ends_have(dual):
    s = with_checks(dual, ("n2p", "node/worker1", "pod/client:8080", "TCP", "allow"),
                    ("h2p", "host/internet", "pod/client:8080", "TCP", "allow"),
                    ("svc", "pod/client", "svc/backend", "TCP", "allow"),
                    ("svc6", "pod/client", "svc/backend-v6", "TCP", "allow"))
    by = Counter(e.subject.split(":")[0] for e in check_expectations(s))
    assert by == {"n2p": 2, "h2p": 2, "svc": 2, "svc6": 1}
    backend = next(x for x in dual.services if x.name == "backend")
    v6 = next(x for x in dual.services if x.name == "backend-v6")
    dsts = {e.probe.dst_ip for e in check_expectations(s) if e.subject.startswith("svc")}
    assert dsts == {*backend.cluster_ips, v6.cluster_ip} and len(backend.cluster_ips) == 2
    worker1 = next(n for n in dual.nodes if n.name == "worker1")
    assert {e.probe.src_netns for e in check_expectations(s) if e.subject.startswith("n2p")} == {worker1.netns}


def test_only_the_ipv6_rows_fail_when_only_the_ipv6_path_is_broken(dual):
    rows = check_expectations(dual)
    outcomes = [judge(e, reply(e, None) if ":" not in e.probe.dst_ip else no_reply(e)) for e in rows]
    failed = [o.subject for o in outcomes if not o.passed]
    assert len(failed) == 3 and all("([fd00:" in s for s in failed)
    assert all(o.passed for o in outcomes if "([fd00:" not in o.subject)


def test_an_ipv6_only_check_has_ipv6_rows_only():
    state = plan(Topology.model_validate(yaml.safe_load((ROOT / "topologies" / "ipv6-only.yaml").read_text())))
    rows = check_expectations(state)
    assert rows and all(":" in e.probe.dst_ip for e in rows)
