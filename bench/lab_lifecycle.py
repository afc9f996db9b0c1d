"""`lab up` / `lab check` / `lab down` of the 30-pod topology (31 pods with kube-dns), each beside a
raw baseline from the same round: the floor (bench/raw_baseline.py: all that `lab up` does, by
hand), the floor torn down by hand, and one batch of TCP connections from one pod to every other.
Every command names its lab, so other labs may run meanwhile; `--lab-name` runs the topology under
another name (e.g. beside a lab called bench30). The machine's load average is printed with the
table: other labs on the machine slow every figure.

    sudo .venv/bin/python bench/lab_lifecycle.py [--rounds N] [--lab-name NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import LAB, ROOT, OwnLab, median, renamed, table, timed

from lab.controlplane.plan import plan
from lab.topology.load import load_topology

import raw_baseline

TOPOLOGY = str(ROOT / "bench" / "topology-30.yaml")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lab-name", help="the lab's name (default: the topology's own, bench30)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        topology = renamed(TOPOLOGY, a.lab_name, tmp) if a.lab_name else TOPOLOGY
        return rounds(topology, a.rounds)


def rounds(topology: str, n: int) -> int:
    state = plan(load_topology(topology))
    pairs = sum(1 for p in state.pods for q in state.pods if p != q)
    floor: dict[str, list[float]] = {}
    by_hand, connect, up, check, down, load = [], [], [], [], [], []
    checks_run = 0
    for _ in range(n):
        load.append(os.getloadavg()[0])
        with tempfile.TemporaryDirectory() as tmp:
            try:
                for phase, seconds in raw_baseline.floor(state, Path(tmp)).items():
                    floor.setdefault(phase, []).append(seconds)
            finally:
                t0 = time.perf_counter()
                raw_baseline.cleanup(state, Path(tmp))
                by_hand.append(time.perf_counter() - t0)
        with OwnLab(topology) as lab:  # `lab down NAME` on the way out, even on an error
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                check.append(timed([*LAB, "check", "--lab", lab.name, "--json", out.name]))
                checks_run = len(json.load(open(out.name))["results"])
            connect.append(raw_baseline.connections(lab.name).seconds)
        up.append(lab.up_seconds)
        down.append(lab.down_seconds)
    base = median(floor["everything"])
    print(f"{len(state.nodes)} nodes, {len(state.pods)} pods, {n} rounds, medians; lab commands timed as a "
          f"user runs them (process start included); load average 1 min at each round's start: "
          f"{', '.join(f'{x:.1f}' for x in load)} (2 cores)\n")
    print(table([
        ("raw baseline: everything lab up does, by hand (the floor)", base, ""),
        *((f"raw baseline:   {phase}", median(xs), "") for phase, xs in floor.items() if phase != "everything"),
        ("raw baseline: the floor torn down by hand", median(by_hand), ""),
        ("raw baseline: TCP connections from one pod to every other, one batch", median(connect), ""),
        ("lab up, ready for traffic", median(up), f"<= 1.1 x the floor = {1.1 * base:.3f} s",
         median(up) <= 1.1 * base),
        (f"lab check, all pairs ({pairs} pod pairs, {checks_run} checks)", median(check), "<= 0.5 s",
         median(check) <= 0.5),
        ("lab down", median(down), "<= 0.4 s, every link gone", median(down) <= 0.4),
    ]))
    ok = median(up) <= 1.1 * base and median(check) <= 0.5 and median(down) <= 0.4
    print("\nall figures within target" if ok else "\nSOME FIGURES MISS THEIR TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
