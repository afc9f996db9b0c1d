"""A check consistent with itself (lab.probe.consistent): rows that depend on endpoints are judged
again when readiness changed during the check, every row when the objects changed, and rows still
moving after the last round are unchecked, never a verdict from a change mid-check."""
from __future__ import annotations

from dataclasses import replace

from lab.controlplane.plan import plan
from lab.probe import consistent
from lab.probe.consistent import Snapshot
from lab.probe.outcome import Outcome
from tests.unit.test_plan import shipped, topo


def _state():
    return plan(topo(shipped("vxlan")))


def _row(check: str, passed: bool, seen: str) -> Outcome:
    return Outcome(check, f"{check} row", passed, "expected", seen)


class Lab:
    """The record as the agent moves it: one snapshot per load()."""

    def __init__(self, *snapshots: Snapshot):
        self.snapshots, self.calls = list(snapshots), []

    def load(self) -> Snapshot:
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]

    def check(self, snap: Snapshot, only) -> list[Outcome]:
        self.calls.append((dict(snap.ready), tuple(sorted(only))))
        ready = snap.ready.get("web", False)
        rows = [_row("pod-to-pod", True, "reply"), _row("no-endpoints", not ready, f"ready={ready}")]
        return [r for r in rows if not only or r.check in only]


def test_a_settled_lab_is_checked_once():
    state = _state()
    snap = Snapshot(state, {"web": False}, {})
    lab = Lab(snap)
    settled = consistent.run(snap, lab.load, lab.check)
    assert lab.calls == [({"web": False}, ())] and settled.rejudged == 0 and not settled.moving
    assert [o.passed for o in settled.outcomes] == [True, True]


def test_readiness_changed_mid_check_rejudges_the_endpoint_rows_against_the_new_snapshot():
    state = _state()
    before, after = Snapshot(state, {"web": False}, {}), Snapshot(state, {"web": True}, {})
    lab = Lab(after)
    settled = consistent.run(before, lab.load, lab.check)
    assert lab.calls[0] == ({"web": False}, ())
    assert lab.calls[1][0] == {"web": True} and "no-endpoints" in lab.calls[1][1] and "pod-to-pod" not in lab.calls[1][1]
    assert settled.rejudged == 1
    no_endpoints = [o for o in settled.outcomes if o.check == "no-endpoints"]
    assert len(no_endpoints) == 1 and no_endpoints[0].observed == "ready=True" and not no_endpoints[0].passed
    assert [o.check for o in settled.outcomes] == ["pod-to-pod", "no-endpoints"]


def test_readiness_that_never_settles_leaves_its_rows_unchecked_not_judged():
    state = _state()
    flips = [Snapshot(state, {"web": i % 2 == 0}, {}) for i in range(10)]   # True, False, True ...: never settles
    lab = Lab(*flips)
    settled = consistent.run(Snapshot(state, {"web": False}, {}), lab.load, lab.check)
    assert settled.moving == "readiness" and settled.rejudged == consistent.ROUNDS
    rows = {o.check: o for o in settled.outcomes}
    assert rows["no-endpoints"].unchecked and not rows["no-endpoints"].failed and "changed during each" in \
        rows["no-endpoints"].observed
    assert rows["pod-to-pod"].passed and not rows["pod-to-pod"].unchecked


def test_objects_changed_mid_check_rejudge_every_row():
    state = _state()
    grown = replace(state, pods=state.pods[:-1])
    lab = Lab(Snapshot(grown, {"web": False}, {}))
    settled = consistent.run(Snapshot(state, {"web": False}, {}), lab.load, lab.check)
    assert [only for _, only in lab.calls] == [(), ()] and settled.rejudged == 1
