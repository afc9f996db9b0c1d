#!/bin/bash
# Reference solution for exercise 10: the client asks a dotless name as written first (ndots:0);
# the cluster's search list stays, so short Service names still resolve (as a second try).
set -euo pipefail
lab --lab "$LAB" exercise answer before 8
lab --lab "$LAB" apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: worker1
  dnsConfig:
    options: [{name: ndots, value: "0"}]
  containers: [{name: app, image: netexec, ports: [{containerPort: 8080}]}]
YAML
