#!/bin/bash
# Reference solution for exercise 18: the canary by header first, then 90/10 by weight.
set -euo pipefail
lab --lab "$LAB" apply -f - <<'YAML'
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: eg}]
  hostnames: [shop.example]
  rules:
    - matches: [{headers: [{name: x-canary, value: always}]}]
      backendRefs: [{name: shop-v2, port: 80}]
    - backendRefs:
        - {name: shop-v1, port: 80, weight: 90}
        - {name: shop-v2, port: 80, weight: 10}
YAML
for i in $(seq 40); do   # Envoy applies the new routes within moments
  lab --lab "$LAB" exec host/internet -- curl -s -m 1 -H 'Host: shop.example' -H 'x-canary: always' \
    http://172.18.0.240/hostname | grep -q shop-v2 && break
  sleep 0.25
done
