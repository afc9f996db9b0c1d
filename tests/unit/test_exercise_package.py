"""`lab exercise package`: the Gradescope zip has setup.sh and run_autograder at its root,
executable, k8s-netlab's source and the exercise, and run_autograder grades into results.json."""
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
        assert "--format gradescope --out /autograder/results/results.json" in run
        assert "./scripts/install.sh" in z.read("setup.sh").decode()
