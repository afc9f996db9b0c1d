"""network: cloud-routes in a real lab: OVS (userspace datapath) programmed by the lab's os-ken
controller routes every podCIDR; nodes only have a default route."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from lab.routing import fabric_runtime
from lab.host import record
from tests.integration.conftest import TOPOLOGIES, lab, needs_root

pytestmark = [needs_root, pytest.mark.root]
CTL = "/usr/share/openvswitch/scripts/ovs-ctl"


@pytest.fixture(scope="module")
def cloud():
    if not os.path.exists(CTL):
        pytest.skip("Open vSwitch is not installed")
    started = subprocess.run(["ovs-vsctl", "--timeout=2", "show"], capture_output=True).returncode != 0
    if started:
        subprocess.run([CTL, "start", "--system-id=random"], capture_output=True, check=True)
    lab("up", str(TOPOLOGIES / "cloud-routes.yaml"))
    try:
        yield
    finally:
        lab("down", "cloud", check=False)
        if started:
            subprocess.run([CTL, "stop"], capture_output=True)


def flows() -> int:
    return sum("priority=50" in f for f in fabric_runtime.dump(record.load("cloud").state))


def test_the_fabric_routes_pods(cloud):
    assert "PASSED" in lab("check", "--lab", "cloud").stdout
    routes = lab("exec", "node/worker1", "--lab", "cloud", "--", "ip", "route").stdout
    assert "default via 172.18.0.1" in routes and "10.244.0.0/24" not in routes  # no pod routes on nodes
    table = lab("get", "routes", "fabric", "--lab", "cloud").stdout
    assert "10.244.2.0/24   worker2" in table and table.split("in the switch now:")[1].count("priority=50") == 3


def test_the_fabric_follows_nodes_leaving_and_joining(cloud):
    lab("node", "stop", "worker2", "--lab", "cloud")
    deadline = time.monotonic() + 5
    while flows() != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flows() == 2
    lab("node", "start", "worker2", "--lab", "cloud")
    deadline = time.monotonic() + 5
    while flows() != 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flows() == 3 and "PASSED" in lab("check", "--lab", "cloud").stdout


def test_a_controller_restart_loses_no_route(cloud):
    rec = record.load("cloud")
    fabric_runtime.stop(rec)
    assert flows() == 3  # fail mode secure: the switch keeps what it was told
    assert "PASSED" in lab("check", "--lab", "cloud").stdout  # and traffic flows without a controller
    fabric_runtime.restart(rec)
    time.sleep(1)
    assert flows() == 3 and "PASSED" in lab("check", "--lab", "cloud").stdout
