"""lab graph on a real lab: the SVG graphviz renders names the nodes and the pods' IPs, and a topology
file is drawn as planned with no lab running. Two nodes, host-gw, three pods: a few seconds."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.integration.conftest import TOPOLOGIES, lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

TOPO = """
name: graphit
cluster: {network: host-gw, dns: {enabled: false}}
nodes: [{name: n1}, {name: n2}]
hosts: [{name: outside}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 3
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]}
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"""


def test_svg_of_a_running_lab_and_mermaid_of_a_file(tmp_path, clean_after):
    topo = tmp_path / "graphit.yaml"
    topo.write_text(TOPO)
    clean_after.append("graphit")
    lab("up", str(topo))
    pods = [line.split() for line in lab("get", "pods", "-o", "wide", "--lab", "graphit").stdout.splitlines()[1:]]
    out = tmp_path / "graphit.svg"
    lab("graph", "-o", "svg", "--out", str(out), "--lab", "graphit")
    svg = ET.parse(out).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    words = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text") if t.text}
    assert {"node n1", "node n2", "svc web", "host outside"} <= words, words
    assert {row[5] for row in pods} <= words, (pods, words)           # every pod IP
    assert "endpoints: 3 ready of 3" in words

    text = lab("graph", str(TOPOLOGIES / "vxlan.yaml")).stdout      # a file, drawn as planned
    assert text.startswith("---\n") and "\nflowchart LR\n" in text and "VXLAN VNI 1, UDP 8472" in text
    lab("down", "graphit")
