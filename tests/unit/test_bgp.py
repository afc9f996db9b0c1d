"""network: bgp — FRR configs (goldens) and the peering each topology shape gives."""
from __future__ import annotations

import pytest

from lab.routing import bgp
from tests.unit.golden import check_golden, shipped_state


@pytest.fixture
def rr():
    return shipped_state("calico-bgp")


@pytest.fixture
def mesh():
    return shipped_state("vxlan", network="bgp")


@pytest.mark.parametrize("node", ["control-plane", "worker1"])
def test_route_reflector_configs_golden(rr, node):
    check_golden(f"frr-rr-{node}.conf", bgp.frr_conf(rr, node))


def test_full_mesh_config_golden(mesh):
    check_golden("frr-mesh-worker1.conf", bgp.frr_conf(mesh, "worker1"))


def test_full_mesh_peers_with_every_other_node(mesh):
    for node in mesh.nodes:
        assert {p for p, _, _ in bgp.peers(mesh, node.name)} == {n.name for n in mesh.nodes} - {node.name}
        assert not any(client for _, _, client in bgp.peers(mesh, node.name))
    assert [n for n, _, _ in bgp.speakers(mesh)] == [n.name for n in mesh.nodes]  # hosts do not speak BGP


def test_route_reflector_clients_peer_with_the_reflector_only(rr):
    assert bgp.peers(rr, "worker1") == [("control-plane", rr.node("control-plane").ip, False)]
    assert {(p, client) for p, _, client in bgp.peers(rr, "control-plane")} == {("worker1", True), ("worker2", True)}
    conf = bgp.frr_conf(rr, "control-plane")
    assert conf.count("route-reflector-client") == 2


def test_a_host_can_be_the_reflector():
    s = shipped_state("calico-bgp", bgp={"routeReflectors": ["internet"]})
    assert ("internet", s.hosts[0].ip, s.hosts[0].netns) in bgp.speakers(s)
    conf = bgp.frr_conf(s, "internet")
    assert "network " not in conf and conf.count("route-reflector-client") == 3


def test_every_node_announces_its_own_pod_cidr_and_blackholes_it(mesh):
    for node in mesh.nodes:
        assert f"  network {node.pod_cidr}\n" in bgp.frr_conf(mesh, node.name)
        assert bgp.render(mesh, node).ip == (f"route replace blackhole {node.pod_cidr} metric 1000",)


def test_top_of_rack_ebgp_gives_every_node_its_own_as():
    s = shipped_state("calico-bgp", bgp={"topOfRack": "internet"})
    assert [bgp.as_of(s, n.name) for n in s.nodes] == [64513, 64514, 64515]
    assert bgp.as_of(s, "internet") == 64512
    assert bgp.peers(s, "worker1") == [("internet", s.hosts[0].ip, False)]
    assert {p for p, _, _ in bgp.peers(s, "internet")} == {n.name for n in s.nodes}
    conf = bgp.frr_conf(s, "worker1")
    assert "router bgp 64514" in conf and f"neighbor {s.hosts[0].ip} remote-as 64512" in conf
    check_golden("frr-tor-internet.conf", bgp.frr_conf(s, "internet"))


def test_lab_exec_and_the_faults_reach_a_speakers_own_frr_through_the_kinds_runtime(rr, tmp_path):
    """vtysh on a speaker speaks to its own FRR; on a machine that runs none, and under a network
    without daemons, the command is unchanged; bgpd's PID comes from its pid file."""
    from types import SimpleNamespace

    from lab.routing import frr, runtimes
    from lab.runtime import inside

    rec = SimpleNamespace(state=rr, dir=tmp_path, cgroups=())
    node, plain = rr.nodes[0], next(h for h in rr.hosts if h.name not in rr.route_reflectors)
    ran = inside.argv(rec, node.netns, tmp_path / "none", node.name, ["vtysh", "-c", "show bgp summary"])
    assert ran == ["ip", "netns", "exec", node.netns, "vtysh", "--vty_socket", str(tmp_path / "frr" / node.name),
                   "-c", "show bgp summary"]
    assert inside.argv(rec, plain.netns, tmp_path / "none", plain.name, ["vtysh"])[-1] == "vtysh"
    assert runtimes.of("host-gw") is None
    assert runtimes.of(rr.network) is frr.RUNTIME and frr.RUNTIME.daemon_pid(rec, node.name) == 0
    (tmp_path / "frr" / node.name).mkdir(parents=True)
    (tmp_path / "frr" / node.name / "bgpd.pid").write_text("4242\n")
    assert frr.RUNTIME.daemon_pid(rec, node.name) == 4242
