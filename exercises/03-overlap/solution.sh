#!/bin/bash
# Reference fix for exercise 03. The real fix is a Service range that does not overlap the underlay
# (a new cluster); on this one: (1) move the cache Service off the underlay's addresses, (2) make
# ip-masq-agent NAT pod traffic to the underlay, whose addresses the Service range swallowed.
set -euo pipefail
lab --lab "$LAB" delete -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: cache}
YAML
lab --lab "$LAB" apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: cache}
spec: {clusterIP: 172.18.100.5, selector: {app: cache}, ports: [{port: 8080, targetPort: 8080}]}
YAML
for n in control-plane worker1 worker2; do
  lab --lab "$LAB" exec node/$n -- iptables -t nat -I IP-MASQ-AGENT 1 -d 172.18.0.0/24 \
      -m comment --comment "the underlay is outside the cluster, whatever the Service range says" -j MASQUERADE
done
