"""CNI network configurations (lab.cni.config) against golden files.

The goldens live in tests/golden/ and are the exact conflists a kubelet would find in
/etc/cni/net.d on node worker1 of topologies/vxlan.yaml, for the bridge and the ptp plugin.

To regenerate them after an intended change, run

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_cni_config.py

which writes the files instead of comparing; then review the diff (`git diff tests/golden`)
by eye before keeping it.
"""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from lab.cni import config
from lab.controlplane.state import ClusterState
from tests.unit.golden import check_golden, shipped_state

DATA_DIR = "/run/k8s-netlab/vxlan/ipam/worker1"


def vxlan_state(cni: str) -> ClusterState:
    return shipped_state("vxlan", cni=cni)


@pytest.mark.parametrize("cni", ["bridge", "ptp"])
def test_pod_network_golden(cni):
    state = vxlan_state(cni)
    conf = config.pod_network(state, state.node("worker1"), DATA_DIR)
    check_golden(f"cni-{cni}-worker1.json", json.dumps(conf, indent=2) + "\n")


def test_bridge_conflist_values():
    state = vxlan_state("bridge")
    conf = config.pod_network(state, state.node("worker1"), DATA_DIR)
    assert conf["cniVersion"] == "1.0.0"
    assert conf["name"] == "vxlan-podnet"
    (plugin,) = conf["plugins"]
    assert plugin["type"] == "bridge" and plugin["bridge"] == "cni0"
    assert plugin["isGateway"] is True and plugin["ipMasq"] is False and plugin["hairpinMode"] is True
    assert plugin["mtu"] == 1450
    assert plugin["ipam"] == {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": DATA_DIR,
    }


def test_ptp_conflist_values():
    state = vxlan_state("ptp")
    conf = config.pod_network(state, state.node("worker2"), "/d")
    (plugin,) = conf["plugins"]
    assert set(plugin) == {"type", "ipMasq", "mtu", "ipam"}
    assert (plugin["type"], plugin["ipMasq"], plugin["mtu"]) == ("ptp", False, 1450)
    assert plugin["ipam"]["ranges"] == [[{"subnet": "10.244.2.0/24", "gateway": "10.244.2.1"}]]
    assert plugin["ipam"]["dataDir"] == "/d"


def test_conflist_follows_the_pod_mtu():
    state = replace(vxlan_state("bridge"), mtu=1234)
    assert config.pod_network(state, state.node("worker1"), "/d")["plugins"][0]["mtu"] == 1234


def test_each_node_gets_its_own_range():
    state = vxlan_state("bridge")
    ranges = [config.pod_network(state, n, "/d")["plugins"][0]["ipam"]["ranges"][0][0] for n in state.nodes]
    assert ranges == [{"subnet": n.pod_cidr, "gateway": n.gateway} for n in state.nodes]
    assert len({r["subnet"] for r in ranges}) == 3


def test_conflist_is_json_serialisable_and_fresh():
    state = vxlan_state("bridge")
    a = config.pod_network(state, state.node("worker1"), "/d")
    a["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] = "mutated"
    b = config.pod_network(state, state.node("worker1"), "/d")
    assert b["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == "10.244.1.0/24"
    json.dumps(b)


def test_a_plugin_of_ones_own_gets_what_a_ptp_like_plugin_needs_and_its_folder_is_searched_first():
    state = replace(vxlan_state("bridge"), cni="/srv/course/cni-from-scratch")
    node = state.node("worker1")
    conf = config.pod_network(state, node, "/d")
    plugin = conf["plugins"][0]
    assert plugin["type"] == "cni-from-scratch"
    assert (plugin["podCIDR"], plugin["gateway"], plugin["mtu"]) == (node.pod_cidr, node.gateway, state.mtu)
    assert plugin["ipam"]["type"] == "host-local"  # to delegate to, as real plugins do
    assert config.plugin_dirs(state) == ("/srv/course",)
    assert config.plugin_dirs(vxlan_state("bridge")) == ()


@pytest.mark.parametrize("cni, confined", [("bridge", True), ("ptp", True), ("/srv/course/cni-from-scratch", False)])
def test_only_the_shipped_plugins_leave_nothing_outside_the_labs_namespaces(cni, confined):
    """lab down skips CNI DEL where deleting the namespaces and the run directory undoes an ADD."""
    assert config.confined(replace(vxlan_state("bridge"), cni=cni)) is confined
