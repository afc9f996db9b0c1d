"""`lab check` runs dozens of times an hour: its imports stay off the topology model (pydantic,
~0.3 s of start-up), which checking a running lab never needs (lab.topology.constants says why)."""
from __future__ import annotations

import subprocess
import sys

from lab.controlplane import addons
from lab.probe import services

CHECK_PATH = "import lab.cli, lab.host.record; from lab.probe import consistent, coverage, invariants, report"


def test_the_check_path_does_not_load_the_topology_model():
    code = f"import sys; {CHECK_PATH}; print(sorted(m for m in sys.modules if m in ('lab.topology.model', 'pydantic')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_probes_leave_to_their_own_rows_exactly_the_add_ons_images():
    assert services.CHECKED_ELSEWHERE == {a.image for a in addons.ADDONS}
