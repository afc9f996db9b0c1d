"""`lab exercise package`: a Gradescope autograder zip for one exercise.

Gradescope extracts the zip to /autograder/source, runs setup.sh once when it builds the image and
run_autograder for each submission, which must write /autograder/results/results.json
(gradescope-autograders.readthedocs.io/en/latest/specs/). The zip carries k8s-netlab itself (its
source, installed by scripts/install.sh as the README says, which also creates the unprivileged
`lab-student` user) and the exercise without its solutions (session.SOLUTIONS) unless the
instructor's bundle is asked for. run_autograder runs the submission with `lab exercise submit`:
confined, as lab-student, with the whole autograder folder hidden from it. AUTOGRADER_ROOT moves
the /autograder folder (a local run of the package, the tests).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from lab import host
from lab.errors import LabError
from lab.exercise.model import Exercise
from lab.exercise.sandbox import DEFAULT_USER
from lab.exercise.session import SOLUTIONS

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("lab", "scripts", "topologies", "pyproject.toml", "Makefile", "README.md")
SETUP = """#!/usr/bin/env bash
# Installs k8s-netlab as its README does (scripts/install.sh: the Debian packages, a virtualenv, the
# unprivileged user {user} that submissions run as).
set -euo pipefail
cd "${{AUTOGRADER_ROOT:-/autograder}}/source/k8s-netlab"
./scripts/install.sh
"""

RUN = """#!/usr/bin/env bash
# Gradescope autograder for the k8s-netlab exercise {name} (written by `lab exercise package`).
# Starts the exercise (a lab in network namespaces: root needed), runs the student's submission
# (its solution.sh) confined as {user} with a {timeout:g} s timeout (docs/INSTRUCTORS.md: what it
# can and cannot do), grades the live lab into results/results.json, and removes the lab. A start
# that fails still writes results (0).
set -u
root=${{AUTOGRADER_ROOT:-/autograder}}
cd "$root/source/k8s-netlab"
LAB=.venv/bin/lab
mkdir -p "$root/results"
chmod 0700 "$root/results"
$LAB exercise stop -e {name} >/dev/null 2>&1
if $LAB exercise start {path}; then
  $LAB exercise submit "$root/submission" -e {name} --user {user} --timeout {timeout:g} --hide "$root"
fi
$LAB exercise grade -e {name} --dir {folder} --format gradescope --out "$root/results/results.json"
$LAB exercise stop -e {name}
exit 0
"""


def _placed(ex: Exercise) -> Path:
    """Where the exercise goes in the copy: its place in this checkout, or exercises/NAME."""
    folder = Path(ex.folder)
    inside = folder.is_relative_to(ROOT)
    if ex.topology and not Path(ex.topology).is_relative_to(folder) and not (inside and Path(ex.topology).is_relative_to(ROOT)):
        raise LabError(f"{ex.name}: its topology {ex.topology} is outside the exercise folder and this checkout: "
                       "move it into the exercise folder to package it")
    return folder.relative_to(ROOT) if inside else Path("exercises") / ex.name


def _files(base: Path, rel: Path, leave_out: tuple[str, ...] = ()):
    path = base / rel
    if path.is_file():
        yield path, rel
        return
    for p in sorted(path.rglob("*")):
        inner = p.relative_to(path).parts
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and not set(inner) & set(leave_out):
            yield p, p.relative_to(base)


def build(ex: Exercise, out: Path, timeout: float = 120.0, with_solutions: bool = False, user: str = DEFAULT_USER) -> int:
    """Write the zip; the number of files in it. `user` is the one submissions run as (it must exist
    where the package runs: setup.sh makes lab-student)."""
    placed = _placed(ex)
    entries = [(p, Path("k8s-netlab") / rel) for name in SOURCES for p, rel in _files(ROOT, Path(name))]
    leave_out = () if with_solutions else SOLUTIONS
    entries += [(p, Path("k8s-netlab") / placed / rel) for p, rel in _files(Path(ex.folder), Path("."), leave_out)]
    if ex.topology and not Path(ex.topology).is_relative_to(ex.folder):
        rel = Path(ex.topology).relative_to(ROOT)
        entries.append((Path(ex.topology), Path("k8s-netlab") / rel))
    scripts = {"setup.sh": SETUP.format(user=user),
               "run_autograder": RUN.format(name=ex.name, path=placed, folder=placed.parent, user=user,
                                            timeout=timeout)}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in scripts.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16
            z.writestr(info, body)
        for src, name in entries:
            info = zipfile.ZipInfo.from_file(src, str(name))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, src.read_bytes())
    host.chmod(out, 0o644)
    return len(scripts) + len(entries)
