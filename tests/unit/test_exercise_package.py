"""`lab exercise package`: the Gradescope zip has setup.sh and run_autograder at its root,
executable, k8s-netlab's source and the exercise without its solutions (unless the instructor's
bundle is asked for), and run_autograder submits the submission confined and grades into
results.json."""
from __future__ import annotations

import zipfile
from pathlib import Path

from lab.exercise import model, package

DATA = Path(__file__).resolve().parents[1] / "data" / "exercises"


def test_the_zip_holds_the_scripts_the_source_and_the_exercise(tmp_path: Path):
    out = tmp_path / "hgw.zip"
    count = package.build(model.load(DATA / "hgw"), out, timeout=90)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert len(names) == count and names[:2] == ["setup.sh", "run_autograder"]
        for script in ("setup.sh", "run_autograder"):
            assert (z.getinfo(script).external_attr >> 16) & 0o111 == 0o111
        assert "k8s-netlab/lab/cli.py" in names and "k8s-netlab/scripts/install.sh" in names
        assert "k8s-netlab/tests/data/exercises/hgw/exercise.yaml" in names
        assert not any("__pycache__" in n for n in names)
        run = z.read("run_autograder").decode()
        assert "exercise start tests/data/exercises/hgw" in run and "--timeout 90" in run
        assert '--format gradescope --out "$root/results/results.json"' in run
        assert 'root=${AUTOGRADER_ROOT:-/autograder}' in run
        assert 'exercise submit "$root/submission" -e hgw --user lab-student --timeout 90 --hide "$root"' in run
        assert "solve" not in run and "solution" not in run.replace("solution.sh)", "")
        assert "./scripts/install.sh" in z.read("setup.sh").decode()
        assert not [n for n in names if "/hgw/" in n and ("solution" in n.lower() or "/.solution" in n)]
        assert not [n for n in names if n.startswith("k8s-netlab/exercises/")]   # no other exercise either


def test_no_solution_ships_unless_the_instructor_asks(tmp_path: Path):
    ex = model.load(model.default_dir() / "11-netpol")
    package.build(ex, tmp_path / "student.zip")
    package.build(ex, tmp_path / "instructor.zip", with_solutions=True)
    with zipfile.ZipFile(tmp_path / "student.zip") as z:
        student = set(z.namelist())
    with zipfile.ZipFile(tmp_path / "instructor.zip") as z:
        instructor = set(z.namelist())
    folder = "k8s-netlab/exercises/11-netpol/"
    assert {folder + "solution.sh", folder + "SOLUTION.md", folder + ".solution/policies.yaml"} <= instructor
    assert instructor - student == {folder + "solution.sh", folder + "SOLUTION.md", folder + ".solution/policies.yaml"}
    assert folder + "exercise.yaml" in student and folder + "README.md" in student


def test_the_submissions_user_can_be_chosen(tmp_path: Path):
    out = tmp_path / "hgw.zip"
    package.build(model.load(DATA / "hgw"), out, user="grader-sub")
    with zipfile.ZipFile(out) as z:
        run = z.read("run_autograder").decode()
    assert "--user grader-sub " in run and "lab-student" not in run
