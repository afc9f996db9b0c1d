"""The shape of the code is checked, not hoped for: imports only go down the layers (the contract
in pyproject.toml, checked by import-linter), and the linter is clean."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_imports_only_go_down_the_layers():
    proc = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_the_linter_is_clean():
    proc = subprocess.run([str(BIN / "ruff"), "check", "lab", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_nothing_below_the_cli_runs_a_process_but_the_host():
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "lab").rglob("*.py") if "host" not in p.parts
                 for i, line in enumerate(p.read_text().splitlines(), 1) if "subprocess." in line]
    assert not offenders, offenders
