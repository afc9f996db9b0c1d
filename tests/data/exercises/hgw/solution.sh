#!/usr/bin/env bash
# The reference fix: node1's route to node2's podCIDR, through node2's underlay address.
set -euo pipefail
lab exec -l "$LAB" node/node1 -- ip route replace 10.244.1.0/24 via 172.18.0.3
lab exercise answer which eth0
