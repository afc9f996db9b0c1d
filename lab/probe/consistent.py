"""A check consistent with itself: every row judged against one snapshot of the lab.

While a check runs, the agent moves endpoints as readiness changes (a readinessProbe's
initialDelaySeconds ends, a pod starts failing), and a row judged across that change would mix two
states: a "no-endpoints" row probing a Service that got its first endpoint mid-check, say. So the
lab's record is read again after the check. When readiness changed, the rows that depend on
endpoints (Services, DNS, Ingress, LoadBalancers) are judged again against the new snapshot; when
the state itself changed (pods or Services applied), every row is. After ROUNDS such rounds, rows
still moving are unchecked, saying why: never a verdict from a change mid-check.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Collection, Mapping

from lab.controlplane.state import ClusterState
from lab.probe import dns, gateway, ingress, services
from lab.probe.invariants import INVARIANTS
from lab.probe.outcome import Outcome

ROUNDS = 3
ENDPOINT_ROWS = frozenset(services.CHECKS) | frozenset(dns.CHECKS) | frozenset(ingress.CHECKS) | frozenset(gateway.CHECKS)


@dataclass(frozen=True)
class Snapshot:
    state: ClusterState
    ready: Mapping[str, bool]
    detail: Mapping[str, str]


Check = Callable[[Snapshot, Collection[str]], list[Outcome]]


@dataclass(frozen=True)
class Settled:
    outcomes: list[Outcome]
    rejudged: int = 0   # rounds in which rows were judged again
    moving: str = ""    # what kept changing (the rows it touches are unchecked)


def run(snap: Snapshot, load: Callable[[], Snapshot], check: Check, rounds: int = ROUNDS) -> Settled:
    """check(snapshot, only) judges the rows `only` names (all when empty) against a snapshot,
    first `snap`; load() reads the lab's record as it is now."""
    outcomes = check(snap, ())
    for n in range(rounds):
        now = load()
        moved = _moved(snap, now)
        if not moved:
            return Settled(outcomes, n)
        snap = now
        outcomes = _merged(outcomes, check(snap, ENDPOINT_ROWS)) if moved == "readiness" else check(snap, ())
    moved = _moved(snap, load())
    if not moved:
        return Settled(outcomes, rounds)
    why = f"{moved} changed during each of {rounds + 1} checks: not judged (`lab wait`, then check again)"
    touched = ENDPOINT_ROWS if moved == "readiness" else None
    return Settled([replace(o, passed=False, unchecked=True, observed=why) if touched is None or o.check in touched else o
                    for o in outcomes], rounds, moved)


def _moved(before: Snapshot, now: Snapshot) -> str:
    if now.state != before.state:
        return "the lab's objects"
    return "readiness" if dict(now.ready) != dict(before.ready) else ""


def _merged(kept: list[Outcome], fresh: list[Outcome]) -> list[Outcome]:
    order = list(INVARIANTS)
    return sorted([o for o in kept if o.check not in ENDPOINT_ROWS] + fresh, key=lambda o: order.index(o.check))
