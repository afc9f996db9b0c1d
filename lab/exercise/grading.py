"""Results in, scores and reports out: pure, so the arithmetic and every output format are tested
without a lab.

A task's points are shared by its tests (each visible and hidden test, and the answer): a test with
its own `points` keeps them, the rest share what is left evenly. A locked task (one it needs is not
done) scores 0. Hidden tests are named "hidden test N" and say only whether they passed, in every
format: what they check never leaves the lab.

An answer's outcome reads "answer given" (or not given) wherever a student reads it: its right or
wrong would let a script find the value by trial. Gradescope alone shows it, with its reason, after
the due date (the test's visibility). Points are exact: per-test maximums, as printed, add up to
the task's points (largest remainder at 4 decimals).

Formats, each checked against its published shape:
- gradescope: Gradescope's results.json (gradescope-autograders.readthedocs.io/en/latest/specs/,
  and gradescope-utils' JSONTestRunner): score, output, visibility, stdout_visibility, tests[] of
  name, number, score, max_score, status passed|failed, output, tags, visibility.
- classroom50: Classroom 50's result.json, `classroom50/result/v1` (foundation50/classroom50,
  runner.py validate_result): integer score and max-score, tests[] of test-name, passed, score,
  max-score; identity fields from the runner's environment.
- classroom-legacy: GitHub Classroom's autograding runners' output, base64 of {version: 1, status,
  max_score, tests[] of name, status, message, test_code, filename, line_no, duration, score}
  (classroom-resources/autograding-io-grader; autograding-grading-reporter reads it).
"""
from __future__ import annotations

import base64
import datetime
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Sequence

FORMATS = ("text", "json", "junit", "gradescope", "classroom50", "classroom-legacy")
HIDDEN_PASSED, HIDDEN_FAILED = "hidden test passed", "hidden test failed"
ANSWER = "answer"
GIVEN, NOT_GIVEN = "answer given", "no answer given yet: `lab exercise answer TASK VALUE`"
PLACES = 4  # decimals of the points in JSON formats


@dataclass(frozen=True)
class Outcome:
    """One test of a task, as graded."""

    name: str                 # a visible test's title; a hidden test's is "hidden test N"
    passed: bool
    points: float             # its share of the task's points
    hidden: bool = False
    reason: str = ""          # why it failed (kept for the instructor's eyes only when hidden: never printed)
    given: bool = True        # an answer: whether one was given

    @property
    def is_answer(self) -> bool:
        return self.name == ANSWER

    @property
    def shown(self) -> str:
        """What a student may read about it."""
        if self.hidden:
            return HIDDEN_PASSED if self.passed else HIDDEN_FAILED
        if self.is_answer:
            return GIVEN if self.given else NOT_GIVEN
        return "passed" if self.passed else self.reason or "failed"


@dataclass(frozen=True)
class TaskGrade:
    id: str
    title: str
    points: float
    outcomes: tuple[Outcome, ...]
    locked_by: tuple[str, ...] = ()   # tasks it needs that are not done: it scores 0

    @property
    def score(self) -> float:
        return 0.0 if self.locked_by else sum(o.points for o in self.outcomes if o.passed)

    @property
    def done(self) -> bool:
        return not self.locked_by and all(o.passed for o in self.outcomes)


@dataclass(frozen=True)
class Grade:
    exercise: str
    title: str
    lab: str
    tasks: tuple[TaskGrade, ...]
    error: str = ""                   # the grade could not be made (lab gone, rebuilt by hand, solved): 0
    hidden_visibility: str = "after_published"
    hints_used: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()       # what the grader noticed that does not change the score (a changed spec)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tasks)

    @property
    def score(self) -> float:
        return 0.0 if self.error else sum(t.score for t in self.tasks)

    @property
    def full(self) -> bool:
        return not self.error and all(t.done for t in self.tasks)


def shares(explicit: Sequence[Optional[float]], total: float) -> list[float]:
    """Each test's points: its own, or an even share of what the others leave."""
    free = [p for p in explicit if p is None]
    rest = (total - sum(p for p in explicit if p is not None)) / len(free) if free else 0.0
    return [rest if p is None else p for p in explicit]


def integer_shares(values: Sequence[float], total: int) -> list[int]:
    """Whole points that add up to `total`, each as close to its value as can be (largest remainder)."""
    floors = [int(v + 1e-9) for v in values]
    order = sorted(range(len(values)), key=lambda i: (-(values[i] - floors[i]), i))
    for i in order[:max(0, total - sum(floors))]:
        floors[i] += 1
    return floors


def exact_maxima(grade: Grade) -> list[list[float]]:
    """Each test's maximum at PLACES decimals, per task, adding up to the task's points exactly."""
    unit = 10 ** PLACES
    return [[n / unit for n in integer_shares([o.points * unit for o in t.outcomes], round(t.points * unit))]
            for t in grade.tasks]


def failed_all(grade: Grade, why: str) -> Grade:
    """The grade when the lab cannot be graded: every test failed with that reason, score 0."""
    tasks = tuple(replace(t, outcomes=tuple(replace(o, passed=False, reason=why) for o in t.outcomes)) for t in grade.tasks)
    return replace(grade, tasks=tasks, error=why)


def render(grade: Grade, fmt: str) -> str:
    return {"text": text, "json": to_json, "junit": to_junit, "gradescope": to_gradescope,
            "classroom50": to_classroom50, "classroom-legacy": to_classroom_legacy}[fmt](grade)


def pts(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


# --- text and JSON ---

def text(grade: Grade) -> str:
    lines = [f"exercise {grade.exercise}: {grade.title} (lab {grade.lab})"]
    if grade.error:
        lines.append(f"  {grade.error}")
    for t in grade.tasks:
        state = f"locked: finish {', '.join(t.locked_by)} first" if t.locked_by else "done" if t.done else "not yet"
        lines.append(f"  task {t.id}: {t.title}  {pts(t.score)}/{pts(t.points)} ({state})")
        if not t.locked_by and not grade.error:
            lines += [f"    · {o.shown}" if o.is_answer else
                      f"    {'✓' if o.passed else '✗'} {o.name}" + ("" if o.passed or o.hidden else f": {o.reason}")
                      for o in t.outcomes]
    lines += [f"  note: {n}" for n in grade.notes]
    lines.append(f"score {pts(grade.score)}/{pts(grade.max_score)}" + (" (full marks)" if grade.full else ""))
    return "\n".join(lines) + "\n"


def to_json(grade: Grade) -> str:
    return json.dumps({
        "exercise": grade.exercise, "title": grade.title, "lab": grade.lab, "score": round(grade.score, 4),
        "max_score": round(grade.max_score, 4), "full_marks": grade.full, "error": grade.error,
        "hints_used": dict(grade.hints_used), "notes": list(grade.notes),
        "tasks": [{"id": t.id, "title": t.title, "points": t.points, "score": round(sum(
                       m for o, m in zip(t.outcomes, maxima) if o.passed and not t.locked_by and not grade.error), PLACES),
                   "done": t.done, "locked_by": list(t.locked_by),
                   "tests": [{"name": o.name, "hidden": o.hidden, "passed": o.passed, "points": m,
                              "score": m if o.passed and not t.locked_by and not grade.error else 0.0,
                              "output": _output(o, t)} for o, m in zip(t.outcomes, maxima)]}
                  for t, maxima in zip(grade.tasks, exact_maxima(grade))],
    }, indent=2) + "\n"


def _output(o: Outcome, t: TaskGrade) -> str:
    if t.locked_by:
        return f"locked: finish {', '.join(t.locked_by)} first"
    return o.shown


def _scored(grade: Grade):
    """(task index, test index, task, outcome, exact maximum, score) of every test, locked tasks scoring 0."""
    for ti, (t, maxima) in enumerate(zip(grade.tasks, exact_maxima(grade)), 1):
        for oi, (o, m) in enumerate(zip(t.outcomes, maxima), 1):
            yield ti, oi, t, o, m, (m if o.passed and not t.locked_by and not grade.error else 0.0)


# --- JUnit ---

def to_junit(grade: Grade) -> str:
    rows = list(_scored(grade))
    failures = sum(not (o.passed and not t.locked_by) for _, _, t, o, _, _ in rows)
    suites = ET.Element("testsuites", name="k8s-netlab exercises", tests=str(len(rows)), failures=str(failures))
    suite = ET.SubElement(suites, "testsuite", name=grade.exercise, tests=str(len(rows)), failures=str(failures))
    props = ET.SubElement(suite, "properties")
    for key, value in (("lab", grade.lab), ("score", pts(grade.score)), ("max_score", pts(grade.max_score))):
        ET.SubElement(props, "property", name=key, value=value)
    for _, _, t, o, _, _ in rows:
        case = ET.SubElement(suite, "testcase", classname=f"{grade.exercise}.{t.id}", name=o.name)
        if not (o.passed and not t.locked_by):
            ET.SubElement(case, "failure", message=_output(o, t))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


# --- Gradescope ---

def to_gradescope(grade: Grade) -> str:
    """An answer is a test shown after the due date, with its real verdict: before it, neither its
    status nor its score can be read (Gradescope's after_due_date)."""
    tests = [{
        "name": f"{t.title}: {o.name}",
        "number": f"{ti}.{oi}",
        "score": score,
        "max_score": m,
        "status": "passed" if o.passed and not t.locked_by and not grade.error else "failed",
        "output": (o.reason or ("passed" if o.passed else "failed")) if o.is_answer and not t.locked_by else _output(o, t),
        "tags": [t.id],
        "visibility": grade.hidden_visibility if o.hidden else "after_due_date" if o.is_answer else "visible",
    } for ti, oi, t, o, m, score in _scored(grade)]
    summary = grade.error or f"{pts(grade.score)}/{pts(grade.max_score)} points"
    notes = "".join(f"\nnote: {n}" for n in grade.notes)
    return json.dumps({"score": round(sum(t["score"] for t in tests), PLACES), "output": f"{grade.title}: {summary}{notes}",
                       "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}, indent=2) + "\n"


# --- Classroom 50 ---

def _whole(grade: Grade) -> list[tuple[TaskGrade, Outcome, int, int]]:
    """Classroom 50 counts whole points: each task's points shared out in integers."""
    out = []
    for t in grade.tasks:
        maxes = integer_shares([o.points for o in t.outcomes], round(t.points))
        out += [(t, o, m, m if o.passed and not t.locked_by and not grade.error else 0) for o, m in zip(t.outcomes, maxes)]
    return out


def to_classroom50(grade: Grade, env: Optional[Mapping[str, str]] = None) -> str:
    """result.json as a Classroom 50 autograder writes it: the identity fields come from the runner's
    environment (it stamps owner and assignment_type itself)."""
    env = os.environ if env is None else env
    rows = _whole(grade)
    commit = env.get("COMMIT_URL", "")
    result = {
        "schema": "classroom50/result/v1",
        "classroom": env.get("CLASSROOM", ""),
        "assignment": env.get("ASSIGNMENT", grade.exercise),
        "submission": env.get("SUBMISSION_TAG", ""),
        "commit": commit,
        "release": env.get("RELEASE_URL", ""),
        "review": env.get("REVIEW_URL", "") or commit,
        "datetime": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "score": sum(score for *_, score in rows),
        "max-score": sum(m for _, _, m, _ in rows),
        "tests": [{"test-name": f"{t.title}: {o.name}", "passed": o.passed and not t.locked_by and not grade.error,
                   "score": score, "max-score": m} for t, o, m, score in rows],
    }
    return json.dumps(result, indent=2) + "\n"


# --- GitHub Classroom (legacy autograding actions) ---

def to_classroom_legacy(grade: Grade) -> str:
    """The base64 JSON a runner step outputs for autograding-grading-reporter: status error when the
    lab could not be graded, fail when a test failed, pass at full marks."""
    tests = [{"name": f"{t.title}: {o.name}", "status": "pass" if o.passed and not t.locked_by and not grade.error else "fail",
              "message": _output(o, t) if not grade.error else grade.error, "test_code": "", "filename": "",
              "line_no": 0, "duration": 0, "score": score} for _, _, t, o, _, score in _scored(grade)]
    status = "error" if grade.error else "pass" if grade.full else "fail"
    doc = {"version": 1, "status": status, "max_score": round(grade.max_score, 4), "tests": tests}
    return base64.b64encode(json.dumps(doc).encode()).decode() + "\n"
