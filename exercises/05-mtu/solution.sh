#!/bin/bash
# Reference fix for exercise 05: give worker2's underlay NIC its 1500 bytes back.
set -euo pipefail
lab --lab "$LAB" exec node/worker2 -- ip link set dev eth0 mtu 1500
lab --lab "$LAB" exercise answer overhead 50
