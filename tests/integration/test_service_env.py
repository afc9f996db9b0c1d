"""What a container sees of itself in a real lab: the kubelet's Service environment variables (in a
container started with them, and in `lab exec` with the container's environment), and its pod's
name as hostname (each pod has its own UTS namespace; a node's is the node's name)."""
from __future__ import annotations

import json
import subprocess
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
          command: [sh, -c, 'echo "started with $BACKEND_SERVICE_HOST $BACKEND_PORT as $(hostname)"; exec sleep infinity']
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
        assert f"started with {ip} tcp://{ip}:80 as client" in log.read_text()
        out = lab("exec", "unlinked", "--lab", "svcenv", "--", "sh", "-c", "echo x${BACKEND_SERVICE_HOST}x").stdout
        assert out.strip() == "xx"
        assert lab("exec", "unlinked", "--lab", "svcenv", "--", "hostname").stdout.strip() == "unlinked"
        assert lab("exec", "node/n2", "--lab", "svcenv", "--", "uname", "-n").stdout.strip() == "n2"
        pids = json.loads(Path("/run/k8s-netlab/svcenv/record.json").read_text())["pids"]
        netexec = next(pid for key, pid in pids.items() if key.startswith("default/backend-"))
        seen = subprocess.run(["nsenter", "-t", str(netexec), "--uts", "hostname"], capture_output=True, text=True)
        assert seen.stdout.strip().startswith("backend-")
    finally:
        lab("down", "svcenv", check=False)
    assert "/run/k8s-netlab/svcenv/" not in Path("/proc/self/mountinfo").read_text()  # the UTS bind mounts went
