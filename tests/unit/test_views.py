"""lab.views: what `lab get` prints (kubectl-like columns and objects), from a planned ClusterState."""
from __future__ import annotations

import json
import platform
from types import SimpleNamespace

import pytest

from lab import views
from lab.controlplane.plan import plan
from lab.topology.model import Topology

NOW = 1_000_000.0

DOC = {
    "name": "v",
    "nodes": [{"name": "cp", "role": "control-plane", "labels": {"zone": "a"}}, {"name": "w1"}],
    "manifests": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
         "spec": {"nodeName": "cp", "containers": [
             {"name": "app", "image": "netexec", "ports": [{"containerPort": 8080}]},
             {"name": "sidecar", "image": "busybox", "command": ["sleep"], "args": ["3600"],
              "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"}]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-long-name", "namespace": "team-a"},
         "spec": {"nodeName": "w1", "containers": [{"name": "c", "image": "netexec"}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent"},
         "spec": {"nodeName": "w1", "hostNetwork": True, "containers": [{"name": "a", "image": "netexec"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "be", "namespace": "team-a"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "be"}},
                  "template": {"metadata": {"labels": {"app": "be"}},
                               "spec": {"nodeName": "cp", "containers": [{"name": "c", "image": "netexec"}]}}}},
    ],
}


@pytest.fixture(scope="module")
def state():
    return plan(Topology.model_validate(DOC))


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(views, "time", SimpleNamespace(time=lambda: NOW))


def alive(key: str) -> bool:
    """Everything runs except the web pod's sidecar."""
    return key != "default/web/sidecar"


# --- age ---

@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.9, "0s"), (45, "45s"), (90, "90s"), (119, "119s"),
    (120, "2m"), (330, "5m30s"), (599, "9m59s"), (600, "10m"), (3599, "59m"), (7200, "120m"),
    (3 * 3600, "3h"), (2 * 3600 + 15 * 60 + 3600, "3h15m"), (8 * 3600 + 60, "8h"), (47 * 3600, "47h"),
    (172800, "2d"), (3 * 86400 + 4 * 3600, "3d4h"), (8 * 86400, "8d"), (400 * 86400, "400d"),
    (2 * 365 * 86400, "2y"), (2 * 365 * 86400 + 3 * 86400, "2y3d"), (9 * 365 * 86400, "9y"),
    (-5, "0s"),  # clock skew: never a negative age
])
def test_age(seconds, text):
    assert views.age(seconds) == text


# --- render_table ---

def test_render_table_aligns_columns():
    out = views.render_table(["NAME", "READY", "AGE"], [["a", "1/1", "5m"], ["longer-name", "10/10", "45s"]])
    assert out.split("\n") == [
        "NAME          READY   AGE",
        "a             1/1     5m",
        "longer-name   10/10   45s",
    ]


def test_render_table_header_only_and_no_trailing_spaces():
    assert views.render_table(["NAME", "STATUS"], []) == "NAME   STATUS"
    out = views.render_table(["A", "B"], [["x", ""], ["yyyy", "z"]])
    assert out == "A      B\nx\nyyyy   z"
    assert all(line == line.rstrip() for line in out.split("\n"))


def test_render_table_column_starts_line_up():
    header = ["NAMESPACE", "NAME", "IP"]
    rows = [["default", "w", "10.244.0.2"], ["kube-system", "a-much-longer-name", "1.2.3.4"]]
    lines = views.render_table(header, rows).split("\n")
    for col in ("NAME", "IP"):
        start = lines[0].index("   " + col) + 3
        for line, row in zip(lines[1:], rows):
            assert line[start:].startswith(row[header.index(col)]), (line, col)
            assert line[start - 3:start] == "   "


# --- pod rows ---

def test_pod_rows_all_namespaces(state):
    header, rows = views.pod_rows(state, alive, NOW - 45, None, wide=False)
    assert header == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    be = next(p.name for p in state.pods if p.owner == "Deployment/be")
    kube_dns = next(p.name for p in state.pods if p.namespace == "kube-system")   # cluster DNS is on by default
    assert kube_dns.startswith("kube-dns-")
    assert rows == [  # sorted by namespace, then name, as the API server lists them
        ["default", "agent", "1/1", "Running", "0", "45s"],
        ["default", "web", "1/2", "Error", "0", "45s"],
        ["kube-system", kube_dns, "1/1", "Running", "0", "45s"],
        ["team-a", "api-long-name", "1/1", "Running", "0", "45s"],
        ["team-a", be, "1/1", "Running", "0", "45s"],
    ]


def test_pod_rows_one_namespace(state):
    header, rows = views.pod_rows(state, alive, NOW - 300, "team-a", wide=False)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r[0] for r in rows] == ["api-long-name", next(p.name for p in state.pods if p.owner)]
    assert all(r[4] == "5m" for r in rows)
    assert views.pod_rows(state, alive, NOW, "nope", wide=False)[1] == []


def test_pod_rows_wide(state):
    header, rows = views.pod_rows(state, alive, NOW - 3 * 3600, "default", wide=True)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE",
                      "IP", "NODE", "NOMINATED NODE", "READINESS GATES", "NETNS"]
    assert rows == [
        ["agent", "1/1", "Running", "0", "3h", "172.18.0.3", "w1", "<none>", "<none>", "v-w1"],
        ["web", "1/2", "Error", "0", "3h", "10.244.0.2", "cp", "<none>", "<none>", "v-default-web"],
    ]
    h_all, r_all = views.pod_rows(state, alive, NOW, None, wide=True)
    assert h_all[0] == "NAMESPACE" and len(h_all) == 11 and all(len(r) == 11 for r in r_all)


def test_pod_ready_counts_follow_alive(state):
    web = next(p for p in state.pods if p.name == "web")
    assert views.pod_status(web, lambda k: True) == ("2/2", "Running")
    assert views.pod_status(web, lambda k: False) == ("0/2", "Error")
    asked = []
    views.pod_status(web, lambda k: asked.append(k) or True)
    assert asked == ["default/web/app", "default/web/sidecar"]


# --- node rows ---

def test_node_rows(state):
    header, rows = views.node_rows(state, NOW - 2 * 86400, wide=False)
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert rows == [["cp", "Ready", "control-plane", "2d", "k8s-netlab"],
                    ["w1", "Ready", "<none>", "2d", "k8s-netlab"]]


def test_node_rows_wide(state):
    header, rows = views.node_rows(state, NOW, wide=True)
    assert header[5:] == ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME",
                          "POD-CIDR", "NETNS"]
    assert rows[1] == ["w1", "Ready", "<none>", "0s", "k8s-netlab", "172.18.0.3", "<none>", "Mininet host",
                       platform.release(), "netns", "10.244.1.0/24", "v-w1"]


# --- objects ---

def test_pod_object_bare_pod(state):
    web = next(p for p in state.pods if p.name == "web")
    obj = views.pod_object(web, state, alive)
    assert obj["apiVersion"] == "v1" and obj["kind"] == "Pod"
    assert obj["metadata"] == {"name": "web", "namespace": "default", "labels": {"app": "web"}}
    assert obj["spec"] == {
        "nodeName": "cp", "hostNetwork": False,
        "containers": [
            {"name": "app", "image": "netexec", "ports": [{"containerPort": 8080, "protocol": "TCP"}]},
            {"name": "sidecar", "image": "busybox", "command": ["sleep", "3600"],
             "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"}]},
        ],
    }
    assert obj["status"] == {
        "phase": "Failed", "hostIP": "172.18.0.2", "podIP": "10.244.0.2", "podIPs": [{"ip": "10.244.0.2"}],
        "containerStatuses": [{"name": "app", "started": True, "ready": True},
                              {"name": "sidecar", "started": False, "ready": False}],
    }
    json.dumps(obj)


def test_pod_object_deployment_pod_has_replicaset_owner(state):
    be = next(p for p in state.pods if p.owner == "Deployment/be")
    obj = views.pod_object(be, state, alive)
    h = be.label_dict()["pod-template-hash"]
    assert obj["metadata"]["ownerReferences"] == [{"kind": "ReplicaSet", "name": f"be-{h}"}]
    assert obj["metadata"]["labels"] == {"app": "be", "pod-template-hash": h}
    assert obj["status"]["phase"] == "Running"
    assert obj["status"]["podIP"] == be.ip == "10.244.0.3"


def test_pod_object_hostnetwork(state):
    agent = next(p for p in state.pods if p.name == "agent")
    obj = views.pod_object(agent, state, alive)
    assert obj["spec"]["hostNetwork"] is True
    assert obj["status"]["podIP"] == obj["status"]["hostIP"] == "172.18.0.3"


def test_node_object(state):
    cp, w1 = state.nodes
    assert views.node_object(cp) == {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "cp", "labels": {"zone": "a", "kubernetes.io/hostname": "cp",
                                              "node-role.kubernetes.io/control-plane": ""}},
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"},
                                 {"type": "Hostname", "address": "cp"}]},
    }
    obj = views.node_object(w1)
    assert obj["metadata"]["labels"] == {"kubernetes.io/hostname": "w1"}
    assert obj["spec"]["podCIDR"] == "10.244.1.0/24"


def test_as_list(state):
    items = [views.node_object(n) for n in state.nodes]
    assert views.as_list(items) == {"apiVersion": "v1", "kind": "List", "items": items}


def test_a_pod_is_controlled_by_its_replicaset_or_by_its_own_controller():
    from lab.controlplane.state import PodState
    from lab.views import controller

    def pod(name, owner):
        return PodState(name=name, namespace="default", node="n", ip="10.0.0.2", netns="x", owner=owner)

    assert controller(pod("web-5d9c7b8f4b-abcde", "Deployment/web")) == ("ReplicaSet", "web-5d9c7b8f4b")
    assert controller(pod("db-0", "StatefulSet/db")) == ("StatefulSet", "db")
    assert controller(pod("agent-x2b4c", "DaemonSet/agent")) == ("DaemonSet", "agent")
    assert controller(pod("solo", None)) is None
