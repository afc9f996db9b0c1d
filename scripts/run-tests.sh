#!/usr/bin/env bash
# The whole suite: unit tests (no root) and integration tests (root, real namespaces).
# Before and after, the machine must hold no lab: a leak fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest -ra "$@"
