"""kube-proxy's iptables mode (lab.kube_proxy.iptables): goldens, restores, resyncs, partial syncs, names.

The goldens in tests/golden/iptables-<case>.txt hold the exact iptables-restore input: base_rules(),
masq_agent_rules(), render() for worker1 of the shipped topologies/services.yaml (every pod ready
except the never-ready `warming` ones), and small focused cases built from dicts. To regenerate them
after an intended change:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_kube_proxy_iptables.py

then review `git diff tests/golden` by eye before keeping it.

The same text is loaded into tests/unit/iptables_sim.py (strict about what iptables-restore would
refuse); the packets traced through it, in both modes, are in test_kube_proxy_packets.py.
"""
from __future__ import annotations

import re
from dataclasses import replace

import pytest

from lab.controlplane.endpoints import initial_readiness
from lab.controlplane.state import ClusterState
from lab.kube_proxy import chains as ch
from lab.kube_proxy.iptables import base_rules, declared_chains, masq_agent_rules, render, render_update
from tests.unit.golden import check_golden
from tests.unit.iptables_sim import Ruleset
from tests.unit.test_kube_proxy_nftables import big_state, one_more
from tests.unit.test_kube_proxy_packets import (
    CASES, CHANGES, READY, STATE, W1, changed, fresh_node, local_addresses, pod_key, slices_of, small,
)


def ruleset(state: ClusterState, node: str, ready=None, **sim) -> Ruleset:
    return fresh_node("iptables", state, node, slices_of(state, ready), **sim)


def snapshot(rs: Ruleset) -> dict:
    return {t: {c: [r.text for r in rules] for c, rules in chains.items()} for t, chains in rs.tables.items()}


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
    ready = {**READY, pod_key(STATE, "backend", "worker2"): False}
    first = render(STATE, W1, slices_of(STATE))
    second = render(STATE, W1, slices_of(STATE, ready), existing=declared_chains(first))
    gone = declared_chains(first) - declared_chains(second)
    assert gone and all(c.startswith("KUBE-SEP-") for c in gone)
    rs = ruleset(STATE, W1)
    rs.restore(second)
    assert snapshot(rs) == snapshot(ruleset(STATE, W1, ready))


def test_headless_service_has_no_rules():
    assert "backend-headless" not in render(STATE, W1, slices_of(STATE))
    state = small(**CASES["headless"])
    assert not declared_chains(render(state, "n1", slices_of(state)))


# --- partial sync (render_update; traced in both modes in test_kube_proxy_packets.py) ---

def update(change: str, node: str = W1) -> tuple[str, set[str]]:
    """render_update from services.yaml to CHANGES[change], and the Services it was told about."""
    state, ready = CHANGES[change]
    old_slices, new_slices = slices_of(STATE), slices_of(state, ready)
    only = changed(STATE, old_slices, state, new_slices)
    return render_update(STATE, state, node, old_slices, new_slices, only), only


def alone(state: ClusterState, keys: set[str]) -> ClusterState:
    return replace(state, services=tuple(s for s in state.services if s.key in keys))


@pytest.mark.parametrize("change", [c for c in CHANGES if c != "nothing"])
def test_update_writes_only_the_changed_services(change):
    text, only = update(change)
    state, ready = CHANGES[change]
    theirs = (declared_chains(render(alone(STATE, only), W1, slices_of(STATE)))
              | declared_chains(render(alone(state, only), W1, slices_of(state, ready))))
    assert set(re.findall(r"^:(\S+) ", text, re.M)) <= theirs
    named = set(re.findall(r'--comment "?(default/[a-z-]+)', text))
    assert named and named <= only, named - only
    # the shared chains are edited rule by rule, never flushed or appended to
    shared = "SERVICES|NODEPORTS|EXTERNAL-SERVICES|POSTROUTING|FORWARD|MARK-MASQ"
    assert not re.search(rf"^(:|-A )KUBE-({shared}) ", text, re.M)


@pytest.mark.parametrize("change", CHANGES)
def test_declared_chains_follow_an_update(change):
    """The sync keeps declared_chains() for the next full sync, which deletes what is left over."""
    text, _ = update(change)
    state, ready = CHANGES[change]
    before = declared_chains(render(STATE, W1, slices_of(STATE)))
    assert declared_chains(text, before) == declared_chains(render(state, W1, slices_of(state, ready)))


def test_update_moves_a_service_between_tables():
    """Every backend unready: its ClusterIP rules leave nat KUBE-SERVICES and a REJECT takes their
    place in filter KUBE-SERVICES, inserted at the top."""
    text, _ = update("every backend unready")
    filter_part, nat_part = text.split("*nat")
    cip = r"-d 10\.96\.0\.100/32 -p tcp"
    assert re.search(rf'^-I KUBE-SERVICES 1 {cip} .*"default/backend:http has no endpoints".* -j REJECT', filter_part, re.M)
    assert re.search(rf'^-D KUBE-SERVICES {cip} .*"default/backend:http cluster IP".* -j KUBE-SVC-', nat_part, re.M)
    assert re.search(r"^-X KUBE-SVC-", nat_part, re.M)


def test_adding_one_service_to_a_thousand_is_small():
    state, slices = big_state(1000)
    bigger, more = one_more(state, slices)
    text = render_update(state, bigger, W1, slices, more, {"default/added"})
    assert len(text.splitlines()) < 30, text
    assert not re.search(r"svc-\d{4}", text) and "default/added" in text
    assert len(render(bigger, W1, more).splitlines()) > 1000 * 5


def test_update_refused_over_rules_changed_behind_the_labs_back():
    """-D of a rule that is not there fails the restore: that failure is what sends the sync back to
    a full render. iptables-restore commits table by table, so the filter table before it is
    already changed while the nat table keeps what it had; the full render rewrites both."""
    rs = ruleset(STATE, W1)
    nat = rs.tables["nat"]["KUBE-SERVICES"]
    nat.remove(next(r for r in nat if "default/backend:http cluster IP" in r.text))
    before = snapshot(rs)
    with pytest.raises(ValueError, match="no such rule"):
        rs.restore(update("every backend unready")[0])
    assert snapshot(rs)["nat"] == before["nat"]
    state, ready = CHANGES["every backend unready"]
    existing = declared_chains(render(STATE, W1, slices_of(STATE)))
    rs.restore(render(state, W1, slices_of(state, ready), existing=existing))
    assert snapshot(rs) == snapshot(ruleset(state, W1, ready))


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


def test_chain_names_fit_the_kernel():
    text = "".join(render(STATE, n.name, slices_of(STATE)) for n in STATE.nodes)
    names = set(re.findall(r"^:(\S+) ", text, re.M))
    assert max(len(n) for n in names) <= 28
    for name in names:
        if ch.is_service_chain(name):
            assert len(name) == 25
            assert re.fullmatch(r"KUBE-(SVC|SVL|EXT|SEP)-[A-Z2-7]{16}", name), name
    assert ch.port_proto_hash("default/web", "TCP") == ch.port_proto_hash("default/web", "tcp")
