"""The corpus of famous bugs is valid as written (no lab needed) and each file says, for people,
what users saw, why it happens and where it is written up."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.scenario import model

CORPUS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))


def test_the_corpus_has_the_bugs_the_issue_names():
    assert len(CORPUS) >= 8


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_each_scenario_validates_and_explains_itself(path: Path):
    scenario = model.load(path)
    assert scenario.name == path.stem
    header = path.read_text().split("\nname:")[0]
    for part in ("# Symptom:", "# Mechanism:", "# Read: http"):
        assert part in header, f"{path.name}: the header needs {part!r}"


CONFORMANCE = sorted((Path(__file__).resolve().parents[2] / "scenarios" / "gateway-conformance").glob("*.yaml"))


def test_at_least_25_core_conformance_behaviours_each_on_the_shared_lab():
    core = [p for p in CONFORMANCE if "(core)" in p.read_text().split("\nname:")[0]]
    assert len(core) >= 25, [p.stem for p in core]


@pytest.mark.parametrize("path", CONFORMANCE, ids=lambda p: p.stem)
def test_each_conformance_scenario_is_named_after_its_upstream_test(path: Path):
    scenario = model.load(path)
    header = path.read_text().split("\nname:")[0]
    assert scenario.name == path.stem and header.startswith(f"# Upstream: {path.stem} (")
    assert scenario.topology.endswith("scenarios/topologies/gateway-conformance.yaml")  # one lab for all (--shared)
    readme = (path.parent / "README.md").read_text()
    assert path.stem in readme
