"""The shape of the code is checked, not hoped for: imports only go down the layers (the contract
in pyproject.toml, checked by import-linter), the linter is clean, and no default is mutable."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_imports_only_go_down_the_layers():
    proc = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_the_linter_is_clean():
    proc = subprocess.run([str(BIN / "ruff"), "check", "lab", "tests", "bench", "scripts"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_nothing_below_the_cli_runs_a_process_but_the_host():
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "lab").rglob("*.py") if "host" not in p.parts
                 for i, line in enumerate(p.read_text().splitlines(), 1) if "subprocess." in line]
    assert not offenders, offenders


_MUTABLE = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _mutable(node: ast.expr) -> bool:
    if isinstance(node, _MUTABLE):
        return True
    name = getattr(node, "func", None)
    name = getattr(name, "id", getattr(name, "attr", ""))
    if isinstance(node, ast.Call) and name in ("list", "dict", "set", "bytearray", "defaultdict", "Counter"):
        return True
    return isinstance(node, ast.Call) and name in ("field", "Field") and \
        any(k.arg == "default" and _mutable(k.value) for k in node.keywords)


def test_no_default_is_mutable():
    """ruff's B006 lets `x: Mapping = {}` pass (the annotation says read-only; the object is shared
    all the same) and does not look at class fields: no argument default and no field default of a
    class (dataclass, pydantic model) is a list, dict or set; default_factory is the way."""
    offenders = []
    for p in [*(ROOT / "lab").rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]:
        for node in ast.walk(ast.parse(p.read_text())):
            defaults = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                defaults = node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
            elif isinstance(node, ast.ClassDef):
                defaults = [s.value for s in node.body if isinstance(s, ast.AnnAssign) and s.value is not None]
            offenders += [f"{p.relative_to(ROOT)}:{d.lineno}: {ast.unparse(d)[:60]}" for d in defaults if _mutable(d)]
    assert not offenders, offenders
