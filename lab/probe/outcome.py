"""One verdict of the harness: what was checked, whether it held, what was expected and seen.

A row is in one of three states: passed; unchecked (the harness could not probe it, and says why:
neither a pass nor a failure, never counted as one); or failed. A pass records the tries it
needed; `flaky` marks a failure found by comparing those tries between client nodes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from lab.probe.engine import ERROR, REFUSED, REPLY, SILENCE, ProbeResult


@dataclass(frozen=True)
class Outcome:
    check: str        # a key of lab.probe.invariants.INVARIANTS
    subject: str      # the pair or the pod this is about, for people
    passed: bool
    expected: str
    observed: str
    source: str = ""  # for programs: the namespace the probe left from
    target: str = ""  # and where it went, "ip:port/protocol"
    attempts: int = 1  # tries the probe needed (a row of many probes: its most)
    node: str = ""    # the client's node, where the client is a node or a pod
    unchecked: bool = False  # not probed (observed says why): not a pass, not a failure
    flaky: bool = False      # failed: passed only after retries where other nodes passed at once
    settled: bool = True     # False: passed after retries, and a confirmation went unanswered

    @property
    def failed(self) -> bool:
        return not self.passed and not self.unchecked

    @property
    def retried(self) -> bool:
        """A pass that needed more than one try."""
        return self.passed and self.attempts > 1


def describe(r: ProbeResult) -> str:
    """What a probe saw, in words, from its one classification (lab.probe.engine)."""
    tries = f"{r.attempts} {'try' if r.attempts == 1 else 'tries'}"
    return {REPLY: f"reply, source seen {r.seen_source}" + (f" (at try {r.attempts})" if r.attempts > 1 else ""),
            SILENCE: f"no reply at any of {tries}: {r.error}",
            REFUSED: f"refused ({r.error}; {tries})" if r.kind == REFUSED else
            f"refused at an earlier try, then {r.error} ({tries})",
            ERROR: f"probe error, nothing judged: {r.error}"}[r.seen]


def refused_hint(r: ProbeResult) -> str:
    """Why a refusal fails a deny: it is the kernel's answer, not a NetworkPolicy's drop."""
    return f" — refused is not denied: {r.hint or 'a reset or an ICMP unreachable came back'}; a NetworkPolicy drops silently " \
           "(write expect: refused if that is what the check means)"


def mark_flaky(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Fail as flaky every pass that needed retries from one client node and was not confirmed (a
    confirmation went unanswered: lab.probe.engine) while, for the same check and target, every
    row from another node passed at the first try. A settled lab answers every node at once; a
    stale rule on one node answers some picks and drops others, and a reply at a later try must not
    outvote that (retries confirm a settled state, they do not vote); a machine that was merely
    slow answers the confirmations. Rows without a client node or a target are left as they are."""
    steady: dict[tuple[str, str], dict[str, bool]] = {}
    for o in outcomes:
        if o.node and o.target and not o.unchecked:
            by_node = steady.setdefault((o.check, o.target), {})
            by_node[o.node] = by_node.get(o.node, True) and o.passed and o.attempts == 1
    out = []
    for o in outcomes:
        others = sorted(n for n, ok in steady.get((o.check, o.target), {}).items() if ok and n != o.node)
        if o.retried and not o.settled and o.node and others:
            o = replace(o, passed=False, flaky=True,
                        observed=f"{o.observed}; flaky: passed from node {o.node} only at try {o.attempts}, and "
                                 f"a confirmation went unanswered, while from node {others[0]} every probe to "
                                 f"{o.target} passed at the first try")
        out.append(o)
    return out
