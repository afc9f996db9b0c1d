#!/usr/bin/env bash
# The whole suite: unit tests (no root) and integration tests (root, real namespaces).
# A leak fails the run: scripts/leakcheck.py notes what exists before, and after the suite exits
# non-zero if a namespace, root link, /etc/netns entry, run directory or process of a lab the suite
# created is left (labs present before, or built meanwhile by someone else, are not the suite's).
set -euo pipefail
cd "$(dirname "$0")/.."
# The loop over every exercise takes minutes: `make test-exercises` (and CI) run it, with -m exercises.
if [ $# -gt 0 ]; then
  exec .venv/bin/python scripts/leakcheck.py -- .venv/bin/pytest -ra -n 2 -m "not exercises" "$@"
fi
# Unit tests are pure and CPU-bound: one pytest-xdist worker per core (1.6x faster on two). Integration
# tests mostly wait on the kernel and their labs' processes: two groups at a time, where a group is
# a test file or an exercise (tests/integration/conftest.py lab_group: labs have machine-wide names).
exec .venv/bin/python scripts/leakcheck.py -- bash -c '
  status=0
  .venv/bin/pytest -ra -n auto tests/unit || status=$?
  .venv/bin/pytest -ra -n 2 -m "not exercises" tests/integration || status=$((status ? status : $?))
  exit "$status"'
