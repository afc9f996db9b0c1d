#!/bin/bash
# Reference answers for exercise 02, read from the live rules (what a student does by reading them).
set -euo pipefail
nat=$(lab --lab "$LAB" exec node/worker1 -- iptables-save -t nat)
chain=$(grep -- '-A KUBE-SERVICES -d 10.96.0.100/32' <<<"$nat" | grep -o 'KUBE-SVC-[A-Z0-9]*' | head -1)
sep=$(grep -- "-A $chain " <<<"$nat" | grep -o 'KUBE-SEP-[A-Z0-9]*' | head -1)
ip=$(grep -- "-A $sep " <<<"$nat" | sed -n 's/.*--to-destination \([0-9.]*\):.*/\1/p' | head -1)
echo "chain=$chain endpoint chain=$sep backend=$ip"
lab --lab "$LAB" exercise answer chain "$chain"
lab --lab "$LAB" exercise answer backend "$ip"
