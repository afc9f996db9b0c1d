"""The corpus of famous bugs (scenarios/): every scenario reproduces its bug on the real kernel,
asserts the broken behaviour, applies the fix and asserts it is gone. They run as CI runs them:
one `lab scenario run --shared` call, the ones naming one topology on one lab."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.controlplane.naming import switch_name
from tests.integration.conftest import ROOT, lab, lab_leftovers, needs_root

pytestmark = [needs_root, pytest.mark.root]

CORPUS = sorted((ROOT / "scenarios").glob("*.yaml"))


def test_every_famous_bug_reproduces_and_its_fix_holds(tmp_path: Path):
    junit = tmp_path / "corpus.xml"
    done = lab("scenario", "run", "--shared", *map(str, CORPUS), "--junit", str(junit), check=False, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert sorted(s.get("name") for s in suites) == sorted(p.stem for p in CORPUS)
    for suite in suites:
        cases = suite.findall("testcase")
        assert cases and not any(c.find("failure") is not None or c.find("skipped") is not None for c in cases), \
            suite.get("name")
    assert f"{len(CORPUS)} of {len(CORPUS)} scenarios passed" in done.stdout
    for name in ("bugs", "bgpbug"):
        assert lab_leftovers(name, switch_name(name)) == [], name
