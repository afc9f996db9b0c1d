#!/bin/bash
# Reference fix for exercise 14: worker2's neighbor 172.18.0.3 (worker1) back in AS 64512.
set -euo pipefail
lab --lab "$LAB" exec node/worker2 -- vtysh -c 'show bgp summary'
wrong=$(lab --lab "$LAB" exec node/worker2 -- vtysh -c 'show running-config' | sed -n 's/^ neighbor 172\.18\.0\.3 remote-as \([0-9]*\)$/\1/p')
lab --lab "$LAB" exercise answer wrong-as "$wrong"
lab --lab "$LAB" exec node/worker2 -- vtysh -c 'configure terminal' -c 'router bgp 64512' -c 'neighbor 172.18.0.3 remote-as 64512'
# A session refused for a while is retried after a growing idle hold time: reset it on both ends
# so the corrected one opens now, not at the next retry.
lab --lab "$LAB" exec node/worker1 -- vtysh -c 'clear bgp 172.18.0.4'
lab --lab "$LAB" exec node/worker2 -- vtysh -c 'clear bgp 172.18.0.3'
for i in $(seq 100); do
  lab --lab "$LAB" exec node/worker1 -- ip route show 10.244.2.0/24 | grep -q 'proto bgp' && exit 0
  sleep 0.2
done
echo "worker1 did not learn 10.244.2.0/24" >&2; exit 1
