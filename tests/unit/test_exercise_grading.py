"""Grading is pure: the partial-credit arithmetic, and each output format against its published
shape (field names, types, allowed values: Gradescope's results.json, Classroom 50's
classroom50/result/v1 as its runner validates it, the legacy GitHub Classroom runners' base64 JSON,
JUnit). A hidden test's name and reason never appear in any of them."""
from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET

import pytest

from lab.exercise.grading import FORMATS, Grade, Outcome, TaskGrade, failed_all, integer_shares, render, shares, \
    to_classroom50

SECRET = "secret-probe-from-node1"
WHY = "node1: no reply after 3 tries (a secret reason)"


def grade(reach_ok=(True, False), answer_ok=False, error="") -> Grade:
    reach = TaskGrade("reach", "the client reaches the server", 10, (
        Outcome("client -> web", reach_ok[0], 5, reason="" if reach_ok[0] else "no reply"),
        Outcome("hidden test 1", reach_ok[1], 5, hidden=True, reason="" if reach_ok[1] else WHY)))
    which = TaskGrade("which", "name the interface", 4, (
        Outcome("the client reaches the Service", True, 2), Outcome("answer", answer_ok, 2, reason="'x' is not the answer")),
        locked_by=() if reach.done else ("reach",))
    g = Grade("hgw", "A route that went missing", "exhgw", (reach, which))
    return failed_all(g, error) if error else g


# --- arithmetic ---

def test_points_are_shared_evenly_unless_a_test_has_its_own():
    assert shares([None, None], 10) == [5, 5]
    assert shares([None, None, None], 10) == pytest.approx([10 / 3] * 3)
    assert shares([4, None, None], 10) == [4, 3, 3]
    assert shares([4, 6], 10) == [4, 6]


def test_integer_shares_add_up_and_stay_close():
    assert integer_shares([10 / 3] * 3, 10) == [4, 3, 3]
    assert integer_shares([2.5, 2.5], 5) == [3, 2]
    assert integer_shares([5, 5], 10) == [5, 5]
    assert sum(integer_shares([1.2, 3.3, 5.5], 10)) == 10


def test_partial_credit_and_locked_tasks():
    g = grade()
    assert g.tasks[0].score == 5 and not g.tasks[0].done
    assert g.tasks[1].locked_by == ("reach",) and g.tasks[1].score == 0    # its passing test counts for nothing
    assert (g.score, g.max_score, g.full) == (5, 14, False)
    solved = grade((True, True), answer_ok=True)
    assert (solved.score, solved.full) == (14, True)
    assert grade((True, True)).score == 12                                  # the answer is one test of its task


def test_a_lab_that_cannot_be_graded_scores_zero():
    g = grade((True, True), answer_ok=True, error="the lab was not started by `lab exercise start`")
    assert g.score == 0 and not g.full and all(not o.passed for t in g.tasks for o in t.outcomes)


# --- formats ---

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", ["failing", "passing", "error"])
def test_hidden_tests_are_never_revealed(fmt: str, case: str):
    g = {"failing": grade(), "passing": grade((True, True), True), "error": grade(error="lab gone")}[case]
    g = Grade(g.exercise, g.title, g.lab, g.tasks, g.error)
    out = render(g, fmt)
    text = base64.b64decode(out).decode() if fmt == "classroom-legacy" else out
    assert SECRET not in text and "secret reason" not in text and "no reply after 3 tries" not in text
    mark = {"failing": "✗ hidden test 1\n", "passing": "✓ hidden test 1\n"}.get(case) if fmt == "text" else \
        {"failing": "hidden test failed", "passing": "hidden test passed"}.get(case)
    if mark and fmt not in ("classroom50",) and (case == "failing" or fmt != "junit"):
        assert mark in text


def test_gradescope_results_json_shape():
    doc = json.loads(render(grade(), "gradescope"))
    assert isinstance(doc["score"], (int, float)) and doc["score"] == 5
    assert isinstance(doc["output"], str) and doc["visibility"] == "visible" and doc["stdout_visibility"] == "hidden"
    assert len(doc["tests"]) == 4
    for t in doc["tests"]:
        assert set(t) == {"name", "number", "score", "max_score", "status", "output", "tags", "visibility"}
        assert isinstance(t["name"], str) and isinstance(t["number"], str) and isinstance(t["output"], str)
        assert isinstance(t["score"], (int, float)) and isinstance(t["max_score"], (int, float))
        assert t["status"] in ("passed", "failed") and isinstance(t["tags"], list)
        assert t["visibility"] in ("hidden", "after_due_date", "after_published", "visible")
    hidden = doc["tests"][1]
    assert hidden["visibility"] == "after_published" and hidden["output"] == "hidden test failed"
    assert [t["number"] for t in doc["tests"]] == ["1.1", "1.2", "2.1", "2.2"]
    assert doc["tests"][2]["status"] == "failed" and doc["tests"][2]["output"].startswith("locked")
    assert sum(t["score"] for t in doc["tests"]) == doc["score"]
    hidden_only = json.loads(render(Grade("e", "t", "l", grade().tasks, hidden_visibility="hidden"), "gradescope"))
    assert hidden_only["tests"][1]["visibility"] == "hidden"


def test_classroom50_result_shape_as_its_runner_validates_it():
    env = {"CLASSROOM": "net101", "ASSIGNMENT": "route", "SUBMISSION_TAG": "submit/2026-12-01T00-00-00Z-abc1234",
           "COMMIT_URL": "https://github.com/o/r/commit/abc", "RELEASE_URL": "https://github.com/o/r/releases/tag/x"}
    g = TaskGrade("t", "three tests", 10, tuple(Outcome(f"test {i}", i != 2, 10 / 3) for i in range(3)))
    doc = json.loads(to_classroom50(Grade("e", "title", "lab", (g,)), env))
    assert doc["schema"] == "classroom50/result/v1"
    assert (doc["classroom"], doc["assignment"], doc["submission"], doc["review"]) == \
        ("net101", "route", env["SUBMISSION_TAG"], env["COMMIT_URL"])
    for key in ("commit", "release", "review", "datetime"):
        assert isinstance(doc[key], str) and doc[key]
    for key in ("score", "max-score"):
        assert isinstance(doc[key], int) and not isinstance(doc[key], bool) and doc[key] >= 0
    assert doc["max-score"] == 10 and doc["score"] == 7 and doc["score"] <= doc["max-score"]
    for t in doc["tests"]:
        assert set(t) == {"test-name", "passed", "score", "max-score"}
        assert isinstance(t["test-name"], str) and t["test-name"] and isinstance(t["passed"], bool)
        assert isinstance(t["score"], int) and isinstance(t["max-score"], int) and 0 <= t["score"] <= t["max-score"]
    assert sum(t["score"] for t in doc["tests"]) == doc["score"]


def test_classroom_legacy_is_base64_json_as_the_runners_write_it():
    out = render(grade(), "classroom-legacy")
    doc = json.loads(base64.b64decode(out))
    assert doc["version"] == 1 and doc["status"] in ("pass", "fail", "error") and doc["status"] == "fail"
    assert isinstance(doc["max_score"], (int, float)) and doc["max_score"] == 14
    for t in doc["tests"]:
        assert set(t) == {"name", "status", "message", "test_code", "filename", "line_no", "duration", "score"}
        assert t["status"] in ("pass", "fail") and isinstance(t["score"], (int, float)) and t["test_code"] == ""
    assert sum(t["score"] for t in doc["tests"]) == 5
    assert json.loads(base64.b64decode(render(grade((True, True), True), "classroom-legacy")))["status"] == "pass"
    assert json.loads(base64.b64decode(render(grade(error="gone"), "classroom-legacy")))["status"] == "error"


def test_junit_and_json():
    root = ET.fromstring(render(grade(), "junit").split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite.get("name") == "hgw" and suite.get("tests") == "4" and suite.get("failures") == "3"
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["hgw.reach", "hgw.reach", "hgw.which", "hgw.which"]
    assert cases[1].find("failure").get("message") == "hidden test failed"
    doc = json.loads(render(grade(), "json"))
    assert doc["score"] == 5 and doc["max_score"] == 14 and doc["full_marks"] is False
    assert doc["tasks"][1]["locked_by"] == ["reach"] and doc["tasks"][0]["tests"][1]["output"] == "hidden test failed"


def test_text_says_what_failed_and_why_except_for_hidden_tests():
    out = render(grade((False, False)), "text")
    assert "✗ client -> web: no reply\n" in out and "✗ hidden test 1\n" in out
    assert "locked: finish reach first" in out and out.endswith("score 0/14\n")
    assert render(grade((True, True), True), "text").endswith("score 14/14 (full marks)\n")


# --- points are exact, answers say only that they were given ---

def test_per_test_maxima_add_up_to_the_total_exactly():
    thirds = TaskGrade("t", "three tests", 10, tuple(Outcome(f"t{i}", True, 10 / 3) for i in range(3)))
    five = TaskGrade("u", "one test", 5, (Outcome("u", True, 5),))
    g = Grade("x", "x", "lab", (thirds, five))
    doc = json.loads(render(g, "gradescope"))
    maxima = [t["max_score"] for t in doc["tests"]]
    assert maxima == [3.3334, 3.3333, 3.3333, 5.0] and round(sum(maxima), 9) == 15
    assert doc["score"] == 15
    tasks = json.loads(render(g, "json"))["tasks"]
    assert [t["points"] for t in tasks[0]["tests"]] == [3.3334, 3.3333, 3.3333] and tasks[0]["score"] == 10


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "classroom-legacy"])
def test_an_answer_reads_given_never_right_or_wrong(fmt: str):
    for ok in (True, False):
        out = render(grade((True, True), answer_ok=ok), fmt)
        text = base64.b64decode(out).decode() if fmt == "classroom-legacy" else out
        assert "is not the answer" not in text
        if fmt != "junit" or not ok:
            assert "answer given" in text, text


def test_gradescope_shows_an_answer_and_its_reason_after_the_due_date():
    doc = json.loads(render(grade((True, True), answer_ok=False), "gradescope"))
    answer = doc["tests"][-1]
    assert answer["visibility"] == "after_due_date" and answer["output"] == "'x' is not the answer"
    assert all(t["visibility"] != "after_due_date" for t in doc["tests"][:-1])


def test_a_note_is_printed_and_does_not_change_the_score():
    g = grade((True, True), answer_ok=True)
    noted = Grade(g.exercise, g.title, g.lab, g.tasks, notes=("exercise.yaml changed after start",))
    assert noted.score == g.score == 14
    assert "note: exercise.yaml changed after start" in render(noted, "text")
    assert "exercise.yaml changed after start" in json.loads(render(noted, "gradescope"))["output"]
