"""The kubelet's readiness bookkeeping (lab.node.prober): Tracker thresholds, which containers are
probed, and pod readiness from container verdicts. Pure parts only: no probe is run."""
from __future__ import annotations

import pytest

from lab.controlplane.state import ReadinessState, container_key
from lab.node.prober import Tracker, pod_readiness, probed
from tests.unit.golden import shipped_state


def tracker(success=1, failure=3) -> Tracker:
    return Tracker(ReadinessState(kind="tcp", port=8080, success_threshold=success, failure_threshold=failure))


def feed(t: Tracker, results: str) -> list[bool]:
    """results: 'o' success, 'x' failure -> readiness after each."""
    out = []
    for ch in results:
        t.record(ch == "o")
        out.append(t.ready)
    return out


# --- Tracker ---

def test_a_new_tracker_is_not_ready():
    t = tracker()
    assert (t.ready, t.successes, t.failures) == (False, 0, 0)


def test_one_success_makes_ready_with_the_default_threshold():
    assert feed(tracker(), "o") == [True]


def test_success_threshold_two_needs_two_consecutive_successes():
    assert feed(tracker(success=2), "oo") == [False, True]
    assert feed(tracker(success=2), "oxoxo") == [False] * 5
    assert feed(tracker(success=2), "oxoo") == [False, False, False, True]


def test_failure_threshold_three_needs_three_consecutive_failures():
    assert feed(tracker(failure=3), "oxxx") == [True, True, True, False]


def test_a_success_resets_the_failures():
    assert feed(tracker(failure=3), "oxxoxx") == [True] * 6
    t = tracker(failure=3)
    feed(t, "oxxo")
    assert (t.successes, t.failures) == (1, 0)
    assert feed(t, "xxx") == [True, True, False]


def test_a_failure_resets_the_successes():
    t = tracker(success=3)
    feed(t, "oox")
    assert (t.successes, t.failures, t.ready) == (0, 1, False)
    assert feed(t, "ooo") == [False, False, True]


def test_failures_before_the_first_success_keep_it_unready():
    assert feed(tracker(failure=1), "xxo") == [False, False, True]


def test_failure_threshold_one_drops_at_once():
    assert feed(tracker(failure=1), "ox") == [True, False]


def test_a_ready_container_stays_ready_on_successes_below_the_threshold():
    """successThreshold counts only on the way up: once ready, a single success after a failure keeps it."""
    assert feed(tracker(success=2, failure=3), "ooxo") == [False, True, True, True]


def test_recovering_after_going_unready_needs_the_success_threshold_again():
    assert feed(tracker(success=2, failure=2), "ooxxoo") == [False, True, True, False, False, True]


# --- probed ---

@pytest.fixture(scope="module")
def state():
    return shipped_state("services", dns={"enabled": False})   # its own pods, not the kube-dns add-on


def test_probed_lists_containers_with_a_readiness_probe(state):
    pairs = probed(state)
    assert sorted(p.name.split("-")[0] for p, _ in pairs) == ["backend"] * 3 + ["warming"] * 2
    assert all(c.name == "web" and c.readiness is not None for _, c in pairs)
    assert {c.readiness.path for _, c in pairs} == {"/healthz", "/not-found-yet"}


def test_named_probe_ports_are_resolved(state):
    backend = next(c for p, c in probed(state) if p.name.startswith("backend"))
    assert (backend.readiness.kind, backend.readiness.port, backend.readiness.period) == ("http", 8080, 1)


# --- pod_readiness ---

def test_all_alive_and_no_verdicts_means_ready(state):
    assert pod_readiness(state, {}, lambda key: True) == {p.key: True for p in state.pods}


def test_a_container_without_a_probe_counts_ready_while_alive(state):
    client = next(p for p in state.pods if p.name.startswith("client-"))
    verdicts = {container_key(p, c): False for p, c in probed(state)}
    got = pod_readiness(state, verdicts, lambda key: True)
    assert got[client.key] is True
    assert all(got[p.key] is False for p, _ in probed(state))


def test_a_dead_container_makes_the_pod_unready(state):
    client = next(p for p in state.pods if p.name.startswith("client-"))
    backend = next(p for p, _ in probed(state))
    dead = {f"{client.key}/c", f"{backend.key}/web"}
    verdicts = {f"{backend.key}/web": True}
    got = pod_readiness(state, verdicts, lambda key: key not in dead)
    assert got[client.key] is False
    assert got[backend.key] is False  # its probe passed, but the container is not running
    assert sum(not v for v in got.values()) == 2


def test_a_failing_probe_makes_only_that_pod_unready(state):
    backend = next(p for p, _ in probed(state))
    got = pod_readiness(state, {f"{backend.key}/web": False}, lambda key: True)
    assert [k for k, v in got.items() if not v] == [backend.key]


def test_every_container_must_be_ready():
    from lab.controlplane.plan import plan
    from lab.topology.model import Topology

    st = plan(Topology.model_validate({"name": "pr", "cluster": {"dns": {"enabled": False}}, "nodes": [{"name": "n"}],
                                       "manifests": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"}, "spec": {"containers": [
            {"name": "a", "image": "netexec", "ports": [{"containerPort": 8080}],
             "readinessProbe": {"tcpSocket": {"port": 8080}}},
            {"name": "b", "image": "pause"}]}}]}))
    assert pod_readiness(st, {"default/two/a": True}, lambda k: True) == {"default/two": True}
    assert pod_readiness(st, {"default/two/a": False}, lambda k: True) == {"default/two": False}
    assert pod_readiness(st, {"default/two/a": True}, lambda k: k != "default/two/b") == {"default/two": False}
