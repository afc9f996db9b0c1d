"""The NetworkPolicy truth table, as the upstream e2e suite prints it: every pod to every pod
(itself included), on every port and protocol the pods serve, observed beside what the policies
say (computed, pure), every differing cell marked."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from lab.controlplane.state import ClusterState, PodState
from lab.policy import model
from lab.probe.engine import Probe, run_probes


@dataclass(frozen=True)
class Matrix:
    pods: tuple[PodState, ...]
    cases: tuple[tuple[int, str], ...]                     # (port, protocol)
    expected: dict                                         # (src key, dst key, port, protocol) -> bool
    observed: dict

    def differences(self) -> list[tuple[str, str, int, str]]:
        return [k for k in self.expected if self.expected[k] != self.observed[k]]


def served(state: ClusterState) -> tuple[tuple[int, str], ...]:
    """The (port, protocol) pairs every probed pod serves with netexec (the e2e layout: 80, 81 × TCP, UDP)."""
    pods = targets(state)
    sets = [{(p.port, p.protocol) for c in pod.containers if c.image == "netexec" for p in c.ports} for pod in pods]
    return tuple(sorted(set.intersection(*sets))) if sets else ()


def targets(state: ClusterState) -> list[PodState]:
    return [p for p in state.pods if not p.host_network and any(c.image == "netexec" for c in p.containers)]


def measure(state: ClusterState, cases: Sequence[tuple[int, str]] = (), timeout: float = 1.0) -> Matrix:
    pods = targets(state)
    cases = tuple(cases) or served(state)
    keys = [(s.key, d.key, port, proto) for port, proto in cases for s in pods for d in pods]
    by_key = {p.key: p for p in pods}
    probes = [Probe(by_key[s].netns, by_key[d].ip, port, proto) for s, d, port, proto in keys]
    results = run_probes(probes, timeout=timeout)
    expected = model.expected_matrix(state, pods, [c[0] for c in cases], [c[1] for c in cases])
    return Matrix(tuple(pods), cases, {k: expected[k] for k in keys}, {k: r.ok for k, r in zip(keys, results)})


def table(m: Matrix) -> str:
    """One grid per port/protocol: '.' connected, 'X' blocked; a differing cell shows the observed
    value with '*' (expected the other)."""
    names = [f"{p.namespace}/{p.name}" for p in m.pods]
    width = max(len(n) for n in names) + 1
    out = []
    for port, proto in m.cases:
        out.append(f"{port}/{proto}: rows are sources, columns destinations ('.' allowed, 'X' denied, "
                   f"'*' observed differs from expected)")
        out.append(" " * width + " ".join(f"{n:>{width}}" for n in names))
        for s in m.pods:
            cells = []
            for d in m.pods:
                k = (s.key, d.key, port, proto)
                mark = "." if m.observed[k] else "X"
                cells.append(f"{mark + ('*' if m.observed[k] != m.expected[k] else ''):>{width}}")
            out.append(f"{s.namespace + '/' + s.name:<{width}}" + " ".join(cells))
        out.append("")
    diff = m.differences()
    out.append(f"{len(m.expected)} cells, {len(diff)} differ from what the policies say" if diff
               else f"{len(m.expected)} cells, observed = expected")
    for s, d, port, proto in diff[:20]:
        out.append(f"  {s} -> {d} {port}/{proto}: expected {'allowed' if m.expected[(s, d, port, proto)] else 'denied'}, "
                   f"observed {'allowed' if m.observed[(s, d, port, proto)] else 'denied'}")
    return "\n".join(out)
