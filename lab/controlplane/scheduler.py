"""Deterministic scheduling: nodeName wins; otherwise the least-loaded node, ties in node order.

This is the spreading the default scheduler ends up with for identical pods on empty nodes, made
deterministic so a topology file always yields the same placement.
"""
from __future__ import annotations

from typing import Optional, Sequence


def schedule(nodes: Sequence[str], wanted: Sequence[Optional[str]]) -> list[str]:
    """Place pods in order. `wanted[i]` is pod i's nodeName or None."""
    load = {n: 0 for n in nodes}
    for w in wanted:
        if w is not None:
            load[w] += 1
    placed = []
    for w in wanted:
        if w is None:
            w = min(nodes, key=lambda n: (load[n], nodes.index(n)))
            load[w] += 1
        placed.append(w)
    return placed
