"""`lab exercise start` and `lab exercise grade` on the 30-pod class of lab (bench/topology-30.yaml:
3 nodes, VXLAN, 30 netexec pods, under the lab name exbench), beside the raw baseline of the same
run: `lab up` of the same topology. The exercise is written here: ip_forward off on worker2, one
visible probe and a hidden `pod-to-pod` row (every pair of the 30 pods, plus kube-dns).

    sudo .venv/bin/python bench/exercises.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import LAB, ROOT, median, renamed, table, timed

NAME = "exbench"
EXERCISE = """title: worker2's pods are an island
level: beginner
topology: topology.yaml
setup:
  - fault: {kind: ip-forward-off, target: node/worker2}
tasks:
  - id: forward
    title: every pod reaches every pod
    points: 10
    checks:
      - check: {from: deploy/web, to: deploy/api}
    hidden:
      - check: {only: [pod-to-pod]}
"""
SOLUTION = "lab exec -l \"$LAB\" node/worker2 -- sysctl -qw net.ipv4.ip_forward=1\n"


def write_exercise(folder: Path) -> Path:
    ex = folder / NAME
    ex.mkdir()
    Path(renamed(str(ROOT / "bench" / "topology-30.yaml"), NAME, str(ex))).rename(ex / "topology.yaml")
    (ex / "exercise.yaml").write_text(EXERCISE)
    (ex / "README.md").write_text("# worker2's pods are an island\n")
    (ex / "SOLUTION.md").write_text("ip_forward=1 on worker2\n")
    (ex / "solution.sh").write_text(SOLUTION)
    return ex


def grade(folder: Path, full: bool) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([*LAB, "exercise", "grade", "-e", NAME, "--dir", str(folder)], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != (0 if full else 1):
        wanted = "full" if full else "partial"
        raise SystemExit(f"grade exited {proc.returncode}, expected {wanted} marks:\n{proc.stdout}{proc.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    rounds = ap.parse_args().rounds
    up, start, broken, solved = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ex = write_exercise(folder)
        for _ in range(rounds):
            up.append(timed([*LAB, "up", str(ex / "topology.yaml")]))
            timed([*LAB, "down", NAME])
            start.append(timed([*LAB, "exercise", "start", NAME, "--dir", str(folder)]))
            try:
                broken.append(grade(folder, full=False))
                timed([*LAB, "exercise", "solve", "-e", NAME])
                solved.append(grade(folder, full=True))
            finally:
                timed([*LAB, "exercise", "stop", "-e", NAME])
    print(f"{rounds} rounds, lab {NAME}: 3 nodes, 30 pods + kube-dns, VXLAN; grade = 1 probe + pod-to-pod (all pairs)\n")
    print(table([
        ("baseline: lab up of the same topology", median(up), "-"),
        ("lab exercise start (lab up + setup + token)", median(start), "<= 2 s", median(start) <= 2),
        ("lab exercise grade, solved (full marks)", median(solved), "<= 2 s", median(solved) <= 2),
        ("lab exercise grade, broken start (probes wait out their tries)", median(broken), "-"),
    ]))


if __name__ == "__main__":
    main()
