"""How scenario results leave the lab: a line per step, a summary, JSON, and JUnit XML (one
testcase per step, classname the scenario's name) for CI tools."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Sequence

from lab.scenario.runner import FAILED, PASSED, SKIPPED, Result, Run

MARKS = {PASSED: "✓", FAILED: "✗", SKIPPED: "-"}


def line(r: Result) -> str:
    """`✓ 3 fault drop node/worker1 (0.04s)`, `✗ 4 check ...: why`, `- 5 exec ... (skipped)`."""
    head = f"{MARKS[r.status]} {r.step.index} {r.step.title}"
    if r.status == SKIPPED:
        return f"{head} (skipped)"
    tries = f", {r.attempts} tries" if r.attempts > 1 else ""
    if r.status == FAILED:
        return f"{head}: {r.reason} ({r.seconds:.2f}s{tries})"
    return f"{head} ({r.seconds:.2f}s{tries})" + (f": {r.detail}" if r.detail and r.step.expect_fail else "")


def summary(run: Run) -> str:
    counts = {s: sum(r.status == s for r in run.results) for s in (PASSED, FAILED, SKIPPED)}
    verdict = "PASSED" if run.passed else "FAILED"
    text = (f"{verdict} {run.scenario.name}: {counts[PASSED]} passed, {counts[FAILED]} failed, "
            f"{counts[SKIPPED]} skipped ({run.seconds:.2f}s)")
    return text + (f"\n  {run.setup_error}" if run.setup_error and not counts[FAILED] else "")


def _step(r: Result) -> dict:
    s = r.step
    return {"index": s.index, "name": s.title, "kind": s.kind, "line": s.line, "status": r.status,
            "reason": r.reason, "detail": r.detail, "seconds": round(r.seconds, 3), "attempts": r.attempts,
            "expect_fail": s.expect_fail}


def to_json(runs: Sequence[Run]) -> str:
    return json.dumps({
        "passed": all(r.passed for r in runs),
        "scenarios": [{"name": r.scenario.name, "file": r.scenario.file, "lab": r.lab, "passed": r.passed,
                       "seconds": round(r.seconds, 3), "setup_error": r.setup_error, "kept": r.kept,
                       "steps": [_step(x) for x in r.results]} for r in runs],
    }, indent=2)


def to_junit(runs: Sequence[Run]) -> str:
    def count(results, status) -> str:
        return str(sum(x.status == status for x in results))

    everything = [x for r in runs for x in r.results]
    suites = ET.Element("testsuites", name="k8s-netlab scenarios", tests=str(len(everything)),
                        failures=count(everything, FAILED), skipped=count(everything, SKIPPED),
                        time=f"{sum(r.seconds for r in runs):.3f}")
    for run in runs:
        name = run.scenario.name
        suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(run.results)),
                              failures=count(run.results, FAILED), skipped=count(run.results, SKIPPED),
                              time=f"{run.seconds:.3f}")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="file", value=run.scenario.file)
        ET.SubElement(props, "property", name="lab", value=run.lab)
        for r in run.results:
            case = ET.SubElement(suite, "testcase", classname=name, name=f"{r.step.index} {r.step.title}",
                                 time=f"{r.seconds:.3f}")
            if r.status == FAILED:
                ET.SubElement(case, "failure", message=r.reason).text = \
                    f"{run.scenario.file}:{r.step.line}: step {r.step.index} ({r.step.kind})\n{r.reason}\n"
            elif r.status == SKIPPED:
                ET.SubElement(case, "skipped", message=run.setup_error or r.reason)
            elif r.detail:
                ET.SubElement(case, "system-out").text = r.detail
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
