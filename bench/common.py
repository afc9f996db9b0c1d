"""Shared by the benchmarks: timing a command, a table that puts figures beside their targets, and
the labs a benchmark creates (named in every command, removed only if this benchmark made them)."""
from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import yaml

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


def table(rows: Sequence[tuple], column: str = "median s") -> str:
    """Rows of (measure, seconds, target) or (measure, seconds, target, met): `met` True/False adds
    an ok/MISSED column (None: no verdict); seconds None prints as '-'."""
    w = max(len(r[0]) for r in rows)
    verdicts = any(len(r) > 3 for r in rows)
    out = [f"{'measure':<{w}}  {column:>9}  " + ("result  " if verdicts else "") + "target"]
    for r in rows:
        name, sec, target = r[:3]
        figure = "-" if sec is None else f"{sec:.3f}"
        met = r[3] if len(r) > 3 else None
        mark = (f"{'' if met is None else 'ok' if met else 'MISSED':<6}  " if verdicts else "")
        out.append(f"{name:<{w}}  {figure:>9}  {mark}{target}".rstrip())
    return "\n".join(out)


# --- labs a benchmark creates ---

def lab_name(topology: str) -> str:
    name = (yaml.safe_load(Path(topology).read_text()) or {}).get("name")
    if not name:
        raise SystemExit(f"{topology}: a benchmark topology needs a `name:` (every lab command names its lab)")
    return name


def renamed(topology: str, name: str, folder: str) -> str:
    """A copy of a topology file under another lab name, written into `folder` (a manifests folder
    stays the original's). Lets a benchmark run beside a lab that has the file's own name."""
    src = Path(topology).resolve()
    doc = yaml.safe_load(src.read_text())
    doc["name"] = name
    if isinstance(doc.get("manifests"), str):
        doc["manifests"] = str((src.parent / doc["manifests"]).resolve())
    out = Path(folder) / f"{name}.yaml"
    out.write_text(f"# {src} under the lab name {name} (written by a benchmark)\n" + yaml.safe_dump(doc, sort_keys=False))
    return str(out)


def _created(name: str) -> Optional[float]:
    """When the lab `name` on this machine was created (its record's timestamp), or None if there
    is no such lab. Two labs of one name, one after the other, never share it."""
    from lab.host import record

    try:
        return json.loads((record.RUN_ROOT / name / "record.json").read_text())["created"]
    except (OSError, ValueError, KeyError):
        return None


class OwnLab:
    """`lab up FILE` (timed, as a user runs it) on entry; `lab down NAME` (timed) on exit, even on
    an error, and only for the lab this `lab up` created: if the name is taken, `lab up` refuses
    and nothing is removed; if the lab was replaced by someone else's meanwhile, it is left alone.

        with OwnLab(path) as lab:
            timed([*LAB, "check", "--lab", lab.name])
        lab.up_seconds, lab.down_seconds
    """

    def __init__(self, topology: str):
        self.topology = topology
        self.name = lab_name(topology)  # the lab's name is the file's: see renamed() for another
        self.up_seconds: Optional[float] = None
        self.down_seconds: Optional[float] = None
        self.created: Optional[float] = None

    def __enter__(self) -> "OwnLab":
        argv = [*LAB, "up", self.topology]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate()
        except BaseException:
            # Ctrl-C reaches `lab up` too, which rolls back what it built: let it finish. If it had
            # already finished building, the lab is this benchmark's: remove it.
            with contextlib.suppress(BaseException):
                proc.wait()
            if proc.returncode == 0:
                self.created = _created(self.name)
                self.down(quiet=True)
            raise
        self.up_seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{out}\n{err}")
        self.created = _created(self.name)
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.down(quiet=kind is not None)  # an error already on its way is the one to report

    def down(self, quiet: bool = False) -> None:
        if self.created is None:
            return
        now = _created(self.name)
        if now != self.created:
            print(f"lab {self.name} is no longer the one this benchmark created; left alone", file=sys.stderr)
            self.created = None
            return
        argv = [*LAB, "down", self.name]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        self.down_seconds = time.perf_counter() - t0
        self.created = None
        if proc.returncode != 0:
            msg = f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            if quiet:
                print(msg, file=sys.stderr)
            else:
                raise SystemExit(msg)


@dataclass
class InProcessLab:
    state: object          # the lab's ClusterState
    up_seconds: float      # lifecycle.up alone


@contextlib.contextmanager
def own_lab_in_process(topology: str, progress: Optional[Callable[[str, float], None]] = None) -> Iterator[InProcessLab]:
    """lifecycle.up in this process (for benchmarks that watch its phases); lifecycle.teardown on
    exit, even on an error, of this lab only. If the name is taken, up refuses before building
    anything, and nothing is removed; a failed up rolls itself back."""
    from lab.host import record
    from lab.runtime import lifecycle

    t0 = time.monotonic()
    state = lifecycle.up(topology, **({"progress": progress} if progress else {}))
    lab = InProcessLab(state, time.monotonic() - t0)
    created = _created(state.lab)
    try:
        yield lab
    finally:
        if created is None or _created(state.lab) != created:
            print(f"lab {state.lab} is no longer the one this benchmark created; left alone", file=sys.stderr)
        else:
            for e in lifecycle.teardown(record.load(state.lab)):
                print(f"lab {state.lab}: {e}", file=sys.stderr)
