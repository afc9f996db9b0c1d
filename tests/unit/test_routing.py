"""Cross-node routing (lab.routing) against golden files, plus the rules the goldens must obey.

The goldens in tests/golden/routing-<network>-<node>.txt hold, for every node of the shipped
topologies/vxlan.yaml and topologies/host-gw.yaml, the `ip -batch` lines and then the
`bridge -batch` lines (FDB entries) the lab applies inside that node's namespace.

To regenerate them after an intended change, run

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_routing.py

which writes the files instead of comparing; then review the diff (`git diff tests/golden`)
by eye before keeping it.
"""
from __future__ import annotations

import re
from dataclasses import replace

import pytest

from lab import routing
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState
from lab.routing import hostgw, vxlan
from lab.routing.ops import NetOps
from lab.topology.model import Topology
from tests.unit.golden import check_golden, shipped_state

NODES = ["control-plane", "worker1", "worker2"]


def state_of(network: str, **cluster) -> ClusterState:
    return shipped_state(network, **cluster)


def as_text(state: ClusterState, ops: NetOps, node: str) -> str:
    netns = state.node(node).netns
    lines = [f"# ip -n {netns} -batch -", *ops.ip, f"# bridge -n {netns} -batch -", *ops.bridge]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("network", ["vxlan", "host-gw"])
@pytest.mark.parametrize("node", NODES)
def test_routing_golden(network, node):
    state = state_of(network)
    check_golden(f"routing-{network}-{node}.txt", as_text(state, routing.render(state, state.node(node)), node))


# --- vxlan ---

@pytest.mark.parametrize("node", NODES)
def test_vxlan_device(node):
    state = state_of("vxlan")
    me = state.node(node)
    ops = routing.render(state, me)
    assert ops.ip[0] == (f"link add flannel.1 address {me.vtep_mac} type vxlan id 1 local {me.ip} dev eth0 "
                         "dstport 8472 nolearning")
    assert ops.ip[1] == "link set flannel.1 mtu 1450 up"
    assert ops.ip[2] == f"addr add {me.pod_cidr.split('/')[0]}/32 dev flannel.1"
    assert (vxlan.VNI, vxlan.PORT, vxlan.DEVICE) == (1, 8472, "flannel.1")


@pytest.mark.parametrize("node", NODES)
def test_vxlan_one_neigh_route_fdb_per_remote_node(node):
    state = state_of("vxlan")
    me = state.node(node)
    ops = routing.render(state, me)
    peers = [p for p in state.nodes if p.name != node]
    neigh = [l for l in ops.ip if l.startswith("neigh ")]
    routes = [l for l in ops.ip if l.startswith("route ")]
    assert len(neigh) == len(routes) == len(ops.bridge) == len(peers) == 2
    for p in peers:
        gw = p.pod_cidr.split("/")[0]  # flannel: the peer's podCIDR network address, on its flannel.1
        assert neigh.count(f"neigh replace {gw} lladdr {p.vtep_mac} dev flannel.1 nud permanent") == 1
        assert routes.count(f"route replace {p.pod_cidr} via {gw} dev flannel.1 onlink") == 1
        assert ops.bridge.count(f"fdb append {p.vtep_mac} dev flannel.1 dst {p.ip}") == 1
    # nothing about itself: no route to its own podCIDR, no FDB entry for its own MAC
    assert not any(me.pod_cidr in l for l in routes)
    assert not any(me.vtep_mac in l for l in ops.bridge)
    assert all(l.startswith("fdb append ") for l in ops.bridge)


def test_vxlan_device_mtu_is_underlay_minus_50_whatever_the_pod_mtu():
    s = state_of("vxlan")
    s = replace(s, underlay_mtu=9000)
    assert "link set flannel.1 mtu 8950 up" in routing.render(s, s.nodes[0]).ip
    s = state_of("vxlan", mtu=1300)
    assert s.mtu == 1300
    assert "link set flannel.1 mtu 1450 up" in routing.render(s, s.nodes[0]).ip


def test_vxlan_lines_are_well_formed():
    state = state_of("vxlan")
    for n in state.nodes:
        ops = routing.render(state, n)
        for line in ops.ip + ops.bridge:
            assert line == line.strip() and "  " not in line and "None" not in line, line
            assert re.match(r"^(link|addr|neigh|route|fdb) ", line), line


# --- host-gw ---

@pytest.mark.parametrize("node", NODES)
def test_hostgw_one_route_per_remote_node(node):
    state = state_of("host-gw")
    me = state.node(node)
    ops = routing.render(state, me)
    assert ops.bridge == ()
    assert sorted(ops.ip) == sorted(
        f"route replace {p.pod_cidr} via {p.ip} dev eth0" for p in state.nodes if p.name != node)
    assert len(ops.ip) == 2
    assert not any(me.pod_cidr in l or me.ip in l for l in ops.ip)


def test_hostgw_values():
    state = state_of("host-gw")
    assert routing.render(state, state.node("worker1")) == NetOps(ip=(
        "route replace 10.244.0.0/24 via 172.18.0.2 dev eth0",
        "route replace 10.244.2.0/24 via 172.18.0.4 dev eth0",
    ))
    assert hostgw.render(state, state.node("worker1")) == routing.render(state, state.node("worker1"))


def test_single_node_cluster_has_no_peer_routes():
    doc = {"name": "one", "nodes": [{"name": "solo"}]}
    for network in ("host-gw", "vxlan"):
        s = plan(Topology.model_validate({**doc, "cluster": {"network": network}}))
        ops = routing.render(s, s.nodes[0])
        assert ops.bridge == ()
        assert not [l for l in ops.ip if l.startswith(("route", "neigh"))]


def test_routing_ignores_hosts():
    state = state_of("host-gw")
    internet = state.hosts[0]
    for n in state.nodes:
        assert not any(internet.ip in l for l in routing.render(state, n).ip)


# --- dispatch ---

@pytest.mark.parametrize("bad", ["ipip", "wireguard", ""])
def test_unsupported_network_raises_valueerror(bad):
    state = replace(state_of("vxlan"), network=bad)
    with pytest.raises(ValueError, match=f"network {bad!r} is not supported; supported: host-gw, vxlan"):
        routing.render(state, state.nodes[0])


# --- the backend registry ---

def test_every_network_of_the_schema_has_a_backend():
    from typing import get_args

    from lab import routing
    from lab.topology.model import ClusterSpec

    assert set(get_args(ClusterSpec.model_fields["network"].annotation)) == set(routing.BACKENDS)


@pytest.mark.parametrize("network,tunnel", [("vxlan", True), ("host-gw", False), ("bgp", False)])
def test_a_nodes_own_addresses_come_from_its_backend(network, tunnel):
    from lab import routing

    st = shipped_state("vxlan", network=network)
    n = st.nodes[1]
    addrs = routing.backend(st).node_addresses(st, n.name)
    assert {n.ip, n.gateway} <= addrs and (n.pod_cidr.split("/")[0] in addrs) == tunnel
    other = st.nodes[2].name
    sent = routing.backend(st).sending_address(st, n.name, other)
    assert sent == (n.pod_cidr.split("/")[0] if tunnel else n.ip)
    assert routing.backend(st).sending_address(st, n.name, n.name) == n.ip


def test_only_dynamic_routing_withdraws_a_stopped_node():
    from lab import routing

    assert [b.name for b in routing.BACKENDS.values() if b.withdraws] == ["bgp"]


def test_an_unknown_network_names_the_supported_ones():
    from dataclasses import replace

    from lab import routing

    with pytest.raises(ValueError, match="supported: host-gw, vxlan, bgp, cloud-routes"):
        routing.backend(replace(shipped_state("vxlan"), network="geneve"))
