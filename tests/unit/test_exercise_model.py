"""Exercise files: the bad corpus reports every problem at its file:line (never a traceback), the
integration tests' exercise parses into the tasks, tests, shares and answers docs/EXERCISES.md
describes, and every exercise folder of the repository is valid."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.exercise import model
from tests.unit.test_topology_load import expectations

DATA = Path(__file__).resolve().parents[1] / "data" / "exercises"
BAD = sorted(p for p in (DATA / "bad").iterdir() if (p / "exercise.yaml").is_file())


def test_bad_corpus_is_large_enough():
    assert len(BAD) >= 25
    assert all(expectations(p / "exercise.yaml") for p in BAD)


@pytest.mark.parametrize("folder", BAD, ids=lambda p: p.name)
def test_bad_exercise_reports_expected_problems(folder: Path):
    with pytest.raises(model.ExerciseError) as caught:
        model.load(folder)
    text = str(caught.value)
    assert "Traceback" not in text
    for substring, line in expectations(folder / "exercise.yaml"):
        assert substring in text, text
        if line is not None:
            lines = [d.line for d in caught.value.diagnostics if substring in str(d)]
            assert lines and set(lines) == {line}, f"{substring!r} reported at {lines}, expected {line}:\n{text}"


def test_missing_files_are_reported(tmp_path: Path):
    folder = tmp_path / "no-files"
    folder.mkdir()
    (folder / "exercise.yaml").write_text((DATA / "hgw" / "exercise.yaml").read_text())
    shutil.copy(DATA / "hgw" / "topology.yaml", folder)
    with pytest.raises(model.ExerciseError) as caught:
        model.load(folder)
    assert "README.md is missing" in str(caught.value) and "solution.sh" not in str(caught.value)
    (folder / "README.md").write_text("# task\n")
    ex = model.load(folder)   # a student's copy: no solutions, warned about only
    assert [w.message for w in ex.warnings] == ["solution.sh is missing", "SOLUTION.md is missing"]
    (folder / "solution.sh").write_text("true\n")
    ex = model.load(folder)
    assert [w.message for w in ex.warnings] == ["SOLUTION.md is missing"]


def test_the_test_exercise_parses():
    ex = model.load(DATA / "hgw")
    assert (ex.name, ex.lab, ex.level, ex.topics, ex.points) == ("hgw", "exhgw", "beginner", ("routing", "host-gw"), 14)
    assert [s.kind for s in ex.setup] == ["fault"] and [s.kind for s in ex.failcheck] == ["exec"]
    reach, which = ex.tasks
    assert [(t.step.title, t.hidden) for t in reach.tests] == [("client -> web", False), ("secret-probe-from-node1", True)]
    assert reach.hints == ("Look at node1's routing table.",) and reach.hintchecks[0].hint.startswith("node1 has no route")
    assert which.needs == ("reach",) and which.answer.capture == r"dev (\S+)" and which.answer.points == 2
    assert which.answer.probe.spec.argv == ("ip", "route", "get", "10.244.1.2")
    assert [c.name for c in ex.checkpoints] == ["fixed"]


def test_names_are_found_by_folder_prefix_or_path():
    assert model.find("hgw", DATA) == DATA / "hgw"
    assert model.find(str(DATA / "hgw"), "/nonexistent") == DATA / "hgw"
    with pytest.raises(LabError, match="no exercise 'hgx'"):
        model.find("hgx", DATA)


@pytest.mark.parametrize("folder", model.folders(model.default_dir()), ids=lambda p: p.name)
def test_every_exercise_of_the_repository_is_valid(folder: Path):
    model.load(folder)
