"""`make fuzz`: a long fuzz run of every entry point that reads a user's file or argument
(tests/fuzzing.py), with the figures docs/PERFORMANCE.md quotes: cases, crashes (tracebacks,
internal errors), hangs, and the time per document (p50, p99, max; and its CPU time, p50 and p99,
which other work on a shared machine does not inflate). Each crashing input is kept
under tests/data/fuzz/TARGET/ for tests/unit/test_fuzz.py to replay.

    .venv/bin/python bench/fuzz.py [--cases 100000] [--seed 1] [--targets topology,objects]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from tests import fuzzing  # noqa: E402


def run_target(ws: fuzzing.Workspace, target: str, cases: int, rng_seed: int) -> dict:
    times: list[float] = []
    cpu: list[float] = []
    crashes: dict[str, str] = {}   # first line of the error → the input
    hangs: list[str] = []

    @seed(rng_seed)
    @settings(max_examples=cases, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=["generate"])
    @given(fuzzing.strategy(ws, target))
    def one(text):
        try:
            with fuzzing.deadline(30):
                outcome = ws.run(target, text)
        except fuzzing.Hang:
            hangs.append(text)
            return
        times.append(outcome.seconds)
        cpu.append(outcome.cpu)
        if outcome.hung and ws.run(target, text).hung:  # slow twice: not a moment of load on a shared machine
            hangs.append(text)
        if outcome.crashed:
            key = next((line for line in reversed(outcome.output.splitlines()) if line.strip()), "?")
            crashes.setdefault(key, text)

    t0 = time.monotonic()
    one()
    wall = time.monotonic() - t0
    for text in list(crashes.values()) + hangs:
        folder = fuzzing.REGRESSIONS / target
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}.yaml").write_text(
            text, encoding="utf-8", errors="surrogatepass")
    times.sort()
    cpu.sort()
    pick = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else 0.0  # noqa: E731
    return {"target": target, "cases": len(times) + len([h for h in hangs if h]), "crashes": len(crashes),
            "hangs": len(hangs), "p50": pick(times, 0.5), "p99": pick(times, 0.99),
            "max": times[-1] * 1000 if times else 0.0, "cpu_p50": pick(cpu, 0.5), "cpu_p99": pick(cpu, 0.99),
            "wall": wall, "errors": list(crashes)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000, help="in all, shared among the targets (default 100000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--targets", default=",".join(fuzzing.TARGETS))
    a = ap.parse_args()
    targets = a.targets.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="wdfuzz-") as tmp:
        ws = fuzzing.Workspace(Path(tmp))
        for target in targets:
            r = run_target(ws, target, a.cases // len(targets), a.seed)
            rows.append(r)
            print(f"{r['target']:<10} {r['cases']:>7} cases  {r['crashes']:>3} crashes  {r['hangs']:>3} hangs  "
                  f"p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  max {r['max']:7.1f} ms  "
                  f"CPU p50 {r['cpu_p50']:5.1f} ms  p99 {r['cpu_p99']:5.1f} ms  ({r['wall']:.0f}s)",
                  flush=True)
            for e in r["errors"]:
                print(f"    {e[:200]}")
    total = sum(r["cases"] for r in rows)
    wall = sum(r["wall"] for r in rows)
    print(f"total      {total:>7} cases  {sum(r['crashes'] for r in rows):>3} crashes  "
          f"{sum(r['hangs'] for r in rows):>3} hangs  {wall:.0f}s ({total / wall:.0f} documents/s)")
    return 1 if any(r["crashes"] or r["hangs"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
