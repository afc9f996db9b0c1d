"""An exercise on a live lab: start (build, break, stamp), evaluate its tests, hints, answers,
reset, and run solution scripts. Steps run through the scenario machinery (lab.scenario.runner
.run_step: wait windows and `expect: fail`; lab.scenario.steps: the effects), so a test is judged
exactly as a scenario step is.
"""
from __future__ import annotations

import ipaddress
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import yaml

from lab import host
from lab.errors import LabError
from lab.exercise import grading, session as sessions
from lab.exercise.grading import Grade, Outcome, TaskGrade
from lab.exercise.model import Answer, Exercise, Task
from lab.scenario.model import Step
from lab.scenario.runner import FAILED, run_step
from lab.scenario import steps
from lab.scenario.steps import EFFECTS, Context, Failed, run_exec

SCRIPT_TIMEOUT = 60.0
NOT_STARTED = ("the lab was not started by `lab exercise start` ({why}): a lab built or rebuilt by hand is not "
               "graded; `lab exercise reset` starts the exercise again")
SOLVED = ("`lab exercise solve` ran the reference solution on this lab ({what}): an instructor's action, scored 0; "
          "`lab exercise reset` starts the exercise again")
SPEC_CHANGED = ("exercise.yaml in {folder} changed after `lab exercise start`: graded with the copy sealed at start "
                "(`lab exercise reset` seals the new one)")
BROKEN = "the environment itself is broken ({why}); `lab exercise reset` builds it again"


def _ran(step: Step, ctx: Context) -> tuple[bool, str]:
    r = run_step(step, ctx, EFFECTS)
    return r.status != FAILED, r.reason


# --- start, reset, stop ---

def start(ex: Exercise, checkpoint: str = "", progress: Callable[[str, float], None] = lambda n, s: None,
          keep: Optional[sessions.Session] = None) -> sessions.Session:
    """Build the lab, run the setup (and a checkpoint's steps), check the environment, stamp the
    token. Anything failing tears the lab down again: a half-broken lab is never left behind."""
    from lab.host import record
    from lab.runtime import lifecycle
    from lab.topology.load import reporting

    if checkpoint and checkpoint not in {c.name for c in ex.checkpoints}:
        known = ", ".join(c.name for c in ex.checkpoints) or "none"
        raise LabError(f"exercise {ex.name} has no checkpoint {checkpoint!r}; checkpoints: {known}")
    if ex.lab in record.names():
        raise LabError(f"lab {ex.lab} is already running: `lab exercise reset` starts the exercise again, "
                       f"or `lab down {ex.lab}` removes it first")
    topology, scratch = _topology_file(ex)
    try:
        with reporting(report=lambda warnings: None):
            lifecycle.up(topology, progress=progress)
    finally:
        if scratch:
            host.remove(Path(topology).parent)  # the scratch folder and its topology
    try:
        ctx = Context(ex.lab)
        steps = list(ex.setup) + [s for c in ex.checkpoints if c.name == checkpoint for s in c.steps]
        for step in steps:
            ok, why = _ran(step, ctx)
            if not ok:
                raise LabError(f"exercise {ex.name}: setup step {step.title!r} failed: {why}")
        broken = failcheck(ex, ctx)
        if broken:
            raise LabError(f"exercise {ex.name}: {broken}")
        token = sessions.new_token()
        s = keep or sessions.Session(ex.name, ex.folder, ex.lab, token)
        s.token, s.checkpoint, s.answers, s.solved = token, checkpoint, {}, ""
        s.baked = sessions.stamp(ex.lab, token)
        sessions.seal(s)
        s.save()
        return s
    except BaseException:
        lifecycle.teardown(record.load(ex.lab))
        raise


def stop(s: sessions.Session) -> list[str]:
    """Remove the lab (if it runs) and the session."""
    errors = _down(s.lab)
    s.remove()
    return errors


def reset(ex: Exercise, s: sessions.Session, checkpoint: str = "", progress=lambda n, sec: None) -> sessions.Session:
    """Tear down and start again (hints used are kept, answers dropped: they were about the old lab)."""
    errors = _down(s.lab)
    if errors:
        raise LabError(f"lab {s.lab} could not be removed: {'; '.join(errors)}")
    return start(ex, checkpoint, progress, keep=s)


def _down(lab: str) -> list[str]:
    from lab.host import record
    from lab.runtime import lifecycle

    try:
        rec = record.load(lab)
    except record.NoSuchLab:
        return []
    return lifecycle.teardown(rec)


def _topology_file(ex: Exercise) -> tuple[str, bool]:
    if ex.topology:
        return ex.topology, False
    path = Path(tempfile.mkdtemp(prefix="lab-exercise-")) / f"{ex.lab}.yaml"
    host.write_file(path, yaml.safe_dump(ex.inline, sort_keys=False))
    return str(path), True


# --- the state of the lab ---

def integrity(ex: Exercise, s: sessions.Session) -> str:
    """'' when the live lab is the one this session started, else why it cannot be graded."""
    token = sessions.token_of(s.lab)
    if token is None:
        return NOT_STARTED.format(why=f"no lab {s.lab} is running")
    if token != s.token:
        return NOT_STARTED.format(why=f"lab {s.lab} does not carry this session's start token")
    return ""


def failcheck(ex: Exercise, ctx: Context) -> str:
    for step in ex.failcheck:
        ok, why = _ran(step, ctx)
        if not ok:
            return BROKEN.format(why=f"{step.title}: {why}")
    return ""


def evaluate(ex: Exercise, s: Optional[sessions.Session], hidden: bool = True) -> Grade:
    """Every task's tests on the live lab, in order; a task whose needs are not done is locked and
    not run. Without hidden, hidden tests and answers are left out (what `check` shows)."""
    tasks = [_skeleton(t, s, hidden) for t in ex.tasks]
    notes = (SPEC_CHANGED.format(folder=s.path),) if s and s.spec_changed() else ()
    grade = Grade(ex.name, ex.title, ex.lab, tuple(tasks), hidden_visibility=ex.hidden_visibility,
                  hints_used=dict(s.hints) if s else {}, notes=notes)
    why = integrity(ex, s) if s else NOT_STARTED.format(why=f"exercise {ex.name} has no session")
    why = why or (SOLVED.format(what=s.solved) if s and s.solved else "")
    ctx = Context(ex.lab)
    why = why or failcheck(ex, ctx)
    if why:
        return grading.failed_all(grade, why)
    done: set[str] = set()
    graded = []
    for task, skeleton in zip(ex.tasks, tasks):
        locked = tuple(n for n in task.needs if n not in done)
        result = TaskGrade(task.id, task.title, task.points, skeleton.outcomes, locked) if locked else \
            _run_task(task, skeleton, ctx, s, hidden)
        if result.done:
            done.add(task.id)
        graded.append(result)
    return replace(grade, tasks=tuple(graded))


def _tests(task: Task, hidden: bool):
    return [t for t in task.tests if hidden or not t.hidden]


def _skeleton(task: Task, s, hidden: bool) -> TaskGrade:
    """The task's outcomes, all not yet run (failed, no reason), with their points."""
    tests = _tests(task, hidden)
    answer = [task.answer] if task.answer and hidden else []
    points = grading.shares([t.points for t in tests] + [a.points for a in answer], task.points)
    names, n = [], 0
    for t in tests:
        n += t.hidden
        names.append(f"hidden test {n}" if t.hidden else t.step.title)
    outcomes = [Outcome(name, False, p, t.hidden, "not run") for name, p, t in zip(names, points, tests)]
    outcomes += [Outcome(grading.ANSWER, False, points[-1], False, "not run", given=False) for _ in answer]
    return TaskGrade(task.id, task.title, task.points, tuple(outcomes))


def _run_task(task: Task, skeleton: TaskGrade, ctx: Context, s, hidden: bool) -> TaskGrade:
    for step in task.prepare:  # the grader's own objects, made afresh at every grade (the same state, the same grade)
        try:
            steps.apply(ctx, step.spec, delete=True)
        except (Failed, LabError):
            pass  # not there yet (the first grade), or the apply below says what is wrong
        ok, why = _ran(step, ctx)
        if not ok:
            why = f"the grader could not prepare the task ({step.title}: {why})"
            return replace(skeleton, outcomes=tuple(replace(o, reason=why) for o in skeleton.outcomes))
    tests = _tests(task, hidden)
    # A test only looks (model.OBSERVE), so a task's tests run at once: a failing one waits out its
    # probes' retries (seconds) beside the others instead of before them.
    with ThreadPoolExecutor(max(1, len(tests))) as pool:
        ran = list(pool.map(lambda test: _ran(test.step, ctx), tests))
    outcomes = [Outcome(o.name, ok, o.points, o.hidden, why) for o, (ok, why) in zip(skeleton.outcomes, ran)]
    if task.answer and hidden:
        given = (s.answers if s else {}).get(task.id)
        ok, why = judge_answer(task.answer, given, ctx)
        outcomes.append(Outcome(grading.ANSWER, ok, skeleton.outcomes[-1].points, False, why, given=given is not None))
    return TaskGrade(task.id, task.title, task.points, tuple(outcomes))


# --- answers ---

def judge_answer(answer: Answer, given: Optional[str], ctx: Context) -> tuple[bool, str]:
    """Whether the student's answer is an accepted value: one of the static ones, or what the live
    lab says now (the probe's output, its capture group)."""
    if given is None:
        return False, "no answer given yet: `lab exercise answer TASK VALUE`"
    if answer.probe is not None:
        try:
            done = run_exec(ctx, answer.probe.spec)
        except (Failed, LabError) as e:
            return False, f"the lab could not be asked for the expected value: {e}"
        found = re.search(answer.capture, done.stdout, re.MULTILINE)
        if not found:
            return False, f"the lab could not be asked for the expected value: /{answer.capture}/ found nothing in its output"
        accepted = [found.group(1)]
    else:
        accepted = list(answer.accepted)
    if any(_same(given, a, answer.compare) for a in accepted):
        return True, ""
    return False, f"{given!r} is not the answer"


def _same(given: str, expected: str, how: str) -> bool:
    a, b = given.strip(), expected.strip()
    if how == "casefold":
        return a.casefold() == b.casefold()
    if how == "ip":
        try:
            return ipaddress.ip_address(a.split("/")[0]) == ipaddress.ip_address(b.split("/")[0])
        except ValueError:
            return False
    return a == b


# --- hints ---

def next_hint(ex: Exercise, s: sessions.Session, task: Task) -> str:
    """The next static hint of the task, then the hint of the first hint check that fails on the
    live lab (counted in the session)."""
    given = s.hints.get(task.id, 0)
    if given < len(task.hints):
        s.hints[task.id] = given + 1
        s.save()
        return f"hint {given + 1}/{len(task.hints)} ({task.id}): {task.hints[given]}"
    ctx = Context(ex.lab)
    for check in task.hintchecks:
        ok, _ = _ran(check.step, ctx)
        if not ok:
            s.computed_hints += 1
            s.save()
            return f"hint ({task.id}, from the lab as it is now): {check.hint}"
    if task.hintchecks:
        return f"no more hints for {task.id}: everything the hints look at is right now; `lab exercise check` shows what is left"
    return f"no more hints for {task.id}"


# --- the reference solution (an instructor's action; a student's submission is lab.exercise.submission) ---

def run_script(ex: Exercise, s: sessions.Session, script: Path, timeout: float = SCRIPT_TIMEOUT) -> tuple[Optional[int], str]:
    """(exit code, None at the timeout; its output) of a trusted script run as root by bash in its
    own folder, with LAB and the lab CLI on PATH. The session records it: a solved lab grades 0.
    At the timeout its whole process group is killed; its output goes to a file, not a pipe, so a
    daemon it leaves behind cannot hold the grader up. Whatever it starts in the lab's namespaces,
    the lab's teardown removes."""
    s.solved = f"{script}, {time.strftime('%Y-%m-%d %H:%M:%S')}"
    s.save()
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "LAB": s.lab, "LAB_EXERCISE": ex.name, "EXERCISE_DIR": s.path,
           "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
    with tempfile.NamedTemporaryFile("r", prefix="lab-exercise-", suffix=".log") as log:
        done = host.run(["env", "-C", str(script.parent), "bash", "-c", 'exec bash "$0" >"$1" 2>&1', script.name, log.name],
                        env=env, timeout=timeout, check=False)
        return done.code, log.read()
