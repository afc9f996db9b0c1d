"""lab.probe.report: the terminal table, JSON and JUnit XML made from check outcomes."""
from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET


from lab.probe.invariants import INVARIANTS, Outcome
from lab.probe.report import summary, table, to_json, to_junit

OK1 = Outcome("pod-to-pod", "default/a (10.244.0.2) -> default/b (10.244.1.2:8080)", True,
              "reply, source seen 10.244.0.2", "reply, source seen 10.244.0.2")
OK2 = Outcome("pod-to-pod", "default/b (10.244.1.2) -> default/a (10.244.0.2:8080)", True,
              "reply, source seen 10.244.1.2", "reply, source seen 10.244.1.2")
NAT = Outcome("pod-to-pod", "default/c (10.244.2.2) -> default/a (10.244.0.2:8080)", False,
              "reply, source seen 10.244.2.2",
              "reply, source seen 172.18.0.4 (the source address was rewritten: NAT)")
NODE_OK = Outcome("node-to-pod", "node/w1 -> default/a (10.244.0.2:8080)", True, "reply", "reply, source seen 10.244.1.0")
CHECK_BAD = Outcome("checks", "deny web: default/a -> default/b (10.244.1.2:9999/TCP)", False,
                    "no reply (denied)", "reply, source seen 10.244.0.2")
LOCAL_OK = Outcome("localhost", "default/s: app -> proxy (127.0.0.1:9090/TCP)", True, "reply", "reply, source seen 127.0.0.1")

MIXED = [CHECK_BAD, OK1, NODE_OK, NAT, OK2, LOCAL_OK]
ALL_OK = [OK1, OK2, NODE_OK, LOCAL_OK]


# --- summary ---

def test_summary_counts_in_invariants_order():
    assert summary(MIXED) == [("pod-to-pod", 2, 1, 0), ("node-to-pod", 1, 0, 0), ("localhost", 1, 0, 0),
                              ("checks", 0, 1, 0)]
    order = list(INVARIANTS)
    assert [c for c, *_ in summary(MIXED)] == sorted({o.check for o in MIXED}, key=order.index)


def test_summary_empty_and_skips_checks_without_outcomes():
    assert summary([]) == []
    assert [c for c, *_ in summary(ALL_OK)] == ["pod-to-pod", "node-to-pod", "localhost"]


# --- table ---

def test_table_all_passed():
    out = table("lab1", ALL_OK, 1.234)
    lines = out.split("\n")
    assert lines[0] == "lab lab1: 4 checks in 1.23s"
    assert lines[-1] == "PASSED"
    assert "failed:" not in out
    assert not [l for l in lines if l.split() and l.split()[0] in INVARIANTS and "FAIL" in l]
    row = next(l for l in lines if l.startswith("pod-to-pod"))
    assert row.split()[:4] == ["pod-to-pod", "2", "0", "ok"]
    assert row.endswith(INVARIANTS["pod-to-pod"])


def test_table_shows_fail_rows_and_failed_pairs():
    out = table("lab1", MIXED, 0.5)
    lines = out.split("\n")
    header = next(l for l in lines if l.startswith("CHECK"))
    assert header.split() == ["CHECK", "PASS", "FAIL", "MEANING"]
    rows = {l.split()[0]: l.split()[:4] for l in lines if l.split() and l.split()[0] in INVARIANTS}
    assert rows["pod-to-pod"] == ["pod-to-pod", "2", "1", "FAIL"]
    assert rows["checks"] == ["checks", "0", "1", "FAIL"]
    assert rows["node-to-pod"] == ["node-to-pod", "1", "0", "ok"]
    assert "2 failed:" in lines
    assert f"  [pod-to-pod] {NAT.subject}" in lines
    assert f"      expected {NAT.expected}; observed {NAT.observed}" in lines
    assert f"  [checks] {CHECK_BAD.subject}" in lines
    assert "      expected no reply (denied); observed reply, source seen 10.244.0.2" in lines
    assert lines[-1] == "FAILED (2 of 6)"
    assert OK1.subject not in out  # passing pairs are only counted


def test_table_columns_align():
    lines = table("l", MIXED, 0).split("\n")
    header = next(l for l in lines if l.startswith("CHECK"))
    rows = [l for l in lines if l.split() and l.split()[0] in INVARIANTS]
    assert len(rows) == 4
    for r in rows:
        assert r[header.index("MEANING"):].startswith(("ok ", "FAIL "))  # the mark sits under MEANING
        # PASS and FAIL counts are right-aligned under their headers
        for col in ("PASS", "FAIL"):
            end = header.index(col) + len(col)
            assert r[end - 1] != " " and r[end] == " "


def test_table_meaning_texts_start_in_one_column():
    lines = table("l", MIXED, 0).split("\n")
    rows = [l for l in lines if l.split() and l.split()[0] in INVARIANTS]
    starts = {r.index(INVARIANTS[r.split()[0]]) for r in rows}
    assert len(starts) == 1, starts


def test_table_caps_the_failure_list():
    failures = [Outcome("pod-to-pod", f"pair {i}", False, "reply", "no reply: timeout") for i in range(7)]
    out = table("l", failures, 0, max_failures=3)
    assert "pair 2" in out and "pair 3" not in out
    assert "  ... and 4 more (use --json FILE for all)" in out.split("\n")
    assert out.split("\n")[-1] == "FAILED (7 of 7)"


# --- JSON ---

def test_to_json_failed():
    doc = json.loads(to_json("lab1", MIXED, 0.12345))
    assert doc["lab"] == "lab1"
    assert doc["passed"] is False
    assert doc["elapsed"] == 0.123
    assert doc["summary"][0] == {"check": "pod-to-pod", "meaning": INVARIANTS["pod-to-pod"], "passed": 2, "failed": 1,
                                 "unchecked": 0}
    assert [s["check"] for s in doc["summary"]] == ["pod-to-pod", "node-to-pod", "localhost", "checks"]
    assert len(doc["results"]) == 6
    nat = next(r for r in doc["results"] if r["subject"] == NAT.subject)
    assert {k: nat[k] for k in ("check", "subject", "passed", "expected", "observed")} == {
        "check": "pod-to-pod", "subject": NAT.subject, "passed": False,
        "expected": NAT.expected, "observed": NAT.observed}
    assert nat == dataclasses.asdict(NAT)  # every field of the outcome, whatever fields it grows


def test_to_json_passed():
    doc = json.loads(to_json("lab1", ALL_OK, 1))
    assert doc["passed"] is True
    assert all(r["passed"] for r in doc["results"])
    assert sum(s["failed"] for s in doc["summary"]) == 0


def test_to_json_one_failure_is_enough():
    assert json.loads(to_json("l", [OK1, OK2, NAT], 0))["passed"] is False


# --- JUnit ---

def test_to_junit_structure():
    text = to_junit("lab1", MIXED, 2.5)
    assert text.startswith("<?xml") and text.endswith("\n")
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    assert root.attrib == {"name": "k8s-netlab lab1", "tests": "6", "failures": "2", "skipped": "0", "time": "2.500"}
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["lab1.pod-to-pod", "lab1.node-to-pod", "lab1.localhost", "lab1.checks"]
    want = {"lab1.pod-to-pod": ("3", "1"), "lab1.node-to-pod": ("1", "0"), "lab1.localhost": ("1", "0"),
            "lab1.checks": ("1", "1")}
    for s in suites:
        assert (s.get("tests"), s.get("failures")) == want[s.get("name")]
        cases = s.findall("testcase")
        assert len(cases) == int(s.get("tests"))
        assert len([c for c in cases if c.find("failure") is not None]) == int(s.get("failures"))
        check = s.get("name").split(".", 1)[1]
        (prop,) = s.findall("properties/property")
        assert prop.attrib == {"name": "meaning", "value": INVARIANTS[check]}
        assert all(c.get("classname") == f"k8s-netlab.lab1.{check}" for c in cases)


def test_to_junit_failure_messages():
    root = ET.fromstring(to_junit("lab1", MIXED, 0))
    failures = {c.get("name"): c.find("failure") for c in root.iter("testcase") if c.find("failure") is not None}
    assert set(failures) == {NAT.subject, CHECK_BAD.subject}
    f = failures[NAT.subject]
    assert f.get("message") == f"expected {NAT.expected}; observed {NAT.observed}"
    assert NAT.expected in f.text and NAT.observed in f.text
    assert f.text.startswith(NAT.subject + "\n")
    passing = [c for c in root.iter("testcase") if c.get("name") == OK1.subject]
    assert len(passing) == 1 and [e.tag for e in passing[0]] == ["properties"]
    assert passing[0].find("properties/property").attrib == {"name": "attempts", "value": "1"}


def test_to_junit_escapes_markup():
    o = Outcome("checks", 'a <b> & "c"', False, "x < y", "y & z")
    root = ET.fromstring(to_junit("l", [o], 0))
    case = root.find("testsuite/testcase")
    assert case.get("name") == 'a <b> & "c"'
    assert case.find("failure").get("message") == "expected x < y; observed y & z"


def test_to_junit_all_passed_and_empty():
    root = ET.fromstring(to_junit("l", ALL_OK, 0))
    assert root.get("failures") == "0" and root.find(".//failure") is None
    empty = ET.fromstring(to_junit("l", [], 0))
    assert empty.get("tests") == "0" and empty.findall("testsuite") == []
