"""The harness never lies, on real labs: a Service whose pods never become ready is a failure that
says why, and a big lab is checked on a covering sample that is the same for the same seed."""
from __future__ import annotations

import json

import pytest

from tests.integration.conftest import lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

UNREADY = """
name: unready
cluster: {network: vxlan}
nodes: [{name: n1}, {name: n2}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
            - name: web
              image: netexec
              ports: [{containerPort: 8080}]
              readinessProbe: {httpGet: {path: /not-found-by-design, port: 8080}, periodSeconds: 1}
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"""


def test_a_service_without_ready_endpoints_fails_with_the_probe_result(tmp_path, clean_after):
    topo = tmp_path / "unready.yaml"
    topo.write_text(UNREADY)
    clean_after.append("unready")
    lab("up", str(topo))
    out = tmp_path / "out.json"
    proc = lab("check", "--lab", "unready", "--json", str(out), check=False)
    assert proc.returncode == 1, proc.stdout
    rows = [r for r in json.loads(out.read_text())["results"] if r["subject"].startswith("default/web: 0 of 2")]
    assert len(rows) == 1 and not rows[0]["passed"]
    assert "GET /not-found-by-design (port 8080) -> 404" in rows[0]["observed"]
    # and the topology can say it is expected
    topo.write_text(UNREADY + "checks:\n  - {from: deploy/web, to: svc/web:80, expect: refused}\n")
    lab("apply", str(topo), "--lab", "unready")
    proc = lab("check", "--lab", "unready", "--json", str(out), check=False)
    rows = [r for r in json.loads(out.read_text())["results"] if r["subject"].startswith("default/web: 0 of 2")]
    assert [r["passed"] for r in rows] == [True], proc.stdout


SAMPLED = """
name: sampled
cluster: {network: vxlan}
nodes: [{name: n1}, {name: n2}, {name: n3}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 120
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]}
"""


def pairs(path) -> list[tuple[str, str]]:
    doc = json.loads(path.read_text())
    return sorted((r["source"], r["target"]) for r in doc["results"] if r["check"] == "pod-to-pod")


def test_a_big_lab_is_checked_on_a_covering_sample_repeatable_by_seed(tmp_path, clean_after):
    topo = tmp_path / "sampled.yaml"
    topo.write_text(SAMPLED)
    clean_after.append("sampled")
    lab("up", str(topo))
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    first = lab("check", "--lab", "sampled", "--seed", "11", "--json", str(a))
    assert "covering sample" in first.stdout and "seed 11" in first.stdout and "PASSED" in first.stdout
    lab("check", "--lab", "sampled", "--seed", "11", "--json", str(b))
    lab("check", "--lab", "sampled", "--seed", "12", "--json", str(c))
    assert pairs(a) == pairs(b) != pairs(c)
    netns = {s for s, _ in pairs(a)}
    targets = {t for _, t in pairs(a)}
    # every pod sent and received; the kube-dns pod (cluster DNS is on by default) sends, serves no probe port
    assert len(netns) == 121 and len(targets) == 120
    assert json.loads(a.read_text())["scope"].startswith("a covering sample")
