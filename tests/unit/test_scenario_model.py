"""Scenario files: the bad corpus reports every problem at its file:line (never a traceback), the
good file parses into the steps docs/SCENARIOS.md describes."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.scenario import model, spec
from lab.scenario.match import check, subset
from lab.scenario.spec import Match
from tests.unit.test_topology_load import expectations

DATA = Path(__file__).resolve().parents[1] / "data" / "scenarios"
BAD = sorted((DATA / "bad").glob("*.yaml"))


def test_bad_corpus_is_large_enough():
    assert len(BAD) >= 30
    assert all(expectations(path) for path in BAD)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_reports_expected_problems(path: Path):
    with pytest.raises(model.ScenarioError) as caught:
        model.load(path)
    text = str(caught.value)
    for substring, line in expectations(path):
        assert substring in text, text
        if line is not None:
            lines = [d.line for d in caught.value.diagnostics if substring in str(d)]
            assert lines and set(lines) == {line}, f"{substring!r} reported at {lines}, expected {line}:\n{text}"


def test_every_kind_parses():
    s = model.load(DATA / "good" / "every-kind.yaml")
    assert s.name == "every-kind" and s.lab == "scnit" and s.keep_going
    assert s.topology == str((DATA / "topology.yaml").resolve()) and s.inline is None
    assert {step.kind for step in s.steps} == set(model.KINDS)
    assert [step.index for step in s.steps] == list(range(1, len(s.steps) + 1))
    by_title = {step.title: step for step in s.steps}
    assert by_title["the client reaches the Service"].spec == spec.Check(probes=(spec.Probe(
        "default/pod/client", "default/svc/web:80", "TCP", "allow"),))
    probes = next(step for step in s.steps if step.kind == "check" and len(step.spec.probes) > 1).spec.probes
    assert probes[-1] == spec.Probe("default/pod/client", "default/pod/web:9999", "TCP", "refused")
    first_exec = next(step for step in s.steps if step.kind == "exec")
    assert first_exec.spec.argv == ("ip", "-4", "-o", "addr", "show", "eth0")
    assert first_exec.title == "exec pod/client: ip -4 -o addr show eth0"
    fault = next(step for step in s.steps if step.kind == "fault")
    assert fault.spec == spec.Fault("drop", "node/node2", {"proto": "tcp", "port": 8080}, "web-drop")
    assert fault.title == "fault drop node/node2 as web-drop"
    waited = next(step for step in s.steps if step.wait and step.wait.timeout == 10)
    assert waited.title == "the policy is gone" and waited.wait.interval == 0.5 and not waited.expect_fail
    assert s.steps[-1].expect_fail
    inline = next(step for step in s.steps if step.kind == "apply" and "inline" in step.title)
    assert inline.spec.items[0].file == s.file and inline.spec.items[0].line() == 34
    counted = next(step for step in s.steps if step.kind == "dns" and step.spec.queries is not None)
    assert counted.spec == spec.Dns("client", "web", queries=2) and counted.title == "dns web from client costs 2 queries"


def test_names_after_an_apply_are_not_checked(tmp_path: Path):
    """A pod an apply step creates cannot be known before: it is looked up when the step runs."""
    (tmp_path / "s.yaml").write_text(f"topology: {DATA / 'topology.yaml'}\nsteps:\n"
                                     "  - apply: [{apiVersion: v1, kind: Pod, metadata: {name: new}, "
                                     "spec: {containers: [{name: c, image: pause}]}}]\n"
                                     "  - exec: {pod: new, command: ls}\n")
    assert model.load(tmp_path / "s.yaml").steps[1].spec.target == "new"


def test_inline_topology(tmp_path: Path):
    (tmp_path / "s.yaml").write_text("topology:\n  name: inl\n  nodes: [{name: a}, {name: b}]\n"
                                     "steps:\n  - node: {stop: b}\n")
    s = model.load(tmp_path / "s.yaml")
    assert s.lab == "inl" and s.topology == "" and s.inline["nodes"][1] == {"name": "b"}
    assert s.shares_with is None


def test_a_missing_file_is_a_diagnostic(tmp_path: Path):
    with pytest.raises(model.ScenarioError, match="file not found"):
        model.load(tmp_path / "nope.yaml")


def test_json_subset_as_munet_matches():
    assert subset({"a": {"b": [2]}}, {"a": {"b": [1, 2], "x": 0}, "c": 3}) is None
    assert subset({"a": 1}, {"a": 2}) == "$.a: expected 1, got 2"
    assert subset({"a": {"z": 1}}, {"a": {}}) == "$.a.z: missing"
    assert subset([{"n": "x"}], [{"n": "y"}]) == "$[0]: no item matches {\"n\": \"x\"}"


def test_output_matches_say_what_was_seen():
    assert check(Match("contains", "ok"), "all ok\n", "stdout") is None
    assert check(Match("regex", r"^inet 10\."), "x\ninet 10.1.2.3\n", "stdout") is None
    assert check(Match("regex", "^b"), "abc", "stdout") == "stdout does not match /^b/: 'abc'"
    assert check(Match("json", {"a": 1}), "not json", "stdout").startswith("stdout is not JSON")
    assert check(Match("contains", "x"), "", "stderr") == "stderr does not contain 'x': (empty)"
