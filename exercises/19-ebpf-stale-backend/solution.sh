#!/bin/bash
# Reference fix for exercise 19: read the stale backend off `lab describe svc web` (each node's map
# entries beside the EndpointSlice), then make the agent write the Service's entries again: a third
# web pod (3 backends, slot 2 written with it), then back to two (count 2, slot 2 deleted).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
stale=$(lab --lab "$LAB" describe svc web | sed -n 's/.*stale: \([0-9.:]*\).*/\1/p' | head -1)
echo "stale backend on worker1: $stale"
lab --lab "$LAB" exercise answer which "$stale"
until_map() {  # until worker1's ClusterIP entry counts $1 backends, as the model does
  for i in $(seq 60); do
    lab --lab "$LAB" describe svc web | grep -Eq "worker1 +10\.96\.0\.90:80 +lb_services +0x[0-9a-f]+ +$1 +$1 +ok" && return 0
    sleep 0.25
  done
  echo "worker1's map never reached $1 backends" >&2; return 1
}
lab --lab "$LAB" apply -f "$here/web-3.yaml"
until_map 3
lab --lab "$LAB" delete -f "$here/web-3.yaml"
until_map 2
