"""Real manifests on a real lab: images that are not built in run as stand-ins that serve what the
pod would serve, their apps' readiness paths pass (grpc: the stand-in serves gRPC's health service,
and a grpc_health_probe exec is played as the kubelet's gRPC probe), a gRPC probe that gets
NOT_SERVING keeps its pod unready, and the ignored
fields are announced by `lab up` without blocking it; --strict refuses them."""
from __future__ import annotations

import json

import pytest

from tests.integration.conftest import lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

REAL = """
name: realmf
cluster: {dns: {enabled: true}}
nodes: [{name: n1}, {name: n2}]
manifests:
  - {apiVersion: v1, kind: ServiceAccount, metadata: {name: api}}
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: api, annotations: {team: x}}
    spec:
      replicas: 2
      strategy: {type: RollingUpdate}
      selector: {matchLabels: {app: api}}
      template:
        metadata: {labels: {app: api}}
        spec:
          serviceAccountName: api
          containers:
            - name: api
              image: example.com/api:1.0
              imagePullPolicy: Always
              resources: {limits: {memory: 64Mi}}
              ports: [{name: http, containerPort: 8080}]
              readinessProbe: {httpGet: {path: /api/v1/ready, port: http}, periodSeconds: 1}
            - name: grpc
              image: example.com/grpc:1.0
              ports: [{containerPort: 50051}]
              readinessProbe: {grpc: {port: 50051}, periodSeconds: 1}
  - apiVersion: v1
    kind: Service
    metadata: {name: api}
    spec: {selector: {app: api}, ports: [{name: http, port: 80, targetPort: http}, {name: admin, port: 9000}]}
  - {apiVersion: v1, kind: Pod, metadata: {name: client}, spec: {containers: [{name: c, image: curlimages/curl}]}}
  - apiVersion: v1
    kind: Pod
    metadata: {name: legacy}
    spec:
      containers:
        - name: s
          image: gcr.io/example/cart:v0.2.0
          ports: [{containerPort: 7070}]
          readinessProbe: {exec: {command: [/bin/grpc_health_probe, "-addr=:7070", "-rpc-timeout=5s"]}, periodSeconds: 1}
  - apiVersion: v1
    kind: Pod
    metadata: {name: sick}
    spec:
      containers:
        - name: s
          image: gcr.io/example/db:v1
          ports: [{containerPort: 5432}]
          readinessProbe: {grpc: {port: 5432, service: not-found-db}, periodSeconds: 1}
checks:
  - {from: pod/client, to: svc/api:80, expect: allow}
  - {from: pod/client, to: svc/api:9000, expect: allow}
"""


def test_real_images_and_fields_run_as_stand_ins(tmp_path, clean_after):
    topo = tmp_path / "real.yaml"
    topo.write_text(REAL)
    strict = lab("up", "--strict", str(topo), check=False)
    assert strict.returncode == 1 and "errors in topology" in strict.stderr and "Traceback" not in strict.stderr
    clean_after.append("realmf")
    up = lab("up", str(topo))
    assert up.stderr.count("kind ServiceAccount is ignored") == 1
    assert "image 'example.com/api:1.0' is not built in: it runs as netexec serving 8080/TCP, 9000/TCP" in up.stderr
    assert "image 'curlimages/curl' is not built in and has no port to serve" in up.stderr
    out = tmp_path / "out.json"
    proc = lab("check", "--lab", "realmf", "--json", str(out), check=False)
    assert proc.returncode == 0, proc.stdout
    pods = json.loads(lab("get", "pods", "--lab", "realmf", "-o", "json").stdout)["items"]
    api = [p for p in pods if p["metadata"]["name"].startswith("api-")]
    assert len(api) == 2
    assert all(c["ready"] for p in api for c in p["status"]["containerStatuses"]), api
    ready = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["ready"] for p in pods}
    assert ready["legacy"] is True and ready["sick"] is False, ready
    sick = lab("describe", "pod", "sick", "--lab", "realmf").stdout
    assert "Readiness:" in sick and "grpc <pod>:5432 not-found-db" in sick, sick
    assert "gRPC probe failed: grpc Health/Check not-found-db (port 5432) -> NOT_SERVING" in sick, sick
