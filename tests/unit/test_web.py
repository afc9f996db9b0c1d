"""lab web without root: the JSON the page gets, who may ask what, and the thin server itself over
real HTTP against a lab record in a temporary run folder (the browser tests are
tests/integration/test_web.py)."""
from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lab.exercise import model as exercises
from lab.exercise.grading import Outcome, TaskGrade, Grade
from lab.graph.build import GROUP_ABOVE
from lab.host import record
from lab.node import underlay
from lab.trace import saved
from lab.web import admission, server, view
from lab.web.admission import Refused
from tests.unit.golden import ROOT, shipped_state

STATIC = Path(server.__file__).parent / "static"


def ready_all(state) -> dict:
    return {p.key: True for p in state.pods}


# --- the JSON the page gets ---

def test_the_snapshot_names_every_node_and_pod_with_their_state():
    s = shipped_state("vxlan")
    ready = {**ready_all(s), s.pods[0].key: False}
    doc = view.snapshot(s, ready, ["worker1"], [], 7)
    assert [n["name"] for n in doc["nodes"]] == [n.name for n in s.nodes]
    assert {n["name"]: n["status"] for n in doc["nodes"]}["worker1"] == "NotReady"
    assert {n["status"] for n in doc["nodes"] if n["name"] != "worker1"} == {"Ready"}
    assert [p["key"] for p in doc["pods"]] == [p.key for p in s.pods]
    assert [p["ready"] for p in doc["pods"]] == [p.key != s.pods[0].key for p in s.pods]
    assert doc["version"] == 7 and json.loads(json.dumps(doc)) == doc


def test_every_pod_node_and_service_has_a_box_and_a_trace_target():
    s = shipped_state("services")
    doc = view.snapshot(s, ready_all(s), [], [], 1)
    boxes = [b for b in doc["graph"]["boxes"]] + [b for c in doc["graph"]["clusters"] for b in c["boxes"]]
    keys = {k: b for b in boxes for k in b["keys"]}
    for p in s.pods:
        assert keys[p.key]["target"] == f"pod/{p.key}"
    for svc in s.services:
        if svc.cluster_ip:
            assert keys[f"svc/{svc.key}"]["target"].startswith(f"svc/{svc.name}.{svc.namespace}:")
    for n in s.nodes:
        assert keys[f"node/{n.name}"]["kind"] == "eth0"
        assert doc["netns"][n.netns] == keys[f"node/{n.name}"]["id"]
    assert all(doc["netns"][p.netns] == keys[p.key]["id"] for p in s.pods if not p.host_network)


def test_a_stopped_node_and_a_fault_show_in_the_next_snapshot():
    s = shipped_state("vxlan")
    fault = {"id": "f1", "kind": "link-down", "target": "node/worker2", "params": {}, "undo": [["x"]], "applied_at": 1.0}
    doc = view.snapshot(s, ready_all(s), ["worker2"], [fault], 2)
    assert doc["faults"] == [{"id": "f1", "kind": "link-down", "target": "node/worker2", "params": {}}]  # no undo ops
    cut = [link for link in doc["graph"]["links"] if link["kind"] == "cut"]
    assert len(cut) == 1


def test_a_thousand_pods_are_grouped_as_lab_graph_groups_them_and_fast():
    s = shipped_state("vxlan")
    extra = tuple(replace(s.pods[0], name=f"backend-x{i}", ip=f"10.244.{i // 250}.{i % 250 + 2}")
                  for i in range(1000))
    big = replace(s, pods=s.pods + extra)
    t0 = time.monotonic()
    doc = view.snapshot(big, ready_all(big), [], [], 1)
    body = json.dumps(doc, separators=(",", ":"))
    took = time.monotonic() - t0
    pod_boxes = [b for c in doc["graph"]["clusters"] for b in c["boxes"] if b["kind"] in ("pod", "group")]
    assert len(big.pods) > GROUP_ABOVE and len(pod_boxes) < 20 and doc["graph"]["notes"]
    assert len(doc["pods"]) == len(big.pods)          # the list still names every pod
    assert took < 1.0, f"a 1000-pod snapshot took {took:.2f}s ({len(body)} bytes)"


def test_the_policy_table_narrows_to_one_namespace():
    m = {"lab": "l", "sources": ["a/x", "b/y"], "destinations": ["a/x", "b/y"], "cases": [{"port": 80, "protocol": "TCP"}],
         "probed": 3, "not_served": 1, "differences": 1, "timeout": 0.5,
         "cells": [{"src": s, "dst": d, "port": 80, "protocol": "TCP", "expected": None if d == "b/y" and s == "b/y" else
                    "allowed", "observed": "allowed", "differs": s == "a/x" and d == "b/y", "error": None,
                    "attempts": 1} for s in ("a/x", "b/y") for d in ("a/x", "b/y")]}
    assert view.policy_table(m) == m
    a = view.policy_table(m, "a")
    assert a["sources"] == a["destinations"] == ["a/x"] and len(a["cells"]) == 1
    assert (a["probed"], a["not_served"], a["differences"]) == (1, 0, 0)
    b = view.policy_table(m, "b")
    assert (b["probed"], b["not_served"]) == (0, 1)


class _Session:
    def __init__(self):
        self.hints = {}


def test_the_exercise_panel_never_shows_hidden_tests_or_answers():
    folder = next(f for f in exercises.folders(ROOT / "exercises")
                  if any(t.hidden for task in exercises.load(f).tasks for t in task.tests))
    ex = exercises.load(folder)
    hidden_titles = {t.step.title for task in ex.tasks for t in task.tests if t.hidden}
    tasks = tuple(TaskGrade(t.id, t.title, t.points, (
        Outcome("visible one", True, 1.0), Outcome("hidden test 1", False, 1.0, hidden=True, reason="SECRET-REASON"),
        Outcome("answer", False, 1.0, reason="SECRET-ANSWER"))) for t in ex.tasks)
    panel = view.exercise_panel(ex, _Session(), Grade(ex.name, ex.title, ex.lab, tasks))
    text = json.dumps(panel)
    assert [t["id"] for t in panel["tasks"]] == [t.id for t in ex.tasks]
    assert "SECRET" not in text and "hidden test" not in text
    assert not any(title in [n for t in panel["tasks"] for n in t["tests"]] for title in hidden_titles)
    assert all(t["outcomes"] == [{"name": "visible one", "passed": True, "reason": ""}] for t in panel["tasks"])
    for solution in ("solution.sh", "SOLUTION.md"):
        path = Path(folder) / solution
        if path.exists():
            assert path.read_text().strip()[:40] not in text


# --- who may ask what ---

@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8080", True), ("localhost:8080", True), ("[::1]:8080", True), ("10.1.2.3:8080", True),
    ("evil.example:8080", False), ("127.0.0.1:9999", False), ("127.0.0.1", False), (None, False), ("", False),
])
def test_only_our_host_is_answered(host, ok):
    assert admission.host_allowed(host, 8080, "127.0.0.1") is ok


def test_the_host_given_with_host_is_ours():
    assert admission.host_allowed("lab.local:8080", 8080, "lab.local")


@pytest.mark.parametrize("headers", [
    {"Host": "attacker.example:8080"},
    {"Host": "127.0.0.1:8080", "Origin": "http://attacker.example"},
    {"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:9999"},
    {"Host": "127.0.0.1:8080", "Sec-Fetch-Site": "cross-site"},
    {"Host": "127.0.0.1:8080", "Sec-Fetch-Site": "same-site"},
])
def test_cross_site_requests_are_refused(headers):
    with pytest.raises(Refused) as e:
        admission.check_request(headers, 8080, "127.0.0.1")
    assert e.value.status == 403


def test_a_same_origin_request_passes():
    admission.check_request({"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:8080",
                             "Sec-Fetch-Site": "same-origin"}, 8080, "127.0.0.1")
    admission.check_request({"Host": "localhost:8080"}, 8080, "127.0.0.1")


@pytest.mark.parametrize("given", [None, "", "wrong", "tok3n-but-longer"])
def test_a_missing_or_wrong_token_is_refused(given):
    headers = {} if given is None else {admission.TOKEN_HEADER: given}
    with pytest.raises(Refused):
        admission.check_token(headers, "tok3n")
    admission.check_token({admission.TOKEN_HEADER: "tok3n"}, "tok3n")


def test_an_empty_server_token_admits_nobody():
    with pytest.raises(Refused):
        admission.check_token({admission.TOKEN_HEADER: ""}, "")


def test_actions_are_off_unless_allowed():
    with pytest.raises(Refused) as e:
        admission.admit({"action": "node-stop", "node": "worker1"}, shipped_state("vxlan"), allowed=False)
    assert e.value.status == 403 and "--allow-actions" in e.value.reason


@pytest.mark.parametrize("body, says", [
    ("node-stop", "JSON object"),
    ({"action": "exec", "command": "rm -rf /"}, "unknown action"),
    ({"action": "node-stop", "node": "nope"}, "no node 'nope'"),
    ({"action": "node-start"}, "no node None"),
    ({"action": "fault-add", "kind": "no-such", "target": "node/worker1"}, "unknown fault kind"),
    ({"action": "fault-add", "kind": "link-down", "target": "node/worker1; reboot"}, "needs kind and target"),
    ({"action": "fault-add", "kind": "link-down", "target": "node/worker1", "params": {"x": ["a"]}}, "params must be"),
    ({"action": "fault-clear", "id": "f1 && x"}, "fault id"),
])
def test_bad_actions_are_refused_with_the_reason(body, says):
    with pytest.raises(Refused) as e:
        admission.admit(body, shipped_state("vxlan"), allowed=True)
    assert e.value.status == 400 and says in e.value.reason


def test_good_actions_are_admitted_with_their_arguments():
    s = shipped_state("vxlan")
    assert admission.admit({"action": "node-stop", "node": "worker1"}, s, True) == admission.Action("node-stop", node="worker1")
    a = admission.admit({"action": "fault-add", "kind": "link-down", "target": "node/worker1"}, s, True)
    assert (a.verb, a.kind, a.target, a.params) == ("fault-add", "link-down", "node/worker1", {})
    assert admission.admit({"action": "fault-clear"}, s, True).fault_id == ""
    assert admission.admit({"action": "fault-clear", "id": "f3"}, s, True).fault_id == "f3"


# --- the thin server, over real HTTP (no root: a lab record in a temporary run folder) ---

@pytest.fixture
def running(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "RUN_ROOT", tmp_path)
    s = shipped_state("vxlan")
    rec = record.LabRecord.create(s)
    rec.pod_ready, rec.status = ready_all(s), "running"
    rec.save()
    servers = []

    def start(allow=False):
        httpd, app = server.start(s.lab, "127.0.0.1", 0, allow)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append((httpd, app))
        return app

    yield rec, start
    for httpd, app in servers:
        app.stop.set()
        httpd.shutdown()
        httpd.server_close()


def request(app, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    c.request(method, path, body=None if body is None else json.dumps(body),
              headers={"Host": f"127.0.0.1:{app.port}", **(headers or {})})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.headers, data


def test_the_page_and_its_assets_come_from_the_server_itself(running):
    _, start = running
    app = start()
    status, headers, page = request(app, "GET", "/")
    assert status == 200 and app.token.encode() in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for asset in (b"/app.js", b"/app.css", b"/favicon.svg"):
        assert asset in page
        assert request(app, "GET", asset.decode())[0] == 200
    for text in [page.decode(), *(p.read_text() for p in STATIC.iterdir())]:
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text


def test_the_state_lists_the_lab_and_refuses_other_hosts(running):
    rec, start = running
    app = start()
    status, _, body = request(app, "GET", "/api/state")
    assert status == 200 and {p["key"] for p in json.loads(body)["pods"]} == {p.key for p in rec.state.pods}
    status, _, body = request(app, "GET", "/api/state", headers={"Host": "rebound.example:80"})
    assert status == 403 and b"not this server's" in body


def test_a_change_of_the_record_reaches_the_page_within_a_second(running):
    rec, start = running
    app = start()
    c = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    c.request("GET", "/api/events", headers={"Host": f"127.0.0.1:{app.port}"})
    stream = c.getresponse()
    assert stream.headers["Content-Type"] == "text/event-stream"

    def next_state() -> dict:
        while True:
            line = stream.fp.readline()
            if line.startswith(b"data: "):
                return json.loads(line[6:])

    first = next_state()
    assert {n["status"] for n in first["nodes"]} == {"Ready"}
    underlay.set_stopped(rec, ["worker1"])
    t0 = time.monotonic()
    rec.save()
    second = next_state()
    took = time.monotonic() - t0
    c.close()
    assert second["version"] > first["version"]
    assert {n["name"]: n["status"] for n in second["nodes"]}["worker1"] == "NotReady"
    assert took < 1.0, f"the change took {took:.2f}s to reach the page"


def test_actions_need_the_token_the_flag_and_the_same_origin(running):
    _, start = running
    off, on = start(allow=False), start(allow=True)
    body = {"action": "node-stop", "node": "nope"}
    token = {admission.TOKEN_HEADER: on.token}
    assert request(on, "POST", "/api/action", body)[0] == 403                                   # no token
    assert request(on, "POST", "/api/action", body, {admission.TOKEN_HEADER: off.token})[0] == 403  # another's
    status, _, said = request(on, "POST", "/api/action", body, {**token, "Origin": "http://evil.example"})
    assert status == 403 and b"cross-site" in said
    status, _, said = request(off, "POST", "/api/action", body, {admission.TOKEN_HEADER: off.token})
    assert status == 403 and b"--allow-actions" in said
    status, _, said = request(on, "POST", "/api/action", body, token)                              # admitted, then judged
    assert status == 400 and b"no node 'nope'" in said
    assert request(on, "GET", "/api/run?cmd=id", headers=token)[0] == 404


def test_work_needs_the_token_and_errors_are_said_not_raised(running):
    _, start = running
    app = start()
    assert request(app, "GET", "/api/trace?src=a&dst=b")[0] == 403
    status, _, body = request(app, "GET", "/api/trace?src=pod/default/nope&dst=pod/default/x",
                              headers={admission.TOKEN_HEADER: app.token})
    assert status == 400 and b"no pod default/nope" in body
    status, _, body = request(app, "GET", "/api/exercise", headers={admission.TOKEN_HEADER: app.token})
    assert status == 200 and json.loads(body)["exercise"] is None


def test_a_lab_that_goes_away_is_said_on_the_page(running):
    rec, start = running
    app = start()
    rec.remove_dir()
    deadline = time.monotonic() + 2
    while b"gone" not in app.live.body and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"no lab named" in app.live.body


def test_the_exercise_started_on_the_lab_is_served_sealed_and_without_hidden_tests(running):
    """The panel of a session on this lab (a sealed copy, as `lab exercise start` makes): its tasks,
    their visible test titles, and a hint counted in the session; a session on another lab is not shown."""
    from lab.exercise import session as sessions

    rec, start = running
    folder = next(f for f in exercises.folders(ROOT / "exercises")
                  if any(t.hidden for task in exercises.load(f).tasks for t in task.tests))
    ex = exercises.load(folder)
    other = sessions.Session("other", str(folder), "another-lab", "t0")
    other.save()
    s = sessions.Session(ex.name, str(folder), rec.name, "t1")
    sessions.seal(s)
    s.save()
    app = start()
    token = {admission.TOKEN_HEADER: app.token}
    status, _, body = request(app, "GET", "/api/exercise", headers=token)
    panel = json.loads(body)
    assert status == 200 and panel["exercise"] == ex.name and [t["id"] for t in panel["tasks"]] == [t.id for t in ex.tasks]
    hidden = {t.step.title for task in ex.tasks for t in task.tests if t.hidden}
    assert not hidden & {n for t in panel["tasks"] for n in t["tests"]}
    task = ex.tasks[0]
    if task.hints:
        status, _, body = request(app, "POST", "/api/exercise/hint", {"task": task.id}, token)
        assert status == 200 and task.hints[0] in json.loads(body)["hint"]
        assert sessions.load(ex.name).hints == {task.id: 1}
    assert request(app, "POST", "/api/exercise/hint", {"task": task.id})[0] == 403   # no token


def test_the_pcap_of_a_trace_this_server_ran_is_served_by_its_id_only(running):
    rec, start = running
    app = start()
    kept = saved.create(rec.dir)
    data = bytes.fromhex("d4c3b2a1020004000000000000000000ffff0000" "14010000")   # an empty SLL2 pcap
    (kept / saved.MERGED).write_bytes(data)
    token = {admission.TOKEN_HEADER: app.token}
    assert request(app, "GET", f"/api/trace.pcap?id={kept.name}", headers=token)[0] == 404   # not run by this server
    app.pcaps[kept.name] = kept
    assert request(app, "GET", f"/api/trace.pcap?id={kept.name}")[0] == 403                   # no token
    status, headers, body = request(app, "GET", f"/api/trace.pcap?id={kept.name}", headers=token)
    assert status == 200 and body == data and headers["Content-Type"] == "application/vnd.tcpdump.pcap"
    assert headers["Content-Disposition"] == f'attachment; filename="lab-{rec.name}-trace-{kept.name[-16:]}.pcap"'
    for other in (f"{rec.dir}/traces/{kept.name}", "../../etc/passwd", ""):
        assert request(app, "GET", f"/api/trace.pcap?id={other}", headers=token)[0] == 404


def test_a_graph_with_ingresses_reaches_the_page():
    s = shipped_state("ingress")
    g = view.snapshot(s, ready_all(s), [], [], 1)["graph"]
    assert [c["boxes"][0]["keys"] for c in g["clusters"] if c["kind"] == "ingresses"] == [["ingress/default/web"]]
    assert len([l for l in g["links"] if l["kind"] == "route"]) == 2
