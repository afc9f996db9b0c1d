#!/bin/bash
# Reference solution for exercise 11: two ingress policies (db <- backend:5432, backend <- frontend).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab --lab "$LAB" apply -f "$here/.solution/policies.yaml"
