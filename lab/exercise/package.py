"""`lab exercise package`: a Gradescope autograder zip for one exercise.

Gradescope extracts the zip to /autograder/source, runs setup.sh once when it builds the image and
run_autograder for each submission, which must write /autograder/results/results.json
(gradescope-autograders.readthedocs.io/en/latest/specs/). The zip carries k8s-netlab itself (its
source, installed by scripts/install.sh as the README says) and the exercise.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from lab.errors import LabError
from lab.exercise.model import Exercise

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("lab", "scripts", "topologies", "pyproject.toml", "Makefile", "README.md")
HOME = "/autograder/source/k8s-netlab"

SETUP = """#!/usr/bin/env bash
# Installs k8s-netlab as its README does (scripts/install.sh: the Debian packages, a virtualenv).
set -euo pipefail
cd {home}
./scripts/install.sh
"""

RUN = """#!/usr/bin/env bash
# Gradescope autograder for the k8s-netlab exercise {name} (written by `lab exercise package`).
# Starts the exercise (a lab in network namespaces: root needed), runs the student's
# /autograder/submission/solution.sh as root with a {timeout:g} s timeout, grades the live lab into
# /autograder/results/results.json, and removes the lab. A start that fails still writes results (0).
set -u
cd {home}
LAB=.venv/bin/lab
mkdir -p /autograder/results
$LAB exercise stop -e {name} >/dev/null 2>&1
if $LAB exercise start {path}; then
  if [ -f /autograder/submission/solution.sh ]; then
    $LAB exercise solve -e {name} --script /autograder/submission/solution.sh --timeout {timeout:g}
  else
    echo "the submission has no solution.sh" >&2
  fi
fi
$LAB exercise grade -e {name} --dir {folder} --format gradescope --out /autograder/results/results.json
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


def _files(base: Path, rel: Path):
    path = base / rel
    if path.is_file():
        yield path, rel
        return
    for p in sorted(path.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            yield p, p.relative_to(base)


def build(ex: Exercise, out: Path, timeout: float = 120.0) -> int:
    """Write the zip; the number of files in it."""
    placed = _placed(ex)
    entries = [(p, Path("k8s-netlab") / rel) for name in SOURCES for p, rel in _files(ROOT, Path(name))]
    entries += [(p, Path("k8s-netlab") / placed / rel) for p, rel in _files(Path(ex.folder), Path("."))]
    if ex.topology and not Path(ex.topology).is_relative_to(ex.folder):
        rel = Path(ex.topology).relative_to(ROOT)
        entries.append((Path(ex.topology), Path("k8s-netlab") / rel))
    scripts = {"setup.sh": SETUP.format(home=HOME),
               "run_autograder": RUN.format(name=ex.name, path=placed, folder=placed.parent, home=HOME, timeout=timeout)}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in scripts.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16
            z.writestr(info, body)
        for src, name in entries:
            info = zipfile.ZipInfo.from_file(src, str(name))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, src.read_bytes())
    os.chmod(out, 0o644)
    return len(scripts) + len(entries)
