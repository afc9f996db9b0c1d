"""kube-proxy's and the policies' sync loops against the fake Host (no root): which restores run,
where, with which text, what the record keeps, and what a refused restore leads to.

The world is topologies/services.yaml (every pod ready but the `warming` ones) in both proxy modes,
and topologies/netpol.yaml with a policy for the network policy sync. The texts are the renderers'
own (lab.kube_proxy.iptables / nftables, lab.policy.iptables): what these tests hold is what the
loop does with them.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.host import record as records
from lab.host.fake import FakeHost
from lab.host.record import LabRecord
from lab.kube_proxy import iptables, nftables
from lab.kube_proxy import sync as kube_proxy
from lab.policy import iptables as policy_rules
from lab.policy import sync as netpol
from tests.unit.golden import shipped_state
from tests.unit.test_policy_model import CASES, netpol_state


def proxy_chains(rec) -> dict:
    """kube-proxy's section of the record: node -> the chains it last wrote."""
    return rec.section("kube-proxy")["chains"]


def policy_chains(rec) -> dict:
    """The policy controller's section of the record: node -> the chains it last wrote."""
    return rec.section("policy")["chains"]


MODES = ("iptables", "nftables")
STATES = {mode: shipped_state("services", proxy=mode) for mode in MODES}
RESTORE = {"iptables": ("iptables-restore", "--noflush"), "nftables": ("nft", "-f", "-")}
LONER = "default/loner"


def ready_of(state: ClusterState) -> dict[str, bool]:
    return {p.key: not p.name.startswith("warming") for p in state.pods}


def pod(state: ClusterState, prefix: str) -> str:
    return next(p.key for p in state.pods if p.name.startswith(prefix))


pytestmark = pytest.mark.usefixtures("run_root")


def new_record(state: ClusterState, pod_ready=None, **fields) -> LabRecord:
    rec = LabRecord(name=state.lab, state=state, status="running", pod_ready=dict(pod_ready or {}), **fields)
    rec.dir.mkdir(parents=True)
    rec.save()
    return rec


def on_disk(rec: LabRecord) -> str:
    return (rec.dir / "record.json").read_text()


def by_node(fake: FakeHost, state: ClusterState, argv: tuple[str, ...]) -> dict[str, list[str]]:
    """The restore texts each node got, in order; every other run call must be kube-proxy's
    conntrack cleanup of UDP services."""
    others = [c.argv for c in fake.calls if c.argv != argv]
    assert all(a[:4] == ("conntrack", "-D", "-p", "udp") for a in others), others
    netns = {n.netns: n.name for n in state.nodes}
    got: dict[str, list[str]] = {}
    for c in fake.calls:
        if c.argv == argv:
            got.setdefault(netns[c.netns], []).append(c.input)
    return got


def full_text(mode: str, state: ClusterState, node, slices, existing=frozenset()) -> str:
    if mode == "iptables":
        return iptables.render(state, node, slices, existing=existing)
    return nftables.render(state, node, slices)


def partial_text(mode: str, old: ClusterState, new: ClusterState, node, old_slices, new_slices, only) -> str:
    if mode == "iptables":
        return iptables.render_update(old, new, node, old_slices, new_slices, only)
    return nftables.render_update(old, new, node, old_slices, new_slices, only=only)


def synced(mode: str, fake: FakeHost) -> LabRecord:
    """A lab after its first sync (committed, as `lab up` leaves it), with the fake's log emptied."""
    state = STATES[mode]
    rec = new_record(state)
    kube_proxy.sync(rec, state, ready_of(state), first=True)
    rec.commit(state, ready_of(state))
    rec.save()
    fake.calls.clear()
    return rec


# --- the first sync ---

@pytest.mark.parametrize("mode", MODES)
def test_a_first_sync_restores_the_full_rule_set_on_every_node(mode, fake):
    state, ready = STATES[mode], ready_of(STATES[mode])
    older = replace(state, services=state.services[:2])  # what the record holds: not what is synced
    rec = new_record(older)
    before = on_disk(rec)
    touched = kube_proxy.sync(rec, state, ready, first=True)
    assert touched == {s.key for s in state.services}
    texts = by_node(fake, state, RESTORE[mode])
    slices = endpoint_slices(state, ready)
    assert texts == {n.name: [full_text(mode, state, n, slices)] for n in state.nodes}
    if mode == "iptables":
        assert proxy_chains(rec) == {n: sorted(iptables.declared_chains(t[0])) for n, t in texts.items()}
        assert all(proxy_chains(rec).values())
    else:
        assert proxy_chains(rec) == {n.name: [] for n in state.nodes}
    # the state is the orchestrator's to commit, and the record the caller's to save
    assert rec.state is older and rec.pod_ready == {}
    assert on_disk(rec) == before


def test_a_full_sync_deletes_the_chains_the_last_one_left_and_no_longer_needs(fake):
    state, ready = STATES["iptables"], ready_of(STATES["iptables"])
    stale = "KUBE-SVC-STALESTALESTALE0"
    rec = new_record(state, sections={"kube-proxy": {"chains": {"worker1": [stale]}}})
    kube_proxy.sync(rec, state, ready, first=True)
    texts = by_node(fake, state, RESTORE["iptables"])
    assert f"-X {stale}" in texts["worker1"][0].splitlines()
    assert not any(stale in t[0] for n, t in texts.items() if n != "worker1")
    assert proxy_chains(rec)["worker1"] == sorted(iptables.declared_chains(texts["worker1"][0]))
    assert stale not in proxy_chains(rec)["worker1"] and proxy_chains(rec)["worker1"]


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_first_sync_is_an_error_not_a_retry(mode, fake):
    state = STATES[mode]
    rec = new_record(state)
    fake.answer(RESTORE[mode][:1], code=1, stderr="line 3 failed", netns=state.node("worker2").netns)
    with pytest.raises(LabError, match="kube-proxy's rules on node worker2 was refused.*line 3 failed"):
        kube_proxy.sync(rec, state, ready_of(state), first=True)
    assert len(fake.ran(*RESTORE[mode][:1])) == len(state.nodes)
    assert rec.section("kube-proxy").get("full_resyncs", 0) == 0


# --- later syncs ---

def one_change(kind: str, state: ClusterState) -> tuple[ClusterState, dict[str, bool], set[str]]:
    """A state and readiness in which exactly one Service differs, and that Service."""
    ready = ready_of(state)
    if kind == "endpoints":  # the loner stops being ready: its Service loses its only endpoint
        return state, {**ready, pod(state, "loner"): False}, {LONER}
    services = tuple(replace(s, affinity_timeout=300) if s.name == "sticky" else s for s in state.services)
    return replace(state, services=services), ready, {"default/sticky"}


@pytest.mark.parametrize("kind", ["endpoints", "spec"])
@pytest.mark.parametrize("mode", MODES)
def test_a_later_sync_restores_only_the_partial_update_of_the_changed_service(mode, kind, fake):
    rec = synced(mode, fake)
    old, old_ready = rec.state, dict(rec.pod_ready)
    chains_before = {n: list(c) for n, c in proxy_chains(rec).items()}
    new, ready, which = one_change(kind, old)
    before = on_disk(rec)
    assert kube_proxy.sync(rec, new, ready) == which
    old_slices, new_slices = endpoint_slices(old, old_ready), endpoint_slices(new, ready)
    texts = by_node(fake, new, RESTORE[mode])
    want = {n.name: [partial_text(mode, old, new, n, old_slices, new_slices, which)] for n in new.nodes}
    assert texts == {n: t for n, t in want.items() if t[0].strip()}
    assert texts, "the change touches every node's rules"
    for node, (text,) in texts.items():
        assert text != full_text(mode, new, new.node(node), new_slices)
        assert "backend-nodeport" not in text and "10.96.0.100" not in text  # Services that did not change
    if mode == "iptables":
        for n in new.nodes:
            # the chains the partial leaves are the ones a full sync of the new state would declare
            assert proxy_chains(rec)[n.name] == sorted(iptables.declared_chains(full_text(mode, new, n, new_slices)))
        assert proxy_chains(rec) != chains_before or kind == "spec"
    assert (rec.state, rec.pod_ready) == (old, old_ready) and on_disk(rec) == before


@pytest.mark.parametrize("mode", MODES)
def test_a_sync_with_nothing_changed_runs_nothing(mode, fake):
    rec = synced(mode, fake)
    chains = dict(proxy_chains(rec))
    assert kube_proxy.sync(rec, rec.state, dict(rec.pod_ready)) == set()
    # a pod no Service selects changing its readiness changes no Service either
    assert kube_proxy.sync(rec, rec.state, {**rec.pod_ready, pod(rec.state, "client"): False}) == set()
    assert fake.calls == [] and proxy_chains(rec) == chains


@pytest.mark.parametrize("refusing", [("worker1",), ("control-plane", "worker1", "worker2")])
@pytest.mark.parametrize("mode", MODES)
def test_a_refused_partial_sync_is_logged_counted_and_followed_by_a_full_one(mode, refusing, fake, capsys):
    rec = synced(mode, fake)
    old, old_ready = rec.state, dict(rec.pod_ready)
    existing = {n: frozenset(c) for n, c in proxy_chains(rec).items()}
    new, ready, which = one_change("endpoints", old)
    for name in refusing:  # each refuses its first restore only
        fake.answer(RESTORE[mode][:1], code=1, stderr="line 7 failed", netns=new.node(name).netns, times=1)
    kube_proxy.sync(rec, new, ready)
    old_slices, new_slices = endpoint_slices(old, old_ready), endpoint_slices(new, ready)
    texts = by_node(fake, new, RESTORE[mode])
    assert set(texts) == {n.name for n in new.nodes}
    for name in texts:
        n = new.node(name)
        partial = partial_text(mode, old, new, n, old_slices, new_slices, which)
        full = full_text(mode, new, n, new_slices, existing.get(name, frozenset()))
        assert texts[name] == ([partial, full] if name in refusing else [partial])
        if mode == "iptables":
            assert proxy_chains(rec)[name] == sorted(iptables.declared_chains(full, existing[name]))
    assert rec.section("kube-proxy").get("full_resyncs", 0) == len(refusing)
    err = capsys.readouterr().err
    for name in refusing:
        assert f"kube-proxy: partial sync refused on node {name}, doing a full sync" in err
    assert err.count("partial sync refused") == len(refusing) and "line 7 failed" in err


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_full_resync_is_an_error(mode, fake):
    rec = synced(mode, fake)
    new, ready, _ = one_change("endpoints", rec.state)
    fake.answer(RESTORE[mode][:1], code=1, stderr="no such chain", netns=new.node("worker1").netns, times=2)
    with pytest.raises(LabError, match="node worker1 was refused"):
        kube_proxy.sync(rec, new, ready)
    assert rec.section("kube-proxy").get("full_resyncs", 0) == 1
    assert len([c for c in fake.calls if c.netns == new.node("worker1").netns]) == 2


# --- network policies ---

POLICY = CASES["deny-ingress"][0]


def test_a_policy_sync_restores_each_node_once_and_records_its_chains(fake):
    state = netpol_state(POLICY)
    rec = new_record(state)
    before = on_disk(rec)
    netpol.sync(rec, state)
    texts = by_node(fake, state, ("iptables-restore", "--noflush"))
    assert texts == {n.name: [policy_rules.render(state, n)] for n in state.nodes}
    assert policy_chains(rec) == {n: sorted(policy_rules.declared_chains(t[0])) for n, t in texts.items()}
    assert any(policy_chains(rec).values()), "the policy isolates some pod"
    assert on_disk(rec) == before and rec.state is state


def test_a_policy_sync_deletes_the_chains_of_policies_that_are_gone(fake):
    state = netpol_state(POLICY)
    rec = new_record(state)
    netpol.sync(rec, state)
    chains = {n: list(c) for n, c in policy_chains(rec).items()}
    fake.calls.clear()
    netpol.sync(rec, netpol_state(""))
    texts = by_node(fake, state, ("iptables-restore", "--noflush"))
    for node, (text,) in texts.items():
        assert [line for line in text.splitlines() if line.startswith("-X ")] == [f"-X {c}" for c in chains[node]]
    assert policy_chains(rec) == {n.name: [] for n in state.nodes}


def test_a_refused_policy_restore_is_an_error(fake):
    state = netpol_state(POLICY)
    fake.answer(("iptables-restore",), code=2, stderr="bad rule", netns=state.nodes[0].netns)
    with pytest.raises(LabError, match=f"network policy rules on node {state.nodes[0].name} was refused.*bad rule"):
        netpol.sync(new_record(state), state)


# --- kube-proxy's conntrack cleanup for UDP services ---

def udp_ports(state: ClusterState) -> list[tuple[str, object]]:
    return [(s.cluster_ip, p.node_port) for s in state.services for p in s.ports
            if p.protocol == "UDP" and s.cluster_ip]


def test_the_first_sync_forgets_udp_flows_to_every_udp_service_with_endpoints(fake):
    """The startup race: a UDP client that sent before the rules existed keeps an un-NATed entry."""
    state, ready = STATES["iptables"], ready_of(STATES["iptables"])
    kube_proxy.sync(new_record(state), state, ready, first=True)
    deleted = {(c.netns, c.argv[4:]) for c in fake.ran("conntrack", "-D", "-p", "udp")}
    want = udp_ports(state)
    assert want  # services.yaml has a UDP port: the test means something
    assert {(n.netns, ("--orig-dst", ip)) for n in state.nodes for ip, _ in want} <= deleted
    assert all(args[1] in {ip for ip, _ in want} or args[0] == "--orig-port-dst" for _, args in deleted)


def test_a_udp_service_gaining_its_first_endpoint_forgets_its_flows(fake):
    state = STATES["iptables"]
    ready = ready_of(state)
    none_ready = {k: False for k in ready}
    rec = new_record(state, pod_ready=none_ready)
    kube_proxy.sync(rec, state, ready)
    assert {c.argv[5] for c in fake.ran("conntrack", "-D", "-p", "udp", "--orig-dst")} == \
        {ip for ip, _ in udp_ports(state)}
    fake.calls.clear()
    rec.commit(state, ready)
    kube_proxy.sync(rec, state, dict(ready))  # endpoints unchanged: nothing to forget
    assert not fake.ran("conntrack")


def test_no_flow_entries_is_no_failure_but_a_broken_conntrack_is(fake):
    state, ready = STATES["iptables"], ready_of(STATES["iptables"])
    fake.answer(("conntrack",), code=1, stderr="conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.")
    kube_proxy.sync(new_record(state), state, ready, first=True)
    fake.answers.clear()
    fake.answer(("conntrack",), code=2, stderr="conntrack: unknown option")
    rec = records.load(state.lab)
    with pytest.raises(LabError, match="conntrack -D on node .* failed: conntrack: unknown option"):
        kube_proxy.sync(rec, state, ready, first=True)



# --- dual-stack: one proxier per family ---

def dual_state(mode: str) -> ClusterState:
    return shipped_state("services", proxy=mode, podCIDR="10.244.0.0/16,fd00:10:244::/56",
                         serviceCIDR="10.96.0.0/12,fd00:10:96::/112")


@pytest.mark.parametrize("mode", MODES)
def test_a_dual_stack_cluster_restores_each_familys_rules_with_its_own_command(mode, fake):
    state = dual_state(mode)
    assert state.service_families() == ("IPv4", "IPv6")
    ready = ready_of(state)
    rec = new_record(state)
    kube_proxy.setup(state)
    kube_proxy.sync(rec, state, ready, first=True)
    slices = endpoint_slices(state, ready)
    v6 = ("ip6tables-restore", "--noflush") if mode == "iptables" else RESTORE[mode]
    netns = {n.netns: n.name for n in state.nodes}
    texts: dict[tuple[str, tuple], list[str]] = {}
    for c in fake.calls:
        if c.argv in (RESTORE[mode], v6):
            texts.setdefault((netns[c.netns], c.argv), []).append(c.input)
    for n in state.nodes:
        v4_texts = texts[(n.name, RESTORE[mode])] if mode == "iptables" else \
            [t for t in texts[(n.name, v6)] if " ip6 " not in t]
        v6_texts = texts[(n.name, v6)] if mode == "iptables" else [t for t in texts[(n.name, v6)] if " ip6 " in t]
        render = iptables.render if mode == "iptables" else nftables.render
        kw = {"existing": frozenset()} if mode == "iptables" else {}
        assert render(state, n, slices, family="IPv6", **kw) == v6_texts[-1]   # the sync's, after setup's
        assert render(state, n, slices, family="IPv4", **kw) == v4_texts[-1]
        assert v6_texts and v4_texts and v6_texts[-1] != v4_texts[-1]
    if mode == "iptables":   # the record keeps each family's chains apart (IPv4 under the node's name, as before)
        assert set(proxy_chains(rec)) == {n.name for n in state.nodes} | {f"{n.name}/IPv6" for n in state.nodes}
