"""`lab exercise` end to end on real labs: the test exercise (tests/data/exercises/hgw, node1's
route to node2's pods deleted) goes start → grade (not full marks, exit 1) → hint → submit (the
reference solution, confined) → grade (full marks, exit 0); a hidden test stays hidden in every
format; a spec rewritten after start is graded from the sealed copy, with a note; `solve` (an
instructor's action) grades 0, saying so; reset brings the breakage back (or a checkpoint); `lab
down` ends the exercise; a lab rebuilt by hand grades 0 with the reason; a submission that outlives
its timeout is stopped with everything it started. Then every exercise of the repository runs the
CI loop: start → 10 grades of the broken start (one, then nine at once), identical and below full
marks → submit the reference solution confined → grade (full)."""
from __future__ import annotations

import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.controlplane.naming import switch_name
from lab.exercise import model
from tests.integration.conftest import lab, lab_leftovers, needs_root, reference_submission, student_processes

pytestmark = [needs_root, pytest.mark.root]

DATA = Path(__file__).resolve().parents[1] / "data" / "exercises"
LAB, NAME = "exhgw", "hgw"
SECRET = "secret-probe-from-node1"


def ex(*args: str, check: bool = False, timeout: float = 120, where: Path = DATA):
    return lab("exercise", *args, "-e", NAME, "--dir", str(where), check=check, timeout=timeout)


@pytest.fixture
def stopped():
    yield
    ex("stop")
    lab("down", LAB, check=False)


def _route() -> str:
    return lab("exec", "-l", LAB, "node/node1", "--", "ip", "route", "show", "10.244.1.0/24").stdout


def _hidden_stays_hidden(fmt: str) -> None:
    out = ex("grade", "--format", fmt).stdout
    text = base64.b64decode(out).decode() if fmt == "classroom-legacy" else out
    assert SECRET not in text and "no reply" not in text.split("hidden test 1", 1)[-1][:40], (fmt, text)
    assert ("✗ hidden test 1\n" if fmt == "text" else "hidden test failed") in text or fmt == "classroom50", (fmt, text)


def test_start_grade_submit_solve_reset_and_a_rebuilt_lab(stopped, tmp_path: Path):
    where = tmp_path / "exercises"
    shutil.copytree(DATA / NAME, where / NAME)
    proc = ex("start", check=True, where=where)
    assert "# A route that went missing" in proc.stdout and "lab exercise check" in proc.stdout
    assert lab("fault", "list", "-l", LAB).stdout.strip().splitlines()[1:] == []   # the breakage is not a lab fault

    with ThreadPoolExecutor(7) as pool:  # each grade waits for the unanswered probes: all at once
        first = pool.submit(ex, "grade", timeout=60)
        list(pool.map(_hidden_stays_hidden, ["text", "json", "junit", "gradescope", "classroom50", "classroom-legacy"]))
        proc = first.result()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "score 0/14" in proc.stdout and "✗ client -> web: " in proc.stdout and "✗ hidden test 1\n" in proc.stdout
    assert "locked: finish reach first" in proc.stdout and SECRET not in proc.stdout

    assert "hint 1/1 (reach): Look at node1's routing table." in ex("hint").stdout
    assert "node1 has no route to 10.244.1.0/24" in ex("hint").stdout   # then the computed hint

    # the spec rewritten after start (a hostile student on their own machine): graded as sealed
    (where / NAME / "exercise.yaml").write_text((where / NAME / "exercise.yaml").read_text().replace("points: 10", "points: 1"))
    submitted = ex("submit", str(where / NAME))
    assert submitted.returncode == 0 and "ran as lab-student and exited 0" in submitted.stderr, submitted.stderr
    assert not student_processes()
    proc = ex("grade", "--format", "gradescope", "--out", str(tmp_path / "results.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["score"] == 14 and all(t["status"] == "passed" for t in doc["tests"])
    assert doc["tests"][1]["output"] == "hidden test passed" and doc["tests"][1]["visibility"] == "after_published"
    assert doc["tests"][3]["name"].endswith(": answer") and doc["tests"][3]["visibility"] == "after_due_date"
    assert "changed after `lab exercise start`: graded with the copy sealed at start" in doc["output"]
    assert ex("status").returncode == 0 and ex("check").returncode == 0
    text = ex("grade").stdout
    assert "· answer given" in text and "score 14/14 (full marks)" in text
    shutil.copy(DATA / NAME / "exercise.yaml", where / NAME / "exercise.yaml")   # reset seals the folder's spec again

    solved = ex("solve")   # an instructor's action: the lab it solved grades 0, saying so
    assert solved.returncode == 0, solved.stdout + solved.stderr
    proc = ex("grade", "--format", "gradescope")
    assert proc.returncode == 1 and json.loads(proc.stdout)["score"] == 0
    assert "`lab exercise solve` ran the reference solution" in json.loads(proc.stdout)["output"]

    assert ex("reset").returncode == 0
    assert _route() == "" and lab("fault", "list", "-l", LAB).stdout.strip().splitlines()[1:] == []
    assert ex("reset", "--to", "fixed").returncode == 0
    assert "via 172.18.0.3" in _route() and "score 12/14" in ex("grade").stdout   # not solved any more: graded

    proc = lab("down", LAB)
    assert "exercise hgw stopped: its lab is gone" in proc.stderr
    assert "is not started" in ex("solve").stderr
    lab("up", str(DATA / NAME / "topology.yaml"))        # the clean topology, by hand: not a fix
    proc = ex("grade")
    assert proc.returncode == 1 and "score 0/14" in proc.stdout
    assert "the lab was not started by `lab exercise start`" in proc.stdout
    legacy = json.loads(base64.b64decode(ex("grade", "--format", "classroom-legacy").stdout))
    assert legacy["status"] == "error" and sum(t["score"] for t in legacy["tests"]) == 0
    lab("down", LAB)
    assert "the lab was not started" in ex("grade").stdout


def test_a_runaway_submission_is_stopped_with_everything_it_started(stopped, tmp_path: Path):
    ex("start", check=True)
    script = tmp_path / "runaway.sh"
    script.write_text("setsid sleep 600 </dev/null >/dev/null 2>&1 &\n"
                      f"lab exec -l {LAB} node/node1 -- setsid sleep 600 </dev/null >/dev/null 2>&1 &\n"
                      "sleep 0.5\nsleep 600\n")
    proc = ex("submit", str(script), "--timeout", "2")
    assert proc.returncode == 1 and "did not finish within 2s: stopped, with every process it started" in proc.stderr
    assert not student_processes()
    assert ex("stop").returncode == 0
    assert not lab_leftovers(LAB, switch_name(LAB))
    assert "not started" in ex("grade").stderr + ex("grade").stdout


@pytest.mark.exercises  # minutes for all of them: `make test-exercises` and CI run it, `make test` does not
@pytest.mark.parametrize("folder", model.folders(model.default_dir()), ids=lambda p: p.name)
def test_every_exercise_is_broken_at_start_and_solved_by_its_solution(folder: Path, tmp_path: Path, student: str):
    """The broken start graded 10 times gives one grade (the same lab state, the same grade); the
    reference solution, submitted as a student's would be (confined), gets full marks. The first
    grade runs alone, so the nine others all grade a lab a grade has just probed (nothing a grade
    leaves, a conntrack entry say, may change the next one's verdict); those nine run at once, as
    students' checks may, on a machine they load: each grade waits out its unanswered probes, and
    one after another they took most of this loop's time."""
    name = folder.name
    where = tmp_path / "exercises"
    shutil.copytree(folder, where / name)   # a submission may put files in place (exercise 15's plugin)

    def run(*args: str, timeout: float = 180):
        return lab("exercise", *args, "-e", name, "--dir", str(where), check=False, timeout=timeout)

    try:
        start = run("start")
        assert start.returncode == 0, start.stdout + start.stderr
        grades = [run("grade", "--format", "json")]
        with ThreadPoolExecutor(9) as pool:
            grades += pool.map(lambda _: run("grade", "--format", "json"), range(9))
        for g in grades:  # a grade that printed no JSON says why
            assert g.stdout.strip().startswith("{"), f"{name}: a grade printed no JSON (exit {g.returncode}): {g.stderr}"
        first = json.loads(grades[0].stdout)
        assert grades[0].returncode == 1 and not first["full_marks"], grades[0].stdout + grades[0].stderr
        verdicts = [[(t["name"], t["passed"]) for task in json.loads(g.stdout)["tasks"] for t in task["tests"]]
                    for g in grades]
        assert all(v == verdicts[0] for v in verdicts), f"{name}: 10 grades of the same broken lab differ: {verdicts}"
        submitted = run("submit", str(reference_submission(folder, tmp_path)), "--user", student)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert not student_processes(student)
        after = run("grade")
        assert after.returncode == 0 and "(full marks)" in after.stdout, after.stdout + after.stderr
    finally:
        run("stop")
