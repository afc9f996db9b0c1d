"""kubectl habits on a real lab: `lab apply -f DIR/` prints kubectl's line per object (created,
then unchanged when applied again; a kind the lab ignores too), warns about a NetworkPolicy that
selects no pod, `-f -` reads stdin, `lab delete -f DIR` prints deleted, and `--lab` works before
the command too."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.integration.conftest import ROOT, lab, needs_root
from tests.unit.test_apply_objects import DEPLOY, SERVICE  # the same objects the unit tests read

pytestmark = [needs_root, pytest.mark.root]
NAME = "kubectl1"

TOPOLOGY = {"name": NAME, "cluster": {"network": "vxlan"}, "nodes": [{"name": "n1"}, {"name": "n2"}],
            "manifests": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"app": "client"}},
                           "spec": {"containers": [{"name": "c", "image": "netexec",
                                                    "ports": [{"containerPort": 8080}]}]}}]}
POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web-from-client"},
          "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}}
ACCOUNT = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}}
NOBODY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "nobody"},
          "spec": {"podSelector": {"matchLabels": {"app": "ghost"}}, "policyTypes": ["Ingress"]}}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    path = tmp_path_factory.mktemp("kubectl") / "lab.yaml"
    path.write_text(yaml.safe_dump(TOPOLOGY, sort_keys=False))
    lab("up", str(path))
    try:
        yield
    finally:
        lab("down", NAME, check=False)


def test_apply_and_delete_a_folder_as_kubectl(running, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "0-sa.yaml").write_text(yaml.safe_dump(ACCOUNT))
    (app / "1-deploy.yaml").write_text(yaml.safe_dump(DEPLOY))
    (app / "2-svc.yml").write_text(yaml.safe_dump(SERVICE))
    (app / "3-policies.yaml").write_text(yaml.safe_dump_all([POLICY, NOBODY]))

    first = lab("apply", "-f", f"{app}/", "--lab", NAME)
    assert first.stdout.splitlines() == ["serviceaccount/web created", "deployment.apps/web created", "service/web created",
                                         "networkpolicy.networking.k8s.io/web-from-client created",
                                         "networkpolicy.networking.k8s.io/nobody created"]
    assert "Warning: networkpolicy.networking.k8s.io/nobody selects no pod in namespace default" in first.stderr
    assert "web-from-client selects no pod" not in first.stderr
    assert "2 pods created" in first.stderr
    assert f"{app / '0-sa.yaml'}:" in first.stderr and "ServiceAccount is ignored" in first.stderr  # a warning

    pods = lab("--lab", NAME, "get", "pods").stdout
    assert sum(line.startswith("web-") for line in pods.splitlines()) == 2
    svc = json.loads(lab("--lab", NAME, "get", "svc", "-o", "json").stdout)
    ip = next(s["spec"]["clusterIP"] for s in svc["items"] if s["metadata"]["name"] == "web")
    reply = lab("--lab", NAME, "exec", "client", "--", "curl", "-s", "-m", "3", f"http://{ip}/hostname")
    assert reply.stdout.startswith("web-")  # the policy lets the client in

    again = lab("-l", NAME, "apply", "-f", str(app))
    assert again.stdout.splitlines() == ["serviceaccount/web unchanged", "deployment.apps/web unchanged", "service/web unchanged",
                                         "networkpolicy.networking.k8s.io/web-from-client unchanged",
                                         "networkpolicy.networking.k8s.io/nobody unchanged"]
    assert "0 pods created, 0 pods deleted" in again.stderr

    scaled = {**DEPLOY, "spec": {**DEPLOY["spec"], "replicas": 3}}
    stdin = subprocess.run([sys.executable, "-m", "lab", "apply", "-f", "-", "--lab", NAME], input=yaml.safe_dump(scaled),
                           capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert stdin.returncode == 0, stdin.stderr
    assert stdin.stdout.splitlines() == ["deployment.apps/web configured"] and "1 pods created" in stdin.stderr

    gone = lab("delete", "-f", str(app), "--lab", NAME)
    assert gone.stdout.splitlines() == ["serviceaccount/web deleted", "deployment.apps/web deleted", "service/web deleted",
                                        "networkpolicy.networking.k8s.io/web-from-client deleted",
                                        "networkpolicy.networking.k8s.io/nobody deleted"]
    assert "3 pods deleted" in gone.stderr
    pods = lab("--lab", NAME, "get", "pods").stdout
    assert not [line for line in pods.splitlines() if line.startswith("web-")] and "client" in pods

    missing = lab("delete", "-f", str(app / "2-svc.yml"), "--lab", NAME, check=False)
    assert missing.returncode == 1 and "service/web not found in lab kubectl1" in missing.stderr
    assert str(app / "2-svc.yml") in missing.stderr
    assert lab("delete", "-f", str(app / "2-svc.yml"), "--ignore-not-found", "--lab", NAME).returncode == 0
