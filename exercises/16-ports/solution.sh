#!/bin/bash
# Reference solution for exercise 16: web-b as a pod with its own IP, port 80, no hostPort.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The Docker way is refused: worker1 has one port 8080, and web-a holds it.
if lab --lab "$LAB" apply -f "$here/web-b.yaml"; then
  echo "web-b.yaml was accepted: expected a hostPort clash" >&2; exit 1
fi
sed '/hostPort/s/, hostPort: 8080//' "$here/web-b.yaml" | lab --lab "$LAB" apply -f -
for i in $(seq 40); do
  lab --lab "$LAB" exec client -- curl -s -m 1 http://10.96.0.82/hostname | grep -q web-b && break
  sleep 0.25
done
n=$(lab --lab "$LAB" exec node/worker1 -- ss -Hltn 'sport = :80' | wc -l)
lab --lab "$LAB" exercise answer listeners "$n"
