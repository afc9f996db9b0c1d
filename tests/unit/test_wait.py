"""Readiness waited for as kubectl users do: durations, which pods a target names, the bound
from their probes, the progress line, and the loop over a lab record on disk (no root)."""
from __future__ import annotations

import threading

import pytest

from lab import cli
from lab.controlplane.plan import plan
from lab.errors import LabError
from lab.host.record import LabRecord
from lab.node import prober
from lab.runtime import wait
from lab.topology.load import load_topology_text

TEXT = """\
name: wdwait
cluster: {dns: {enabled: false}}
nodes: [{name: n1}]
manifests:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: ads}
  spec:
    replicas: 2
    selector: {matchLabels: {app: ads}}
    template:
      metadata: {labels: {app: ads}}
      spec:
        containers:
        - name: c
          image: netexec
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, initialDelaySeconds: 20, periodSeconds: 15}
- {apiVersion: v1, kind: Pod, metadata: {name: plain}, spec: {containers: [{name: c, image: pause}]}}
"""


@pytest.fixture
def state():
    return plan(load_topology_text(TEXT, "w.yaml"))


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("2m", 120), ("1m30s", 90), ("500ms", 0.5), ("45", 45),
                                           ("1h", 3600)])
def test_durations_as_kubectl_writes_them(text, seconds):
    assert wait.duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-1s", "1s2"])
def test_bad_durations_are_diagnostics(text):
    with pytest.raises(LabError, match="invalid duration"):
        wait.duration(text)


def test_targets_name_pods(state):
    assert [p.name for p in wait.select(state, ["pod/plain"], "default", False)] == ["plain"]
    assert len(wait.select(state, ["deploy/ads"], "default", False)) == 2
    assert len(wait.select(state, [], "default", True)) == 3
    assert wait.select(state, [], "other", True) == []
    for bad, message in ((["svc/x"], "cannot wait for 'svc/x'"), (["pod/ghost"], "pod/ghost not found"), ([], "say what")):
        with pytest.raises(LabError, match=message):
            wait.select(state, bad, "default", False)


def test_the_bound_comes_from_the_probes_and_the_progress_line_names_the_slowest(state):
    ads = wait.select(state, ["deploy/ads"], "default", False)
    assert wait.bound(ads) == 20 + 15 * 3
    assert wait.bound(wait.select(state, ["pod/plain"], "default", False)) == wait.STARTUP
    assert wait.progress(ads).startswith("waiting for 2 pods to be ready (ads-") and \
        wait.progress(ads).endswith(": initialDelaySeconds 20)")
    assert [p.name for p in wait.probed(state)] == [p.name for p in ads]


@pytest.fixture
def lab_on_disk(state, run_root):
    rec = LabRecord(name="wdwait", state=state, status="running")
    rec.dir.mkdir(parents=True)
    rec.pod_ready = {p.key: p.name == "plain" for p in state.pods}
    prober.write_status(rec, {}, {f"{p.key}/c": "GET / (port 8080) -> 503" for p in wait.probed(state)}, {})
    rec.save()
    return rec


def test_waiting_ends_when_the_agent_marks_the_pods_ready(lab_on_disk, state):
    lines = []

    def agent():
        rec = wait.records.load("wdwait")
        rec.pod_ready = {p.key: True for p in state.pods}
        rec.save()

    threading.Timer(0.3, agent).start()
    pods, late = wait.until_ready("wdwait", wait.probed, 5, lines.append, poll=0.05)
    assert len(pods) == 2 and late == [] and lines[0].startswith("waiting for 2 pods")


def test_a_pod_never_ready_is_named_with_its_probes_last_result(lab_on_disk, capsys):
    _, late = wait.until_ready("wdwait", wait.probed, 0.1, poll=0.05)
    assert len(late) == 2 and "(readinessProbe c: GET / (port 8080) -> 503)" in late[0]
    assert cli.main(["wait", "deploy/ads", "--timeout", "100ms", "-l", "wdwait"]) == 1
    assert "timed out waiting for the condition on pod/ads-" in capsys.readouterr().err
    assert cli.main(["wait", "pod/plain", "-l", "wdwait"]) == 0
    assert capsys.readouterr().out == "pod/plain condition met\n"
    assert cli.main(["wait", "--for=condition=Gone", "--all", "-l", "wdwait"]) == 1


def test_up_refuses_a_bad_wait_before_building_and_does_not_wait_at_0s(monkeypatch, capsys):
    from types import SimpleNamespace

    from lab import cli
    from lab.runtime import lifecycle

    built, waited = [], []

    def up(path, progress):
        built.append(path)
        return SimpleNamespace(lab="l", nodes=[], pods=[], ingresses=[], gateways=[])

    monkeypatch.setattr(lifecycle, "up", up)
    monkeypatch.setattr(cli, "_wait_ready", lambda *a, **k: waited.append(a))
    assert cli.main(["up", "x.yaml", "--wait=soon"]) == 1
    assert built == [] and "invalid duration 'soon'" in capsys.readouterr().err
    assert cli.main(["up", "x.yaml", "--wait=0s"]) == 0 and built == ["x.yaml"] and waited == []   # kind's 0s: no wait
    assert cli.main(["up", "x.yaml", "--wait=5s"]) == 0 and len(waited) == 1
