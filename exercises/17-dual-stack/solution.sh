#!/bin/bash
# Reference solution for exercise 17: the api Service asks for both families (PreferDualStack); its
# IPv4 ClusterIP stays clusterIPs[0], an IPv6 one is allocated beside it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sed 's/^  clusterIP: 10.96.0.80$/  clusterIP: 10.96.0.80\n  ipFamilyPolicy: PreferDualStack/' "$here/api-service.yaml" \
  | lab --lab "$LAB" apply -f -
for i in $(seq 40); do
  lab --lab "$LAB" exec reporter -- curl -6 -s -m 1 http://api/hostname | grep -q '^api-' && break
  sleep 0.25
done
lab --lab "$LAB" exercise answer record AAAA
