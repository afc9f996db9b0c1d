"""The kubelet's Service environment variables in a real lab: a container started with them, and
`lab exec` with the container's environment."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import lab, needs_root, wait_for

pytestmark = [needs_root, pytest.mark.root]

TOPOLOGY = """
name: svcenv
cluster: {podCIDR: 10.244.0.0/16, serviceCIDR: 10.96.0.0/12, network: vxlan, cni: bridge}
nodes: [{name: n1}, {name: n2}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: backend}
    spec:
      replicas: 1
      selector: {matchLabels: {app: backend}}
      template:
        metadata: {labels: {app: backend}}
        spec: {dnsPolicy: Default, containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]}
  - apiVersion: v1
    kind: Service
    metadata: {name: backend}
    spec: {selector: {app: backend}, ports: [{name: http, port: 80, targetPort: 8080}]}
  - apiVersion: v1
    kind: Pod
    metadata: {name: client}
    spec:
      dnsPolicy: Default
      containers:
        - name: c
          image: busybox
          command: [sh, -c, 'echo "started with $BACKEND_SERVICE_HOST $BACKEND_PORT"; exec sleep infinity']
  - apiVersion: v1
    kind: Pod
    metadata: {name: unlinked}
    spec: {dnsPolicy: Default, enableServiceLinks: false, containers: [{name: c, image: pause}]}
"""


def test_service_env_vars_are_injected(tmp_path: Path):
    path = tmp_path / "svcenv.yaml"
    path.write_text(TOPOLOGY)
    lab("up", str(path))
    try:
        svc = json.loads(lab("get", "svc", "backend", "-o", "json", "--lab", "svcenv").stdout)
        ip = (svc["items"][0] if "items" in svc else svc)["spec"]["clusterIP"]
        out = lab("exec", "client", "--lab", "svcenv", "--", "sh", "-c", "echo $BACKEND_SERVICE_HOST").stdout
        assert out.strip() == ip
        out = lab("exec", "client", "--lab", "svcenv", "--", "sh", "-c",
                  "echo $BACKEND_SERVICE_PORT_HTTP $BACKEND_PORT_80_TCP_ADDR").stdout
        assert out.split() == ["80", ip]
        log = Path("/run/k8s-netlab/svcenv/logs/default_client_c.log")
        assert wait_for(lambda: log.exists() and "started with" in log.read_text(), timeout=5)
        assert f"started with {ip} tcp://{ip}:80" in log.read_text()
        out = lab("exec", "unlinked", "--lab", "svcenv", "--", "sh", "-c", "echo x${BACKEND_SERVICE_HOST}x").stdout
        assert out.strip() == "xx"
    finally:
        lab("down", "svcenv", check=False)
