"""A student's session with an exercise: which exercise on which lab, the start token, hints used
and answers given, in /run/k8s-netlab/exercises/NAME.json (K8S_NETLAB_RUN moves the root), a folder
only root may read.

The spec is sealed at start: a root-only copy of the exercise folder, without its solutions
(sealed/NAME), and the hash of its exercise.yaml. Grading, checks and hints read the sealed copy,
so a submission that rewrites exercise.yaml changes nothing but a note in the grade.

The token is the proof that the live lab is the one `lab exercise start` built: it is written both
here and in the lab's own record (its `exercise` section). A lab rebuilt by hand (`lab down` +
`lab up`) has a record without it, and grades 0.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from lab import host
from lab.errors import LabError
from lab.host import record as records
from lab.runtime import faults

SECTION = "exercise"  # the record's section of `lab exercise`: the token of the session that built the lab


def folder() -> Path:
    return records.RUN_ROOT / "exercises"


@dataclass
class Session:
    exercise: str                  # the exercise's folder name
    path: str                      # the exercise's folder (absolute)
    lab: str
    token: str
    started: float = field(default_factory=time.time)
    checkpoint: str = ""           # reset --to NAME: the state it started from
    hints: dict[str, int] = field(default_factory=dict)   # task -> static hints given
    computed_hints: int = 0        # hints computed from the live lab
    answers: dict[str, str] = field(default_factory=dict)  # task -> the student's answer
    baked: list[dict] = field(default_factory=list)       # the setup's faults, taken out of `lab fault list`
    sealed: str = ""               # the sealed copy of the exercise folder (grading reads it)
    spec_sha256: str = ""          # exercise.yaml's hash at start
    solved: str = ""               # `lab exercise solve` ran the reference solution: what, when (graded 0)

    def save(self) -> None:
        _private(folder())
        host.replace_file(folder() / f"{self.exercise}.json", json.dumps(asdict(self), indent=1),
                          tmp=folder() / f".{self.exercise}.json.tmp")

    def remove(self) -> None:
        """The session goes, with its sealed copy; so does the sessions folder with the last one
        (nothing left behind)."""
        host.remove(folder() / f"{self.exercise}.json")
        if self.sealed:
            host.remove(self.sealed)
        for d in (folder() / "sealed", folder()):
            host.remove_empty(d)  # else other sessions remain (or it is already gone)

    def spec_changed(self) -> bool:
        """Whether the exercise.yaml of the exercise's folder is not the one sealed at start."""
        return bool(self.spec_sha256) and spec_hash(Path(self.path)) != self.spec_sha256


SOLUTIONS = ("solution.sh", "SOLUTION.md", ".solution")  # what a student's copy never holds


def _private(path: Path) -> None:
    """A folder only root can read (the sessions, their sealed copies)."""
    host.make_dir(path, 0o700)


def spec_hash(exercise_folder: Path) -> str:
    try:
        return hashlib.sha256((exercise_folder / "exercise.yaml").read_bytes()).hexdigest()
    except OSError:
        return "missing"


def seal(s: Session) -> None:
    """Copy the exercise folder (without solutions) where only root reads it, and note its hash."""
    _private(folder() / "sealed")
    target = folder() / "sealed" / s.exercise
    host.remove(target)
    host.copy(s.path, target, ignore=(*SOLUTIONS, "__pycache__"))
    s.sealed, s.spec_sha256 = str(target), spec_hash(target)


def new_token() -> str:
    return secrets.token_hex(16)


def load(name: str) -> Optional[Session]:
    path = folder() / f"{name}.json"
    try:
        return Session(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise LabError(f"the session file {path} is damaged ({e}); `lab exercise reset` starts over") from None


def ended_with(lab: str) -> list[str]:
    """The sessions of a lab that is gone (`lab down`): removed; their exercises' names."""
    gone = []
    for name in names():
        try:
            s = load(name)
        except LabError:
            continue
        if s is not None and s.lab == lab:
            s.remove()
            gone.append(name)
    return gone


def names() -> list[str]:
    d = folder()
    return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []


def find(name: Optional[str]) -> Session:
    """The session a command means: by exercise name, or the only one there is."""
    if name:
        found = load(name)
        if found is None:
            raise LabError(f"exercise {name!r} is not started; `lab exercise start {name}`")
        return found
    started = names()
    if len(started) == 1:
        return load(started[0])
    if not started:
        raise LabError("no exercise is started; `lab exercise list` shows them, `lab exercise start NAME` starts one")
    raise LabError(f"{len(started)} exercises are started ({', '.join(started)}); say which with --exercise NAME")


def stamp(lab: str, token: str) -> list[dict]:
    """Write the token into the lab's record and take the setup's faults out of it (returned): the
    breakage is part of the exercise, not something `lab fault clear` undoes or `lab fault list` shows."""
    rec = records.load(lab)
    with records.locked(rec):
        fresh = records.load(lab)
        baked = faults.take_all(fresh)
        fresh.section(SECTION)["token"] = token
        fresh.save()
    return baked


def token_of(lab: str) -> Optional[str]:
    """The exercise token in the running lab's record ("" if it has none), or None when no such lab runs."""
    try:
        return records.load(lab).sections.get(SECTION, {}).get("token", "")
    except records.NoSuchLab:
        return None
