"""`lab scenario run` end to end on a real two-node lab: exec with a regex, probes and invariants,
DNS, a node stopped and started, a policy applied and deleted, steps that must fail, a fault and
its clear on the same lab (--shared), JUnit and JSON written, and nothing left behind. An invalid
file exits 2 before anything is built."""
from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.controlplane.naming import switch_name
from tests.integration.conftest import lab, lab_leftovers, needs_root

pytestmark = [needs_root, pytest.mark.root]

DATA = Path(__file__).resolve().parents[1] / "data" / "scenarios"
LAB = "scnit"


def test_invalid_scenario_exits_2_and_builds_nothing():
    proc = lab("scenario", "run", str(DATA / "bad" / "many_errors.yaml"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "many_errors.yaml:10" in proc.stderr and "many_errors.yaml:12" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert LAB not in lab("list").stdout + lab("list").stderr and not Path(f"/run/k8s-netlab/{LAB}").exists()


def test_scenarios_run_on_a_real_lab(tmp_path: Path):
    files = [str(DATA / "smoke.yaml")]
    if importlib.util.find_spec("lab.runtime.faults"):
        files.append(str(DATA / "smoke-fault.yaml"))
    junit, report = tmp_path / "junit.xml", tmp_path / "report.json"
    proc = lab("scenario", "run", *files, "--shared", "--junit", str(junit), "--json", str(report),
               check=False, timeout=170)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "✓ 2 the client's eth0 has its pod IP" in proc.stdout
    assert "✓ 7 lab check sees it too" in proc.stdout
    assert "PASSED smoke: 13 passed, 0 failed, 0 skipped" in proc.stdout
    doc = json.loads(report.read_text())
    steps = doc["scenarios"][0]["steps"]
    assert doc["passed"] and steps[6]["expect_fail"] and steps[6]["detail"].startswith("failed as expected: pod-to-pod")
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["smoke", "smoke-fault"][:len(files)]
    assert suites[0].get("tests") == "13" and suites[0].get("failures") == "0"
    assert not lab_leftovers(LAB, switch_name(LAB))


def test_a_failing_step_exits_1_and_skips_the_rest(tmp_path: Path):
    path = tmp_path / "fails.yaml"
    path.write_text(f"name: fails\ntopology: {DATA / 'topology.yaml'}\nsteps:\n"
                    "  - exec: {pod: client, command: 'sh -c \"echo hello; exit 3\"', stdout: {regex: '^bye'}}\n"
                    "  - check: all\n")
    junit = tmp_path / "junit.xml"
    proc = lab("scenario", "run", str(path), "--junit", str(junit), check=False, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "✗ 1 exec pod/client: " in proc.stdout and "exit 3, expected 0" in proc.stdout
    assert "stdout does not match /^bye/: 'hello'" in proc.stdout and "- 2 check all (skipped)" in proc.stdout
    cases = ET.parse(junit).getroot().find("testsuite").findall("testcase")
    assert cases[0].find("failure") is not None and cases[1].find("skipped") is not None
    assert not lab_leftovers(LAB, switch_name(LAB))
