"""The shape of the code is checked, not hoped for: imports only go down the layers (the contract
in pyproject.toml, checked by import-linter, exhaustive: a new module in no layer fails it), no two
modules import each other even indirectly, the linter is clean, and no default is mutable."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_imports_only_go_down_the_layers():
    proc = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def _lint_copy(tmp_path: Path, new_module: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of lab/ with one more, empty module."""
    shutil.copytree(ROOT / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / new_module).write_text('"""A module nobody placed in a layer."""\n')
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_a_new_module_in_no_layer_fails_the_contract(tmp_path):
    """exhaustive = true: a module lands in a layer, or the contract says where it is missing."""
    top = _lint_copy(tmp_path / "a", "lab/newthing.py")
    assert top.returncode != 0 and "lab.newthing" in top.stdout, top.stdout[-2000:]
    inner = _lint_copy(tmp_path / "b", "lab/routing/newkind.py")
    assert inner.returncode != 0 and "lab.routing.newkind" in inner.stdout, inner.stdout[-2000:]


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(modules)))
    for m in modules:
        if m not in index:
            visit(m)
    return found


def test_no_two_modules_import_each_other():
    """No circle, even through a package's __init__ (a registry imports its kinds; a kind imports
    what a kind is from a module of its own, never the registry)."""
    assert _cycles(grimp.build_graph("lab")) == []


def test_the_circle_check_sees_a_circle(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg import a\n")
    (tmp_path / "pkg" / "a.py").write_text("import pkg.b\n")
    (tmp_path / "pkg" / "b.py").write_text("from pkg import a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert _cycles(grimp.build_graph("pkg", cache_dir=None)) == [["pkg.a", "pkg.b"]]
    finally:
        sys.path.remove(str(tmp_path))


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


# Effects that only lab/host may have: writing files, signalling processes, reading the kernel's
# files. The allowed exceptions are programs that are not the lab: what runs inside a pod or a
# submission's sandbox (it must not import the lab), and the sandbox's own namespace descriptors.
_EFFECT_CALLS = {"os.kill", "os.killpg", "os.replace", "os.rename", "os.unlink", "os.remove", "os.chmod", "os.chown",
                 "shutil.rmtree", "shutil.chown", "shutil.copyfile", "shutil.copytree"}
_EFFECT_METHODS = {"write_text", "write_bytes", "unlink", "rmdir", "chmod", "touch"}
_KERNEL_FILES = ("/proc", "/sys/", "/run/netns")
_NOT_THE_LAB = {"lab/images/netexec.py": "the netexec image's program, run inside pods",
                "lab/routing/fabric_app.py": "the OpenFlow controller's program, run as its own process",
                "lab/exercise/client.py": "the submission's client, copied into its sandbox",
                "lab/exercise/broker.py": "holds the sandbox's namespaces by descriptor (/proc/PID/ns)"}


def _effects(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of each effect in a module, in order."""
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    from_host = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "lab.host"
                 for a in n.names}
    through_host = {id(c) for n in ast.walk(tree) if isinstance(n, ast.Call)
                    and (ast.unparse(n.func).startswith("host.") or ast.unparse(n.func) in from_host)
                    for arg in n.args for c in ast.walk(arg)}  # a kernel file the Host reads: as it should be
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            if name == "open" and isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+"):
                found.append((node.lineno, node.col_offset, f"open(..., {mode.value!r})"))
            elif name.startswith("os.") and any(isinstance(c, ast.Call) and ast.unparse(c.func).endswith("netns_path")
                                                for arg in node.args for c in ast.walk(arg)):
                found.append((node.lineno, node.col_offset, f"{name} of a /run/netns file"))
            elif name in _EFFECT_CALLS:
                found.append((node.lineno, node.col_offset, name))
            elif isinstance(node.func, ast.Attribute) and node.func.attr in _EFFECT_METHODS and \
                    not name.startswith(("host.", "self.")):
                found.append((node.lineno, node.col_offset, f".{node.func.attr}()"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | through_host \
                and node.value.startswith(_KERNEL_FILES):
            found.append((node.lineno, node.col_offset, f"kernel file {node.value!r}"))
    return [(line, what) for line, _, what in sorted(found)]


def test_nothing_outside_the_host_writes_files_signals_or_reads_the_kernel():
    offenders = [f"{p.relative_to(ROOT)}:{line}: {what}" for p in sorted((ROOT / "lab").rglob("*.py"))
                 if "host" not in p.relative_to(ROOT / "lab").parts and str(p.relative_to(ROOT)) not in _NOT_THE_LAB
                 for line, what in _effects(ast.parse(p.read_text()))]
    assert not offenders, "\n".join(offenders)


def test_the_effect_check_finds_each_kind_of_effect():
    code = '''
import os, shutil
from pathlib import Path
open("x", "w"); open("y", mode="ab"); open("z")
Path("x").write_text("a"); Path("x").unlink(); os.kill(1, 9); shutil.rmtree("d")
open(f"/proc/{os.getpid()}/cmdline", "rb"); os.path.exists("/sys/class/net/br0"); x = "/run/netns/a"
host.write_file("x", "a"); host.read_bytes(f"/proc/{pid}/cmdline"); path_exists("/sys/class/net/x")
from lab.host import path_exists
os.path.exists(netns_path("a")); host.run(["ip", "netns", "exec", netns_path("a")])
'''
    assert [what for _, what in _effects(ast.parse(code))] == [
        "open(..., 'w')", "open(..., 'ab')", ".write_text()", ".unlink()", "os.kill", "shutil.rmtree",
        "kernel file '/proc/'", "kernel file '/sys/class/net/br0'", "kernel file '/run/netns/a'",
        "os.path.exists of a /run/netns file"]
