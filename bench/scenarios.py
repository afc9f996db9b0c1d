"""The corpus of famous bugs (scenarios/): its wall time as CI runs it (one `lab scenario run
--shared`: the scenarios naming one topology share one lab), beside the baseline of the same run:
building and removing those labs alone (`lab up` + `lab down` of each topology), so the figure that
is the corpus's own is the difference.

    sudo .venv/bin/python bench/scenarios.py
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import yaml
from common import LAB, ROOT, table, timed

from lab.scenario import model

CORPUS = sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml"))


def labs(folder: str) -> dict[str, str]:
    """The labs the corpus builds: each topology file once, each inline topology written out."""
    out = {}
    for path in CORPUS:
        s = model.load(Path(path))
        if s.inline is not None:
            out[s.lab] = str(Path(folder) / f"{s.lab}.yaml")
            Path(out[s.lab]).write_text(yaml.safe_dump(s.inline))
        else:
            out.setdefault(s.lab, s.topology)
    return out


def lifecycle(topology: str, name: str) -> float:
    return timed([*LAB, "up", topology]) + timed([*LAB, "down", name])


def main() -> None:
    t0 = time.perf_counter()
    timed([*LAB, "scenario", "run", "--shared", *CORPUS])
    corpus = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as folder:
        built = labs(folder)
        baseline = sum(lifecycle(path, name) for name, path in built.items())
    print(f"{len(CORPUS)} scenarios on {len(built)} labs ({', '.join(built)})\n")
    print(table([
        ("corpus, lab scenario run --shared", corpus, "within the suite's budget (15 min in all)"),
        ("baseline: lab up + down of those labs alone", baseline, "-"),
        ("the scenarios' own steps (difference, roughly)", corpus - baseline, "-"),
    ], column="seconds"))


if __name__ == "__main__":
    main()
