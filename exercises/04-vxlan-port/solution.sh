#!/bin/bash
# Reference fix for exercise 04: remove the rule that drops VXLAN (UDP 8472) on worker2, keep the rest
# of the host firewall.
set -euo pipefail
handle=$(lab --lab "$LAB" exec node/worker2 -- nft -a list chain inet host-firewall input \
         | sed -n 's/.*udp dport 8472 .*drop.*# handle \([0-9]*\)/\1/p')
lab --lab "$LAB" exec node/worker2 -- nft delete rule inet host-firewall input handle "$handle"
lab --lab "$LAB" exercise answer where worker2
