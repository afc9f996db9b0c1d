"""Exercise folders in; a validated Exercise, or an ExerciseError listing every problem, out.

An exercise is `exercises/NN-slug/exercise.yaml` (plus README.md, and for instructors solution.sh,
SOLUTION.md and .solution/, which packages for students leave out). Its
topology and every step (setup, failcheck, tests, hint checks, answers, checkpoints) are read with
the scenario reader (lab.scenario.model.Reader), so an exercise is validated like a scenario: the
whole file at once, each problem at its file:line, nothing executed.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lab.errors import Diagnostic, LabError, TopologyError
from lab.scenario import spec as S
from lab.scenario.model import Reader, Step
from lab.scenario.spec import what
from lab.topology.semantics import did_you_mean
from lab.topology.source import DocPath, read_documents

FILE = "exercise.yaml"
LEVELS = ("beginner", "intermediate", "advanced")
VISIBILITIES = ("hidden", "after_published")
COMPARES = ("exact", "ip", "casefold")
OBSERVE = ("exec", "check", "dns", "http", "get")  # what a test may do: look, never change the lab
PREPARE = ("apply",)                 # what the grader does before a task's tests: objects made afresh
TOP = ("title", "level", "topics", "topology", "description", "setup", "failcheck", "tasks", "checkpoints",
       "hidden_visibility", "submission")
TASK = ("id", "title", "points", "needs", "prepare", "checks", "hidden", "hints", "hintchecks", "answer")
ID = re.compile(r"[a-z0-9][a-z0-9-]*")


class ExerciseError(LabError):
    """An exercise is invalid: every problem, each with file:line and a hint."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        count = len(self.diagnostics)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in exercise:\n" +
                         "\n".join(str(d) for d in self.diagnostics))


@dataclass(frozen=True)
class Test:
    step: Step
    hidden: bool = False
    points: Optional[float] = None   # its own share of the task's points; None: an even share


@dataclass(frozen=True)
class HintCheck:
    step: Step
    hint: str


@dataclass(frozen=True)
class Answer:
    accepted: tuple[str, ...] = ()       # static accepted values
    probe: Optional[Step] = None         # an exec step whose output holds the value (live, at grade time)
    capture: Optional[str] = None        # the regex whose first group is the value
    compare: str = "exact"
    points: Optional[float] = None


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    points: float
    line: Optional[int]
    needs: tuple[str, ...] = ()
    prepare: tuple[Step, ...] = ()        # apply steps the grader runs before the tests, each object deleted
                                          # first: made afresh at every grade (by the student's CNI plugin)
    tests: tuple[Test, ...] = ()          # visible, then hidden
    hints: tuple[str, ...] = ()
    hintchecks: tuple[HintCheck, ...] = ()
    answer: Optional[Answer] = None


@dataclass(frozen=True)
class Checkpoint:
    name: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Exercise:
    name: str                 # the folder's name
    folder: str               # absolute
    title: str
    level: str
    topics: tuple[str, ...]
    lab: str                  # the topology's name
    topology: str             # the topology file (absolute), or "" when inline
    inline: Optional[dict]
    tasks: tuple[Task, ...]
    setup: tuple[Step, ...] = ()
    failcheck: tuple[Step, ...] = ()
    checkpoints: tuple[Checkpoint, ...] = ()
    description: str = ""
    hidden_visibility: str = "after_published"
    submission: tuple[str, ...] = ()   # files of the folder a submission provides (its CNI plugin): put in place
    warnings: tuple[Diagnostic, ...] = field(default=())

    @property
    def points(self) -> float:
        return sum(t.points for t in self.tasks)

    @property
    def file(self) -> str:
        return str(Path(self.folder) / FILE)

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        ids = [t.id for t in self.tasks]
        raise LabError(f"exercise {self.name} has no task {task_id!r}{did_you_mean(task_id, ids)}; tasks: {', '.join(ids)}")


def load(folder: str | Path) -> Exercise:
    """Read and validate an exercise folder; ExerciseError (every problem) if it is not valid."""
    folder = Path(folder).resolve()
    path = folder / FILE
    if not path.is_file():
        raise ExerciseError([Diagnostic(str(path), None, "", "no exercise.yaml in this folder",
                                        "an exercise is a folder with exercise.yaml, README.md and solution.sh")])
    try:
        docs = read_documents(path)
    except TopologyError as e:
        raise ExerciseError(e.diagnostics) from None
    if len(docs) != 1:
        raise ExerciseError([Diagnostic(str(path), docs[1].line_of(()) if docs else None, "",
                                        "the file is empty" if not docs else f"one YAML document, found {len(docs)}",
                                        "title:, level:, topology:, setup:, tasks:")])
    return _Reader(Reader(docs[0], path), folder).exercise()


class _Reader:
    """One pass over an exercise document; steps and the topology go through the scenario reader."""

    def __init__(self, reader: Reader, folder: Path):
        self.r, self.folder = reader, folder

    def bad(self, path: DocPath, message: str, hint: Optional[str] = None) -> None:
        self.r.bad(path, message, hint)

    def exercise(self) -> Exercise:
        data = self.r.src.data
        if not isinstance(data, dict):
            self.bad((), f"an exercise is a mapping, not {what(data)}", "start with title: and topology:")
            raise ExerciseError(self.r.problems)
        for key in data:
            if key not in TOP:
                self.bad((key,), f"unknown field '{key}'{did_you_mean(str(key), TOP)}", f"an exercise has {', '.join(TOP)}")
        for key in ("title", "level", "topology", "tasks"):
            if key not in data:
                self.bad((), f"'{key}' is missing", "title: TEXT, level: beginner, topology: topology.yaml, tasks: [...]")
        title = self._text(data, "title", ())
        level = data.get("level", "beginner")
        if level not in LEVELS:
            self.bad(("level",), f"level must be one of {', '.join(LEVELS)}, not {what(level)}")
        topics = data.get("topics", [])
        if not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
            self.bad(("topics",), f"topics is a list of words, not {what(topics)}", "topics: [routing, host-gw]")
            topics = []
        description = data.get("description", "")
        if not isinstance(description, str):
            self.bad(("description",), "description must be text")
        visibility = data.get("hidden_visibility", "after_published")
        if visibility not in VISIBILITIES:
            self.bad(("hidden_visibility",), f"hidden_visibility must be one of {', '.join(VISIBILITIES)}, "
                     f"not {what(visibility)}", "when Gradescope shows students that a hidden test passed or failed")
        topology, inline, lab = self.r.topology(data.get("topology")) if "topology" in data else ("", None, "")
        names = S.Names(self.r.state)
        setup = self._steps(data, "setup", names)
        failcheck = self._steps(data, "failcheck", names, allowed=OBSERVE)
        tasks = self._tasks(data.get("tasks"), names)
        checkpoints = self._checkpoints(data.get("checkpoints"), names)
        submission = self._submission(data.get("submission", []))
        self._files()
        if self.r.problems:
            raise ExerciseError(self.r.problems)
        return Exercise(self.folder.name, str(self.folder), title, level, tuple(topics), lab, topology, inline,
                        tuple(tasks), tuple(setup), tuple(failcheck), tuple(checkpoints), description or "",
                        visibility, submission, tuple(self.r.warnings))

    def _submission(self, value: Any) -> tuple[str, ...]:
        """Paths inside the folder, of files that exist (the skeleton the student starts from)."""
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.bad(("submission",), f"submission is a list of files of the exercise folder, not {what(value)}",
                     "submission: [cni/student-cni]")
            return ()
        for i, v in enumerate(value):
            inside = (self.folder / v).resolve()
            if not inside.is_relative_to(self.folder) or inside == self.folder:
                self.bad(("submission", i), f"{v!r} is not inside the exercise folder", "a path relative to the folder")
            elif not inside.is_file():
                self.bad(("submission", i), f"{v!r} is not a file of the exercise folder",
                         "the skeleton the student edits, e.g. cni/student-cni")
        return tuple(value)

    # --- pieces ---

    def _text(self, data: dict, key: str, at: DocPath) -> str:
        value = data.get(key)
        if key in data and (not isinstance(value, str) or not value.strip()):
            self.bad(at + (key,), f"{key} must be text, not {what(value)}")
            return ""
        return value or ""

    def _steps(self, data: dict, key: str, names: S.Names, at: DocPath = (), allowed: tuple[str, ...] = ()) -> list[Step]:
        return [s for s, _ in self._pairs(data, key, names, at, allowed)]

    def _pairs(self, data: dict, key: str, names: S.Names, at: DocPath = (), allowed: tuple[str, ...] = (),
               extra: tuple[str, ...] = ()) -> list[tuple[Step, dict]]:
        """The steps of a list field, each with its raw mapping (for the extra fields); allowed: the
        step kinds the field takes (empty: any)."""
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(at + (key,), f"{key} must be a list of steps, not {what(value)}",
                     f"{key}: [{{exec: {{node: n, command: 'true'}}}}]")
            return []
        out = []
        for i, raw in enumerate(value):
            step = self._step(at + (key, i), i + 1, raw, names, allowed, extra)
            if step is not None:
                out.append((step, raw))
        return out

    def _step(self, at: DocPath, index: int, raw: Any, names: S.Names, allowed: tuple[str, ...],
              extra: tuple[str, ...] = ()) -> Optional[Step]:
        step = self.r.step(at, index, raw, names, extra)
        if step is not None and allowed and step.kind not in allowed:
            if allowed == OBSERVE:
                self.bad(at + (step.kind,), f"a {step.kind} step changes the lab: a test only observes it "
                         f"({', '.join(OBSERVE)})", "breakage belongs in setup:, named states in checkpoints:")
            else:
                self.bad(at + (step.kind,), f"a task prepares with {', '.join(allowed)} steps, not {step.kind}",
                         "prepare: [{apply: late.yaml}] (its objects are made afresh at every grade)")
            return None
        return step

    def _tasks(self, value: Any, names: S.Names) -> list[Task]:
        if value is None:
            return []
        if not isinstance(value, list) or not value:
            self.bad(("tasks",), "tasks must be a list with at least one task",
                     "tasks: [{id: reach, title: ..., points: 10, checks: [...]}]")
            return []
        tasks: list[Task] = []
        seen: list[str] = []
        for i, raw in enumerate(value):
            task = self._task(("tasks", i), raw, names, seen)
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                seen.append(raw["id"])
            if task is not None:
                tasks.append(task)
        return tasks

    def _task(self, at: DocPath, raw: Any, names: S.Names, earlier: list[str]) -> Optional[Task]:
        if not isinstance(raw, dict):
            self.bad(at, f"a task is a mapping, not {what(raw)}", "- {id: reach, title: ..., points: 10, checks: [...]}")
            return None
        before = len(self.r.problems)
        for key in raw:
            if key not in TASK:
                self.bad(at + (key,), f"unknown field '{key}' of a task{did_you_mean(str(key), TASK)}",
                         f"a task has {', '.join(TASK)}")
        task_id = raw.get("id")
        if not isinstance(task_id, str) or not ID.fullmatch(task_id):
            self.bad(at + (("id",) if "id" in raw else ()), f"a task needs an id of a-z, 0-9 and -, not {what(task_id)}",
                     "id: reach")
        elif task_id in earlier:
            self.bad(at + ("id",), f"two tasks have the id {task_id!r}", "give each task its own id")
        if "title" not in raw:
            self.bad(at, "a task needs a title: what the student must achieve", "title: the client reaches the server")
        title = self._text(raw, "title", at)
        points = raw.get("points")
        if not _number(points) or points <= 0:
            self.bad(at + (("points",) if "points" in raw else ()),
                     f"a task's points must be a number above 0, not {what(points)}", "points: 10")
        needs = self._needs(at, raw.get("needs", []), earlier)
        prepare = self._steps(raw, "prepare", names, at, allowed=PREPARE)
        checks = [Test(s, False, self._points(at + ("checks", i), r)) for i, (s, r) in
                  enumerate(self._pairs(raw, "checks", names, at, OBSERVE, ("points",)))]
        hidden = [Test(s, True, self._points(at + ("hidden", i), r)) for i, (s, r) in
                  enumerate(self._pairs(raw, "hidden", names, at, OBSERVE, ("points",)))]
        hints = raw.get("hints", [])
        if not isinstance(hints, list) or not all(isinstance(h, str) and h.strip() for h in hints):
            self.bad(at + ("hints",), f"hints is a list of texts, not {what(hints)}", "hints: [Look at ip route on worker1.]")
            hints = []
        hintchecks = [HintCheck(s, self._hint(at + ("hintchecks", i), r)) for i, (s, r) in
                      enumerate(self._pairs(raw, "hintchecks", names, at, OBSERVE, ("hint",)))]
        answer = self._answer(at + ("answer",), raw["answer"], names) if "answer" in raw else None
        if "checks" not in raw and "hidden" not in raw and "answer" not in raw:
            self.bad(at, "a task needs something to grade: checks, hidden tests or an answer",
                     "checks: [{check: {from: client, to: server}}]")
        if len(self.r.problems) > before:
            return None
        task = Task(task_id, title, float(points), self.r.src.line_of(at), needs, tuple(prepare), tuple(checks + hidden),
                    tuple(hints), tuple(hintchecks), answer)
        self._shares(at, task)
        return task

    def _needs(self, at: DocPath, value: Any, earlier: list[str]) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            self.bad(at + ("needs",), f"needs is a list of task ids, not {what(value)}", "needs: [reach]")
            return ()
        for n in value:
            if n not in earlier:
                self.bad(at + ("needs",), f"needs {n!r}, which is not an earlier task{did_you_mean(n, earlier)}",
                         f"a task needs tasks listed before it; earlier tasks: {', '.join(earlier) or 'none'}")
        return tuple(value)

    def _points(self, at: DocPath, raw: dict) -> Optional[float]:
        if "points" not in raw:
            return None
        value = raw["points"]
        if not _number(value) or value < 0:
            self.bad(at + ("points",), f"a test's points must be a number, 0 or more, not {what(value)}", "points: 2")
            return None
        return float(value)

    def _hint(self, at: DocPath, raw: dict) -> str:
        hint = raw.get("hint")
        if not isinstance(hint, str) or not hint.strip():
            self.bad(at + (("hint",) if "hint" in raw else ()), "a hint check needs its hint: the text shown when the step fails",
                     "hint: worker1 still has no route to worker2's podCIDR.")
            return ""
        return hint

    def _answer(self, at: DocPath, value: Any, names: S.Names) -> Optional[Answer]:
        if not isinstance(value, dict):
            self.bad(at, f"answer is a mapping {{expected, compare, points}}, not {what(value)}",
                     "answer: {expected: [10.244.2.3]}")
            return None
        for key in value:
            if key not in ("expected", "compare", "points"):
                fields = ("expected", "compare", "points")
                self.bad(at + (key,), f"unknown field '{key}' of answer{did_you_mean(str(key), fields)}",
                         f"answer has {', '.join(fields)}")
        compare = value.get("compare", "exact")
        if compare not in COMPARES:
            self.bad(at + ("compare",), f"compare must be one of {', '.join(COMPARES)}, not {what(compare)}")
        points = self._points(at, value)
        expected = value.get("expected")
        if isinstance(expected, list) and expected and all(isinstance(v, (str, int, float)) for v in expected):
            return Answer(accepted=tuple(str(v).strip() for v in expected), compare=compare, points=points)
        if isinstance(expected, dict) and set(expected) == {"exec"} and isinstance(expected["exec"], dict):
            return self._live_answer(at + ("expected",), expected, names, compare, points)
        self.bad(at + (("expected",) if "expected" in value else ()),
                 f"answer.expected is a list of accepted values or {{exec: {{..., capture: REGEX}}}}, not {what(expected)}",
                 "expected: {exec: {node: worker1, command: 'ip route get 10.244.2.3', capture: 'dev (\\S+)'}}")
        return None

    def _live_answer(self, at: DocPath, expected: dict, names: S.Names, compare: str, points) -> Optional[Answer]:
        before = len(self.r.problems)
        body = dict(expected["exec"])
        capture = body.pop("capture", None)
        if not isinstance(capture, str):
            self.bad(at + ("exec", "capture") if "capture" in expected["exec"] else at + ("exec",),
                     "a live answer needs capture: a regex whose first group is the value", "capture: 'via (\\S+)'")
        elif S.bad_regex(capture):
            self.bad(at + ("exec", "capture"), f"invalid regex: {S.bad_regex(capture)}")
        elif re.compile(capture).groups < 1:
            self.bad(at + ("exec", "capture"), "the capture regex has no group: the value is its first (...)",
                     "capture: 'via (\\S+)'")
        step = self.r.step(at, 1, {"exec": body}, names)
        if step is None or len(self.r.problems) > before:
            return None
        return Answer(probe=step, capture=capture, compare=compare, points=points)

    def _shares(self, at: DocPath, task: Task) -> None:
        """Explicit points of a task's tests fit in the task's points; all explicit: they add up to it."""
        given = [t.points for t in task.tests] + ([task.answer.points] if task.answer else [])
        fixed = sum(p for p in given if p is not None)
        if fixed > task.points + 1e-9:
            self.bad(at + ("points",), f"the tests' own points add up to {fixed:g}, more than the task's {task.points:g}")
        elif all(p is not None for p in given) and abs(fixed - task.points) > 1e-9:
            self.bad(at + ("points",), f"every test has its own points, adding up to {fixed:g}, not the task's {task.points:g}",
                     "leave one test without points: it gets the rest")

    def _checkpoints(self, value: Any, names: S.Names) -> list[Checkpoint]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(("checkpoints",), f"checkpoints is a list of {{name, steps}}, not {what(value)}")
            return []
        out, seen = [], []
        for i, raw in enumerate(value):
            at = ("checkpoints", i)
            if not isinstance(raw, dict) or set(raw) - {"name", "steps"}:
                self.bad(at, "a checkpoint is {name: NAME, steps: [...]}", "- {name: route-added, steps: [...]}")
                continue
            name = raw.get("name")
            if not isinstance(name, str) or not ID.fullmatch(name):
                self.bad(at + ("name",) if "name" in raw else at,
                         f"a checkpoint needs a name of a-z, 0-9 and -, not {what(name)}")
                continue
            if name in seen:
                self.bad(at + ("name",), f"two checkpoints are named {name!r}")
            seen.append(name)
            own = copy.copy(names)  # each checkpoint starts from the setup, not from the one before
            own.aliases = list(names.aliases)
            steps = self._steps(raw, "steps", own, at)
            if not raw.get("steps"):
                self.bad(at, "a checkpoint needs steps: what brings the lab from the broken start to it")
            out.append(Checkpoint(name, tuple(steps)))
        return out

    def _files(self) -> None:
        """README.md is the task; the solutions are the instructor's (a student's copy has none)."""
        if not (self.folder / "README.md").is_file():
            self.r.problems.append(Diagnostic(str(self.folder / "README.md"), None, "", "README.md is missing",
                                              "the task as the student reads it"))
        for name, why in (("solution.sh", "the reference fix `lab exercise solve` runs and CI submits"),
                          ("SOLUTION.md", "the solution explained, for instructors")):
            if not (self.folder / name).is_file():
                self.r.warnings.append(Diagnostic(str(self.folder / name), None, "", f"{name} is missing",
                                                  f"{why} (a package for students leaves it out)", severity="warning"))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --- finding exercises ---

def default_dir() -> Path:
    """exercises/ of this checkout (the package is installed in editable mode)."""
    return Path(__file__).resolve().parents[2] / "exercises"


def folders(root: str | Path) -> list[Path]:
    root = Path(root)
    return sorted(p for p in root.iterdir() if (p / FILE).is_file()) if root.is_dir() else []


def find(name: str, root: str | Path) -> Path:
    """An exercise folder: a path to one, its folder name under root, or a unique prefix (`01`)."""
    given = Path(name)
    if (given / FILE).is_file():
        return given.resolve()
    found = folders(root)
    exact = [p for p in found if p.name == name]
    matches = exact or [p for p in found if p.name.startswith(name) or p.name.split("-", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    names = [p.name for p in found]
    if not matches:
        raise LabError(f"no exercise {name!r} in {root}{did_you_mean(name, names)}; `lab exercise list` shows them")
    raise LabError(f"{name!r} names {len(matches)} exercises ({', '.join(p.name for p in matches)}): give the full name")
