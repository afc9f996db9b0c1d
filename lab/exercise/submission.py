"""`lab exercise submit`: a student's submission run against the started exercise, confined
(lab.exercise.sandbox plans it, lab.exercise.broker serves its `lab` commands).

A submission is a folder whose solution.sh fixes the lab as the student did by hand, or one script.
It runs in its own folder (a copy) with LAB, LAB_EXERCISE and `lab` on PATH, as the honest
solutions expect; whatever it leaves running is killed with its PID namespace when it ends or at
the timeout.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from lab import host
from lab.errors import LabError
from lab.exercise import sandbox, session as sessions
from lab.exercise.broker import Broker
from lab.exercise.model import Exercise, default_dir
from lab.host import record as records

ENTRY = "solution.sh"
CLIENT = Path(__file__).with_name("client.py")
OUTPUT_LIMIT = 1 << 20   # what of the submission's output is kept (its end)
FILE_LIMIT = 16 << 20   # bytes: the largest file the submission may write (its output included)


@dataclass(frozen=True)
class Ran:
    code: Optional[int]      # None: stopped at the timeout
    output: str
    served: int              # `lab` commands the broker ran for it
    refused: int             # and refused


def submit(ex: Exercise, s: sessions.Session, path: Path, who: sandbox.Student, timeout: float,
           hide: Sequence[str] = ()) -> Ran:
    path = path.resolve()
    if not (path.is_file() or (path / ENTRY).is_file()):
        raise LabError(f"{path}: a submission is a folder with {ENTRY}, or one script")
    box = records.RUN_ROOT / "submissions" / sessions.new_token()[:12]
    box.mkdir(parents=True, mode=0o711)
    os.chmod(box, 0o711)  # the student passes through to its socket and client, reads nothing else
    try:
        return _run(ex, s, path, who, timeout, hide, box)
    finally:
        shutil.rmtree(box, ignore_errors=True)
        try:
            box.parent.rmdir()
        except OSError:
            pass  # another submission runs


def _run(ex, s, path: Path, who: sandbox.Student, timeout: float, hide: Sequence[str], box: Path) -> Ran:
    (box / "bin").mkdir(mode=0o755)
    client = box / "bin" / "lab"
    client.write_text("#!/usr/bin/python3 -I\n" + CLIENT.read_text())
    client.chmod(0o755)
    (box / "work").mkdir(mode=0o700)
    if path.is_file():  # one script: a folder of its own, never the folder it lies in
        (box / "staged").mkdir(mode=0o700)
        shutil.copyfile(path, box / "staged" / ENTRY)
        source, entry = box / "staged", ENTRY
    else:
        source, entry = path, ENTRY
    secrets = sandbox.hidden_paths([str(sessions.folder()), s.path, str(default_dir()), *hide])
    env = {"PATH": f"{box / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(box / "work"), "LAB": s.lab, "LAB_EXERCISE": ex.name, "LAB_BROKER": str(box / "broker.sock"),
           "LANG": "C.UTF-8"}
    command = ["prlimit", f"--fsize={FILE_LIMIT}", "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
               "bash", entry]
    argv = sandbox.script_argv(who, str(box / "work"), str(source), secrets, command)
    deadline = time.monotonic() + timeout
    broker = Broker(str(box / "broker.sock"), who, s.lab, ex.name, deadline)
    log = box / "output.log"
    try:
        proc = host.spawn(argv, log=log, fresh_log=True)
        init = host.first_child(proc.pid, timeout=5)
        if init is None:
            host.finish(proc, 0)
            raise LabError(f"the submission's sandbox did not start: {_tail(log)}")
        broker.confine_to(init)
        code = host.finish(proc, max(0.0, deadline - time.monotonic()))
    finally:
        broker.close()
    return Ran(code, _tail(log), broker.served, broker.refused)


def _tail(log: Path) -> str:
    with open(log, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - OUTPUT_LIMIT))
        text = f.read().decode("utf-8", "replace")
    return (f"[the first {size - OUTPUT_LIMIT} bytes of its output are cut]\n" if size > OUTPUT_LIMIT else "") + text
