#!/bin/bash
# Reference fix for exercise 06: worker1 forwards packets again.
set -euo pipefail
lab --lab "$LAB" exec node/worker1 -- sysctl -w net.ipv4.ip_forward=1
lab --lab "$LAB" exercise answer which worker1
