"""network: bgp in a real lab: FRR on every node, routes in the kernels, the invariants hold."""
from __future__ import annotations

import subprocess

import pytest

from tests.integration.conftest import TOPOLOGIES, lab, needs_root, wait_for

pytestmark = [needs_root, pytest.mark.root]


def test_route_reflector_with_ptp():
    lab("up", str(TOPOLOGIES / "calico-bgp.yaml"))
    try:
        assert "PASSED" in lab("check", "--lab", "calico").stdout
        routes = lab("get", "routes", "--lab", "calico").stdout
        assert routes.count(" bgp") == 6 and "cni ptp (pod veth)" in routes and "blackhole" in routes
        summary = lab("exec", "node/worker1", "--lab", "calico", "--", "vtysh", "-c", "show bgp summary").stdout
        assert "control-plane(172.18.0.2)" in summary and "Total number of neighbors 1" in summary
    finally:
        lab("down", "calico")
    gone = lambda: not [p for p in subprocess.run(["pgrep", "-a", "bgpd"], capture_output=True, text=True)  # noqa: E731
                        .stdout.splitlines() if "calico" in p or "/run/k8s-netlab/calico" in p]
    assert wait_for(gone), "FRR daemons outlived the lab"


def test_full_mesh_with_bridge(tmp_path):
    topo = tmp_path / "mesh.yaml"
    topo.write_text((TOPOLOGIES / "vxlan.yaml").read_text().replace("name: vxlan", "name: mesh")
                    .replace("network: vxlan", "network: bgp"))
    lab("up", str(topo))
    try:
        assert "PASSED" in lab("check", "--lab", "mesh").stdout
        summary = lab("exec", "node/control-plane", "--lab", "mesh", "--", "vtysh", "-c", "show bgp summary").stdout
        assert "Total number of neighbors 2" in summary
    finally:
        lab("down", "mesh")
