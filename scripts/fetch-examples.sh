#!/usr/bin/env bash
# Fetch the upstream manifests of topologies/examples/ (not kept in this repository: they are the
# projects' own files, used unchanged). Needs internet access; idempotent.
set -euo pipefail
cd "$(dirname "$0")/../topologies/examples"
fetch() {  # fetch DIR URL: into DIR/manifests/, named as upstream names it
    mkdir -p "$1/manifests"
    curl -fsSL --retry 2 -o "$1/manifests/$(basename "$2")" "$2"
    echo "fetched $1/manifests/$(basename "$2")"
}
fetch guestbook https://raw.githubusercontent.com/kubernetes/examples/master/guestbook/all-in-one/guestbook-all-in-one.yaml
fetch bookinfo https://raw.githubusercontent.com/istio/istio/master/samples/bookinfo/platform/kube/bookinfo.yaml
fetch online-boutique https://raw.githubusercontent.com/GoogleCloudPlatform/microservices-demo/main/release/kubernetes-manifests.yaml
