"""`lab exercise` end to end on real labs: the test exercise (tests/data/exercises/hgw, node1's
route to node2's pods deleted) goes start → grade (not full marks, exit 1) → hint → solve → grade
(full marks, exit 0); a hidden test stays hidden in every format; reset brings the breakage back
(or a checkpoint); a lab rebuilt by hand grades 0 with the reason; a student script that outlives
its timeout is stopped and cannot keep the lab from going. Then every exercise of the repository
runs the CI loop: start → grade (< full) → solve → grade (full)."""
from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.controlplane.naming import switch_name
from lab.exercise import model
from tests.integration.conftest import lab, lab_leftovers, needs_root

pytestmark = [needs_root, pytest.mark.root]

DATA = Path(__file__).resolve().parents[1] / "data" / "exercises"
LAB, NAME = "exhgw", "hgw"
SECRET = "secret-probe-from-node1"


def ex(*args: str, check: bool = False, timeout: float = 120):
    return lab("exercise", *args, "-e", NAME, "--dir", str(DATA), check=check, timeout=timeout)


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


def test_start_grade_solve_reset_and_a_rebuilt_lab(stopped, tmp_path: Path):
    proc = ex("start", check=True)
    assert "# A route that went missing" in proc.stdout and "lab exercise check" in proc.stdout
    assert lab("fault", "list", "-l", LAB).stdout.strip().splitlines()[1:] == []   # the breakage is not a lab fault

    proc = ex("grade", timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "score 0/14" in proc.stdout and "✗ client -> web: " in proc.stdout and "✗ hidden test 1\n" in proc.stdout
    assert "locked: finish reach first" in proc.stdout and SECRET not in proc.stdout
    with ThreadPoolExecutor(6) as pool:  # each grade waits for the unanswered probes: all at once
        list(pool.map(_hidden_stays_hidden, ["text", "json", "junit", "gradescope", "classroom50", "classroom-legacy"]))

    assert "hint 1/1 (reach): Look at node1's routing table." in ex("hint").stdout
    assert "node1 has no route to 10.244.1.0/24" in ex("hint").stdout   # then the computed hint

    solved = ex("solve")
    assert solved.returncode == 0, solved.stdout + solved.stderr
    proc = ex("grade", "--format", "gradescope", "--out", str(tmp_path / "results.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["score"] == 14 and all(t["status"] == "passed" for t in doc["tests"])
    assert doc["tests"][1]["output"] == "hidden test passed" and doc["tests"][1]["visibility"] == "after_published"
    assert ex("status").returncode == 0 and ex("check").returncode == 0

    assert ex("reset").returncode == 0
    assert _route() == "" and lab("fault", "list", "-l", LAB).stdout.strip().splitlines()[1:] == []
    assert ex("reset", "--to", "fixed").returncode == 0
    assert "via 172.18.0.3" in _route()

    lab("down", LAB)
    lab("up", str(DATA / NAME / "topology.yaml"))        # the clean topology, by hand: not a fix
    proc = ex("grade")
    assert proc.returncode == 1 and "score 0/14" in proc.stdout
    assert "the lab was not started by `lab exercise start`" in proc.stdout
    legacy = json.loads(base64.b64decode(ex("grade", "--format", "classroom-legacy").stdout))
    assert legacy["status"] == "error" and sum(t["score"] for t in legacy["tests"]) == 0
    lab("down", LAB)
    assert "no lab exhgw is running" in ex("grade").stdout


def test_a_runaway_script_is_stopped_and_cannot_keep_the_lab(stopped, tmp_path: Path):
    ex("start", check=True)
    script = tmp_path / "runaway.sh"
    script.write_text(f"setsid ip netns exec {LAB}-node1 sleep 600 &\nsleep 600\n")
    proc = ex("solve", "--script", str(script), "--timeout", "1")
    assert proc.returncode == 1 and "did not finish within 1s" in proc.stderr
    assert ex("stop").returncode == 0
    assert not lab_leftovers(LAB, switch_name(LAB))
    assert "not started" in ex("grade").stderr + ex("grade").stdout


@pytest.mark.exercises  # minutes for all of them: `make test-exercises` and CI run it, `make test` does not
@pytest.mark.parametrize("folder", model.folders(model.default_dir()), ids=lambda p: p.name)
def test_every_exercise_is_broken_at_start_and_solved_by_its_solution(folder: Path):
    name = folder.name

    def run(*args: str, timeout: float = 180):
        return lab("exercise", *args, "-e", name, check=False, timeout=timeout)

    try:
        start = run("start")
        assert start.returncode == 0, start.stdout + start.stderr
        before = run("grade")
        assert before.returncode == 1 and "(full marks)" not in before.stdout, before.stdout + before.stderr
        solved = run("solve")
        assert solved.returncode == 0, solved.stdout + solved.stderr
        after = run("grade")
        assert after.returncode == 0 and "(full marks)" in after.stdout, after.stdout + after.stderr
    finally:
        run("stop")
