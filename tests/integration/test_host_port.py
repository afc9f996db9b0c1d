"""hostPort through the real CNI portmap plugin (topologies/docker-port-mapping.yaml, Docker's -p 8080:80):
the node's port answers from outside with the pod seeing the client; the pod's own IP is private."""
from __future__ import annotations

import pytest

from tests.integration.conftest import ROOT, lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

TOPOLOGY = str(ROOT / "topologies" / "docker-port-mapping.yaml")


def test_a_host_port_maps_the_nodes_port_to_its_pod():
    lab("up", TOPOLOGY)
    try:
        via_node = lab("--lab", "portmap", "exec", "host/internet", "--", "curl", "-s", "-m", "2",
                       "http://172.18.0.2:8080/clientip").stdout
        assert via_node.startswith("172.18.0.3:"), via_node  # the internet host's own address: no SNAT
        private = lab("--lab", "portmap", "exec", "host/internet", "--", "curl", "-s", "-m", "2",
                      "http://10.244.0.2:80/hostname", check=False)
        assert private.returncode != 0  # the pod IP is not reachable from outside the cluster
        rules = lab("--lab", "portmap", "exec", "node/node1", "--", "iptables", "-t", "nat", "-S").stdout
        assert "CNI-HOSTPORT-DNAT" in rules and "--dport 8080" in rules
        check = lab("check", "--lab", "portmap")
        assert any(line.startswith("hostport") and " 1      0" in line for line in check.stdout.splitlines()), check.stdout
    finally:
        lab("down", "portmap", check=False)
