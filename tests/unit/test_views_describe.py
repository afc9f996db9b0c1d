"""lab.views: `lab get pods` READY per container and `lab describe pod`, from a planned ClusterState
and what the lab's record holds (container liveness, readiness verdicts, the last probe results)."""
from __future__ import annotations

import pytest

from lab import views
from lab.controlplane.plan import plan
from lab.topology.model import Topology

PROBE = {"httpGet": {"path": "/not-found-by-design", "port": 8080}}
DOC = {
    "name": "d",
    "nodes": [{"name": "cp", "role": "control-plane"}, {"name": "w1"}],
    "manifests": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
         "spec": {"nodeName": "w1", "containers": [
             {"name": "app", "image": "netexec", "ports": [{"containerPort": 8080}], "readinessProbe": PROBE,
              "env": [{"name": "MODE", "value": "demo"}]},
             {"name": "db", "image": "redis:7", "ports": [{"containerPort": 6379}, {"containerPort": 6380}]},
             {"name": "side", "image": "busybox", "command": ["sleep"], "args": ["3600"]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed"},
         "spec": {"nodeName": "cp", "containers": [
             {"name": "tcp", "image": "netexec", "ports": [{"containerPort": 80}],
              "readinessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 2, "periodSeconds": 5,
                                 "timeoutSeconds": 3, "successThreshold": 2, "failureThreshold": 4}},
             {"name": "ex", "image": "netexec", "ports": [{"containerPort": 81}],
              "readinessProbe": {"exec": {"command": ["cat", "/tmp/ok"]}}}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "be"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "be"}},
                  "template": {"metadata": {"labels": {"app": "be"}},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}},
    ],
}
FAILED = "GET /not-found-by-design (port 8080) -> 404"


@pytest.fixture(scope="module")
def state():
    return plan(Topology.model_validate(DOC))


def pod(state, name):
    return next(p for p in state.pods if p.name.startswith(name))


def everything_runs(key: str) -> bool:
    return True


# --- READY in `lab get pods` ---

def test_ready_counts_a_failing_probe_as_kubectl_does(state):
    web = pod(state, "web")
    assert views.pod_status(web, everything_runs, {"default/web/app": False}) == ("2/3", "Running")
    assert views.pod_status(web, everything_runs, {"default/web/app": True}) == ("3/3", "Running")
    header, rows = views.pod_rows(state, everything_runs, 0.0, "default", False, {"default/web/app": False})
    assert dict((r[0], r[1]) for r in rows)["web"] == "2/3"


def test_ready_zero_of_one_for_a_lone_unready_container(state):
    doc = {"name": "z", "nodes": [{"name": "n"}], "manifests": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
         "spec": {"containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": 8080}],
                                  "readinessProbe": PROBE}]}}]}
    one = plan(Topology.model_validate(doc))
    _, rows = views.pod_rows(one, everything_runs, 0.0, "default", False, {"default/p/c": False})
    assert rows[0][1:3] == ["0/1", "Running"]
    _, rows = views.pod_rows(one, everything_runs, 0.0, "default", False, {"default/p/c": True})
    assert rows[0][1] == "1/1"


# --- probe results as the kubelet's Unhealthy event says them ---

@pytest.mark.parametrize("detail, message", [
    (FAILED, "HTTP probe failed with statuscode: 404 (GET /not-found-by-design on port 8080)"),
    ("GET /healthz (port 80) -> 503", "HTTP probe failed with statuscode: 503 (GET /healthz on port 80)"),
    ("GET /healthz (port 80) -> 200", None),
    ("GET /healthz (port 80) -> 302", None),
    ("GET / (port 80): Connection refused", "HTTP probe failed: GET / (port 80): Connection refused"),
    ("GET / (port 80) -> not an HTTP answer", "HTTP probe failed: GET / (port 80) -> not an HTTP answer"),
    ("tcp 80: connected", None),
    ("tcp 80: Connection refused", "TCP probe failed: tcp 80: Connection refused"),
    ("exec cat /tmp/ok -> exit 0", None),
    ("exec cat /tmp/ok -> exit 1", "command failed: exec cat /tmp/ok -> exit 1"),
    ("exec sleep 9: timed out after 1s", "command failed: exec sleep 9: timed out after 1s"),
    ("initialDelaySeconds 5: not probed yet", None),
    ("", None),
])
def test_probe_failure(detail, message):
    assert views.probe_failure(detail) == message


# --- lab describe pod ---

def test_describe_a_pod_kept_unready_by_its_probe(state):
    out = views.describe_pod(pod(state, "web"), state, lambda k: not k.endswith("/side"),
                             {"default/web/app": False}, {"default/web/app": FAILED}, 0.0,
                             {"default/web/app": [1000.0, 1040.0, 5]}, now=1048.0)
    lines = out.splitlines()
    assert lines[:4] == ["Name:        web", "Namespace:   default", "Priority:    0", "Node:        w1/172.18.0.3"]
    assert "Labels:      app=web" in lines and "             tier=fe" in lines
    assert "IP:          10.244.1.2" in lines and lines[lines.index("IPs:") + 1] == "  IP:  10.244.1.2"
    assert "Controlled By" not in out  # a bare pod
    app = lines[lines.index("  app:"):lines.index("  db:")]
    assert "    Image:         netexec" in app and "    Port:          8080/TCP" in app
    assert "    State:         Running" in app and "    Ready:         False" in app
    assert ("    Readiness:     http-get http://:8080/not-found-by-design delay=0s timeout=1s period=10s "
            "#success=1 #failure=3") in app
    assert app[-2:] == ["    Environment:", "      MODE:  demo"]
    db = lines[lines.index("  db:"):lines.index("  side:")]
    assert "    Image:         redis:7 (not built in: the lab runs netexec serving 6379/TCP, 6380/TCP)" in db
    assert "    Ports:         6379/TCP, 6380/TCP" in db and "    Ready:         True" in db
    assert "Readiness" not in "\n".join(db) and "    Environment:   <none>" in db
    side = lines[lines.index("  side:"):lines.index("Conditions:")]
    assert "    Command:       sleep" in side and "                   3600" in side
    assert "    State:         Terminated" in side and "    Port:          <none>" in side
    conditions = lines[lines.index("Conditions:") + 1:lines.index("Events:")]
    assert [c.split() for c in conditions] == [["Type", "Status"], ["Initialized", "True"], ["Ready", "False"],
                                               ["ContainersReady", "False"], ["PodScheduled", "True"]]
    events = lines[lines.index("Events:") + 1:]
    assert events[0].split() == ["Type", "Reason", "Age", "From", "Message"] and len(events) == 3
    # an aggregated event, as kubectl shows it: last seen 8s ago, 5 times over 40s
    assert events[2].split(None, 7) == ["Warning", "Unhealthy", "8s", "(x5", "over", "40s)", "kubelet",
                                        "Readiness probe failed: HTTP probe failed with statuscode: 404 "
                                        "(GET /not-found-by-design on port 8080)"]


def test_describe_a_ready_pod_has_no_events(state):
    out = views.describe_pod(pod(state, "web"), state, everything_runs, {"default/web/app": True},
                             {"default/web/app": "GET /not-found-by-design (port 8080) -> 200"}, 0.0)
    assert out.endswith("Events:  <none>") and "Warning" not in out
    assert "  Ready             True" in out and "  ContainersReady   True" in out
    assert "Status:      Running" in out


def test_describe_a_deployment_pod_names_its_replicaset_and_its_stand_in(state):
    be = pod(state, "be-")
    out = views.describe_pod(be, state, everything_runs, {}, {}, 0.0)
    assert f"Controlled By: ReplicaSet/{be.name.rsplit('-', 1)[0]}" in out.splitlines()
    assert "    Image:         nginx (not built in: the lab runs pause, nothing to serve)" in out.splitlines()
    assert out.endswith("Events:  <none>")


def test_describe_probe_specs_and_unprobed_containers(state):
    probed = pod(state, "probed")
    out = views.describe_pod(probed, state, everything_runs, {"default/probed/tcp": False, "default/probed/ex": False},
                             {"default/probed/tcp": "initialDelaySeconds 2: not probed yet",
                              "default/probed/ex": "exec cat /tmp/ok -> exit 1"}, 0.0)
    assert "tcp-socket :80 delay=2s timeout=3s period=5s #success=2 #failure=4" in out
    assert "exec [cat /tmp/ok] delay=0s timeout=1s period=10s #success=1 #failure=3" in out
    warnings = [line for line in out.splitlines() if "Warning" in line]
    assert len(warnings) == 1 and warnings[0].endswith("Readiness probe failed: command failed: exec cat /tmp/ok -> exit 1")


def test_no_event_for_a_container_that_does_not_run(state):
    out = views.describe_pod(pod(state, "web"), state, lambda k: False, {"default/web/app": False},
                             {"default/web/app": FAILED}, 0.0)
    assert out.endswith("Events:  <none>") and "Status:      Failed" in out
