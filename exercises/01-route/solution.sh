#!/bin/bash
# Reference fix for exercise 01: put back the host-gw routes to worker2's podCIDR.
set -euo pipefail
lab --lab "$LAB" exec node/worker1 -- ip route replace 10.244.2.0/24 via 172.18.0.4 dev eth0
lab --lab "$LAB" exec node/control-plane -- ip route replace 10.244.2.0/24 via 172.18.0.4 dev eth0
