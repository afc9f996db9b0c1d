"""Shared by the benchmarks: timing a command, and a table that puts figures beside their targets."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = [sys.executable, "-m", "lab"]


def timed(argv: list[str], **kw) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def table(rows: list[tuple[str, float, str]]) -> str:
    w = max(len(r[0]) for r in rows)
    out = [f"{'measure':<{w}}  {'median s':>9}  target"]
    out += [f"{name:<{w}}  {sec:>9.3f}  {target}" for name, sec, target in rows]
    return "\n".join(out)
