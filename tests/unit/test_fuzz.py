"""Hostile and broken input never crashes or hangs an entry point (tests/fuzzing.py): a
fixed-seed run here, `make fuzz` for the long one; every crash a fuzz run found is replayed."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests import fuzzing

CASES = 2000  # in all, shared among the targets


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return fuzzing.Workspace(tmp_path_factory.mktemp("wdfuzz"))


def _check(workspace, target: str, text: str) -> None:
    with fuzzing.deadline(fuzzing.HANG * 10):
        outcome = workspace.run(target, text)
    assert not outcome.crashed, outcome.output
    assert not outcome.hung, f"{outcome.seconds:.1f}s"


@pytest.mark.parametrize("target", fuzzing.TARGETS)
def test_fuzz(workspace, target):
    @settings(max_examples=CASES // len(fuzzing.TARGETS), derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=["generate"])
    @given(fuzzing.strategy(workspace, target))
    def run(text):
        _check(workspace, target, text)

    run()


@pytest.mark.parametrize("target, path", fuzzing.regression_files(), ids=lambda v: getattr(v, "name", v))
def test_crashes_found_before_stay_fixed(workspace, target, path):
    _check(workspace, target, path.read_text(encoding="utf-8", errors="surrogatepass"))


def test_the_fuzz_sees_a_crash(workspace, monkeypatch):
    """The harness itself: an exception in the loader is a crash (exit 3), not a diagnostic."""
    from lab.topology import lenient

    monkeypatch.setattr(lenient, "relax", lambda manifests: 1 / 0)
    outcome = workspace.run("topology", "name: a\nnodes: [{name: n}]\nmanifests: []\n")
    assert outcome.crashed and outcome.code == 3 and "ZeroDivisionError" in outcome.output


def test_validate_reports_every_file_and_exits_with_the_worst(tmp_path, capsys, monkeypatch):
    from lab import cli
    from lab.topology import load

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: a\x00b\n")
    crash = tmp_path / "crash.yaml"
    crash.write_text("name: crash\n")
    good = str(fuzzing.ROOT / "topologies" / "vxlan.yaml")
    assert cli.main(["validate", str(bad), good]) == 1
    real = load.load_topology
    monkeypatch.setattr(load, "load_topology", lambda p: 1 / 0 if str(p) == str(crash) else real(p))
    assert cli.main(["validate", str(crash), str(bad), good]) == 3
    err = capsys.readouterr()
    assert f"internal error in {crash}: ZeroDivisionError" in err.err and "please report" in err.err
    assert f"{bad}:1: invalid YAML: a NUL byte" in err.err and "Traceback" not in err.err
    assert err.out.count("vxlan.yaml: valid") == 2


@pytest.mark.parametrize("args, message", [
    (["check", "--timeout", "nan"], "--timeout nan"),
    (["check", "--timeout", "-1"], "--timeout -1.0"),
    (["check", "--seed", "-5"], "--seed -5"),
    (["run", "missing.yaml", "--timeout", "0"], "--timeout 0.0"),
])
def test_check_and_run_arguments_are_refused_before_any_lab(args, message, capsys):
    from lab import cli

    assert cli.main(args) == 1
    assert message in capsys.readouterr().err
