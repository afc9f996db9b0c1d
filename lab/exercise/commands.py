"""`lab exercise ...`: what each subcommand prints and its exit code. lab.cli parses the arguments
and hands them here; the work is in lab.exercise.runner.

Exit codes: 0 done (grade: full marks; check: every visible test passes), 1 not yet (or an error
of the lab, printed), 2 an invalid exercise file or a wrong use of the command.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lab import host
from lab.errors import LabError
from lab.exercise import grading, model, runner, session as sessions
from lab.exercise.grading import pts


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _progress(name: str, seconds: float) -> None:
    _err(f" ✓ {name} ({seconds:.2f}s)")


def _root(a) -> Path:
    return Path(a.dir) if a.dir else model.default_dir()


def _load(path) -> model.Exercise:
    ex = model.load(path)
    if ex.warnings:
        from lab.errors import warnings_text

        _err(warnings_text(list(ex.warnings)))
    return ex


def _which(a):
    """--exercise, or LAB_EXERCISE (set for the scripts `solve` runs), or the only started one."""
    return a.exercise or os.environ.get("LAB_EXERCISE") or None


def _session(a) -> tuple[model.Exercise, sessions.Session]:
    """The started exercise, as sealed at its start (its folder's exercise.yaml may have changed)."""
    s = sessions.find(_which(a))
    if s.sealed:  # its warnings were printed at start (and a sealed copy has no solutions by design)
        return model.load(s.sealed), s
    return _load(s.path), s


def _named(a, usage: str) -> str:
    """The exercise a command names: its one argument, or --exercise."""
    if len(a.args) > 1 or not (a.args or a.exercise):
        raise LabError(f"lab exercise {a.action} {usage}")
    return a.args[0] if a.args else a.exercise


def run(a) -> int:
    try:
        return ACTIONS[a.action](a) or 0
    except model.ExerciseError as e:
        _err(str(e))
        return 2


def cmd_list(a) -> int:
    from lab.views import render_table

    rows = []
    for folder in model.folders(_root(a)):
        try:
            ex = model.load(folder)
        except model.ExerciseError as e:
            why = f"(invalid: {len(e.diagnostics)} errors; lab exercise validate {folder.name})"
            rows.append([folder.name, why, "-", "-", "-"])
            continue
        rows.append([ex.name, ex.title, ex.level, ",".join(ex.topics) or "-", pts(ex.points)])
    if not rows:
        _err(f"no exercises in {_root(a)}")
        return 0
    print(render_table(["NAME", "TITLE", "LEVEL", "TOPICS", "POINTS"], rows))
    return 0


def cmd_validate(a) -> int:
    folders = [model.find(n, _root(a)) for n in a.args] if a.args else model.folders(_root(a))
    invalid = 0
    for folder in folders:
        try:
            ex = _load(folder)
        except model.ExerciseError as e:
            _err(str(e))
            invalid += 1
            continue
        hidden = sum(t.hidden for task in ex.tasks for t in task.tests)
        print(f"{folder.name}: valid: {len(ex.tasks)} tasks, {pts(ex.points)} points, {hidden} hidden tests, "
              f"{len(ex.setup)} setup steps on lab {ex.lab}")
    return 2 if invalid else 0


def cmd_start(a) -> int:
    ex = _load(model.find(_named(a, "NAME"), _root(a)))
    t0 = time.monotonic()
    _err(f"Starting exercise {ex.name} on lab {ex.lab} ...")
    s = runner.start(ex, a.to or "", progress=_progress)
    at = f" at checkpoint {s.checkpoint}" if s.checkpoint else ""
    _err(f"Exercise {ex.name} is ready ({time.monotonic() - t0:.2f}s){at}")
    _show_readme(ex)
    return 0


def _show_readme(ex: model.Exercise) -> None:
    print((Path(ex.folder) / "README.md").read_text().rstrip() + "\n")
    print(f"{ex.title}: {len(ex.tasks)} tasks, {pts(ex.points)} points. "
          "`lab exercise check` runs the visible tests, `lab exercise hint` gives a hint, `lab exercise grade` grades.")


def cmd_status(a) -> int:
    """Each task by its visible tests: hidden tests and answers are judged by `grade` alone (an answer
    tried at status would tell right from wrong)."""
    ex, s = _session(a)
    grade = runner.evaluate(ex, s, hidden=False)
    print(f"exercise {ex.name}: {ex.title} (lab {ex.lab}): by the visible tests")
    if grade.error:
        print(f"  {grade.error}")
        return 1
    for t in grade.tasks:
        state = f"locked (finish {', '.join(t.locked_by)} first)" if t.locked_by else "done" if t.done else "not yet"
        print(f"  {t.id:<16} {state:<28} {t.title}")
    print("hidden tests and answers: graded by `lab exercise grade`")
    return 0 if grade.full else 1


def cmd_check(a) -> int:
    """The visible tests only, what failed and why; answers are graded by `grade`."""
    ex, s = _session(a)
    grade = runner.evaluate(ex, s, hidden=False)
    print(f"exercise {ex.name}: {ex.title} (lab {ex.lab}): visible tests")
    if grade.error:
        print(f"  {grade.error}")
        return 1
    for task, t in zip(ex.tasks, grade.tasks):
        if t.locked_by:
            print(f"  task {t.id}: locked: finish {', '.join(t.locked_by)} first")
            continue
        print(f"  task {t.id}: {t.title}")
        for o in t.outcomes:
            print(f"    {'✓' if o.passed else '✗'} {o.name}" + ("" if o.passed else f": {o.reason}"))
        if task.answer:
            given = s.answers.get(task.id)
            print(f"    · answer: given ({given}), graded by `lab exercise grade`" if given is not None else
                  f"    · answer: not given yet: `lab exercise answer {task.id} VALUE`")
    passed = all(t.done for t in grade.tasks)
    print("every visible test passes (hidden tests and answers are graded by `lab exercise grade`)" if passed else
          "not yet: `lab exercise hint` gives a hint")
    return 0 if passed else 1


def cmd_hint(a) -> int:
    ex, s = _session(a)
    if len(a.args) > 1:
        raise LabError("lab exercise hint [TASK]")
    if a.args:
        task = ex.task(a.args[0])
    else:
        grade = runner.evaluate(ex, s, hidden=False)
        if grade.error:
            print(grade.error)
            return 1
        todo = [t for t in grade.tasks if not t.done and not t.locked_by]
        if not todo:
            print("every visible test passes: no hint needed (`lab exercise grade` grades the rest)")
            return 0
        task = ex.task(todo[0].id)
    print(runner.next_hint(ex, s, task))
    return 0


def cmd_answer(a) -> int:
    ex, s = _session(a)
    if len(a.args) != 2:
        raise LabError("lab exercise answer TASK VALUE (quote a VALUE with spaces)")
    task = ex.task(a.args[0])
    if task.answer is None:
        asks = [t.id for t in ex.tasks if t.answer]
        raise LabError(f"task {task.id} asks for no answer; tasks that do: {', '.join(asks) or 'none'}")
    s.answers[task.id] = a.args[1].strip()
    s.save()
    print(f"answer to {task.id} recorded: {a.args[1].strip()!r} (graded against the live lab by `lab exercise grade`)")
    return 0


def cmd_grade(a) -> int:
    if _which(a) and sessions.load(_which(a)) is None:  # never started: graded as such, 0
        ex, s = _load(model.find(_which(a), _root(a))), None
    else:
        ex, s = _session(a)
    grade = runner.evaluate(ex, s)
    out = grading.render(grade, a.format)
    if a.out:
        host.write_file(a.out, out)
        _err(f"{a.format} results written to {a.out}: {pts(grade.score)}/{pts(grade.max_score)}")
    else:
        sys.stdout.write(out)
    return 0 if grade.full else 1


def cmd_reset(a) -> int:
    """Start again from the exercise's folder as it is now (it is sealed again)."""
    s = sessions.find(_which(a))
    ex = _load(s.path)
    t0 = time.monotonic()
    _err(f"Resetting exercise {ex.name} (lab {ex.lab}) ...")
    s = runner.reset(ex, s, a.to or "", progress=_progress)
    where = f"checkpoint {s.checkpoint}" if s.checkpoint else "the broken start"
    _err(f"Exercise {ex.name} is back at {where} ({time.monotonic() - t0:.2f}s)")
    return 0


def cmd_solve(a) -> int:
    """The reference solution (or a trusted --script), as root: an instructor's action; the lab it
    solved grades 0 until `reset` (a student's submission is `submit`)."""
    ex, s = _session(a)
    script = Path(a.script).resolve() if a.script else Path(s.path) / "solution.sh"
    if not script.is_file():
        raise LabError(f"no script {script}" + ("" if a.script else ": this copy of the exercise has no solution "
                                                 "(packages for students leave it out)"))
    t0 = time.monotonic()
    code, output = runner.run_script(ex, s, script, a.timeout)
    sys.stdout.write(output)
    if code is None:
        _err(f"{script} did not finish within {a.timeout:g}s: stopped (its whole process group)")
        return 1
    _err(f"{script} exited {code} ({time.monotonic() - t0:.2f}s)")
    return 0 if code == 0 else 1


def cmd_submit(a) -> int:
    """A student's submission (a folder with solution.sh, or one script), confined as
    lab.exercise.sandbox says, against the started exercise."""
    from lab.exercise import sandbox, submission

    ex, s = _session(a)
    if len(a.args) != 1:
        raise LabError("lab exercise submit FOLDER|SCRIPT [--user USER] [--timeout S] [--hide PATH ...]")
    who = sandbox.student(a.user or sandbox.DEFAULT_USER)
    t0 = time.monotonic()
    ran = submission.submit(ex, s, Path(a.args[0]), who, a.timeout, a.hide or ())
    sys.stdout.write(ran.output)
    told = f"{ran.served} lab commands run for it, {ran.refused} refused"
    if ran.code is None:
        _err(f"the submission did not finish within {a.timeout:g}s: stopped, with every process it started ({told})")
        return 1
    _err(f"the submission ran as {who.name} and exited {ran.code} ({time.monotonic() - t0:.2f}s; {told})")
    return 0 if ran.code == 0 else 1


def cmd_package(a) -> int:
    from lab.exercise import package, sandbox

    if not a.out:
        raise LabError("lab exercise package NAME --out FILE.zip [--with-solutions]")
    ex = _load(model.find(_named(a, "NAME --out FILE.zip"), _root(a)))
    files = package.build(ex, Path(a.out), a.timeout, with_solutions=a.with_solutions,
                          user=a.user or sandbox.DEFAULT_USER)
    what = "with the solutions (an instructor's bundle: never give it to students)" if a.with_solutions else \
        "without solutions"
    print(f"{a.out}: Gradescope autograder for {ex.name} ({files} files): setup.sh, run_autograder, k8s-netlab and "
          f"the exercise, {what}")
    return 0


def cmd_stop(a) -> int:
    s = sessions.find(_which(a))
    errors = runner.stop(s)
    for e in errors:
        _err(f"error: {e}")
    _err(f"exercise {s.exercise} stopped: lab {s.lab} removed")
    return 1 if errors else 0


ACTIONS = {"list": cmd_list, "validate": cmd_validate, "start": cmd_start, "status": cmd_status, "check": cmd_check,
           "hint": cmd_hint, "answer": cmd_answer, "grade": cmd_grade, "reset": cmd_reset, "solve": cmd_solve,
           "submit": cmd_submit, "package": cmd_package, "stop": cmd_stop}
