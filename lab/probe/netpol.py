"""The NetworkPolicy truth table, as the upstream e2e suite prints it, observed beside what the
policies say (lab.policy.model, pure).

Sources: every pod with its own network namespace (clients running `pause` or a `command:` too).
Destinations: every such pod that serves something with netexec, probed on its OWN served (port,
protocol) pairs; a cell whose destination does not serve that pair is "not served" ('-'): never
probed, never called denied. hostNetwork pods are neither: they are their node, which policies do
not select. Rows and columns are sorted by namespace/name. Expectations go to the probe engine,
which retries unanswered probes before a verdict: "denied" means every try was dropped; a reset
or ICMP unreachable is not a drop: it always differs from what the policies say.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from lab.controlplane.state import ClusterState, PodState
from lab.errors import LabError
from lab.policy import model
from lab.probe import engine
from lab.probe.engine import Probe, ProbeResult, run_probes

Case = tuple[int, str]                       # (port, protocol)
Key = tuple[str, str, int, str]              # (src key, dst key, port, protocol)

ALLOWED, DENIED, REFUSED, ERROR, NOT_SERVED = "allowed", "denied", "refused", "error", "not served"
MARKS = {ALLOWED: ".", DENIED: "X", REFUSED: "R", ERROR: "E", NOT_SERVED: "-"}
LEGEND = ("rows are sources, columns destinations: '.' reply, 'X' dropped (no reply at any try),\n"
          "'R' refused (a reset or an ICMP unreachable: not a drop), 'E' other error, '-' not served\n"
          "(the destination does not serve that port/protocol: not probed), '*' differs from the policies")


class NothingToProbe(LabError):
    """The matrix would have no cell to probe: an error, never a pass."""


def serves(pod: PodState) -> frozenset[Case]:
    """The (port, protocol) pairs a pod's netexec containers serve (other programs' ports are unknown)."""
    return frozenset((p.port, p.protocol) for c in pod.containers if c.image == "netexec" for p in c.ports)


def _order(pods) -> tuple[PodState, ...]:
    return tuple(sorted(pods, key=lambda p: (p.namespace, p.name)))


def sources(state: ClusterState) -> tuple[PodState, ...]:
    return _order(p for p in state.pods if not p.host_network)


def destinations(state: ClusterState) -> tuple[PodState, ...]:
    return _order(p for p in state.pods if not p.host_network and serves(p))


@dataclass(frozen=True)
class Plan:
    """What the matrix probes, before any probe runs (pure)."""

    sources: tuple[PodState, ...]
    destinations: tuple[PodState, ...]
    cases: tuple[Case, ...]                  # one grid each
    probed: tuple[Key, ...]                  # grid order; the cells whose destination serves the case
    expected: dict                           # Key -> bool, for the probed cells
    family: int = 4                          # the IP family the cells are probed in (--family)

    def served(self, key: Key) -> bool:
        return key in self.expected


def plan(state: ClusterState, ports: Sequence[int] = (), protocols: Sequence[str] = (), family: int = 0) -> Plan:
    """The grids and cells to probe. Without `ports`, one grid per (port, protocol) some destination
    serves (only `protocols` if given); with `ports`, one per port x protocol (default TCP, UDP).
    family: 4 or 6 (default: the cluster's primary), each cell expected as the policies decide for
    that family. Raises NothingToProbe when no cell would be probed, saying why."""
    family = family or state.families[0]
    if family not in state.families:
        raise NothingToProbe(f"lab {state.lab} has no IPv{family} pod addresses (its families: "
                             f"{', '.join(f'IPv{f}' for f in state.families)})")
    srcs, dsts = sources(state), destinations(state)
    protocols = tuple(dict.fromkeys(p.upper() for p in protocols))
    if ports:
        cases = tuple((port, proto) for port in dict.fromkeys(ports) for proto in protocols or ("TCP", "UDP"))
    else:
        cases = tuple(sorted({c for d in dsts for c in serves(d) if not protocols or c[1] in protocols}))
    served = {d.key: serves(d) for d in dsts}
    probed = tuple((s.key, d.key, port, proto) for port, proto in cases for s in srcs for d in dsts
                   if (port, proto) in served[d.key])
    if not probed:
        raise NothingToProbe(_why_nothing(state, srcs, dsts, cases))
    by_key = {p.key: p for p in (*srcs, *dsts)}
    expected = {k: model.allowed(state, by_key[k[0]], by_key[k[1]], k[2], k[3], family) for k in probed}
    return Plan(srcs, dsts, cases, probed, expected, family)


def _why_nothing(state: ClusterState, srcs, dsts, cases) -> str:
    head = f"nothing to probe in lab {state.lab}: "
    if not srcs:
        host = [p.key for p in state.pods if p.host_network]
        return head + ("no pod has its own network namespace" +
                       (f" (hostNetwork pods are their node, not sources: {', '.join(host)})" if host else ""))
    if not dsts:
        what = [f"{p.key} ({', '.join(c.image if not c.argv else ' '.join(c.argv) for c in p.containers)})"
                for p in srcs]
        return head + ("no pod serves anything with netexec, so there is no destination; pods: "
                       f"{', '.join(what)}. Give a pod a netexec container with containerPorts")
    asked = ", ".join(f"{port}/{proto}" for port, proto in cases) or "no port/protocol"
    offered = "; ".join(f"{d.key} {' '.join(f'{p}/{q}' for p, q in sorted(serves(d)))}" for d in dsts)
    return head + f"no destination serves {asked}; served: {offered}"


_CELL = {engine.REPLY: ALLOWED, engine.SILENCE: DENIED, engine.REFUSED: REFUSED, engine.ERROR: ERROR}


def _observed(r: ProbeResult) -> str:
    """The cell's letter from the engine's one classification of what a probe saw."""
    return _CELL[r.seen]


@dataclass(frozen=True)
class Cell:
    src: str
    dst: str
    port: int
    protocol: str
    expected: Optional[bool]                 # None: not served
    observed: str                            # ALLOWED, DENIED, REFUSED, ERROR or NOT_SERVED
    error: Optional[str] = None              # the probe's, at its last try
    attempts: int = 0                        # 0: not probed

    @property
    def differs(self) -> bool:
        return self.expected is not None and self.observed != (ALLOWED if self.expected else DENIED)


@dataclass(frozen=True)
class Matrix:
    plan: Plan
    cells: dict                              # Key -> Cell, every source x destination x case
    timeout: float

    def differences(self) -> list[Cell]:
        return [self.cells[k] for k in self.plan.probed if self.cells[k].differs]

    def not_served(self) -> int:
        return len(self.cells) - len(self.plan.probed)

    def retried(self) -> int:
        return sum(1 for k in self.plan.probed if self.cells[k].attempts > 1)


def cells(p: Plan, results: Sequence[ProbeResult]) -> dict:
    """Every cell of every grid (not-served ones included) from the probed cells' results (pure)."""
    by_key = dict(zip(p.probed, results))
    out = {}
    for port, proto in p.cases:
        for s in p.sources:
            for d in p.destinations:
                k = (s.key, d.key, port, proto)
                r = by_key.get(k)
                out[k] = (Cell(*k, expected=None, observed=NOT_SERVED) if r is None else
                          Cell(*k, p.expected[k], _observed(r), r.error, r.attempts))
    return out


def measure(state: ClusterState, ports: Sequence[int] = (), protocols: Sequence[str] = (),
            timeout: float = 0.5, attempts: int = 3, family: int = 0) -> Matrix:
    p = plan(state, ports, protocols, family)
    ips = {d.key: d.ip_of(p.family) for d in p.destinations}
    netns = {s.key: s.netns for s in p.sources}
    probes = [Probe(netns[s], ips[d], port, proto) for s, d, port, proto in p.probed]
    expect = [engine.REPLY if p.expected[k] else engine.SILENCE for k in p.probed]
    results = run_probes(probes, timeout=timeout, expect=expect, attempts=attempts)
    return Matrix(p, cells(p, results), timeout)


def table(m: Matrix) -> str:
    """One grid per (port, protocol), rows sources, columns destinations; the summary; every
    differing cell with its probe's error."""
    p = m.plan
    first = max(len(s.key) for s in p.sources)
    widths = [max(len(d.key), 2) for d in p.destinations]
    out = [LEGEND, *([f"(IPv{p.family})"] if p.family == 6 else []), ""]
    for port, proto in p.cases:
        out.append(f"{port}/{proto}:")
        out.append(" " * first + "".join(f" {d.key:>{w}}" for d, w in zip(p.destinations, widths)))
        for s in p.sources:
            row = []
            for d, w in zip(p.destinations, widths):
                c = m.cells[(s.key, d.key, port, proto)]
                row.append(f" {MARKS[c.observed] + ('*' if c.differs else ''):>{w}}")
            out.append(f"{s.key:<{first}}" + "".join(row))
        out.append("")
    diff = m.differences()
    n = len(p.probed)
    extra = f" ({m.not_served()} not served, '-')" if m.not_served() else ""
    out.append(f"{n} cells, {len(diff)} differ from what the policies say{extra}" if diff
               else f"{n} cells, observed = expected{extra}")
    for c in diff:
        out.append(f"  {c.src} -> {c.dst} {c.port}/{c.protocol}: expected "
                   f"{ALLOWED if c.expected else DENIED}, observed {c.observed}: {c.error or 'a reply'} "
                   f"({c.attempts} {'try' if c.attempts == 1 else 'tries'})")
    return "\n".join(out)


def as_json(m: Matrix) -> dict:
    p = m.plan
    return {
        "sources": [s.key for s in p.sources],
        "destinations": [d.key for d in p.destinations],
        "cases": [{"port": port, "protocol": proto} for port, proto in p.cases],
        "family": p.family,
        "timeout": m.timeout,
        "probed": len(p.probed),
        "not_served": m.not_served(),
        "differences": len(m.differences()),
        "cells": [{"src": c.src, "dst": c.dst, "port": c.port, "protocol": c.protocol,
                   "expected": None if c.expected is None else (ALLOWED if c.expected else DENIED),
                   "observed": c.observed, "differs": c.differs, "error": c.error, "attempts": c.attempts}
                  for c in m.cells.values()],
    }
