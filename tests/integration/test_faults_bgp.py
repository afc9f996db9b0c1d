"""Faults of a BGP lab (network: bgp): a peering typo (bgp-peer-as) takes the session down and its
routes away; clear puts the AS back and the routes return. The node's FRR config is as it was."""
from __future__ import annotations

import json
import time

import pytest

from tests.integration.conftest import lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

TOPOLOGY = """
name: fltbgp
cluster: {network: bgp, cni: ptp, bgp: {asNumber: 64512}}
nodes: [{name: n1}, {name: n2}]
"""


def vtysh(*commands: str) -> str:
    argv = ["vtysh", "--vty_socket", "/run/k8s-netlab/fltbgp/frr/n1"]
    for c in commands:
        argv += ["-c", c]
    return lab("--lab", "fltbgp", "exec", "node/n1", "--", *argv).stdout


def has_route(cidr: str) -> bool:
    routes = json.loads(lab("--lab", "fltbgp", "exec", "node/n1", "--", "ip", "-j", "route", "show", cidr).stdout or "[]")
    return any(r.get("protocol") == "bgp" for r in routes)


def wait(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_peering_typo_withdraws_the_routes_and_clear_brings_them_back(tmp_path):
    path = tmp_path / "fltbgp.yaml"
    path.write_text(TOPOLOGY)
    lab("up", str(path))
    try:
        config = vtysh("show running-config")
        assert has_route("10.244.1.0/24")
        added = lab("--lab", "fltbgp", "fault", "add", "bgp-peer-as", "node/n1", "peer=node/n2", "as=65001")
        assert "fault f1 applied: bgp-peer-as node/n1" in added.stdout
        assert "remote-as 65001" in vtysh("show running-config")
        assert wait(lambda: not has_route("10.244.1.0/24")), "n1 kept n2's podCIDR with the wrong AS"
        lab("--lab", "fltbgp", "fault", "clear")
        assert vtysh("show running-config") == config
        assert wait(lambda: has_route("10.244.1.0/24")), "the session did not come back"
    finally:
        lab("down", "fltbgp", check=False)
