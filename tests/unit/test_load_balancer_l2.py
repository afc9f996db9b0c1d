"""LoadBalancer Services with real addresses (cluster.loadBalancer, MetalLB L2 style): the pool's
validation, allocation (loadBalancerIP, loadBalancerClass, exhaustion, stability across `lab
apply`), kube-proxy's load-balancer and externalIP rules in both modes (goldens, and packets through
the simulators: an LB IP reaches an endpoint, a source outside loadBalancerSourceRanges is
dropped), the speaker election, and what `lab get svc` shows."""
from __future__ import annotations

import random

import pytest
import yaml

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.loadbalancer import LAB_CLASS, allocate, speakers
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState
from lab.errors import LabError, TopologyError
from lab.kube_proxy import iptables, nftables
from lab.topology.load import load_topology_text
from lab.topology.model import Topology
from lab.views import service_object, service_rows
from tests.unit.golden import check_golden
from tests.unit.iptables_sim import Packet
from tests.unit.test_kube_proxy_packets import at, fresh_node, web_pod

from ipaddress import IPv4Network

POOL = "172.18.0.240/29"
OUTSIDE = "172.18.0.5"
STRANGER = "172.18.0.6"


def lb_doc(*services: dict, pool=(POOL,), hosts=("internet", "stranger")) -> dict:
    return {"name": "lb", "cluster": {"dns": {"enabled": False},
                                      **({"loadBalancer": {"mode": "l2", "addresses": list(pool)}} if pool else {})},
            "nodes": [{"name": "n1"}, {"name": "n2"}, {"name": "n3"}], "hosts": [{"name": h} for h in hosts],
            "manifests": [web_pod("n1"), web_pod("n2"), *services]}


def lb(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}],
                     **spec}}


def planned(doc: dict, previous: ClusterState = None) -> ClusterState:
    return plan(Topology.model_validate(doc), previous=previous)


def ips(state: ClusterState) -> dict[str, str]:
    return {s.name: s.load_balancer_ip for s in state.services}


def ready(state: ClusterState) -> dict[str, bool]:
    return {p.key: True for p in state.pods}


# --- the pool ---

@pytest.mark.parametrize("pool, message", [
    ("10.0.0.0/28", "is not inside the underlay subnet 172.18.0.0/24"),
    ("172.18.0.0/28", "holds 172.18.0.0, which the underlay's network"),
    ("172.18.0.4/30", "holds 172.18.0.4"),             # n3 is .4, the hosts .5 and .6
    ("172.18.0.248/29", "holds 172.18.0.255"),
])
def test_a_pool_must_be_inside_the_underlay_and_clear_of_the_machines(pool, message):
    with pytest.raises(TopologyError, match=message) as caught:
        load_topology_text(yaml.safe_dump(lb_doc(pool=(pool,))))
    assert "172.18.0.240/28" in str(caught.value) or "underlay" in str(caught.value)


def test_load_balancer_fields_need_type_load_balancer_and_an_ip_of_the_pool():
    doc = lb_doc(lb("a", loadBalancerIP="172.18.0.100"), lb("b", type="NodePort", loadBalancerSourceRanges=["10.0.0.0/8"]),
                 lb("c", loadBalancerIP="172.18.0.241"), lb("d", loadBalancerIP="172.18.0.241"))
    with pytest.raises(TopologyError) as caught:
        load_topology_text(yaml.safe_dump(doc))
    text = str(caught.value)
    assert "loadBalancerIP 172.18.0.100 is in no load-balancer pool (172.18.0.240/29)" in text
    assert "loadBalancerSourceRanges is only for type LoadBalancer" in text
    assert "loadBalancerIP 172.18.0.241 is defined twice" in text


# --- allocation ---

def test_addresses_come_from_the_pool_lowest_first_in_file_order():
    state = planned(lb_doc(lb("a"), lb("b"), lb("c", loadBalancerIP="172.18.0.240")))
    assert ips(state) == {"a": "172.18.0.241", "b": "172.18.0.242", "c": "172.18.0.240"}


def test_another_load_balancer_class_stays_pending_and_the_labs_own_is_served():
    state = planned(lb_doc(lb("theirs", loadBalancerClass="example.com/lb"), lb("ours", loadBalancerClass=LAB_CLASS)))
    assert ips(state) == {"theirs": "", "ours": "172.18.0.240"}
    assert state.service("default", "theirs").ports[0].node_port  # still the NodePort Service it is


def test_without_a_pool_every_load_balancer_stays_pending():
    assert ips(planned(lb_doc(lb("a"), pool=()))) == {"a": ""}


def test_exhaustion_names_the_pool_and_the_services_holding_it():
    with pytest.raises(LabError, match=r"pool 172.18.0.240/31 .* exhausted: no address left for Service default/c; "
                                       r"it holds default/a \(172.18.0.240\), default/b \(172.18.0.241\)"):
        planned(lb_doc(lb("a"), lb("b"), lb("c"), pool=("172.18.0.240/31",)))


def test_a_service_keeps_its_address_across_apply_whatever_is_added_before_it():
    first = planned(lb_doc(lb("b")))
    again = planned(lb_doc(lb("a"), lb("b")), previous=first)
    assert ips(first) == {"b": "172.18.0.240"} and ips(again) == {"a": "172.18.0.241", "b": "172.18.0.240"}
    with pytest.raises(LabError, match="already allocated to Service default/b"):
        planned(lb_doc(lb("a", loadBalancerIP="172.18.0.240"), lb("b")), previous=first)


def test_allocate_alone():
    pools = [IPv4Network("10.0.0.0/31")]
    assert allocate(pools, [("x", None), ("y", "10.0.0.0")]) == {"y": "10.0.0.0", "x": "10.0.0.1"}
    assert allocate([], [("x", None)]) == {}
    with pytest.raises(LabError, match="in no load-balancer pool"):
        allocate(pools, [("x", "10.0.0.9")])


def test_allocate_load_balancer_node_ports_false_allocates_none_but_keeps_a_given_one():
    state = planned(lb_doc(lb("a", allocateLoadBalancerNodePorts=False),
                           lb("b", allocateLoadBalancerNodePorts=False, ports=[{"port": 80, "targetPort": 8080,
                                                                                 "nodePort": 30777}])))
    assert state.service("default", "a").ports[0].node_port is None
    assert state.service("default", "b").ports[0].node_port == 30777


def test_state_round_trips_through_json():
    state = planned(lb_doc(lb("a", loadBalancerSourceRanges=["172.18.0.5/32"], externalIPs=["172.18.0.2"])))
    assert ClusterState.from_dict(state.to_dict()) == state


# --- kube-proxy's rules ---

CASES = {
    "cluster": lb("web"),
    "etp-local": lb("web", externalTrafficPolicy="Local"),
    "source-ranges": lb("web", loadBalancerSourceRanges=["172.18.0.5/32", "10.1.0.0/16"]),
    "node-in-range": lb("web", loadBalancerSourceRanges=["172.18.0.0/24"]),
    "external-ips": {**lb("web", externalIPs=["172.18.0.2"]), "spec": {"selector": {"app": "web"}, "externalIPs": [
        "172.18.0.2"], "ports": [{"port": 80, "targetPort": 8080}]}},
    "no-endpoints": lb("web", selector={"app": "nothing"}, externalIPs=["172.18.0.2"]),
}


def case(name: str) -> ClusterState:
    return planned(lb_doc(CASES[name]))


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("node", ["n1", "n3"])
def test_golden_rules(name, node):
    state = case(name)
    slices = endpoint_slices(state, ready(state))
    check_golden(f"iptables-lb-{name}-{node}.txt", iptables.render(state, node, slices))
    check_golden(f"nftables-lb-{name}-{node}.nft", nftables.render(state, node, slices))


MODES = ("iptables", "nftables")
LB_IP = "172.18.0.240"
WEB = {"10.244.0.2", "10.244.1.2"}


def trace(mode: str, state: ClusterState, node: str, src: str, dst: str, hook: str = "PREROUTING", ready_=None):
    slices = endpoint_slices(state, ready_ or ready(state))
    rs = fresh_node(mode, state, node, slices, random=random.Random(7).random)
    return [rs.trace(Packet(src, dst, "tcp", 80), hook) for _ in range(12)]


def web_ips(state: ClusterState) -> set[str]:
    return {p.ip for p in state.pods if p.name.startswith("web-")}


@pytest.mark.parametrize("mode", MODES)
def test_lb_ip_reaches_every_endpoint_masqueraded_on_any_node(mode):
    state = case("cluster")
    for node in ("n1", "n3"):
        outs = trace(mode, state, node, OUTSIDE, LB_IP)
        assert {o.dnat for o in outs} <= at(web_ips(state), 8080) and all(o.masquerade for o in outs), outs[0].path
        assert {o.verdict for o in outs} == {"ACCEPT"}


@pytest.mark.parametrize("mode", MODES)
def test_etp_local_keeps_the_client_address_and_drops_where_no_endpoint_is(mode):
    state = case("etp-local")
    n1 = next(p.ip for p in state.pods if p.node == "n1")
    outs = trace(mode, state, "n1", OUTSIDE, LB_IP)
    assert {o.dnat for o in outs} == at(n1, 8080) and not any(o.masquerade for o in outs)
    out = trace(mode, state, "n3", OUTSIDE, LB_IP)[0]
    assert (out.dnat, out.verdict) == (None, "DROP"), out.path


@pytest.mark.parametrize("mode", MODES)
def test_source_ranges_let_the_range_in_and_drop_the_rest(mode):
    state = case("source-ranges")
    allowed = trace(mode, state, "n1", OUTSIDE, LB_IP)
    assert all(o.dnat in at(web_ips(state), 8080) and o.verdict == "ACCEPT" for o in allowed), allowed[0].path
    out = trace(mode, state, "n1", STRANGER, LB_IP)[0]
    assert (out.dnat, out.verdict) == (None, "DROP"), out.path
    # the NodePort is not subject to loadBalancerSourceRanges (kube-proxy: "for better or for worse")
    port = state.service("default", "web").ports[0].node_port
    rs = fresh_node(mode, state, "n1", endpoint_slices(state, ready(state)), random=random.Random(1).random)
    out = rs.trace(Packet(STRANGER, state.node("n1").ip, "tcp", port), "PREROUTING")
    assert out.dnat in at(web_ips(state), 8080) and out.verdict == "ACCEPT", out.path


@pytest.mark.parametrize("mode", MODES)
def test_external_ips_are_served_like_load_balancer_ips(mode):
    state = case("external-ips")
    outs = trace(mode, state, "n2", OUTSIDE, "172.18.0.2")
    assert all(o.dnat in at(web_ips(state), 8080) and o.masquerade for o in outs), outs[0].path


@pytest.mark.parametrize("mode", MODES)
def test_an_lb_ip_without_endpoints_is_rejected(mode):
    out = trace(mode, case("no-endpoints"), "n1", OUTSIDE, LB_IP)[0]
    assert (out.dnat, out.verdict) == (None, "REJECT"), out.path


@pytest.mark.parametrize("mode", MODES)
def test_partial_sync_to_an_lb_service_leaves_what_a_full_render_leaves(mode):
    before = planned(lb_doc(lb("web", type="ClusterIP")))
    after = planned(lb_doc(lb("web", loadBalancerSourceRanges=["172.18.0.5/32"])), previous=before)
    old, new = endpoint_slices(before, ready(before)), endpoint_slices(after, ready(after))
    rs = fresh_node(mode, before, "n1", old, random=random.Random(2).random)
    renderer = iptables if mode == "iptables" else nftables
    text = renderer.render_update(before, after, "n1", old, new, {"default/web"})
    rs.restore(text) if mode == "iptables" else rs.load(text)
    out = rs.trace(Packet(STRANGER, LB_IP, "tcp", 80), "PREROUTING")
    assert (out.dnat, out.verdict) == (None, "DROP"), out.path
    out = rs.trace(Packet(OUTSIDE, LB_IP, "tcp", 80), "PREROUTING")
    assert out.dnat in at(WEB | web_ips(after), 8080), out.path


# --- the speaker election ---

def test_one_speaker_per_address_among_running_nodes_stable_and_spread():
    state = planned(lb_doc(*(lb(f"s{i}") for i in range(6))))
    slices = endpoint_slices(state, ready(state))
    chosen = speakers(state.services, slices, ["n1", "n2", "n3"])
    assert set(chosen) == {s.load_balancer_ip for s in state.services} and len(set(chosen.values())) > 1
    assert speakers(state.services, slices, ["n3", "n1", "n2"]) == chosen           # order does not matter
    moved = speakers(state.services, slices, [n for n in ("n1", "n2", "n3") if n != "n1"])
    assert all(moved[ip] == node for ip, node in chosen.items() if node != "n1")   # only n1's addresses move
    assert all(moved[ip] != "n1" for ip in chosen)


def test_etp_local_speaks_only_from_nodes_with_a_ready_endpoint_and_no_endpoints_is_silence():
    state = case("etp-local")
    everyone = ready(state)
    assert speakers(state.services, endpoint_slices(state, everyone), ["n3"]) == {}
    assert set(speakers(state.services, endpoint_slices(state, everyone), ["n1", "n2", "n3"]).values()) <= {"n1", "n2"}
    n1_only = {k: p.node == "n1" for k, p in ((p.key, p) for p in state.pods)}
    assert speakers(state.services, endpoint_slices(state, n1_only), ["n1", "n2", "n3"]) == {LB_IP: "n1"}
    nobody = {k: False for k in everyone}
    assert speakers(case("cluster").services, endpoint_slices(case("cluster"), nobody), ["n1", "n2"]) == {}


# --- views ---

def test_get_svc_shows_the_address_and_json_the_ingress():
    state = planned(lb_doc(lb("a", externalIPs=["172.18.0.2"]), lb("p", loadBalancerClass="example.com/x")))
    header, rows = service_rows(state, 0.0, "default", wide=False)
    shown = {r[0]: dict(zip(header, r))["EXTERNAL-IP"] for r in rows}
    assert shown == {"a": "172.18.0.240,172.18.0.2", "p": "<pending>"}
    obj = service_object(state.service("default", "a"))
    assert obj["status"] == {"loadBalancer": {"ingress": [{"ip": "172.18.0.240", "ipMode": "VIP"}]}}
    assert obj["spec"]["externalIPs"] == ["172.18.0.2"]
    assert service_object(state.service("default", "p"))["status"] == {"loadBalancer": {}}


# --- lab check's loadbalancer row ---

def test_check_row_probes_every_address_from_every_host_and_fences_outside_the_ranges():
    from lab.probe import services as checks
    state = planned(lb_doc(lb("web", loadBalancerSourceRanges=["172.18.0.5/32"]),
                           lb("loc", externalTrafficPolicy="Local", externalIPs=["172.18.0.2"])))
    asks = [a for a in checks.plan(state, endpoint_slices(state, ready(state))) if a.check == "loadbalancer"]
    by = {(a.probe.src_netns.rsplit("-", 1)[-1], a.probe.dst_ip): a for a in asks}
    assert set(by) == {(h, ip) for h in ("internet", "stranger") for ip in ("172.18.0.240", "172.18.0.241", "172.18.0.2")}
    assert by[("internet", "172.18.0.240")].reply and not by[("stranger", "172.18.0.240")].reply
    assert by[("stranger", "172.18.0.241")].source == "172.18.0.6"          # Local: the host's own address
    assert by[("internet", "172.18.0.240")].source == "node"
