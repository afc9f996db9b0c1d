#!/bin/bash
# Reference fix for exercise 08: find the client's host-side veth, turn hairpin mode back on.
set -euo pipefail
idx=$(lab --lab "$LAB" exec client -- ip -o link show eth0 | sed -n 's/^[0-9]*: eth0@if\([0-9]*\):.*/\1/p')
port=$(lab --lab "$LAB" exec node/worker1 -- ip -o link | sed -n "s/^$idx: \([^@:]*\)[@:].*/\1/p")
echo "client's bridge port: $port"
lab --lab "$LAB" exercise answer port "$port"
lab --lab "$LAB" exec node/worker1 -- bridge link set dev "$port" hairpin on
