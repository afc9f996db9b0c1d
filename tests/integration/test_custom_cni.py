"""A CNI plugin of one's own (cluster.cni: ./path): the shipped cni-from-scratch wires a real lab
that passes every check; a plugin that misbehaves stops `lab up` with what it said, and the lab is
removed whole."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.controlplane.naming import switch_name
from tests.integration.conftest import ROOT, lab, lab_leftovers, needs_root

pytestmark = [needs_root, pytest.mark.root]


def test_cni_from_scratch_passes_every_check():
    done = lab("run", str(ROOT / "examples" / "cni" / "topology.yaml"), timeout=180)
    assert "PASSED" in done.stdout and "pod-to-pod" in done.stdout
    assert lab_leftovers("scratch", switch_name("scratch")) == []


@pytest.mark.parametrize("body, said", [
    ('echo not json', "printed no JSON result (the spec wants one on stdout): 'not json'"),
    ('echo \'{"cniVersion": "1.0.0", "code": 11, "msg": "no more addresses"}\'; exit 1', "failed: no more addresses"),
], ids=["no-json", "refuses"])
def test_a_misbehaving_plugin_stops_lab_up_with_what_it_said(tmp_path: Path, body: str, said: str):
    plugin = tmp_path / "bad-cni"
    plugin.write_text(f"#!/bin/sh\ncat >/dev/null\n{body}\n")
    plugin.chmod(0o755)
    topology = tmp_path / "bad.yaml"
    topology.write_text("name: badcni\ncluster: {network: host-gw, cni: ./bad-cni}\nnodes: [{name: a}, {name: b}]\n"
                        "manifests:\n  - {apiVersion: v1, kind: Pod, metadata: {name: p}, "
                        "spec: {containers: [{name: c, image: netexec, ports: [{containerPort: 80}]}]}}\n")
    done = lab("up", str(topology), check=False)
    assert done.returncode == 1 and said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "everything it had built was removed" in done.stderr
    assert lab_leftovers("badcni", switch_name("badcni")) == []
