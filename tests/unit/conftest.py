"""Fixtures of the orchestration tests: a recording Host instead of the machine, and a run
directory of the test's own for the labs' records."""
from __future__ import annotations

import pytest

from lab import host
from lab.host import record as records
from lab.host.fake import FakeHost


@pytest.fixture
def run_root(tmp_path, monkeypatch):
    """Lab records under the test's tmp_path, not /run/k8s-netlab."""
    monkeypatch.setattr(records, "RUN_ROOT", tmp_path / "run")


@pytest.fixture
def fake():
    """Every effect recorded by a FakeHost instead of reaching the machine."""
    with host.using(FakeHost()) as f:
        yield f
