"""Service address allocation (lab.controlplane.services) and Services in plan() (lab.controlplane.plan).

Pure: ClusterIPs from the service CIDR, NodePorts from 30000-32767, and the ServiceStates the shipped
topologies/services.yaml plans into.
"""
from __future__ import annotations

import copy
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from lab.controlplane import services
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.topology.load import load_topology_text
from tests.unit.golden import shipped_state

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
CIDR = IPv4Network("10.96.0.0/12")


# --- builders ---

def services_doc() -> dict:
    return yaml.safe_load((TOPOLOGIES / "services.yaml").read_text())


def planned(doc: dict) -> ClusterState:
    """Through the loader, so the topology also passes the semantic checks (a valid file)."""
    return plan(load_topology_text(yaml.safe_dump(doc, sort_keys=False)))


def svc(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}


def with_services(doc: dict, *new: dict, first: bool = False) -> dict:
    doc = copy.deepcopy(doc)
    doc["manifests"] = [*new, *doc["manifests"]] if first else [*doc["manifests"], *new]
    return doc


def ips_of(state: ClusterState) -> dict[str, str | None]:
    return {s.key: s.cluster_ip for s in state.services}


def node_ports_of(state: ClusterState) -> dict[tuple[str, str], int | None]:
    return {(s.key, p.name): p.node_port for s in state.services for p in s.ports}


# --- reserved_ips ---

def test_reserved_ips_are_network_kubernetes_kube_dns_and_broadcast():
    assert services.reserved_ips(IPv4Network("10.96.0.0/12")) == {
        IPv4Address("10.96.0.0"), IPv4Address("10.96.0.1"), IPv4Address("10.96.0.10"), IPv4Address("10.111.255.255")}


# --- cluster_ips ---

NAMES = [f"default/svc-{i}" for i in range(40)]


def test_cluster_ips_are_deterministic():
    first = services.cluster_ips(CIDR, [(k, None) for k in NAMES])
    again = services.cluster_ips(CIDR, [(k, None) for k in NAMES])
    assert first == again
    assert len(set(first.values())) == len(NAMES)


def test_cluster_ips_do_not_depend_on_the_order_of_the_services():
    forward = services.cluster_ips(CIDR, [(k, None) for k in NAMES])
    backward = services.cluster_ips(CIDR, [(k, None) for k in reversed(NAMES)])
    assert forward == backward


def test_cluster_ips_are_inside_the_cidr_and_never_reserved():
    out = services.cluster_ips(CIDR, [(k, None) for k in NAMES])
    for ip in out.values():
        assert IPv4Address(ip) in CIDR
        assert IPv4Address(ip) not in services.reserved_ips(CIDR)


@pytest.mark.parametrize("cidr", ["10.96.0.0/28", "10.0.0.0/24", "192.168.7.0/27"])
def test_a_filled_cidr_uses_every_address_but_the_reserved_ones(cidr):
    """Collisions: with (nearly) every address taken, each Service still gets a distinct free one."""
    net = IPv4Network(cidr)
    usable = set(net) - services.reserved_ips(net)
    keys = [f"ns/s{i}" for i in range(len(usable))]
    out = services.cluster_ips(net, [(k, None) for k in keys])
    assert {IPv4Address(ip) for ip in out.values()} == usable
    assert len(set(out.values())) == len(keys)


def test_tiny_cidr_never_hands_out_network_broadcast_or_dot1():
    net = IPv4Network("10.96.0.0/29")  # .10 lies outside; .0, .1 and .7 are reserved
    out = services.cluster_ips(net, [(f"ns/s{i}", None) for i in range(5)])
    assert sorted(out.values(), key=IPv4Address) == [f"10.96.0.{i}" for i in range(2, 7)]


def test_dot10_is_never_allocated_in_a_slash_28():
    net = IPv4Network("10.96.0.0/28")
    out = services.cluster_ips(net, [(f"ns/s{i}", None) for i in range(12)])
    assert "10.96.0.10" not in out.values()
    assert "10.96.0.1" not in out.values()


def test_full_cidr_raises_lab_error():
    net = IPv4Network("10.96.0.0/29")
    with pytest.raises(LabError, match=r"10\.96\.0\.0/29 is full.*ns/s5"):
        services.cluster_ips(net, [(f"ns/s{i}", None) for i in range(6)])


def test_a_slash_30_has_one_clusterip():
    net = IPv4Network("10.96.0.0/30")
    assert services.cluster_ips(net, [("ns/a", None)]) == {"ns/a": "10.96.0.2"}
    with pytest.raises(LabError):
        services.cluster_ips(net, [("ns/a", None), ("ns/b", None)])


def test_requested_ips_are_kept_and_not_handed_out_again():
    net = IPv4Network("10.96.0.0/29")
    wanted = [("ns/fixed", "10.96.0.4"), *((f"ns/s{i}", None) for i in range(4))]
    out = services.cluster_ips(net, wanted)
    assert out["ns/fixed"] == "10.96.0.4"
    assert sorted(v for k, v in out.items() if k != "ns/fixed") == ["10.96.0.2", "10.96.0.3", "10.96.0.5", "10.96.0.6"]


def test_requested_ips_count_against_a_full_cidr():
    net = IPv4Network("10.96.0.0/29")
    wanted = [("ns/fixed", "10.96.0.4"), *((f"ns/s{i}", None) for i in range(5))]
    with pytest.raises(LabError, match="full"):
        services.cluster_ips(net, wanted)


def test_none_is_headless_and_takes_no_address():
    net = IPv4Network("10.96.0.0/30")
    out = services.cluster_ips(net, [("ns/headless", "None"), ("ns/a", None)])
    assert out == {"ns/headless": None, "ns/a": "10.96.0.2"}


def test_a_requested_ip_wins_over_an_allocation_that_would_collide_with_it():
    """The first choice of a Service is where its hash lands; a request for that very address is
    kept and the allocated Service moves on to the next free address."""
    alone = services.cluster_ips(CIDR, [("ns/a", None)])["ns/a"]
    out = services.cluster_ips(CIDR, [("ns/a", None), ("ns/b", alone)])
    assert out["ns/b"] == alone
    assert out["ns/a"] == str(IPv4Address(alone) + 1)


def test_adding_services_does_not_move_the_others():
    before = services.cluster_ips(CIDR, [(k, None) for k in NAMES[:20]])
    after = services.cluster_ips(CIDR, [(k, None) for k in NAMES])
    assert {k: after[k] for k in before} == before


# --- node_ports ---

def test_node_ports_are_in_range_deterministic_and_distinct():
    wanted = [(f"default/s{i}:", "TCP", None) for i in range(50)]
    out = services.node_ports(wanted)
    assert out == services.node_ports(wanted)
    assert all(30000 <= p <= 32767 for p in out.values())
    assert len(set(out.values())) == 50


def test_requested_node_ports_are_kept():
    out = services.node_ports([("default/a:", "TCP", 30080), ("default/b:", "TCP", None), ("default/c:", "UDP", 32767)])
    assert out["default/a:"] == 30080 and out["default/c:"] == 32767
    assert out["default/b:"] != 30080


def test_same_node_port_for_tcp_and_udp_of_different_services():
    out = services.node_ports([("default/a:", "TCP", 30500), ("default/b:", "UDP", 30500)])
    assert out == {"default/a:": 30500, "default/b:": 30500}


ALL_BUT_TWO = [(f"default/fill{p}:", "TCP", p) for p in range(30000, 32766)]  # 32766, 32767 left


def test_allocation_skips_ports_taken_for_the_same_protocol():
    out = services.node_ports([*ALL_BUT_TWO, ("default/x:", "TCP", None), ("default/y:", "TCP", None)])
    assert {out["default/x:"], out["default/y:"]} == {32766, 32767}


def test_ports_taken_for_tcp_stay_free_for_udp():
    out = services.node_ports([*ALL_BUT_TWO, *((f"default/u{i}:", "UDP", None) for i in range(5))])
    udp = [out[f"default/u{i}:"] for i in range(5)]
    assert len(set(udp)) == 5
    assert any(p < 32766 for p in udp)  # a UDP Service may use a port a TCP one holds


def test_no_node_port_left_raises_lab_error():
    wanted = [*ALL_BUT_TWO, *((f"default/x{i}:", "TCP", None) for i in range(3))]
    with pytest.raises(LabError, match="no NodePort left for default/x2:"):
        services.node_ports(wanted)


def test_adding_a_node_port_service_does_not_move_the_others():
    before = services.node_ports([(f"default/s{i}:", "TCP", None) for i in range(10)])
    after = services.node_ports([(f"default/s{i}:", "TCP", None) for i in range(10)] + [("default/new:", "TCP", None)])
    assert {k: after[k] for k in before} == before


# --- Services planned from topologies/services.yaml ---

@pytest.fixture(scope="module")
def state() -> ClusterState:
    return shipped_state("services", dns={"enabled": False})   # its own Services, not the kube-dns add-on


def test_services_yaml_plans_every_service_in_file_order(state):
    assert [s.name for s in state.services] == [
        "loner", "backend", "backend-nodeport", "backend-local", "sticky", "node-local", "backend-headless",
        "warming", "warming-published"]
    assert all(s.namespace == "default" for s in state.services)


def test_backend_has_its_fixed_clusterip_and_two_named_ports(state):
    b = state.service("default", "backend")
    assert b.cluster_ip == "10.96.0.100"
    assert b.type == "ClusterIP"
    assert [(p.name, p.protocol, p.port, p.target_port, p.node_port) for p in b.ports] == [
        ("http", "TCP", 80, "http", None), ("dns", "UDP", 53, "dns", None)]
    assert b.selector == (("app", "backend"),)


def test_headless_has_no_clusterip_and_target_port_defaults_to_port(state):
    h = state.service("default", "backend-headless")
    assert h.cluster_ip is None
    assert [(p.name, p.port, p.target_port) for p in h.ports] == [("", 8080, "8080")]


def test_node_port_services(state):
    np = state.service("default", "backend-nodeport")
    assert np.type == "NodePort" and np.ports[0].node_port == 30080 and np.ports[0].target_port == "8080"
    assert np.external_traffic_policy == "Cluster"
    local = state.service("default", "backend-local")
    assert local.ports[0].node_port == 30081 and local.external_traffic_policy == "Local"


def test_affinity_and_traffic_policies(state):
    sticky = state.service("default", "sticky")
    assert (sticky.session_affinity, sticky.affinity_timeout) == ("ClientIP", 600)
    assert state.service("default", "backend").session_affinity == "None"
    assert state.service("default", "backend").affinity_timeout == 10800
    assert state.service("default", "node-local").internal_traffic_policy == "Local"
    assert state.service("default", "backend").internal_traffic_policy == "Cluster"
    assert state.service("default", "warming-published").publish_not_ready is True
    assert state.service("default", "warming").publish_not_ready is False


def test_selectors_are_sorted_tuples(state):
    for s in state.services:
        assert isinstance(s.selector, tuple) and all(isinstance(kv, tuple) for kv in s.selector)
    doc = with_services(services_doc(), svc("multi", selector={"tier": "web", "app": "backend"}))
    assert planned(doc).service("default", "multi").selector == (("app", "backend"), ("tier", "web"))


def test_a_service_without_selector_plans_selector_none():
    doc = services_doc()
    doc["manifests"].append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "external"},
                             "spec": {"ports": [{"port": 80}]}})
    assert planned(doc).service("default", "external").selector is None


def test_allocated_clusterips_are_pinned(state):
    """The same file gives the same ClusterIPs on every run, on every machine (sha256, not hash())."""
    assert ips_of(state) == {
        "default/loner": "10.106.228.180",
        "default/backend": "10.96.0.100",
        "default/backend-nodeport": "10.96.120.47",
        "default/backend-local": "10.103.190.115",
        "default/sticky": "10.104.7.67",
        "default/node-local": "10.99.241.197",
        "default/backend-headless": None,
        "default/warming": "10.101.140.116",
        "default/warming-published": "10.105.116.142",
    }


def test_allocated_clusterips_are_in_the_service_cidr(state):
    net = IPv4Network(state.service_cidr)
    for s in state.services:
        if s.cluster_ip:
            assert IPv4Address(s.cluster_ip) in net
            assert IPv4Address(s.cluster_ip) not in services.reserved_ips(net)


def test_planning_twice_gives_the_same_services(state):
    assert shipped_state("services", dns={"enabled": False}).services == state.services


def test_proxy_mode_does_not_change_the_services(state):
    assert shipped_state("services", proxy="nftables", dns={"enabled": False}).services == state.services


@pytest.mark.parametrize("first", [False, True], ids=["appended", "prepended"])
def test_adding_a_service_to_services_yaml_moves_nothing(state, first):
    doc = with_services(services_doc(), svc("extra"), svc("extra-np", type="NodePort"), first=first)
    after = planned(doc)
    assert {k: v for k, v in ips_of(after).items() if k in ips_of(state)} == ips_of(state)
    assert {k: v for k, v in node_ports_of(after).items() if k in node_ports_of(state)} == node_ports_of(state)
    extra_np = after.service("default", "extra-np").ports[0].node_port
    assert 30000 <= extra_np <= 32767 and extra_np not in (30080, 30081)


def test_allocated_node_port_for_an_unnamed_port():
    doc = with_services(services_doc(), svc("np", type="NodePort"))
    port = planned(doc).service("default", "np").ports[0]
    assert 30000 <= port.node_port <= 32767
    assert port.node_port == planned(doc).service("default", "np").ports[0].node_port


def test_node_ports_per_port_of_a_multi_port_service():
    doc = with_services(services_doc(), svc("np2", type="NodePort", ports=[
        {"name": "a", "port": 80, "targetPort": 8080}, {"name": "b", "port": 81, "targetPort": 8080},
        {"name": "c", "port": 53, "targetPort": 5353, "protocol": "UDP", "nodePort": 30080}]))
    ports = planned(doc).service("default", "np2").ports
    assert ports[2].node_port == 30080  # UDP 30080 next to backend-nodeport's TCP 30080
    assert ports[0].node_port != ports[1].node_port
    assert {ports[0].node_port, ports[1].node_port}.isdisjoint({30080, 30081})


# --- a running lab (`lab apply`, plan(previous=...)): existing Services keep their addresses ---

def replanned(doc: dict, previous: ClusterState) -> ClusterState:
    return plan(load_topology_text(yaml.safe_dump(doc, sort_keys=False)), previous=previous)


def test_a_new_service_may_not_take_a_running_services_clusterip(state):
    taken = state.service("default", "sticky").cluster_ip
    with pytest.raises(LabError, match=f"clusterIP {taken} of Service default/thief is already allocated "
                                       "to Service default/sticky"):
        replanned(with_services(services_doc(), svc("thief", clusterIP=taken)), state)


def test_a_new_service_may_not_take_a_running_services_node_port():
    base = with_services(services_doc(), svc("np", type="NodePort"))
    before = planned(base)
    owned = before.service("default", "np").ports[0].node_port
    with pytest.raises(LabError, match=f"nodePort {owned}/TCP of Service default/thief is already allocated "
                                       "to Service default/np;"):
        replanned(with_services(base, svc("thief", type="NodePort", ports=[
            {"port": 80, "targetPort": 8080, "nodePort": owned}])), before)


def test_a_service_inserted_earlier_in_the_file_does_not_move_running_ones():
    net = IPv4Network("10.96.0.0/27")
    old = [(f"ns/s{i}", None) for i in range(8)]
    before = services.cluster_ips(net, old)
    for j in range(40):
        after = services.cluster_ips(net, [(f"ns/new{j}", None), *old], previous=before)
        assert {k: after[k] for k in before} == before
        assert after[f"ns/new{j}"] not in before.values()


def test_apply_keeps_allocated_addresses_and_ports(state):
    grown = replanned(with_services(services_doc(), svc("added", type="NodePort"), first=True), state)
    for s in state.services:
        assert grown.service(s.namespace, s.name).cluster_ip == s.cluster_ip
        assert [p.node_port for p in grown.service(s.namespace, s.name).ports] == [p.node_port for p in s.ports]


def test_a_running_service_keeps_its_clusterip_wherever_its_hash_lands():
    assert services.cluster_ips(CIDR, [("ns/a", None)], previous={"ns/a": "10.96.5.5"}) == {"ns/a": "10.96.5.5"}


def test_addresses_of_removed_services_are_free_again():
    out = services.cluster_ips(CIDR, [("ns/new", "10.96.5.5")], previous={"ns/gone": "10.96.5.5"})
    assert out == {"ns/new": "10.96.5.5"}
    assert services.node_ports([("ns/new:", "TCP", 31000)], previous={"ns/gone:": 31000}) == {"ns/new:": 31000}


def test_a_running_service_may_keep_requesting_its_own_address():
    out = services.cluster_ips(CIDR, [("ns/a", "10.96.5.5"), ("ns/h", "None")], previous={"ns/a": "10.96.5.5", "ns/h": None})
    assert out == {"ns/a": "10.96.5.5", "ns/h": None}


def test_running_node_ports_are_kept_and_block_only_their_protocol():
    prev = {"ns/a:": 31000}
    out = services.node_ports([("ns/a:", "TCP", None), ("ns/b:", "UDP", 31000), ("ns/c:", "TCP", None)], previous=prev)
    assert out["ns/a:"] == 31000 and out["ns/b:"] == 31000
    assert out["ns/c:"] != 31000
    with pytest.raises(LabError, match="already allocated"):
        services.node_ports([("ns/a:", "TCP", None), ("ns/d:", "TCP", 31000)], previous=prev)


def test_two_ports_of_one_service_never_share_a_node_port_on_apply():
    ports = [{"name": "a", "port": 80, "targetPort": 8080}, {"name": "b", "port": 81, "targetPort": 8080}]
    before = planned(with_services(services_doc(), svc("np", type="NodePort", ports=ports)))
    held = before.service("default", "np").ports[0].node_port
    edited = [ports[0], {**ports[1], "nodePort": held}]
    try:
        after = replanned(with_services(services_doc(), svc("np", type="NodePort", ports=edited)), before)
    except LabError:
        return  # refusing the edit, as the API server would, is fine too
    a, b = after.service("default", "np").ports
    assert (a.protocol, a.node_port) != (b.protocol, b.node_port)
