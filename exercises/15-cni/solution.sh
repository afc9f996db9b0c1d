#!/bin/bash
# Reference solution for exercise 15. Your file, cni/student-cni, is left alone: the launcher the
# topology names (cni/my-cni) is switched to cni/reference-cni for this lab only (a flag in the
# lab's run directory, gone with the lab), and the pods are made again so that it wires them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
touch "/run/k8s-netlab/$LAB/use-reference-cni"
lab --lab "$LAB" delete -f "$here/workload/pods.yaml"
lab --lab "$LAB" apply -f "$here/workload/pods.yaml"
