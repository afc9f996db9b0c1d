"""The harness never lies, the pure parts: which probes get another try, the covering sample of a
big lab, Service expectations under NetworkPolicies, and the row of a Service left without ready
endpoints. No root: states are planned, results built by hand."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import PeerState, PolicyState, RuleState, SelectorState
from lab.probe import coverage, services
from lab.probe.coverage import Coverage, covering_pairs
from lab.probe.engine import REFUSED, REPLY, SILENCE, Probe, ProbeResult, adapted_timeout, to_retry
from lab.probe.invariants import expectations
from tests.unit.golden import shipped_state

TIMEOUT = "timeout after 1.0s (connecting)"


def result(ok: bool, error: str | None = None) -> ProbeResult:
    return ProbeResult(Probe("ns", "10.0.0.1", 80), ok, "10.0.0.2" if ok else None, error, 0.01)


# --- retries ---

def test_unanswered_probes_expecting_a_reply_are_retried():
    results = [result(True), result(False, TIMEOUT), result(False, "connection refused"), result(False, TIMEOUT)]
    assert to_retry(results, [REPLY, REPLY, None, SILENCE], [1.0] * 4, 1.0) == [1, 2]


def test_an_expected_silence_is_tried_again_only_when_the_machine_proved_slow():
    results = [result(False, TIMEOUT), result(False, "connection refused")]
    assert to_retry(results, [SILENCE, SILENCE], [0.5, 0.5], 0.5) == []
    assert to_retry(results, [SILENCE, SILENCE], [0.5, 0.5], 2.0) == [0]  # a refusal is an answer
    assert to_retry(results, [SILENCE, SILENCE], [2.0, 2.0], 2.0) == []   # once, not forever


def test_an_expected_refusal_is_tried_again_only_while_it_has_not_come():
    """ICMP errors are rate-limited: a lost one is silence, tried again; a refusal is final."""
    results = [result(False, TIMEOUT), result(False, "connection refused"), result(True)]
    assert to_retry(results, [REFUSED] * 3, [1.0] * 3, 1.0) == [0]


def test_the_timeout_adapts_to_the_passing_round_trips_and_doubles():
    assert adapted_timeout(1.0, [0.01, 0.05], 2) == 1.0
    assert adapted_timeout(1.0, [0.01, 0.6], 2) == pytest.approx(2.4)
    assert adapted_timeout(1.0, [0.01, 0.6], 3) == pytest.approx(4.8)
    assert adapted_timeout(1.0, [9.0], 3) == 10.0  # capped
    assert adapted_timeout(0.5, [0.05] * 99 + [0.9], 2) == 0.5  # one straggler is not the machine


# --- the covering sample ---

def big_state(replicas: int = 150):
    """services.yaml's nodes with `replicas` clients: a lab above the all-pairs threshold."""
    st = shipped_state("vxlan")
    clients = [p for p in st.pods if not p.host_network and p.probe_port()]
    pods = [replace(clients[i % len(clients)], name=f"p{i:03d}", ip=f"10.244.{i % 3}.{10 + i // 3}",
                    netns=f"vxlan-p{i:03d}", node=st.nodes[i % 3].name) for i in range(replicas)]
    return replace(st, pods=tuple(pods) + tuple(p for p in st.pods if p.host_network))


def test_small_labs_check_every_pair_big_ones_a_seeded_sample():
    assert coverage.choose(100, False, None) == Coverage(True, 0)
    sampled = coverage.choose(101, False, 7)
    assert sampled == Coverage(False, 7) and "--seed 7" in sampled.describe(101)
    assert coverage.choose(101, False, None).seed > 0
    assert coverage.choose(5000, True, None).all_pairs


def test_the_sample_covers_every_pod_both_ways_and_every_node_pair():
    st = big_state()
    exps = expectations(st, Coverage(False, 42))
    p2p = [e for e in exps if e.check == "pod-to-pod"]
    by_netns = {p.netns: p for p in st.pods}
    by_ip = {p.ip: p for p in st.pods if not p.host_network}
    senders = {p.netns for p in st.pods if not p.host_network}
    targets = {p.ip for p in st.pods if p.probe_port() is not None}
    assert {e.probe.src_netns for e in p2p} == senders
    assert {e.probe.dst_ip for e in p2p} == targets
    crossed = {(by_netns[e.probe.src_netns].node, by_ip[e.probe.dst_ip].node) for e in p2p if e.probe.dst_ip in by_ip}
    assert crossed == {(a.name, b.name) for a in st.nodes for b in st.nodes}
    assert all(by_netns[e.probe.src_netns].ip != e.probe.dst_ip for e in p2p)
    assert len(p2p) < len(senders) * 2  # a sample: linear in the pods, not quadratic
    n2p = [e for e in exps if e.check == "node-to-pod"]
    assert {e.probe.dst_ip for e in n2p} == {p.ip for p in st.pods if not p.host_network and p.probe_port()}
    assert {e.probe.src_netns for e in n2p} == {n.netns for n in st.nodes}
    hostnet = {p.netns for p in st.pods if p.host_network}
    assert hostnet and {e.probe.src_netns for e in exps if e.check == "hostnetwork-to-pod"} == hostnet


def test_the_sample_is_the_same_for_a_seed_and_differs_between_seeds():
    st = big_state()
    first = [e.probe for e in expectations(st, Coverage(False, 1))]
    assert first == [e.probe for e in expectations(st, Coverage(False, 1))]
    assert first != [e.probe for e in expectations(st, Coverage(False, 2))]


def test_covering_pairs_with_more_targets_than_sources_and_never_self():
    srcs = [("a", "n1"), ("b", "n2")]
    dsts = [("a", "n1"), ("b", "n2"), ("c", "n1"), ("d", "n2"), ("e", "n2")]
    pairs = covering_pairs(srcs, dsts, lambda s: s[0], lambda d: d[0], lambda s: s[1], lambda d: d[1], 3)
    assert {d for _, d in pairs} == set(dsts) and {s for s, _ in pairs} == set(srcs)
    assert all(s[0] != d[0] for s, d in pairs)
    assert {(s[1], d[1]) for s, d in pairs} == {("n1", "n1"), ("n1", "n2"), ("n2", "n1"), ("n2", "n2")}


# --- Services under NetworkPolicies ---

@pytest.fixture(scope="module")
def svc_state():
    st = shipped_state("services")
    return replace(st, pods=tuple(p for p in st.pods))


def ready(st):
    return {p.key: not p.name.startswith("warming-") for p in st.pods}


def deny_ingress(selector: tuple, allow_from: tuple = ()) -> PolicyState:
    rules = (RuleState((PeerState(pod_selector=SelectorState(allow_from)),)),) if allow_from else ()
    return PolicyState("default", "deny", SelectorState(selector), ("Ingress",), ingress=rules)


def plan_with(st, *policies, labels: dict | None = None):
    pods = tuple(replace(p, labels=p.labels + tuple((labels or {}).get(p.name, ()))) for p in st.pods)
    st = replace(st, pods=pods, policies=tuple(policies))
    return st, services.plan(st, endpoint_slices(st, ready(st)))


def backend_asks(asks, client_prefix="default/client"):
    return [a for a in asks if a.check == "service" and a.subject.startswith(client_prefix)
            and "-> default/backend:http" in a.subject]


def test_without_policies_every_client_expects_a_reply(svc_state):
    _, asks = plan_with(svc_state)
    assert all(a.reply and not a.may_drop for a in backend_asks(asks))


def test_a_client_denied_every_endpoint_expects_no_reply(svc_state):
    _, asks = plan_with(svc_state, deny_ingress((("app", "backend"),)))
    mine = backend_asks(asks)
    assert mine and all(not a.reply and "(denied by NetworkPolicy)" in a.subject for a in mine)
    assert len(mine) == 3  # one probe per client says it (the engine retries before judging)
    # nodes are not pods: a node reaches the endpoints on itself only (the node exception)
    nodes = [a for a in asks if a.subject.startswith("node/") and "-> default/backend:http" in a.subject]
    assert nodes and all("allows 1 of 3" in a.subject and a.may_drop for a in nodes)


def test_a_client_allowed_some_endpoints_may_only_be_answered_by_those(svc_state):
    backends = sorted(p.name for p in svc_state.pods if p.name.startswith("backend-"))
    st, asks = plan_with(svc_state, deny_ingress((("locked", "yes"),)), labels={backends[0]: (("locked", "yes"),)})
    mine = backend_asks(asks)
    assert mine and all(a.may_drop and a.servers == frozenset(backends[1:]) for a in mine)
    a = mine[0]
    denied = services.judge(st, [a], [ProbeResult(a.probe, False, None, TIMEOUT, 1.0)])[0]
    assert denied.passed and "denied endpoint" in denied.expected
    wrong = services.judge(st, [a], [ProbeResult(a.probe, True, a.source, None, 0.01, backends[0])])[0]
    assert not wrong.passed and "answered by" in wrong.observed
    refused = services.judge(st, [a], [ProbeResult(a.probe, False, None, "connection refused", 0.01)])[0]
    assert not refused.passed  # a drop is what a denied endpoint looks like, a reset is not


def test_clients_the_policy_allows_are_still_expected_to_be_answered(svc_state):
    _, asks = plan_with(svc_state, deny_ingress((("app", "backend"),), allow_from=(("app", "client"),)))
    assert all(a.reply and not a.may_drop for a in backend_asks(asks))
    assert all(not a.reply for a in backend_asks(asks, "default/loner"))


# --- a Service left without ready endpoints ---

def test_a_service_whose_pods_are_all_unready_fails_and_says_why(svc_state):
    st = replace(svc_state, checks=tuple(c for c in svc_state.checks if "warming:" not in c.dst))
    detail = {f"{p.key}/web": "GET /not-yet (port 8080) -> 404" for p in st.pods if p.name.startswith("warming-")}
    rows = services.unready(st, endpoint_slices(st, ready(st)), ready(st), detail)
    [row] = [o for o in rows if o.subject.startswith("default/warming:")]
    assert not row.passed and "GET /not-yet (port 8080) -> 404" in row.observed
    assert row.subject == "default/warming: 0 of 2 pods ready"


def test_an_unready_service_the_topology_expects_refused_passes(svc_state):
    rows = services.unready(svc_state, endpoint_slices(svc_state, ready(svc_state)), ready(svc_state), {})
    assert [o.passed for o in rows if o.subject.startswith("default/warming:")] == [True]


def test_services_with_a_ready_endpoint_or_no_pods_get_no_such_row(svc_state):
    everyone = {p.key: True for p in svc_state.pods}
    assert services.unready(svc_state, endpoint_slices(svc_state, everyone), everyone, {}) == []


# --- spread over a sample ---

def spread(counts: dict, endpoints: int):
    return services._spread("g", Counter(counts), {f"e{i}" for i in range(endpoints)}, {})


def test_a_sampled_spread_passes_when_random_picks_miss_some_endpoints():
    import random
    rng = random.Random(5)
    picks = Counter(f"e{rng.randrange(300)}" for _ in range(600))
    assert len(picks) < 300 and spread(picks, 300).passed


def test_a_sampled_spread_fails_when_only_half_the_endpoints_ever_answer():
    import random
    rng = random.Random(5)
    picks = Counter(f"e{rng.randrange(150)}" for _ in range(600))
    o = spread(picks, 300)
    assert not o.passed and "of 300 endpoints hit" in o.observed


def test_with_enough_connections_every_endpoint_must_be_hit():
    counts = {f"e{i}": 24 for i in range(9)}
    assert spread(counts, 9).passed
    assert not spread(counts, 10).passed  # e9 never answered in 216 connections


@pytest.mark.parametrize("seed", range(40))
def test_covering_pairs_always_cover_whatever_the_shapes(seed):
    import random
    rng = random.Random(seed)
    nodes = [f"n{i}" for i in range(rng.randint(1, 5))]
    pods = [(f"p{i}", rng.choice(nodes)) for i in range(rng.randint(2, 60))]
    srcs = [p for p in pods if rng.random() < 0.8] or pods[:1]
    dsts = [p for p in pods if rng.random() < 0.8] or pods[-1:]
    pairs = covering_pairs(srcs, dsts, lambda s: s[0], lambda d: d[0], lambda s: s[1], lambda d: d[1], seed)
    assert all(s[0] != d[0] for s, d in pairs) and len(set(pairs)) == len(pairs)
    # every source and target that has a partner other than itself is covered
    assert {s for s in srcs if any(d[0] != s[0] for d in dsts)} <= {s for s, _ in pairs}
    assert {d for d in dsts if any(s[0] != d[0] for s in srcs)} <= {d for _, d in pairs}
    for a in {s[1] for s in srcs}:
        for b in {d[1] for d in dsts}:
            if any(s[1] == a and d[1] == b and s[0] != d[0] for s in srcs for d in dsts):
                assert any(s[1] == a and d[1] == b for s, d in pairs), (a, b)


def test_a_namespaced_check_reference_expects_the_unready_service_too(svc_state):
    checks = tuple(replace(c, dst="default/svc/warming:80") if "warming:" in c.dst and "published" not in c.dst else c
                   for c in svc_state.checks)
    st = replace(svc_state, checks=checks)
    assert any(c.dst == "default/svc/warming:80" for c in st.checks)
    rows = services.unready(st, endpoint_slices(st, ready(st)), ready(st), {})
    assert [o.passed for o in rows if o.subject.startswith("default/warming:")] == [True]
    other = replace(st, checks=tuple(replace(c, dst="kube-system/svc/warming:80") if c.dst.endswith("/svc/warming:80")
                                     else c for c in st.checks))
    rows = services.unready(other, endpoint_slices(other, ready(other)), ready(other), {})
    assert [o.passed for o in rows if o.subject.startswith("default/warming:")] == [False]
