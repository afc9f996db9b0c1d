"""Golden files: compare rendered text with tests/golden/NAME, or write it with UPDATE_GOLDEN=1
(then review `git diff tests/golden` by eye before keeping it)."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState
from lab.topology.model import Topology

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} missing; create it with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden (UPDATE_GOLDEN=1 to accept)"


def shipped_state(topology: str, **cluster) -> ClusterState:
    """A shipped topology, planned, with some cluster fields overridden."""
    doc = yaml.safe_load((ROOT / "topologies" / f"{topology}.yaml").read_text())
    doc["cluster"].update(cluster)
    return plan(Topology.model_validate(doc))
