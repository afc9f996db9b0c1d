"""`lab exercise submit`: a student's submission run against the started exercise, confined
(lab.exercise.sandbox plans it, lab.exercise.broker serves its `lab` commands).

A submission is a folder whose solution.sh fixes the lab as the student did by hand, or one script.
It runs in its own folder (a copy) with LAB, LAB_EXERCISE and `lab` on PATH, as the honest
solutions expect; whatever it leaves running is killed with its PID namespace when it ends or at
the timeout.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
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
PLACED_LIMIT = 1 << 20   # the largest file a submission puts in place (a CNI plugin is a page of shell)
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
    placed = place(ex, s, path)
    box = records.RUN_ROOT / "submissions" / sessions.new_token()[:12]
    host.make_dir(box, 0o711)  # the student passes through to its socket and client, reads nothing else
    try:
        ran = _run(ex, s, path, who, timeout, hide, box)
        return ran if not placed else replace(ran, output=placed + ran.output)
    finally:
        host.remove(box)
        host.remove_empty(box.parent)  # else another submission runs


def place(ex: Exercise, s: sessions.Session, path: Path) -> str:
    """Put the files the exercise takes from a submission (its `submission:` list) into the
    exercise's folder, where the lab uses them; what was placed, for the output. Regular files
    inside the submission folder only, never through a link."""
    told = []
    for rel in ex.submission if path.is_dir() else ():
        src, dst = path / rel, Path(s.path) / rel
        if not os.path.lexists(src):
            told.append(f"[{rel}: not in the submission, the exercise's own is kept]\n")
            continue
        if src.is_symlink() or not src.is_file() or not src.resolve().is_relative_to(path):
            raise LabError(f"{src}: the submission's {rel} must be a regular file inside it")
        if src.stat().st_size > PLACED_LIMIT:
            raise LabError(f"{src}: larger than {PLACED_LIMIT >> 20} MB")
        data = src.read_bytes()
        mode = dst.stat().st_mode & 0o777 if dst.exists() else 0o755
        host.write_file(dst, data, mode=mode)
        told.append(f"[{rel}: the submission's, put in place]\n")
    return "".join(told)


def _run(ex, s, path: Path, who: sandbox.Student, timeout: float, hide: Sequence[str], box: Path) -> Ran:
    host.make_dir(box / "bin", 0o755)
    client = box / "bin" / "lab"
    host.write_file(client, "#!/usr/bin/python3 -I\n" + CLIENT.read_text(), mode=0o755)
    host.make_dir(box / "work", 0o700)
    if path.is_file():  # one script: a folder of its own, never the folder it lies in
        host.make_dir(box / "staged", 0o700)
        host.copy(path, box / "staged" / ENTRY)
        source, entry = box / "staged", ENTRY
    else:
        source, entry = path, ENTRY
    # the checkout this grader runs from holds every exercise and its solutions (and the tests')
    secrets = sandbox.hidden_paths([str(sessions.folder()), s.path, str(default_dir().parent), *hide])
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
        try:
            init = host.first_child(proc.pid, timeout=5)
            if init is None:
                raise LabError(f"the submission's sandbox did not start: {_tail(log)}")
            broker.confine_to(init)
        except BaseException:
            host.finish(proc, 0)  # nothing of it runs on
            raise
        code = host.finish(proc, max(0.0, deadline - time.monotonic()))
    finally:
        broker.close()
    left = _outlived(who)
    if left:
        raise LabError(f"processes of {who.name} outlived the submission ({', '.join(map(str, left))}): "
                       f"the user must be one nothing else uses")
    return Ran(code, _tail(log), broker.served, broker.refused)


def _outlived(who: sandbox.Student, wait: float = 5.0) -> list[int]:
    """The student's processes still running once the kernel has emptied the submission's PID
    namespace (it kills them as its first process ends, not at once)."""
    deadline = time.monotonic() + wait
    while (left := host.live_processes(who.uid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


def _tail(log: Path) -> str:
    with open(log, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - OUTPUT_LIMIT))
        text = f.read().decode("utf-8", "replace")
    return (f"[the first {size - OUTPUT_LIMIT} bytes of its output are cut]\n" if size > OUTPUT_LIMIT else "") + text
