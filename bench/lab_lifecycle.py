"""`lab up` / `lab check` / `lab down` of the 30-pod topology, beside the raw baseline, same run.
Every command names its lab, so other labs may run meanwhile; `--lab-name` runs the topology under
another name (e.g. beside a lab called bench30).

    sudo .venv/bin/python bench/lab_lifecycle.py [--rounds N] [--lab-name NAME]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile

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
    raw, cni, up, check, down = [], [], [], [], []
    checks_run = 0
    for _ in range(n):
        try:
            raw.append(raw_baseline.ip_only(state))
            cni.append(raw_baseline.cni_execs(state))
        finally:
            raw_baseline.cleanup(state)
        with OwnLab(topology) as lab:  # `lab down NAME` on the way out, even on an error
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                check.append(timed([*LAB, "check", "--lab", lab.name, "--json", out.name]))
                checks_run = len(json.load(open(out.name))["results"])
        up.append(lab.up_seconds)
        down.append(lab.down_seconds)
    base = median(raw)
    budget = 1.5 * base + median(cni)
    print(f"{len(state.nodes)} nodes, {len(state.pods)} pods, {n} rounds, medians; "
          f"lab commands timed as a user runs them (process start included)\n")
    print(table([
        ("raw baseline: ip -batch, same netns/veths/bridges", base, ""),
        ("raw baseline: CNI plugin execs (loopback+bridge ADD, serial)", median(cni), ""),
        ("lab up, ready for traffic", median(up), f"<= 2.0 s and <= 1.5 x raw + CNI = {budget:.3f} s"),
        (f"lab check, all pairs ({pairs} pod pairs, {checks_run} checks)", median(check), "<= 2.0 s"),
        ("lab down", median(down), "<= 0.5 s"),
    ]))
    ok = median(up) <= min(2.0, budget) and median(check) <= 2.0 and median(down) <= 0.5
    print("\nall figures within target" if ok else "\nSOME FIGURES MISS THEIR TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
