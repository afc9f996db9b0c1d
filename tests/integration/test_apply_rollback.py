"""`lab apply` rolls back like `lab up`: a change that fails half-way leaves the lab as it was
(same pods, same addresses, rules that pass every check), never half-applied."""
from __future__ import annotations

import json
import subprocess

import pytest

from lab.errors import LabError
from tests.integration.conftest import lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

TOPOLOGY = """
name: rollback
cluster: {network: vxlan, dns: {enabled: true}}
nodes: [{name: n1}, {name: n2}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: REPLICAS
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]}
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"""


def pods() -> dict[str, str]:
    items = json.loads(lab("get", "pods", "-o", "json", "--lab", "rollback").stdout)["items"]
    return {p["metadata"]["name"]: p["status"]["podIP"] for p in items}


def test_a_failed_apply_leaves_the_lab_as_it_was(tmp_path, clean_after, monkeypatch):
    small, big = tmp_path / "small.yaml", tmp_path / "big.yaml"
    small.write_text(TOPOLOGY.replace("REPLICAS", "2"))
    big.write_text(TOPOLOGY.replace("REPLICAS", "4"))
    clean_after.append("rollback")
    lab("up", str(small))
    before = pods()

    from lab.policy import sync as netpol
    from lab.runtime import apply as applying

    real, calls = netpol.sync, []

    def fails_once(rec, state):
        calls.append(state)
        if len(calls) == 1:
            raise LabError("injected: the policy restore was refused")
        return real(rec, state)

    monkeypatch.setattr(netpol, "sync", fails_once)
    with pytest.raises(LabError, match="injected.*\n.*rolled back to what it was"):
        applying.apply(str(big))
    assert pods() == before
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert sum(line.startswith("rollback-default-web-") for line in netns.splitlines()) == 2
    assert "PASSED" in lab("check", "--lab", "rollback").stdout
    monkeypatch.setattr(netpol, "sync", real)
    lab("apply", str(big), "--lab", "rollback")  # and the same change goes through afterwards
    assert len(pods()) == 4 and "PASSED" in lab("check", "--lab", "rollback").stdout
