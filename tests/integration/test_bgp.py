"""network: bgp in a real lab: FRR on every node, routes in the kernels, the invariants hold."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

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


def test_node_stop_withdraws_and_start_restores_its_routes():
    lab("up", str(TOPOLOGIES / "calico-bgp.yaml"))
    try:
        out = lab("node", "stop", "worker2", "--lab", "calico").stdout
        assert "withdrawn on every other node" in out
        assert "NotReady" in lab("get", "nodes", "--lab", "calico").stdout
        routes = lab("get", "routes", "worker1", "--lab", "calico").stdout
        assert "10.244.2.0/24" not in routes
        assert "re-learned" in lab("node", "start", "worker2", "--lab", "calico").stdout
        assert "PASSED" in lab("check", "--lab", "calico").stdout
    finally:
        lab("down", "calico")


def test_a_broken_session_cuts_off_exactly_that_nodes_pods(tmp_path):
    """worker2's router is told a wrong AS for its reflector: the session fails, worker2's
    podCIDR is withdrawn, and `lab check` fails for exactly the pairs between worker2 and the rest."""
    lab("up", str(TOPOLOGIES / "calico-bgp.yaml"))
    try:
        lab("exec", "node/worker2", "--lab", "calico", "--", "vtysh", "-c", "configure terminal",
            "-c", "router bgp 64512", "-c", "neighbor 172.18.0.2 remote-as 65001")
        assert wait_for(lambda: "10.244.2.0/24" not in lab("get", "routes", "worker1", "--lab", "calico").stdout,
                        timeout=10)
        out = tmp_path / "r.json"
        assert lab("check", "--lab", "calico", "--json", str(out), check=False).returncode == 1
        state = json.loads(Path("/run/k8s-netlab/calico/record.json").read_text())["state"]
        node_of_netns = {p["netns"]: p["node"] for p in state["pods"]}
        node_of_netns.update({n["netns"]: n["name"] for n in state["nodes"]})
        node_of_ip = {p["ip"]: p["node"] for p in state["pods"]}
        for r in json.loads(out.read_text())["results"]:
            if r["check"] not in ("pod-to-pod", "node-to-pod"):
                continue
            ends = (node_of_netns[r["source"]], node_of_ip[r["target"].split(":")[0]])
            across = ends.count("worker2") == 1  # one end on worker2, the other elsewhere
            assert r["passed"] == (not across), r
    finally:
        lab("down", "calico")


def test_ebgp_to_a_top_of_rack_router(tmp_path):
    topo = tmp_path / "tor.yaml"
    topo.write_text((TOPOLOGIES / "calico-bgp.yaml").read_text().replace("name: calico", "name: tor").replace(
        "bgp: {asNumber: 64512, routeReflectors: [control-plane]}", "bgp: {asNumber: 64512, topOfRack: internet}"))
    lab("up", str(topo))
    try:
        assert "PASSED" in lab("check", "--lab", "tor").stdout
        summary = lab("exec", "node/worker2", "--lab", "tor", "--", "vtysh", "-c", "show bgp summary").stdout
        assert "local AS number 64515" in summary and "internet(" in summary
    finally:
        lab("down", "tor")
