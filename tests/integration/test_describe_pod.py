"""Why a pod is not ready, on a real lab: a readinessProbe on a path netexec answers 404 keeps its pod
0/1 in `lab get pods`, and `lab describe pod` says why (the probe's 404, as kubectl's Unhealthy
event); a pod whose probe passes is 1/1 and has no Warning."""
from __future__ import annotations

import re

import pytest

from tests.integration.conftest import lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

TOPO = """
name: descpod
nodes: [{name: n1}, {name: n2}]
manifests:
  - apiVersion: v1
    kind: Pod
    metadata: {name: stuck, labels: {app: stuck}}
    spec:
      nodeName: n1
      containers:
        - name: web
          image: netexec
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /not-found-by-design, port: 8080}, periodSeconds: 1}
  - apiVersion: v1
    kind: Pod
    metadata: {name: fine, labels: {app: fine}}
    spec:
      nodeName: n2
      containers:
        - name: web
          image: example.com/web:1.0
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
"""


def test_describe_says_why_a_pod_is_not_ready(tmp_path, clean_after):
    topo = tmp_path / "descpod.yaml"
    topo.write_text(TOPO)
    clean_after.append("descpod")
    lab("up", str(topo))
    rows = {line.split()[0]: line.split()[1:3] for line in lab("get", "pods", "--lab", "descpod").stdout.splitlines()[1:]}
    assert rows == {"fine": ["1/1", "Running"], "stuck": ["0/1", "Running"]}, rows

    stuck = lab("describe", "pod", "stuck", "--lab", "descpod").stdout
    lines = stuck.splitlines()
    assert lines[0].split() == ["Name:", "stuck"] and lines[1].split() == ["Namespace:", "default"]
    assert lines[3].split() == ["Node:", "n1/172.18.0.2"]
    assert "    Ready:         False" in lines and "    State:         Running" in lines
    assert [line.split() for line in lines if line.startswith("  Ready ")] == [["Ready", "False"]]
    warning = [line.split(None, 2) for line in lines if line.strip().startswith("Warning")]
    assert [w[:2] for w in warning] == [["Warning", "Unhealthy"]], stuck
    # Age: since the failure was last seen (and, once seen again, how often over how long), then From
    assert re.fullmatch(r"\d+s( \(x\d+ over \d+s\))? +kubelet +Readiness probe failed: HTTP probe failed with "
                        r"statuscode: 404 \(GET /not-found-by-design on port 8080\)", warning[0][2]), stuck

    fine = lab("--lab", "descpod", "describe", "po", "fine").stdout
    assert "Warning" not in fine and fine.rstrip().endswith("Events:  <none>"), fine
    assert "    Image:         example.com/web:1.0 (not built in: the lab runs netexec serving 8080/TCP)" in fine
    assert "    Ready:         True" in fine.splitlines()

    missing = lab("describe", "pod", "nope", "--lab", "descpod", check=False)
    assert missing.returncode == 1 and "'nope' not found in lab descpod" in missing.stderr
