"""A student's session with an exercise: which exercise on which lab, the start token, hints used
and answers given, in /run/k8s-netlab/exercises/NAME.json (K8S_NETLAB_RUN moves the root).

The token is the proof that the live lab is the one `lab exercise start` built: it is written both
here and in the lab's own record (LabRecord.exercise_token). A lab rebuilt by hand (`lab down` +
`lab up`) has a record without it, and grades 0.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from lab.errors import LabError
from lab.host import record as records


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

    def save(self) -> None:
        folder().mkdir(parents=True, exist_ok=True)
        tmp = folder() / f".{self.exercise}.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, folder() / f"{self.exercise}.json")

    def remove(self) -> None:
        """The session goes; so does the sessions folder with the last one (nothing left behind)."""
        (folder() / f"{self.exercise}.json").unlink(missing_ok=True)
        try:
            folder().rmdir()
        except OSError:
            pass  # other sessions remain (or it is already gone)


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
        baked, fresh.faults = fresh.faults, []
        fresh.exercise_token = token
        fresh.save()
    return baked


def token_of(lab: str) -> Optional[str]:
    """The exercise token in the running lab's record ("" if it has none), or None when no such lab runs."""
    try:
        return records.load(lab).exercise_token
    except records.NoSuchLab:
        return None
