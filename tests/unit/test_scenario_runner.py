"""The step loop with faked effects: expect: fail, retries within the wait window, skipping after
a failure, `continue: true`, exit codes through the CLI, and the JSON and JUnit shapes."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab import cli
from lab.errors import LabError
from lab.scenario import report, runner
from lab.scenario.model import Scenario, Step, Wait
from lab.scenario.runner import FAILED, PASSED, SKIPPED, Run, execute, run_step
from lab.scenario.steps import Context, Failed

DATA = Path(__file__).resolve().parents[1] / "data" / "scenarios"


def step(i: int, kind: str = "check", spec=None, wait=None, expect_fail=False) -> Step:
    return Step(i, kind, spec, f"{kind} {spec}", i + 3, wait, expect_fail)


def scenario(*steps: Step, keep_going: bool = False) -> Scenario:
    return Scenario("s.yaml", "demo", "lab1", "/t.yaml", None, steps, keep_going)


def effect(outcomes: dict):
    """An effect whose spec names its outcome: 'ok', 'fail', 'lab' (LabError) or 'bug'."""
    def run(ctx, spec):
        what = outcomes.get(spec, spec)
        if what == "fail":
            raise Failed(f"{spec} did not hold")
        if what == "lab":
            raise LabError("the lab said no")
        if what == "bug":
            raise KeyError("oops")
        return f"{spec} fine"
    return run


EFFECTS = {"check": effect({}), "exec": effect({})}


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_expect_fail_passes_on_the_inner_failure_with_its_reason():
    r = run_step(step(1, spec="fail", expect_fail=True), Context("lab1"), EFFECTS)
    assert r.status == PASSED and r.detail == "failed as expected: fail did not hold"
    r = run_step(step(1, spec="lab", expect_fail=True), Context("lab1"), EFFECTS)
    assert r.status == PASSED and "the lab said no" in r.detail
    r = run_step(step(1, spec="ok", expect_fail=True), Context("lab1"), EFFECTS)
    assert r.status == FAILED and r.reason == "expected to fail, but it passed: ok fine"


def test_a_bug_is_never_an_expected_failure():
    r = run_step(step(1, spec="bug", expect_fail=True), Context("lab1"), EFFECTS)
    assert r.status == FAILED and r.reason.startswith("internal error (KeyError")


def test_wait_retries_until_it_passes_within_the_window():
    clock, tries = Clock(), []

    def flaky(ctx, spec):
        tries.append(clock())
        if len(tries) < 4:
            raise Failed("not yet")
        return "now"

    r = run_step(step(1, spec="x", wait=Wait(10, 0.5)), Context("lab1"), {"check": flaky}, clock=clock, sleep=clock.sleep)
    assert r.status == PASSED and r.attempts == 4 and clock.sleeps == [0.5, 0.5, 0.5]


def test_wait_gives_up_at_the_end_of_the_window():
    clock = Clock()
    r = run_step(step(1, spec="fail", wait=Wait(2, 0.75)), Context("lab1"), EFFECTS, clock=clock, sleep=clock.sleep)
    assert r.status == FAILED and clock.sleeps == [0.75, 0.75, 0.5] and r.attempts == 4
    assert r.reason == "fail did not hold (still after 4 tries in 2.0s)"


def test_wait_with_expect_fail_waits_for_the_breakage():
    clock, calls = Clock(), []

    def breaks_later(ctx, spec):
        calls.append(1)
        if len(calls) == 3:
            raise Failed("no route")
        return "still fine"

    r = run_step(step(1, spec="x", wait=Wait(5, 1), expect_fail=True), Context("lab1"), {"check": breaks_later},
                 clock=clock, sleep=clock.sleep)
    assert r.status == PASSED and r.attempts == 3 and r.detail == "failed as expected: no route"


def test_steps_after_a_failure_are_skipped():
    s = scenario(step(1, spec="ok"), step(2, spec="fail"), step(3, spec="ok"))
    seen = []
    results = execute(s, Context("lab1"), EFFECTS, report=seen.append)
    assert [r.status for r in results] == [PASSED, FAILED, SKIPPED] and seen == results


def test_continue_runs_every_step_but_keep_stops_at_the_failure():
    s = scenario(step(1, spec="fail"), step(2, spec="ok"), keep_going=True)
    assert [r.status for r in execute(s, Context("lab1"), EFFECTS)] == [FAILED, PASSED]
    assert [r.status for r in execute(s, Context("lab1"), EFFECTS, stop_at_failure=True)] == [FAILED, SKIPPED]


def test_lines_and_summary():
    s = scenario(step(1, spec="ok"), step(2, spec="fail"), step(3, spec="ok"))
    results = execute(s, Context("lab1"), EFFECTS)
    lines = [report.line(r) for r in results]
    assert lines[0] == "✓ 1 check ok (0.00s)"
    assert lines[1].startswith("✗ 2 check fail: fail did not hold (")
    assert lines[2] == "- 3 check ok (skipped)"
    assert report.summary(Run(s, "lab1", tuple(results), 1.5)) == "FAILED demo: 1 passed, 1 failed, 1 skipped (1.50s)"


def test_json_and_junit_shapes():
    s = scenario(step(1, spec="ok"), step(2, spec="fail"), step(3, spec="ok"))
    run = Run(s, "lab1", tuple(execute(s, Context("lab1"), EFFECTS)), 2.0)
    doc = json.loads(report.to_json([run]))
    assert doc["passed"] is False
    assert [x["status"] for x in doc["scenarios"][0]["steps"]] == [PASSED, FAILED, SKIPPED]
    assert doc["scenarios"][0]["steps"][1] | {"seconds": 0} == {
        "index": 2, "name": "check fail", "kind": "check", "line": 5, "status": FAILED, "reason": "fail did not hold",
        "detail": "", "seconds": 0, "attempts": 1, "expect_fail": False}
    root = ET.fromstring(report.to_junit([run]))
    suite = root.find("testsuite")
    assert suite.get("name") == "demo" and suite.get("tests") == "3" and suite.get("failures") == "1"
    assert suite.get("skipped") == "1"
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["demo"] * 3
    assert cases[1].find("failure").get("message") == "fail did not hold"
    assert cases[2].find("skipped") is not None and cases[0].find("failure") is None


def test_shared_groups_by_topology_file():
    a, b = scenario(step(1)), scenario(step(1))
    inline = Scenario("i.yaml", "i", "lab2", "", {"name": "lab2"}, (step(1),))
    assert runner.groups([a, inline, b], shared=True) == [[a, b], [inline]]
    assert runner.groups([a, b], shared=False) == [[a], [b]]


def test_cli_exit_codes(monkeypatch, tmp_path: Path, capsys):
    """2: invalid, nothing run; 1: a step failed; 0: all passed. The lab itself is faked."""
    built = []

    def fake_run_all(scenarios, shared, keep, hooks):
        built.append(len(scenarios))
        runs = []
        for s in scenarios:
            hooks.starting(s, s.lab)
            results = execute(s, Context(s.lab), {k: effect({}) for k in ("check", "exec", "node", "dns")},
                              report=lambda r, s=s: hooks.step(s, r))
            runs.append(Run(s, s.lab, tuple(results), 0.1))
        return runs

    monkeypatch.setattr(runner, "run_all", fake_run_all)
    assert cli.main(["scenario", "run", str(DATA / "bad" / "unknown_kind.yaml")]) == 2
    assert built == [] and "unknown step field 'chek'" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(f"topology: {DATA / 'topology.yaml'}\nsteps:\n  - check: all\n  - node: {{stop: node2}}\n")
    junit = tmp_path / "out.xml"
    assert cli.main(["scenario", "run", str(good), "--junit", str(junit), "--json", str(tmp_path / "o.json")]) == 0
    out = capsys.readouterr().out
    assert "✓ 1 check all" in out and "PASSED good: 2 passed, 0 failed, 0 skipped" in out
    assert ET.parse(junit).getroot().find("testsuite").get("tests") == "2"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"topology: {DATA / 'topology.yaml'}\nsteps:\n  - check: all\n    expect: fail\n  - check: all\n")
    assert cli.main(["scenario", "run", str(bad)]) == 1
    assert "- 2 check all (skipped)" in capsys.readouterr().out


@pytest.mark.parametrize("path", sorted((DATA / "bad").glob("*.yaml")), ids=lambda p: p.stem)
def test_validate_never_tracebacks(path: Path, capsys):
    assert cli.main(["scenario", "validate", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err
