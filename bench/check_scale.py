"""`lab check` at scale: a 5-node vxlan lab, one Deployment of N netexec pods (TCP 8080) behind one
ClusterIP Service (80 -> 8080), cluster DNS on; for each N, `lab up` timed, then `lab check --lab
NAME --json FILE` several times in a row, each timed as a user sees it (the whole CLI call), with
its number of checks, its failures (the first five printed) and its scope (all pairs, or a covering
sample and its seed), then `lab down NAME`. Beside them, in the same run, a raw baseline: one
batch of TCP connections from one pod to every other, through the lab's probe engine directly.

    sudo .venv/bin/python bench/check_scale.py [--pods 300,1000] [--runs 3] [--topology-dir DIR]

Targets (issue 9): 0 failures in every run; 300 pods <= 5 s, 1000 pods <= 10 s per check.
Labs are named scale<N> (scale300, scale1000); every lab command names its lab.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from common import LAB, OwnLab, table

import raw_baseline

NODES = ["control-plane"] + [f"worker{i}" for i in range(1, 5)]
TARGET_SECONDS = {300: 5.0, 1000: 10.0}   # per `lab check`; other sizes: 0 failures only
TARGET_UP_DOWN = {1000: (10.0, 5.0)}      # `lab up`, `lab down` (issue 22)
NOTES: list[str] = []                     # printed under the table
SHOW_FAILURES = 5


def topology(n: int, name: str) -> dict:
    return {
        "name": name,
        "cluster": {"network": "vxlan", "cni": "bridge", "dns": {"enabled": True}},
        "nodes": [{"name": x, **({"role": "control-plane"} if x == "control-plane" else {})} for x in NODES],
        "manifests": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": n, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "web", "image": "netexec",
                                                            "ports": [{"containerPort": 8080}]}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        ],
    }


def write_topology(n: int, name: str, folder: str) -> str:
    """bench/check_scale.py's topology for n pods, as a file (topology-<name>.yaml in folder)."""
    path = Path(folder) / f"topology-{name}.yaml"
    path.write_text(f"# Written by bench/check_scale.py: 5 nodes, {n} netexec pods behind one Service, DNS on.\n"
                    + yaml.safe_dump(topology(n, name), sort_keys=False))
    return str(path)


@dataclass
class CheckRun:
    wall: Optional[float]             # the whole `lab check` call; None if it was killed
    code: Optional[int] = None
    checks: int = 0
    failures: list = field(default_factory=list)
    scope: str = ""
    inside: Optional[float] = None    # the check's own clock ("elapsed" in its JSON)
    error: str = ""                   # no verdicts: a crash, a timeout, no JSON

    @property
    def clean(self) -> bool:
        return not self.error and not self.failures and self.checks > 0


def check_once(name: str, limit: float, extra: list[str]) -> CheckRun:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "check.json"
        argv = [*LAB, "check", "--lab", name, "--json", str(out), *extra]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return CheckRun(None, error=f"no verdict within {limit:.0f} s (the call was stopped)")
        run = CheckRun(time.perf_counter() - t0, proc.returncode)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        try:
            data = json.loads(out.read_text())
        except (OSError, ValueError) as e:
            run.error = f"exit {proc.returncode}, no JSON ({e}): {tail}"
            return run
    results = data.get("results", [])
    run.checks, run.scope, run.inside = len(results), data.get("scope", ""), data.get("elapsed")
    run.failures = [r for r in results if r.get("passed") is False]
    if proc.returncode not in (0, 1):
        run.error = f"exit {proc.returncode}: {tail}"
    elif (proc.returncode == 1) != bool(run.failures):
        run.error = f"exit {proc.returncode} with {len(run.failures)} failing results in its JSON"
    return run


def clip(text, limit: int = 400) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters; the JSON has all)"


def describe(name: str, i: int, r: CheckRun) -> str:
    if r.wall is None:
        return f"{name} check {i}: {r.error}"
    inside = f" (its own clock {r.inside:.2f} s)" if r.inside is not None else ""
    lines = [f"{name} check {i}: {r.wall:.2f} s{inside}, {r.checks} checks, {len(r.failures)} failed; "
             f"scope: {r.scope or '(not stated)'}"]
    if r.error:
        lines.append(f"  ERROR: {r.error}")
    for f in r.failures[:SHOW_FAILURES]:
        lines.append(f"  [{f.get('check')}] {f.get('subject')}\n      expected {clip(f.get('expected'))}; "
                     f"observed {clip(f.get('observed'))}")
    if len(r.failures) > SHOW_FAILURES:
        lines.append(f"  ... and {len(r.failures) - SHOW_FAILURES} more")
    return "\n".join(lines)


def pss_mib(pids) -> float:
    """The processes' proportional set size (a page shared by k processes counts 1/k to each)."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # gone meanwhile
        total += next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
    return total / 1024


def memory(name: str, available_before: int) -> tuple[float, float]:
    """MiB per pod: the lab's processes (PSS), and the machine's MemAvailable drop since before
    `lab up` (the kernel's share included: namespaces, links, sockets, rules; other work on the
    machine moves it too)."""
    from lab.host import record
    from lab.node import processes

    rec = record.find(name)
    pods = len(rec.state.pods)
    return pss_mib(processes.owned_pids(rec.netns)) / pods, (available_before - mem_available()) / 1024 / pods


def mem_available() -> int:
    """kB, from /proc/meminfo."""
    return next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemAvailable:"))


def by_hand(path: str) -> tuple[float, float]:
    """The floor (bench/raw_baseline.py) for this topology, and the same torn down by hand."""
    from lab.controlplane.plan import plan
    from lab.topology.load import load_topology

    state = plan(load_topology(path))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            up = raw_baseline.floor(state, Path(tmp))["everything"]
        finally:
            t0 = time.perf_counter()
            raw_baseline.cleanup(state, Path(tmp))
            down = time.perf_counter() - t0
    return up, down


def measure(n: int, name: str, folder: str, runs: int, limit: float, extra: list[str]) -> tuple[list, bool]:
    """Rows for the table, and whether every figure met its target."""
    path = write_topology(n, name, folder)
    target = TARGET_SECONDS.get(n)
    load = os.getloadavg()[0]
    floor_up, floor_down = by_hand(path)
    print(f"{name}: the floor {floor_up:.2f} s, torn down by hand {floor_down:.2f} s (load {load:.1f})", flush=True)
    before = mem_available()
    with OwnLab(path) as lab:  # `lab down NAME` on the way out, even on an error
        print(f"{name}: lab up {lab.up_seconds:.2f} s ({path})", flush=True)
        per_pod = memory(name, before)
        print(f"{name}: memory per pod: {per_pod[0]:.2f} MiB of processes (PSS), {per_pod[1]:.2f} MiB "
              "of MemAvailable", flush=True)
        checks = []
        for i in range(1, runs + 1):
            checks.append(check_once(name, limit, extra))
            print(describe(name, i, checks[-1]), flush=True)
        base = raw_baseline.connections(name, owner="Deployment/web")
        print(f"{name} baseline: {base.connections} connections in {base.seconds:.3f} s, {base.ok} answered, "
              f"{base.retried} needed a retry" + "".join(f"\n  {e}" for e in base.errors[:SHOW_FAILURES]), flush=True)
    up_target, down_target = TARGET_UP_DOWN.get(n, (None, None))
    rows: list[tuple] = [
        (f"{n} pods: raw baseline: everything lab up does, by hand (the floor)", floor_up, ""),
        (f"{n} pods: lab up (5 nodes, vxlan, DNS on, 1 Service)", lab.up_seconds,
         f"<= {up_target:g} s" if up_target else "", lab.up_seconds <= up_target if up_target else None),
    ]
    NOTES.append(f"{n} pods: load average (1 min) before the floor: {load:.1f} on 2 cores")
    NOTES.append(f"{n} pods: memory per pod: {per_pod[0]:.2f} MiB of the lab's processes (PSS), "
                 f"{per_pod[1]:.2f} MiB of MemAvailable (kernel included; other work on the machine moves it)")
    ok = up_target is None or lab.up_seconds <= up_target
    for i, r in enumerate(checks, 1):
        met = r.clean and (target is None or (r.wall is not None and r.wall <= target))
        ok &= met
        what = (f"{r.checks} checks, {len(r.failures)} failed" if not r.error or r.checks
                else "no verdict")
        rows.append((f"{n} pods: lab check {i} ({what})", r.wall,
                     f"<= {target:g} s, 0 failures" if target else "0 failures", met))
    rows.append((f"{n} pods: raw baseline: {base.connections} TCP connections from one pod, one batch "
                 f"({base.ok} answered)", base.seconds, ""))
    rows.append((f"{n} pods: raw baseline: the floor torn down by hand", floor_down, ""))
    down_met = lab.down_seconds <= down_target if down_target else None
    rows.append((f"{n} pods: lab down", lab.down_seconds, f"<= {down_target:g} s, every link gone" if down_target else "",
                 down_met))
    ok &= down_met is not False
    return rows, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", default="300,1000", help="comma-separated lab sizes (default 300,1000)")
    ap.add_argument("--runs", type=int, default=3, help="lab check calls in a row per size (default 3)")
    ap.add_argument("--topology-dir", help="write the generated topologies here (default: a temporary folder)")
    ap.add_argument("--seed", type=int, help="passed to lab check (the covering sample's seed)")
    ap.add_argument("--check-limit", type=float, default=900,
                    help="seconds after which a lab check call is stopped and counted as no verdict (default 900)")
    a = ap.parse_args()
    sizes = [int(x) for x in a.pods.split(",") if x.strip()]
    extra = ["--seed", str(a.seed)] if a.seed is not None else []
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.topology_dir or tmp
        Path(folder).mkdir(parents=True, exist_ok=True)
        for n in sizes:
            r, good = measure(n, f"scale{n}", folder, a.runs, a.check_limit, extra)
            rows += r
            ok &= good
    print(f"\n5 nodes (vxlan, bridge CNI, cluster DNS), one Deployment of N netexec pods behind one ClusterIP "
          f"Service; {a.runs} lab check calls in a row per size, each timed as a user runs it\n")
    print(table(rows, column="s"))
    print("\n".join(["", *NOTES]))
    print("\nall figures within target" if ok else "\nSOME FIGURES MISS THEIR TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
