"""Every verdict says what it saw, and can fail (issue 19, item 1): the one classification of a
probe's result, deny against refused, probe errors, tries and flaky rows, Service rows per client
node, pod-ip without evidence, unchecked Services, clusterip-virtual's ping. Pure: results are
built by hand, no root."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.controlplane.state import CheckState
from lab.probe import asks, report, services
from lab.probe.engine import ERROR, REFUSED, REPLY, SILENCE, Probe, ProbeResult
from lab.probe.invariants import check_expectations, judge, judge_pod_ips, expectations
from lab.probe.outcome import Outcome, mark_flaky
from lab.topology.model import Topology
from tests.unit.golden import shipped_state

TIMEOUT = "timeout after 1.0s (connecting)"
P = Probe("ns", "10.0.0.1", 80)


def res(error: str | None = None, earlier: tuple[str, ...] = (), **kw) -> ProbeResult:
    return ProbeResult(P, error is None, "10.0.0.2" if error is None else None, error, 0.01,
                       attempts=len(earlier) + 1, earlier=earlier, **kw)


# --- one classification ---

@pytest.mark.parametrize("error, kind", [
    (None, REPLY), (TIMEOUT, SILENCE), ("operation not permitted", SILENCE),  # a drop in the sender's OUTPUT
    ("connection refused", REFUSED), ("no route to host", REFUSED), ("network is unreachable", REFUSED),
    ("connection reset by peer", REFUSED),
    ("bind: address already in use", ERROR), ("socket: too many open files", ERROR),
    ("network namespace 'x' does not exist", ERROR), ("bad reply: not HTTP: b'SSH-2.0'", ERROR),
])
def test_each_result_is_one_kind(error, kind):
    assert res(error).kind == kind and res(error).seen == kind


def test_silence_means_every_try_was_silent():
    assert res(TIMEOUT, (SILENCE, SILENCE)).seen == SILENCE
    assert res(TIMEOUT, (REFUSED,)).seen == REFUSED       # a reset at one try is no drop
    assert res(TIMEOUT, (ERROR,)).seen == ERROR           # nor is an error
    assert res("connection refused", (SILENCE,)).seen == REFUSED
    assert res(None, (SILENCE, REFUSED)).seen == REPLY    # a reply is final


def test_a_refusal_at_an_earlier_try_is_said_as_such(vxlan):
    e = one_check(vxlan, "deny")
    o = judge(e, ProbeResult(e.probe, False, None, TIMEOUT, 1.0, attempts=2, earlier=(REFUSED,)))
    assert not o.passed and o.observed.startswith(f"refused at an earlier try, then {TIMEOUT} (2 tries)")
    assert "refused is not denied: a reset or an ICMP unreachable came back" in o.observed


def test_a_refusal_says_why():
    assert res("connection refused").hint == "nothing listens on that port there"
    assert "ICMP host unreachable" in res("no route to host").hint
    assert res(TIMEOUT).hint == ""


# --- deny, refused, errors in the topology's checks ---

@pytest.fixture(scope="module")
def vxlan():
    return shipped_state("vxlan")


def one_check(state, expect: str, dst: str = "deploy/backend:9999"):
    st = replace(state, checks=(CheckState("c", "pod/sidecar-demo", dst, "TCP", expect),))
    return check_expectations(st)[0]


def test_a_deny_on_an_unserved_port_fails_with_the_hint(vxlan):
    e = one_check(vxlan, "deny")
    o = judge(e, ProbeResult(e.probe, False, None, "connection refused", 0.001))
    assert not o.passed and o.expected == "no reply at any try (denied)"
    assert "refused is not denied: nothing listens on that port there" in o.observed
    assert "expect: refused" in o.observed
    assert judge(e, ProbeResult(e.probe, False, None, TIMEOUT, 1.0, attempts=3, earlier=(SILENCE, SILENCE))).passed


def test_expect_refused_passes_on_a_refusal_only(vxlan):
    e = one_check(vxlan, "refused")
    assert e.want == REFUSED
    assert judge(e, ProbeResult(e.probe, False, None, "connection refused", 0.001)).passed
    silent = judge(e, ProbeResult(e.probe, False, None, TIMEOUT, 1.0, attempts=3, earlier=(SILENCE, SILENCE)))
    assert not silent.passed and silent.observed.startswith("no reply at any of 3 tries")
    assert not judge(e, ProbeResult(e.probe, True, "10.244.0.5", None, 0.001)).passed


@pytest.mark.parametrize("expect", ["allow", "deny", "refused"])
@pytest.mark.parametrize("error", ["network namespace 'vxlan-x' does not exist", "bind: address already in use",
                                   "socket: too many open files"])
def test_a_probe_error_fails_under_every_expectation(vxlan, expect, error):
    e = one_check(vxlan, expect)
    o = judge(e, ProbeResult(e.probe, False, None, error, 0.0))
    assert not o.passed and o.observed == f"probe error, nothing judged: {error}"


def test_results_record_their_tries(vxlan):
    e = one_check(vxlan, "allow", "deploy/backend:8080")
    o = judge(e, ProbeResult(e.probe, True, "10.244.2.2", None, 0.01, attempts=2, earlier=(SILENCE,)))
    assert o.passed and o.attempts == 2 and o.retried and "(at try 2)" in o.observed


# --- flaky ---

def row(node: str, attempts: int, passed: bool = True, target: str = "10.96.0.5:80/TCP", settled: bool = False) -> Outcome:
    """A row from `node`; one that needed retries is unconfirmed unless `settled`."""
    return Outcome("service", f"from {node}", passed, "reply", "reply", target=target, attempts=attempts, node=node,
                   settled=settled or attempts == 1)


def test_a_retried_pass_on_one_node_is_flaky_where_another_node_passed_at_once():
    out = mark_flaky([row("a", 1), row("b", 2), row("c", 1)])
    assert [o.passed for o in out] == [True, False, True]
    assert out[1].flaky and out[1].failed
    assert "flaky: passed from node b only at try 2, and a confirmation went unanswered, while from node a " \
           "every probe" in out[1].observed


def test_a_retried_pass_whose_confirmations_answered_is_no_flake():
    """A machine that was merely slow: the reply came late, and the confirmations answered at once."""
    out = mark_flaky([row("a", 1), row("b", 2, settled=True)])
    assert all(o.passed and not o.flaky for o in out) and out[1].retried


def test_retries_everywhere_are_no_flake_only_retried_passes():
    out = mark_flaky([row("a", 2), row("b", 3)])
    assert all(o.passed and o.retried and not o.flaky for o in out)


def test_flaky_compares_the_same_check_and_target_only():
    out = mark_flaky([row("a", 1, target="10.96.0.9:80/TCP"), row("b", 2), row("c", 1, passed=False)])
    assert all(not o.flaky for o in out)  # a's target differs; c failed: it is no steady node
    assert mark_flaky([row("a", 2), Outcome("service", "agg", True, "", "", attempts=1)])[0].passed  # no node


# --- Service rows per client node ---

@pytest.fixture(scope="module")
def svc():
    st = shipped_state("services")
    ready = {p.key: not p.name.startswith("warming-") for p in st.pods}
    sl = endpoint_slices(st, ready)
    return st, services.plan(st, sl)


def test_a_stale_rule_on_one_node_fails_that_nodes_row_only(svc):
    """worker1's rules still send a third of the connections to an old endpoint (silence at the
    first try, a healthy pick at the second): pooled with the other nodes, replies hid it."""
    st, asks = svc
    g = [a for a in asks if a.group.startswith("default/backend:http from node")]
    results = []
    for i, a in enumerate(g):
        server = sorted(a.servers)[i % 3]
        stale = a.node == "worker1" and i % 3 == 0
        results.append(ProbeResult(a.probe, True, a.source, None, 0.01, server, attempts=2 if stale else 1,
                                   earlier=(SILENCE,) if stale else (), settled=not stale))
    out = mark_flaky(services.judge(st, g, results))
    rows = {o.node: o for o in out if o.check == "service" and "connections from pods" in o.subject}
    assert set(rows) == {n.name for n in st.nodes}
    assert not rows["worker1"].passed and rows["worker1"].flaky and "only after retries" in rows["worker1"].observed
    assert rows["worker2"].passed and rows["control-plane"].passed


def test_a_stale_endpoint_answering_on_one_node_fails_that_node(svc):
    st, asks = svc
    g = [a for a in asks if a.group.startswith("default/backend:http from node")]
    results = [ProbeResult(a.probe, True, a.source, None, 0.01,
                           "old-backend" if a.node == "worker2" and i % 3 == 0 else sorted(a.servers)[i % 3])
               for i, a in enumerate(g)]
    out = services.judge(st, g, results)
    bad = {o.node for o in out if not o.passed and o.node}
    assert bad == {"worker2"}


def test_a_service_deny_fails_on_a_refusal(svc):
    st, _ = svc
    a = asks.Ask("service", "x (denied by NetworkPolicy)", P, reply=False)
    (o,) = services.judge(st, [a], [ProbeResult(P, False, None, "connection refused", 0.001)])
    assert not o.passed and "refused is not denied" in o.observed
    (o,) = services.judge(st, [a], [ProbeResult(P, False, None, TIMEOUT, 1.0)])
    assert o.passed


# --- pod-ip, unchecked Services, clusterip-virtual ---

def test_pod_ip_without_evidence_fails_and_says_so(vxlan):
    exps = [e for e in expectations(vxlan) if e.check == "pod-to-pod"]
    eth0 = {p.netns: [p.ip] for p in vxlan.pods}
    out = judge_pod_ips(vxlan, eth0, [(e, ProbeResult(e.probe, False, None, TIMEOUT, 1.0)) for e in exps])
    assert out and all(o.failed for o in out)
    assert all("none of its pod-to-pod probes was answered: no evidence" in o.observed for o in out)


def test_pod_ip_with_nothing_to_probe_is_unchecked_not_passed(vxlan):
    out = judge_pod_ips(vxlan, {p.netns: [p.ip] for p in vxlan.pods}, [])
    assert out and all(o.unchecked and not o.passed and not o.failed for o in out)


def program_state():
    def pod(name, **spec):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"nodeName": "a", **spec}}
    return plan(Topology.model_validate({"name": "vdprog", "cluster": {"dns": {"enabled": False}}, "nodes": [{"name": "a"}],
                                         "manifests": [
        pod("web", containers=[{"name": "c", "image": "python", "command": ["python3", "-m", "http.server", "8000"],
                                "ports": [{"containerPort": 8000}]}]),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}}]}))


def test_a_service_the_probes_cannot_speak_to_is_listed_unchecked():
    st = program_state()
    sl = endpoint_slices(st, {p.key: True for p in st.pods})
    assert not [a for a in services.plan(st, sl) if a.probe.port == 80]
    (o,) = services.unchecked(st, sl)
    assert o.unchecked and not o.passed and not o.failed
    assert o.subject.startswith("default/web") and "without netexec" in o.observed and "python3" in o.observed
    text = report.table("vdprog", [o], 0)
    assert "1 unchecked (neither passed nor failed):" in text
    assert text.endswith("1 of 1 unchecked: not counted as passed\n\nPASSED")
    assert json.loads(report.to_json("vdprog", [o], 0))["unchecked"] == 1
    assert ET.fromstring(report.to_junit("vdprog", [o], 0)).find(".//skipped") is not None


def test_clusterip_virtual_pings_from_a_node_when_there_is_no_pod(monkeypatch):
    st = program_state()
    st = replace(st, pods=())
    import lab.probe.netns as netns
    monkeypatch.setattr(netns, "interface_addresses_many", lambda pairs: {})
    sent = []

    class Echoes:  # what the kernel heard back, without namespaces (the real one: test_probe_ping.py)
        def __init__(self, ns, targets, error=""):
            sent.append((ns, targets))
            self.targets, self.error, self.heard = targets, error, set(targets)

        def answered(self, wait):
            return self.heard

    monkeypatch.setattr(services.ping, "Echoes", Echoes)
    echoes = services.clusterip_pings(st)
    assert sent == [(st.nodes[0].netns, [s.cluster_ip for s in st.services if s.cluster_ip])]
    (o,) = services.clusterip_virtual(st, 0.2, echoes)   # the ClusterIP answers the ping: broken
    assert not o.passed and "answered a ping from node/a" in o.observed
    echoes.heard = set()
    (o,) = services.clusterip_virtual(st, 0.2, echoes)
    assert o.passed and o.observed == "on no interface, no reply to a ping from node/a"
    (o,) = services.clusterip_virtual(st, 0.2, Echoes("x", [], error="cannot send an echo request: Operation not permitted"))
    assert not o.passed and "ping failed: cannot send an echo request" in o.observed


# --- the report marks tries ---

def test_the_report_marks_retried_passes_and_flaky_rows():
    rows = mark_flaky([row("a", 1), row("b", 2), row("c", 3, target="x")])
    text = report.table("l", rows, 0)
    assert "[service] from b (flaky)" in text and "(2 tries)" in text
    assert "1 passed only after retries:" in text and "  [service] from c: 3 tries" in text
    doc = json.loads(report.to_json("l", rows, 0))
    assert [(r["attempts"], r["flaky"]) for r in doc["results"]] == [(1, False), (2, True), (3, False)]
    root = ET.fromstring(report.to_junit("l", rows, 0))
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["from b"].find("failure").get("message").startswith("flaky: ")
    assert cases["from c"].find("properties/property").get("value") == "3"
    assert cases["from c"].find("system-out").text == "passed at try 3\n"


# --- scenario probe steps judge with the same classification ---

def test_scenario_probes_use_the_one_classification():
    from lab.scenario.steps import _verdict

    refused = ProbeResult(P, False, None, "connection refused", 0.001)
    silent = ProbeResult(P, False, None, TIMEOUT, 1.0, attempts=3, earlier=(SILENCE, SILENCE))
    broken = ProbeResult(P, False, None, "network namespace 'x' does not exist", 0.0)
    assert _verdict("refused", refused) == "" and _verdict("deny", silent) == ""
    assert "refused is not denied: nothing listens on that port there" in _verdict("deny", refused)
    assert _verdict("refused", silent).startswith("expected a refusal; observed no reply at any of 3 tries")
    assert all(_verdict(x, broken).endswith("probe error, nothing judged: network namespace 'x' does not exist")
               for x in ("allow", "deny", "refused"))


def test_a_sampled_check_splits_its_service_budget_between_the_nodes(svc):
    """Per-node rows, but a big lab's check does not grow with its nodes: the sampled budget
    (SAMPLES per endpoint) is shared by the nodes, each still with a row of its own."""
    st, full = svc
    sl = endpoint_slices(st, {p.key: not p.name.startswith("warming-") for p in st.pods})
    sampled = services.plan(st, sl, sample=7)

    def http(asks):
        return [a for a in asks if a.group.startswith("default/backend:http from node")]
    assert {a.node for a in http(sampled)} == {n.name for n in st.nodes}
    assert len(http(full)) == 3 * services.SAMPLES * 3           # every node: SAMPLES per endpoint
    assert len(http(sampled)) < 2 * services.SAMPLES * 3         # shared: about SAMPLES per endpoint
