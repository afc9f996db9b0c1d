"""Deterministic scheduling: nodeName wins; otherwise the least-loaded node, ties in node order.

This is the spreading the default scheduler ends up with for identical pods on empty nodes, made
deterministic so a topology file always yields the same placement. Like the default scheduler's
NodePorts filter, a pod that asks for hostPorts only goes to a node where they are free.
"""
from __future__ import annotations

from typing import Optional, Sequence

from lab.errors import LabError
from lab.topology.hostports import HostPort, clash


def schedule(nodes: Sequence[str], wanted: Sequence[Optional[str]],
             needs: Optional[Sequence[frozenset[HostPort]]] = None, names: Optional[Sequence[str]] = None) -> list[str]:
    """Place pods in order. `wanted[i]` is pod i's nodeName or None; `needs[i]` the hostPorts it
    asks for, `names[i]` its name for the error when no node has them free."""
    needs = needs or [frozenset()] * len(wanted)
    names = names or [str(i) for i in range(len(wanted))]
    load = {n: 0 for n in nodes}
    taken: dict[str, list[tuple[HostPort, str]]] = {n: [] for n in nodes}
    for w, ports, name in zip(wanted, needs, names):
        if w is not None:
            for p in ports:
                other = next((o for q, o in taken[w] if clash(p, q)), None)
                if other:
                    raise LabError(f"pods {other} and {name} both ask for hostPort {p[0]}/{p[1]} on node {w}: "
                                   "the node has it once (Kubernetes would not run the second there)")
            load[w] += 1
            taken[w] += [(p, name) for p in ports]
    placed = []
    for i, (w, ports) in enumerate(zip(wanted, needs)):
        if w is None:
            free = [n for n in nodes if not any(clash(p, q) for p in ports for q, _ in taken[n])]
            if not free:
                asked = ", ".join(f"{p}/{proto}" for p, proto, _ in sorted(ports))
                raise LabError(f"pod {names[i]} cannot be scheduled: 0/{len(nodes)} nodes are available: "
                               f"{len(nodes)} node(s) didn't have free ports for the requested pod ports "
                               f"(hostPort {asked})")
            w = min(free, key=lambda n: (load[n], nodes.index(n)))
            load[w] += 1
            taken[w] += [(p, names[i]) for p in ports]
        placed.append(w)
    return placed
