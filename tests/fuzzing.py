"""Hostile and broken input for every entry point that reads a user's file or argument.

Inputs come from two generators: documents drawn from our own JSON Schema (`lab schema`), and
mutations of the shipped topologies, scenarios, exercises and their manifests (odd values, keys
deleted or renamed, list items duplicated, subtrees spliced, lines cut, bytes inserted). Each input
goes through an entry point as the user reaches it; any outcome but a diagnostic (exit 0, 1 or 2,
never `internal error`, exit 3) is a crash, and an input that takes more than HANG seconds a hang.
Used by tests/unit/test_fuzz.py (a fixed-seed run) and bench/fuzz.py (`make fuzz`).
"""
from __future__ import annotations

import contextlib
import copy
import io
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "tests" / "data" / "fuzz"
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
HANG = 3.0  # seconds: the bound for refusing any hostile file
# hypothesis keeps caches in ./.hypothesis: outside the checkout (the runs use no example database)
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "k8s-netlab-hypothesis")

# --- values -----------------------------------------------------------------------------------

ODD = [None, {}, [], "", "x", 0, -1, 65536, 2 ** 63, 1.5, float("nan"), True, False, "10.0.0.1/24", "10.0.0.0/33",
       "fd00::1/64", "0.0.0.0/0", "a" * 300, "UPPER", "é\u202e", "*", "../../etc/passwd", "-1", "80", "http",
       {"a": 1}, [1], [None], {"": None}, {"matchLabels": {}}, "2020-01-01", "TCP", "udp"]

_json = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 64, 2 ** 64) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=6)
odd_values = st.sampled_from(ODD) | _json


def from_schema(schema: dict) -> st.SearchStrategy:
    """Documents of a JSON Schema (the subset pydantic writes), with odd values mixed in.
    (hypothesis-jsonschema no longer runs with current hypothesis.)"""
    defs = schema.get("$defs", {})
    refs: dict[str, st.SearchStrategy] = {}

    def of(s: dict) -> st.SearchStrategy:
        if "$ref" in s:
            name = s["$ref"].rsplit("/", 1)[-1]
            if name not in refs:
                refs[name] = st.deferred(lambda: of(defs[name]))
            return refs[name]
        if "const" in s:
            return st.just(s["const"])
        if "enum" in s:
            return st.sampled_from(s["enum"])
        for key in ("anyOf", "oneOf", "allOf"):
            if key in s:
                return st.one_of([of(x) for x in s[key]])
        kind = s.get("type")
        if kind == "object" or "properties" in s:
            props = s.get("properties", {})
            required = set(s.get("required", ()))
            fixed = st.fixed_dictionaries({k: of(v) for k, v in props.items() if k in required},
                                          optional={k: of(v) for k, v in props.items() if k not in required})
            extra = s.get("additionalProperties")
            if isinstance(extra, dict) and not props:
                return st.dictionaries(st.text(max_size=10), of(extra), max_size=3)
            return fixed
        if kind == "array":
            return st.lists(of(s.get("items", {})), min_size=s.get("minItems", 0), max_size=3)
        if kind == "string":
            if "pattern" in s:
                return st.from_regex(s["pattern"], fullmatch=True).filter(lambda t: len(t) <= 64) | st.sampled_from(ODD)
            return st.text(max_size=s.get("maxLength", 20)) | st.sampled_from(["10.0.0.1/24", "10.244.0.0/16", "netexec",
                                                                              "web", "app", "80", "TCP"])
        if kind == "integer":
            return st.integers(s.get("minimum", -10), s.get("maximum", 70000)) | st.sampled_from([0, -1, 2 ** 63])
        if kind == "number":
            return st.floats(allow_nan=True)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        return odd_values

    return of(schema)


# --- mutations --------------------------------------------------------------------------------

def _paths(data: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, path + (i,))
    return out


def _get(data: Any, path: tuple) -> Any:
    for p in path:
        data = data[p]
    return data


@st.composite
def mutated(draw, seeds: list[Any]) -> Any:
    """One seed document with 1 to 4 structural mutations."""
    data = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["odd", "odd", "splice", "delete", "duplicate", "rename"]))
        if not path:
            data = copy.deepcopy(draw(odd_values)) if op == "odd" else data
            continue
        parent, key = _get(data, path[:-1]), path[-1]
        if op == "odd":
            parent[key] = copy.deepcopy(draw(odd_values))  # ODD must stay as it is
        elif op == "splice":
            parent[key] = copy.deepcopy(_get(data, draw(st.sampled_from(paths))))
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "rename" and isinstance(parent, dict):
            names = [p[-1] for p in paths if p and isinstance(p[-1], str)]
            parent[draw(st.sampled_from(names))] = parent.pop(key)
    return data


@st.composite
def as_text(draw, documents: st.SearchStrategy) -> str:
    """A document as YAML text, sometimes damaged as text: a line cut, a line doubled, a byte in."""
    text = yaml.dump(draw(documents), Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "double", "insert"]))
    lines = text.splitlines(keepends=True)
    if damage != "none" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        if damage == "cut":
            del lines[i]
        elif damage == "double":
            lines.insert(i, lines[i])
        else:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.sampled_from(["\t", ":", "- ", "&a ", "*a", "{", "]", "!!binary ",
                                                             "\x00", "'", "#", "<<: "])) + lines[i][at:]
    return "".join(lines)


# --- entry points -----------------------------------------------------------------------------

class Hang(BaseException):  # not an Exception: the CLI's last-resort guard must not catch it
    pass


@dataclass
class Outcome:
    code: int
    output: str
    seconds: float
    cpu: float = 0.0  # this thread's CPU seconds: what the input cost, whatever else the machine ran

    @property
    def crashed(self) -> bool:
        return self.code not in (0, 1, 2) or "internal error" in self.output or "Traceback" in self.output

    @property
    def hung(self) -> bool:
        return self.seconds > HANG


def _cli(argv: list[str]) -> tuple[int, str]:
    from lab import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(argv)
    return code, out.getvalue()


def _raised(fn: Callable[[], Any]) -> tuple[int, str]:
    """A library entry point: a LabError is the diagnostic the CLI prints; anything else is a crash."""
    from lab.errors import LabError

    try:
        fn()
    except LabError as e:
        return 1, str(e)
    except Exception as e:  # noqa: BLE001
        import traceback

        return 3, "internal error: " + "".join(traceback.format_exception(e))
    return 0, ""


class Workspace:
    """A copy of the shipped content in a temporary folder, so a mutated file's references
    (../topologies/x.yaml, a manifests folder) resolve as they do in the checkout; and a lab record
    on disk for `lab apply -f` / `lab delete -f` (computed only: nothing is wired)."""

    def __init__(self, root: Path):
        self.root = root
        for name in ("topologies", "scenarios", "exercises"):
            shutil.copytree(ROOT / name, root / name)
        self.exercise = root / "exercises" / "wdfuzz"
        shutil.copytree(ROOT / "exercises" / "02-clusterip", self.exercise)
        from lab.controlplane.plan import plan
        from lab.topology.load import load_topology

        self.state = plan(load_topology(ROOT / "topologies" / "services.yaml"))

    def seeds(self, target: str) -> list[Any]:
        pattern = {"topology": "topologies/**/*.yaml", "scenario": "scenarios/*.yaml",
                   "exercise": "exercises/*/exercise.yaml"}.get(target, "topologies/*.yaml")
        docs = [yaml.safe_load(p.read_text()) for p in sorted(ROOT.glob(pattern))
                if "fuzz" not in p.parts and "manifests" not in p.parts]  # fetched upstream files: not topologies
        docs = [d for d in docs if isinstance(d, dict)]
        if target == "objects":  # the manifests of the shipped topologies, a few objects per file
            objects = [m for d in docs if isinstance(d.get("manifests"), list) for m in d["manifests"]]
            return [objects[i:i + 3] for i in range(0, len(objects), 3)]
        return docs

    def run(self, target: str, text: str) -> Outcome:
        t0, c0 = time.monotonic(), time.thread_time()
        code, output = getattr(self, "_" + target)(text)
        return Outcome(code, output, time.monotonic() - t0, time.thread_time() - c0)

    def _write(self, path: Path, text: str) -> str:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return str(path)

    def _topology(self, text: str) -> tuple[int, str]:
        return _cli(["validate", self._write(self.root / "topologies" / "wdfuzz.yaml", text)])

    def _scenario(self, text: str) -> tuple[int, str]:
        return _cli(["scenario", "validate", self._write(self.root / "scenarios" / "wdfuzz.yaml", text)])

    def _exercise(self, text: str) -> tuple[int, str]:
        self._write(self.exercise / "exercise.yaml", text)
        return _cli(["exercise", "validate", "--dir", str(self.root / "exercises"), "wdfuzz"])

    def _objects(self, text: str) -> tuple[int, str]:
        """lab apply -f and lab delete -f, up to the point where the lab would be changed."""
        from lab.host import record as records
        from lab.runtime import apply as applying

        path = self._write(self.root / "objects.yaml", text)
        run = self.root / "run"
        if not (run / "wdfuzz").exists():
            self._record(run)
        saved, records.RUN_ROOT = records.RUN_ROOT, run
        try:
            return _raised(lambda: [applying.edit("wdfuzz", applying.read_objects([path]), delete)
                                    for delete in (False, True)])
        finally:
            records.RUN_ROOT = saved

    def _record(self, run: Path) -> None:
        from lab.controlplane.plan import plan
        from lab.host import record as records
        from lab.host.record import LabRecord
        from lab.runtime import apply as applying
        from lab.topology.load import load_topology

        saved, records.RUN_ROOT = records.RUN_ROOT, run
        try:
            topo = load_topology(ROOT / "topologies" / "default.yaml")
            rec = LabRecord(name="wdfuzz", state=plan(topo), status="running")
            rec.dir.mkdir(parents=True)
            applying.save_topology(rec, topo)
            rec.save()
        finally:
            records.RUN_ROOT = saved

    def _arguments(self, text: str) -> tuple[int, str]:
        """lab trace SRC DST and lab fault add KIND TARGET key=value, from words of the text."""
        from lab.faults import model as faults
        from lab.trace import run

        words = (text.split() + ["", "", "", ""])[:4]
        kind = words[0] if words[0] in faults.KINDS else next(iter(faults.KINDS))

        def both():
            try:
                run.targets(self.state, words[0], words[1], words[2].upper() or "TCP", words[3] or "default")
            finally:
                params = dict(w.partition("=")[::2] for w in words[2:] if "=" in w)
                if not faults.validate(kind, words[1], params):
                    faults.reads(self.state, kind, words[1], params)
        return _raised(both)


TARGETS = ("topology", "scenario", "exercise", "objects", "arguments")


def argument_texts(state) -> st.SearchStrategy:
    """Words for lab trace and lab fault: names from the lab, targets, ports, odd text."""
    names = [p.name for p in state.pods] + [f"pod/{p.name}" for p in state.pods] + \
        [f"node/{n.name}" for n in state.nodes] + [f"svc/{s.name}:80" for s in state.services] + \
        ["host/x", "10.96.0.1:80", "10.244.1.2", "svc/", "pod/", ":", "::1", "x:99999", "a/b/c", "count=-1",
         "port=http", "to=node/x", "cidr=10.0.0.1/33", "link-down", "drop", "mtu", "value=abc"]
    word = st.sampled_from(names) | st.text(max_size=12)
    return st.lists(word, min_size=1, max_size=4).map(" ".join)


def strategy(workspace: Workspace, target: str) -> st.SearchStrategy:
    """The texts a target is fed: mutations of the shipped files, and (topologies and objects)
    documents drawn from the schema."""
    if target == "arguments":
        return argument_texts(workspace.state)
    docs = mutated(workspace.seeds(target))
    if target in ("topology", "objects"):
        from lab.topology.schema import topology_schema

        schema = topology_schema()
        drawn = from_schema(schema)
        if target == "objects":
            drawn = from_schema({**schema["properties"]["manifests"]["anyOf"][0], "$defs": schema["$defs"]})
        docs = docs | docs | drawn
    return as_text(docs)


@contextlib.contextmanager
def deadline(seconds: float):
    """A hang becomes Hang, not a stuck run (main thread only)."""
    def expired(*_):
        raise Hang(f"over {seconds:.0f}s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def regression_files() -> list[tuple[str, Path]]:
    """Every input a fuzz run found crashing, by target (tests/data/fuzz/TARGET/*)."""
    return [(p.parent.name, p) for p in sorted(REGRESSIONS.glob("*/*")) if p.parent.name in TARGETS]
