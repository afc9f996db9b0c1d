"""A LoadBalancer Service on a lab without a load-balancer implementation (no cluster.loadBalancer): EXTERNAL-IP <pending>,
and its allocated NodePort answers a plain host on every node, in both kube-proxy modes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.integration.conftest import lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

TOPOLOGY = """
name: lbnp
cluster: {{podCIDR: 10.244.0.0/16, serviceCIDR: 10.96.0.0/12, network: vxlan, cni: bridge, proxy: {mode}}}
underlay: {{subnet: 172.18.0.0/24}}
nodes: [{{name: cp, role: control-plane}}, {{name: w1}}, {{name: w2}}]
hosts: [{{name: outside}}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: web}}
    spec:
      replicas: 2
      selector: {{matchLabels: {{app: web}}}}
      template:
        metadata: {{labels: {{app: web}}}}
        spec: {{dnsPolicy: Default, containers: [{{name: web, image: netexec, ports: [{{containerPort: 8080}}]}}]}}
  - apiVersion: v1
    kind: Service
    metadata: {{name: web-lb}}
    spec:
      type: LoadBalancer
      loadBalancerSourceRanges: [10.0.0.0/8]
      selector: {{app: web}}
      ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_load_balancer_answers_on_its_node_port_from_a_plain_host(tmp_path: Path, mode: str):
    path = tmp_path / "lbnp.yaml"
    path.write_text(TOPOLOGY.format(mode=mode))
    up = lab("up", str(path))
    try:
        assert "no cluster.loadBalancer: this Service stays <pending>" in up.stderr + up.stdout
        assert re.search(r"web-lb\s+LoadBalancer\s+10\.\S+\s+<pending>\s+80:3\d{4}/TCP",
                         lab("get", "svc", "--lab", "lbnp").stdout)
        svc = json.loads(lab("get", "svc", "web-lb", "-o", "json", "--lab", "lbnp").stdout)
        svc = svc["items"][0] if "items" in svc else svc
        assert svc["status"] == {"loadBalancer": {}}
        node_port = svc["spec"]["ports"][0]["nodePort"]
        nodes = json.loads(lab("get", "nodes", "-o", "json", "--lab", "lbnp").stdout)["items"]
        ips = [a["address"] for n in nodes for a in n["status"]["addresses"] if a["type"] == "InternalIP"]
        assert len(ips) == 3
        for ip in ips:
            out = lab("exec", "host/outside", "--lab", "lbnp", "--", "curl", "-s", "-m", "3",
                      f"http://{ip}:{node_port}/hostname").stdout
            assert out.startswith("web-"), (ip, out)
        checked = lab("check", "--lab", "lbnp", check=False)
        assert checked.returncode == 0, checked.stdout[-3000:]
        assert re.search(r"nodeport\s+[1-9]\d*\s+0\s+ok", checked.stdout)  # the LoadBalancer is probed as a NodePort
    finally:
        lab("down", "lbnp", check=False)
