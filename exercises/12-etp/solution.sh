#!/bin/bash
# Reference solution for exercise 12: externalTrafficPolicy Local on the shop Service.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sed 's/^  type: NodePort$/  type: NodePort\n  externalTrafficPolicy: Local/' "$here/shop-service.yaml" | lab --lab "$LAB" apply -f -
lab --lab "$LAB" exercise answer dark control-plane
