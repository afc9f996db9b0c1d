#!/bin/bash
# Reference solution for exercise 09.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab --lab "$LAB" apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
YAML
# The api team's file as written: the cluster must refuse it (30080 is web's now).
if lab --lab "$LAB" apply -f "$here/api-service.yaml"; then
  echo "api-service.yaml was accepted: expected a nodePort clash" >&2; exit 1
fi
lab --lab "$LAB" exercise answer holder web
sed 's/nodePort: 30080/nodePort: 30082/' "$here/api-service.yaml" | lab --lab "$LAB" apply -f -
