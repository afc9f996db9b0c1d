"""A private cluster behind a NAT gateway (topologies/nat-gateway.yaml): pod traffic to the internet
segment leaves with the gateway's public address, and nothing on the internet reaches in."""
from __future__ import annotations

import pytest

from lab.controlplane.naming import public_switch_name, switch_name
from tests.integration.conftest import ROOT, lab, lab_leftovers, needs_root

pytestmark = [needs_root, pytest.mark.root]


def test_the_internet_sees_the_gateways_public_address_and_cannot_reach_in():
    lab("up", str(ROOT / "topologies" / "nat-gateway.yaml"))
    try:
        pod = next(line.split()[0] for line in lab("get", "pods", "--lab", "natgw").stdout.splitlines()
                   if line.startswith("web-"))
        seen = lab("--lab", "natgw", "exec", pod, "--", "curl", "-s", "-m", "2", "http://203.0.113.2:8080/clientip").stdout
        assert seen.startswith("203.0.113.1:"), seen
        inward = lab("--lab", "natgw", "exec", "host/internet", "--", "curl", "-s", "-m", "2", "http://10.0.1.3:30080/",
                     check=False)
        assert inward.returncode != 0
        check = lab("check", "--lab", "natgw").stdout
        assert "PASSED" in check and any(line.startswith("egress") for line in check.splitlines())
    finally:
        lab("down", "natgw", check=False)
    assert lab_leftovers("natgw", switch_name("natgw")) == []
    assert lab_leftovers("natgw", public_switch_name("natgw")) == []
