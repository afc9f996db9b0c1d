"""How check results leave the lab: a terminal table, JSON, and JUnit XML for CI tools.

Each says, per row, how many tries it needed: a pass after retries is marked (`retried`), a flaky
row is a failure that says so, and an unchecked row (the harness could not probe it) is listed
with its reason — counted apart, never as a pass (JUnit: skipped)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Sequence

from lab.probe.invariants import INVARIANTS, Outcome


def summary(outcomes: Sequence[Outcome]) -> list[tuple[str, int, int, int]]:
    """(check, passed, failed, unchecked) for every check that has outcomes, in INVARIANTS order."""
    passed = Counter(o.check for o in outcomes if o.passed)
    failed = Counter(o.check for o in outcomes if o.failed)
    unchecked = Counter(o.check for o in outcomes if o.unchecked)
    return [(c, passed[c], failed[c], unchecked[c]) for c in INVARIANTS if passed[c] or failed[c] or unchecked[c]]


def _tries(o: Outcome) -> str:
    return f"{o.attempts} {'try' if o.attempts == 1 else 'tries'}"


def _tries_suffix(o: Outcome) -> str:
    """" (N tries)" after what was observed, unless that already counts them."""
    return f" ({_tries(o)})" if o.attempts > 1 and _tries(o) not in o.observed else ""


def _listed(title: str, rows: Sequence[Outcome], most: int, line) -> list[str]:
    if not rows:
        return []
    out = ["", f"{len(rows)} {title}:"] + [line(o) for o in rows[:most]]
    if len(rows) > most:
        out.append(f"  ... and {len(rows) - most} more (use --json FILE for all)")
    return out


def table(lab: str, outcomes: Sequence[Outcome], elapsed: float, max_failures: int = 50, scope: str = "") -> str:
    rows = summary(outcomes)
    width = max(len(c) for c in INVARIANTS)
    unchecked_col = any(u for *_, u in rows)
    lines = [f"lab {lab}: {len(outcomes)} checks in {elapsed:.2f}s" + (f", {scope}" if scope else ""), "",
             f"{'CHECK':<{width}}  {'PASS':>5}  {'FAIL':>5}  " + (f"{'UNCHECKED':>9}  " if unchecked_col else "")
             + "MEANING"]
    for check, ok, bad, skipped in rows:
        mark = "FAIL" if bad else "ok  " if ok else "----"
        lines.append(f"{check:<{width}}  {ok:>5}  {bad:>5}  " + (f"{skipped:>9}  " if unchecked_col else "")
                     + f"{mark} {INVARIANTS[check]}")
    failures = [o for o in outcomes if o.failed]
    lines += _listed("failed", failures, max_failures, lambda o: f"  [{o.check}] {o.subject}"
                     + (" (flaky)" if o.flaky else "") + f"\n      expected {o.expected}; observed {o.observed}"
                     + _tries_suffix(o))
    lines += _listed("unchecked (neither passed nor failed)", [o for o in outcomes if o.unchecked], max_failures,
                     lambda o: f"  [{o.check}] {o.subject}\n      {o.observed}")
    lines += _listed("passed only after retries", [o for o in outcomes if o.retried], max_failures,
                     lambda o: f"  [{o.check}] {o.subject}: {_tries(o)}")
    unchecked = sum(o.unchecked for o in outcomes)
    if unchecked:
        lines += ["", f"{unchecked} of {len(outcomes)} unchecked: not counted as passed"]
    lines += ["", f"FAILED ({len(failures)} of {len(outcomes)})" if failures else "PASSED"]
    return "\n".join(lines)


def to_json(lab: str, outcomes: Sequence[Outcome], elapsed: float, scope: str = "") -> str:
    return json.dumps({
        "lab": lab,
        "passed": not any(o.failed for o in outcomes),
        "unchecked": sum(o.unchecked for o in outcomes),
        "elapsed": round(elapsed, 3),
        "scope": scope,
        "summary": [{"check": c, "meaning": INVARIANTS[c], "passed": p, "failed": f, "unchecked": u}
                    for c, p, f, u in summary(outcomes)],
        "results": [o.__dict__ for o in outcomes],  # attempts, flaky and unchecked among them
    }, indent=2)


def to_junit(lab: str, outcomes: Sequence[Outcome], elapsed: float) -> str:
    """One testcase per row with its tries as a property; an unchecked row is skipped, with why."""
    suites = ET.Element("testsuites", name=f"k8s-netlab {lab}", tests=str(len(outcomes)),
                        failures=str(sum(o.failed for o in outcomes)),
                        skipped=str(sum(o.unchecked for o in outcomes)), time=f"{elapsed:.3f}")
    for check, ok, bad, skipped in summary(outcomes):
        suite = ET.SubElement(suites, "testsuite", name=f"{lab}.{check}", tests=str(ok + bad + skipped),
                              failures=str(bad), skipped=str(skipped))
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="meaning", value=INVARIANTS[check])
        for o in (o for o in outcomes if o.check == check):
            case = ET.SubElement(suite, "testcase", classname=f"k8s-netlab.{lab}.{check}", name=o.subject)
            ET.SubElement(ET.SubElement(case, "properties"), "property", name="attempts", value=str(o.attempts))
            if o.unchecked:
                ET.SubElement(case, "skipped", message=o.observed)
            elif not o.passed:
                failure = ET.SubElement(case, "failure", message=("flaky: " if o.flaky else "")
                                        + f"expected {o.expected}; observed {o.observed}{_tries_suffix(o)}")
                failure.text = f"{o.subject}\nexpected: {o.expected}\nobserved: {o.observed}\ntries: {o.attempts}\n"
            elif o.retried:
                ET.SubElement(case, "system-out").text = f"passed at try {o.attempts}\n"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
