"""How check results leave the lab: a terminal table, JSON, and JUnit XML for CI tools."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Sequence

from lab.probe.invariants import INVARIANTS, Outcome


def summary(outcomes: Sequence[Outcome]) -> list[tuple[str, int, int]]:
    """(check, passed, failed) for every check that has outcomes, in INVARIANTS order."""
    passed = Counter(o.check for o in outcomes if o.passed)
    failed = Counter(o.check for o in outcomes if not o.passed)
    return [(c, passed[c], failed[c]) for c in INVARIANTS if passed[c] or failed[c]]


def table(lab: str, outcomes: Sequence[Outcome], elapsed: float, max_failures: int = 50, scope: str = "") -> str:
    rows = summary(outcomes)
    width = max(len(c) for c in INVARIANTS)
    lines = [f"lab {lab}: {len(outcomes)} checks in {elapsed:.2f}s" + (f", {scope}" if scope else ""), "",
             f"{'CHECK':<{width}}  {'PASS':>5}  {'FAIL':>5}  MEANING"]
    for check, ok, bad in rows:
        mark = "ok  " if not bad else "FAIL"
        lines.append(f"{check:<{width}}  {ok:>5}  {bad:>5}  {mark} {INVARIANTS[check]}")
    failures = [o for o in outcomes if not o.passed]
    if failures:
        lines += ["", f"{len(failures)} failed:"]
        for o in failures[:max_failures]:
            lines.append(f"  [{o.check}] {o.subject}\n      expected {o.expected}; observed {o.observed}")
        if len(failures) > max_failures:
            lines.append(f"  ... and {len(failures) - max_failures} more (use --json FILE for all)")
    lines += ["", "PASSED" if not failures else f"FAILED ({len(failures)} of {len(outcomes)})"]
    return "\n".join(lines)


def to_json(lab: str, outcomes: Sequence[Outcome], elapsed: float, scope: str = "") -> str:
    return json.dumps({
        "lab": lab,
        "passed": all(o.passed for o in outcomes),
        "elapsed": round(elapsed, 3),
        "scope": scope,
        "summary": [{"check": c, "meaning": INVARIANTS[c], "passed": p, "failed": f} for c, p, f in summary(outcomes)],
        "results": [o.__dict__ for o in outcomes],
    }, indent=2)


def to_junit(lab: str, outcomes: Sequence[Outcome], elapsed: float) -> str:
    suites = ET.Element("testsuites", name=f"k8s-netlab {lab}", tests=str(len(outcomes)),
                        failures=str(sum(not o.passed for o in outcomes)), time=f"{elapsed:.3f}")
    for check, ok, bad in summary(outcomes):
        suite = ET.SubElement(suites, "testsuite", name=f"{lab}.{check}", tests=str(ok + bad), failures=str(bad))
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="meaning", value=INVARIANTS[check])
        for o in (o for o in outcomes if o.check == check):
            case = ET.SubElement(suite, "testcase", classname=f"k8s-netlab.{lab}.{check}", name=o.subject)
            if not o.passed:
                failure = ET.SubElement(case, "failure", message=f"expected {o.expected}; observed {o.observed}")
                failure.text = f"{o.subject}\nexpected: {o.expected}\nobserved: {o.observed}\n"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
