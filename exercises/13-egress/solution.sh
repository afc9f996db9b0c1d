#!/bin/bash
# Reference fix for exercise 13: the MASQUERADE rule back at the end of worker1's IP-MASQ-AGENT chain.
set -euo pipefail
lab --lab "$LAB" exec node/worker1 -- iptables -t nat -A IP-MASQ-AGENT \
    -m comment --comment "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)" -j MASQUERADE
ip=$(lab --lab "$LAB" exec client -- ip -4 -o addr show dev eth0 | sed -n 's/.*inet \([0-9.]*\)\/.*/\1/p')
lab --lab "$LAB" exercise answer seen-as "$ip"
