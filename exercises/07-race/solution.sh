#!/bin/bash
# Reference fix for exercise 07: the flannel route to worker2's podCIDR on the control plane (the
# neighbour and FDB entries for worker2's VTEP are still there; only the route went).
set -euo pipefail
lab --lab "$LAB" exec node/control-plane -- ip route replace 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink
far=$(lab --lab "$LAB" exec far -- ip -4 -o addr show dev eth0 | sed -n 's/.*inet \([0-9.]*\)\/.*/\1/p')
lab --lab "$LAB" exercise answer endpoint "$far"
