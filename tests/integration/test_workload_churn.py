"""Workloads change as in a cluster: a pod deleted and re-created with `lab apply -f` gets a new
address (host-local's round-robin) and answers at once, straight and through its Service; a
Service with one of kube-proxy's skip labels gets no rules; a hostNetwork pod answers /hostname
with its node's name; `lab up --wait` and `lab wait` return once the pods are ready; scaling a
Deployment and switching a Service's selector change who answers at once."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.conftest import lab, needs_root

pytestmark = [needs_root, pytest.mark.root]
NAME = "wdchurn"


def pod(name: str, app: str, port: int, host_network: bool = False) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"hostNetwork": host_network,
                     "containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": port}]}]}}


def service(name: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}


WEB = pod("web", "web", 8080)
SLOW = pod("slow", "slow", 8080)
SLOW["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}, "initialDelaySeconds": 2,
                                                   "periodSeconds": 1}
TOPOLOGY = {"name": NAME, "cluster": {"dns": {"enabled": False}}, "nodes": [{"name": "n1"}],
            "manifests": [pod("client", "client", 8080), WEB, pod("agent", "agent", 9000, host_network=True), SLOW,
                          service("web", {"app": "web"}),
                          service("other-proxy", {"service.kubernetes.io/service-proxy-name": "elsewhere"})]}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    path = tmp_path_factory.mktemp("churn") / "lab.yaml"
    path.write_text(yaml.safe_dump(TOPOLOGY, sort_keys=False))
    up = lab("up", str(path), "--wait")
    try:
        assert "waiting for 1 pod to be ready (slow: initialDelaySeconds 2)" in up.stderr, up.stderr
        assert "4 pods ready" in up.stderr
        yield
    finally:
        lab("down", NAME, check=False)


def _ips() -> tuple[dict, dict]:
    pods = json.loads(lab("-l", NAME, "get", "pods", "-o", "json").stdout)["items"]
    svcs = json.loads(lab("-l", NAME, "get", "svc", "-o", "json").stdout)["items"]
    return ({p["metadata"]["name"]: p["status"]["podIP"] for p in pods},
            {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in svcs})


def curl(url: str, check: bool = True):
    return lab("-l", NAME, "exec", "client", "--", "curl", "-s", "-m", "3", url, check=check)


def test_a_re_created_pod_answers_at_once_straight_and_through_its_service(running, tmp_path):
    pods, svcs = _ips()
    assert curl(f"http://{pods['web']}:8080/hostname").stdout == "web"  # the client's neighbour cache knows web
    assert curl(f"http://{svcs['web']}/hostname").stdout == "web"
    manifest = tmp_path / "web.yaml"
    manifest.write_text(yaml.safe_dump(WEB))
    assert lab("-l", NAME, "delete", "-f", str(manifest)).stdout.strip() == "pod/web deleted"
    assert lab("-l", NAME, "apply", "-f", str(manifest)).stdout.strip() == "pod/web created"
    after, _ = _ips()
    assert after["web"] != pods["web"]  # round-robin: not the address just freed
    assert curl(f"http://{after['web']}:8080/hostname").stdout == "web"
    assert curl(f"http://{svcs['web']}/hostname").stdout == "web"


def test_a_service_with_a_skip_label_gets_no_rules(running):
    _, svcs = _ips()
    rules = lab("-l", NAME, "exec", "node/n1", "--", "iptables-save").stdout
    assert svcs["web"] in rules and svcs["other-proxy"] not in rules
    assert curl(f"http://{svcs['other-proxy']}/hostname", check=False).returncode != 0


def test_a_host_network_pod_answers_with_its_nodes_name(running):
    nodes = json.loads(lab("-l", NAME, "get", "nodes", "-o", "json").stdout)["items"]
    node_ip = next(a["address"] for a in nodes[0]["status"]["addresses"] if a["type"] == "InternalIP")
    assert curl(f"http://{node_ip}:9000/hostname").stdout == "n1"


def test_lab_wait_as_kubectl(running, tmp_path):
    done = lab("-l", NAME, "wait", "--for=condition=Ready", "--all", "--timeout=10s")
    assert sorted(done.stdout.splitlines()) == [f"pod/{n} condition met" for n in ("agent", "client", "slow", "web")]
    late = tmp_path / "late.yaml"
    never = pod("never", "never", 8080)
    never["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/not-found", "port": 8080}, "periodSeconds": 1}
    late.write_text(yaml.safe_dump(never))
    lab("-l", NAME, "apply", "-f", str(late))
    try:
        failed = lab("-l", NAME, "wait", "pod/never", "--timeout", "3s", check=False)
        assert failed.returncode == 1
        assert "timed out waiting for the condition on pod/never (readinessProbe c: GET /not-found" in failed.stderr
    finally:
        lab("-l", NAME, "delete", "-f", str(late))


def deployment(name: str, replicas: int, app: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                     "template": {"metadata": {"labels": {"app": app}},
                                  "spec": {"containers": [{"name": "c", "image": "netexec",
                                                           "ports": [{"containerPort": 8080}]}]}}}}


def _answering(url: str, tries: int = 40) -> set[str]:
    """Who answers a Service's URL over many connections (kube-proxy picks at random)."""
    out = lab("-l", NAME, "exec", "client", "--", "sh", "-c",
              f"for i in $(seq {tries}); do curl -s -m 2 {url}; echo; done").stdout
    return {line for line in out.splitlines() if line}


def _replicas(prefix: str) -> set[str]:
    return {n for n in _ips()[0] if n.startswith(prefix + "-")}


def test_scaling_a_deployment_changes_who_answers_at_once(running, tmp_path):
    manifest = tmp_path / "shop.yaml"
    svc = service("shop", {})
    svc["spec"]["selector"] = {"app": "shop"}
    try:
        for replicas in (2, 4, 1):
            manifest.write_text(yaml.safe_dump_all([deployment("shop", replicas, "shop"), svc]))
            lab("-l", NAME, "apply", "-f", str(manifest))
            names = _replicas("shop")
            assert len(names) == replicas
            assert _answering(f"http://{_ips()[1]['shop']}/hostname") == names, replicas
    finally:
        lab("-l", NAME, "delete", "-f", str(manifest), check=False)


def test_switching_a_selector_moves_the_service_at_once(running, tmp_path):
    manifest = tmp_path / "colors.yaml"
    svc = service("color", {})
    try:
        for color in ("blue", "green", "blue"):
            svc["spec"]["selector"] = {"app": color}
            manifest.write_text(yaml.safe_dump_all([deployment("blue", 2, "blue"), deployment("green", 1, "green"), svc]))
            lab("-l", NAME, "apply", "-f", str(manifest))
            assert _answering(f"http://{_ips()[1]['color']}/hostname") == _replicas(color), color
    finally:
        lab("-l", NAME, "delete", "-f", str(manifest), check=False)
