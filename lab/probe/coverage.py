"""Which pairs `lab check` probes: every pair up to ALL_PAIRS_UP_TO pods, beyond that a covering
sample. All pairs grow as n²: 300 pods are 90,000 connections, 1000 pods a million — minutes of
probing that prove little more than a sample in which every pod is a source and a destination at
least once and every ordered pair of nodes (each direction, and a node with itself) is crossed.
The sample is drawn from a seed that the report prints, so a run can be repeated exactly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence, TypeVar

ALL_PAIRS_UP_TO = 100
SERVICE_CLIENTS_PER_NODE = 2   # sampled Service clients: per node, so every node's rules are used
S = TypeVar("S")
D = TypeVar("D")


@dataclass(frozen=True)
class Coverage:
    """How much of the pair space a check covers: everything, or a sample drawn from `seed`."""

    all_pairs: bool
    seed: int = 0

    def describe(self, pods: int) -> str:
        if self.all_pairs:
            return f"all pairs ({pods} pods)"
        return (f"a covering sample ({pods} pods > {ALL_PAIRS_UP_TO}: every pod as source and destination, "
                f"every node pair both ways; seed {self.seed}; --all-pairs for every pair, --seed {self.seed} "
                f"to repeat)")


ALL_PAIRS = Coverage(True)


def choose(pods: int, all_pairs: bool, seed: int | None) -> Coverage:
    """All pairs for small labs or when asked; otherwise a sample, seeded (a fresh seed if none)."""
    if all_pairs or pods <= ALL_PAIRS_UP_TO:
        return Coverage(True, seed or 0)
    return Coverage(False, seed if seed is not None else random.SystemRandom().randrange(1, 1 << 31))


def covering_pairs(sources: Sequence[S], targets: Sequence[D], key_s: Callable[[S], Hashable],
                   key_d: Callable[[D], Hashable], node_s: Callable[[S], str], node_d: Callable[[D], str],
                   seed: int) -> list[tuple[S, D]]:
    """Pairs in which every source and every target appears at least once, and every ordered node
    pair (a, b) with a source on a and a target on b is crossed; never an object with itself
    (same key). Deterministic for a seed; sources and targets are taken in the order given."""
    if not sources or not targets:
        return []
    rng = random.Random(seed)
    shuffled = list(targets)
    rng.shuffle(shuffled)
    seen: set[tuple[Hashable, Hashable]] = set()
    crossed: set[tuple[str, str]] = set()
    out: list[tuple[S, D]] = []

    def add(s: S, d: D) -> None:
        pair = (key_s(s), key_d(d))
        if pair[0] != pair[1] and pair not in seen:
            seen.add(pair)
            crossed.add((node_s(s), node_d(d)))
            out.append((s, d))

    for i in range(max(len(sources), len(targets))):
        s = sources[i % len(sources)]
        d = shuffled[i % len(shuffled)]
        if key_s(s) == key_d(d):  # never itself: cover each of the two with another partner
            add(sources[(i + 1) % len(sources)], d)
            d = shuffled[(i + 1) % len(shuffled)]
        add(s, d)
    for a in sorted({node_s(s) for s in sources}):
        for b in sorted({node_d(d) for d in targets}):
            if (a, b) in crossed:
                continue
            here = [s for s in sources if node_s(s) == a]
            there = [d for d in targets if node_d(d) == b]
            rng.shuffle(here)
            for s in here:  # the first source that has a target other than itself there
                others = [d for d in there if key_d(d) != key_s(s)]
                if others:
                    add(s, rng.choice(others))
                    break
    return out


def service_clients(clients: Sequence[S], node_of: Callable[[S], str], seed: int) -> list[S]:
    """A sample of Service clients: SERVICE_CLIENTS_PER_NODE per node, drawn from the seed."""
    rng = random.Random(seed ^ 0x5EED)
    by_node: dict[str, list[S]] = {}
    for c in clients:
        by_node.setdefault(node_of(c), []).append(c)
    out = []
    for node in sorted(by_node):
        pool = by_node[node]
        out += rng.sample(pool, min(SERVICE_CLIENTS_PER_NODE, len(pool)))
    return out
