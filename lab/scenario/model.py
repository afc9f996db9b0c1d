"""Scenario files in; a validated Scenario, or a ScenarioError listing every problem, out.

A scenario is read with the topology's line-tracking loader and checked as a whole before a lab is
built: its topology (a file, or an inline mapping reported at the scenario's own lines), every
step's shape, the names it refers to, its regexes, fault parameters (lab.faults.model) and
manifests. The result is plain frozen data; lab.scenario.runner executes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from lab.errors import Diagnostic, LabError, TopologyError
from lab.scenario import http, status
from lab.scenario import spec as S
from lab.scenario.spec import what as _what
from lab.topology.semantics import did_you_mean
from lab.topology.source import DocPath, Source, dotted, read_documents

KINDS = ("apply", "delete", "fault", "clear", "node", "exec", "check", "dns", "sleep", "http", "get")
COMMON = ("name", "wait", "expect")
TOP = ("name", "description", "topology", "continue", "steps")
OWN = {"http": (http.parse, http.summary), "get": (status.parse, status.summary)}  # kinds with their own module
LATER = {"trace": "trace steps are planned, not implemented yet"}


class ScenarioError(LabError):
    """A scenario file is invalid: every problem, each with file:line and a hint."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        count = len(self.diagnostics)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in scenario:\n" +
                         "\n".join(str(d) for d in self.diagnostics))


@dataclass(frozen=True)
class Wait:
    timeout: float
    interval: float = 0.5


@dataclass(frozen=True)
class Step:
    index: int               # 1-based, as printed
    kind: str                # one of KINDS
    spec: Any                # the kind's spec (lab.scenario.spec)
    title: str               # the given name, or a summary of the step
    line: Optional[int]
    wait: Optional[Wait] = None
    expect_fail: bool = False


@dataclass(frozen=True)
class Scenario:
    file: str
    name: str
    lab: str                          # the topology's name: the lab is named as `lab run` names it
    topology: str                     # the topology file (absolute), or "" when inline
    inline: Optional[dict]            # an inline topology's data (its manifests folder made absolute)
    steps: tuple[Step, ...]
    keep_going: bool = False          # `continue: true`: run every step whatever fails
    warnings: tuple[Diagnostic, ...] = field(default=())

    @property
    def shares_with(self) -> Optional[str]:
        """Scenarios with the same key may run on one lab (--shared): the same topology file."""
        return self.topology or None


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ScenarioError (every problem) if it is not valid."""
    path = Path(path)
    try:
        docs = read_documents(path)
    except TopologyError as e:
        raise ScenarioError(e.diagnostics) from None
    if len(docs) != 1:
        where = docs[1].line_of(()) if docs else None
        raise ScenarioError([Diagnostic(str(path), where, "", "the file is empty" if not docs else
                                        f"a scenario file holds one YAML document, found {len(docs)}",
                                        "a scenario needs a topology and steps, e.g. topology: ../topologies/"
                                        "vxlan.yaml, steps: [{check: all}]")])
    return Reader(docs[0], path).scenario()


class Reader:
    """One pass over a scenario document, collecting every problem. Exercises (lab.exercise.model)
    read their topology and steps with it too."""

    def __init__(self, source: Source, path: Path):
        self.src, self.path, self.base = source, path, path.parent
        self.problems: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.state = None  # the planned topology, when it is valid: names are checked against it

    def bad(self, path: DocPath, message: str, hint: Optional[str] = None) -> None:
        self.problems.append(Diagnostic(self.src.file, self.src.line_of(path), dotted(path), message, hint))

    def scenario(self) -> Scenario:
        data = self.src.data
        if not isinstance(data, dict):
            self.bad((), f"a scenario is a mapping, not {_what(data)}", "start with topology: FILE and steps:")
            raise ScenarioError(self.problems)
        for key in data:
            if key not in TOP:
                self.bad((key,), f"unknown field '{key}'{did_you_mean(str(key), TOP)}", f"a scenario has {', '.join(TOP)}")
        for key in ("topology", "steps"):
            if key not in data:
                self.bad((), f"'{key}' is missing", "topology: FILE (relative to this file) or a mapping; "
                                                   "steps: a list, e.g. [{check: all}]")
        name = data.get("name", self.path.stem)
        if not isinstance(name, str) or not name:
            self.bad(("name",), "name must be text", "name: vxlan-drop")
        keep_going = data.get("continue", False)
        if not isinstance(keep_going, bool):
            self.bad(("continue",), "continue must be true or false")
        topology, inline, lab = self.topology(data.get("topology")) if "topology" in data else ("", None, "")
        steps = self._steps(data.get("steps"))
        if self.problems:
            raise ScenarioError(self.problems)
        return Scenario(str(self.path), str(name), lab, topology, inline, tuple(steps), keep_going is True,
                        tuple(self.warnings))

    # --- the topology ---

    def topology(self, value: Any) -> tuple[str, Optional[dict], str]:
        """(file, inline data, lab name) of the document's `topology:`; self.state is its plan."""
        from lab.controlplane.plan import plan
        from lab.topology.load import _load, load_topology, reporting

        found: list[Diagnostic] = []
        try:
            with reporting(report=found.extend):
                if isinstance(value, str):
                    path = (self.base / value).resolve()
                    topo = load_topology(path)
                    self.state = plan(topo, source=str(path))
                    return str(path), None, topo.name
                if isinstance(value, dict):
                    topo = _load(_subtree(self.src, ("topology",)), self.base)
                    self.state = plan(topo, source=self.src.file)
                    return "", _absolute_manifests(value, self.base), topo.name
                self.bad(("topology",), f"topology must be a file name or a mapping, not {_what(value)}",
                         "topology: ../topologies/vxlan.yaml (relative to this file)")
        except TopologyError as e:
            self.problems += [d for d in e.diagnostics if not d.is_warning]
            found += [d for d in e.diagnostics if d.is_warning]
        except LabError as e:
            self.bad(("topology",), str(e))
        finally:  # an inline topology's paths, as the scenario file has them
            self.problems = [self._inline(d) for d in self.problems]
            self.warnings += [self._inline(d) for d in found]
        return "", None, ""

    def _inline(self, d: Diagnostic) -> Diagnostic:
        if d.file != self.src.file or d.path.startswith("topology"):
            return d
        return replace(d, path=f"topology.{d.path}" if d.path else "topology")

    # --- steps ---

    def _steps(self, value: Any) -> list[Step]:
        if value is None:
            return []
        if not isinstance(value, list) or not value:
            self.bad(("steps",), "steps must be a list with at least one step", "steps: [{check: all}]")
            return []
        ctx = S.Names(self.state)
        steps = []
        for i, raw in enumerate(value):
            step = self.step(("steps", i), i + 1, raw, ctx)
            if step is not None:
                steps.append(step)
        return steps

    def step(self, at: DocPath, index: int, raw: Any, names: S.Names, extra: tuple[str, ...] = ()) -> Optional[Step]:
        """The step at `at` (numbered `index`), or None (the problems were reported); `extra` are
        fields the caller reads itself (an exercise test's points)."""
        if not isinstance(raw, dict):
            self.bad(at, f"a step is a mapping, not {_what(raw)}", "e.g. - check: all")
            return None
        kinds = [k for k in raw if k in KINDS]
        for key in raw:
            if key in KINDS or key in COMMON or key in extra:
                continue
            hint = LATER.get(key, f"a step is one of {', '.join(KINDS)}, with optional {', '.join(COMMON)}; "
                                  "a kind's own fields go inside its mapping, e.g. - exec: {pod: a, command: ls}")
            self.bad(at + (key,), f"unknown step field '{key}'{did_you_mean(str(key), KINDS + COMMON + extra)}", hint)
        if len(kinds) > 1:
            self.bad(at, f"one kind per step, found {', '.join(kinds)}", "split it into several steps")
            return None
        if not kinds:
            if all(k in COMMON or k in extra for k in raw):
                self.bad(at, "the step does nothing: it has no kind", f"give one of {', '.join(KINDS)}")
            return None
        kind = kinds[0]
        before = len(self.problems)
        wait = self._wait(at, raw.get("wait"))
        expect = raw.get("expect")
        if expect not in (None, "fail", "pass"):
            self.bad(at + ("expect",), f"expect must be fail (or pass, the default), not {expect!r}",
                     "expect: fail means the step passes when its assertion fails")
        title = raw.get("name")
        if title is not None and not isinstance(title, str):
            self.bad(at + ("name",), "name must be text")
        parse, summary = OWN.get(kind, (lambda v, w, n: S.parse(kind, v, w, n), lambda sp: S.summary(kind, sp)))
        spec = parse(raw[kind], _Where(self, at + (kind,)), names)
        if len(self.problems) > before or spec is None:
            return None
        return Step(index, kind, spec, title or summary(spec), self.src.line_of(at), wait, expect == "fail")

    def _wait(self, at: DocPath, value: Any) -> Optional[Wait]:
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = {"timeout": value}
        if not isinstance(value, dict):
            self.bad(at + ("wait",), f"wait must be a mapping, not {_what(value)}", "wait: {timeout: 10, interval: 0.5}")
            return None
        for key in value:
            if key not in ("timeout", "interval"):
                self.bad(at + ("wait", key), f"unknown field '{key}' of wait{did_you_mean(str(key), ('timeout', 'interval'))}",
                         "wait: {timeout: 10, interval: 0.5}")
        timeout, interval = value.get("timeout"), value.get("interval", 0.5)
        ok = True
        for key, v in (("timeout", timeout), ("interval", interval)):
            if not _positive(v):
                self.bad(at + ("wait", key), f"wait.{key} must be a number of seconds above 0, not {v!r}",
                         "wait: {timeout: 10, interval: 0.5}")
                ok = False
        return Wait(float(timeout), float(interval)) if ok else None


class _Where:
    """Where a step's spec is, for lab.scenario.spec to report at: a path under the step."""

    def __init__(self, reader: Reader, at: DocPath):
        self.reader, self.at = reader, at

    def bad(self, sub: DocPath, message: str, hint: Optional[str] = None) -> None:
        self.reader.bad(self.at + tuple(sub), message, hint)

    def warn(self, message: str) -> None:
        r = self.reader
        r.warnings.append(Diagnostic(r.src.file, r.src.line_of(self.at), dotted(self.at), message, severity="warning"))

    @property
    def source(self) -> Source:
        return self.reader.src

    @property
    def base(self) -> Path:
        return self.reader.base


def _subtree(src: Source, at: DocPath) -> Source:
    """The part of a document under `at`, as a document of its own at the same file and lines."""
    n = len(at)
    return Source(src.file, src.data[at[0]] if n == 1 else None,
                  {p[n:]: line for p, line in src.lines.items() if p[:n] == at})


def _absolute_manifests(topology: dict, base: Path) -> dict:
    folder = topology.get("manifests")
    return {**topology, "manifests": str((base / folder).resolve())} if isinstance(folder, str) else topology


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
