"""Dual-stack and IPv6-only clusters, the pod side (pure): the topology's podCIDR list, its errors,
the address plan per family, the CNI conflist with two ranges and each pod network's routes per
family. v4-only topologies are covered by the existing goldens, which must not change."""
from __future__ import annotations

import json
from ipaddress import ip_network

import pytest
import yaml

from lab.cni import config
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState
from lab.errors import TopologyError
from lab.kube_proxy import iptables, nftables
from lab.routing import bgp, hostgw, vxlan
from lab.topology.load import load_topology_text
from lab.topology.model import Topology
from tests.unit.golden import ROOT

DUAL = "[10.244.0.0/16, fd00:10:244::/56]"


def topo_text(pod_cidr: str, network: str = "vxlan", extra: str = "", nodes: int = 3) -> str:
    names = ", ".join(f"{{name: n{i}}}" for i in range(1, nodes + 1))
    return (f"name: ds\ncluster:\n  podCIDR: {pod_cidr}\n  network: {network}\n  dns: {{enabled: false}}\n{extra}"
            f"nodes: [{names}]\nhosts: [{{name: outside}}]\nmanifests:\n"
            "  - {apiVersion: apps/v1, kind: Deployment, metadata: {name: web}, spec: {replicas: 4, selector: "
            "{matchLabels: {app: web}}, template: {metadata: {labels: {app: web}}, spec: {containers: "
            "[{name: web, image: netexec, ports: [{containerPort: 8080}]}]}}}}\n"
            "  - {apiVersion: v1, kind: Pod, metadata: {name: hostnet}, spec: {hostNetwork: true, nodeName: n1, "
            "containers: [{name: c, image: netexec, ports: [{containerPort: 9000}]}]}}\n")


def state_of(pod_cidr: str, network: str = "vxlan", extra: str = "") -> ClusterState:
    return plan(load_topology_text(topo_text(pod_cidr, network, extra)))


def errors(text: str) -> str:
    with pytest.raises(TopologyError) as e:
        load_topology_text(text, "ds.yaml")
    return str(e.value)


# --- the topology ---

@pytest.mark.parametrize("written, families", [
    ("10.244.0.0/16", (4,)),
    (DUAL, (4, 6)),
    ('"10.244.0.0/16,fd00:10:244::/56"', (4, 6)),          # as --cluster-cidr takes it
    ('"fd00:10:244::/56, 10.244.0.0/16"', (6, 4)),          # IPv6 primary
    ("fd00:10:244::/56", (6,)),
])
def test_pod_cidr_takes_one_or_two_cidrs_in_the_first_ones_family_order(written, families):
    topo = load_topology_text(topo_text(written))
    assert topo.cluster.families == families
    assert plan(topo).families == families


def test_two_cidrs_of_one_family_are_refused_with_the_fix():
    text = errors(topo_text("[10.244.0.0/16, 10.245.0.0/16]"))
    assert "ds.yaml:3: cluster.podCIDR" in text
    assert "two IPv4 CIDRs" in text and "hint: give one IPv4 and one IPv6 CIDR" in text


def test_three_cidrs_and_a_bad_one_are_refused():
    assert "podCIDR takes at most 2 items, found 3" in errors(topo_text("[10.244.0.0/16, fd00::/56, fd01::/56]"))
    text = errors(topo_text('"10.244.0.0/16,fd00::/130"'))
    assert "must be an IPv4 or IPv6 network" in text and "found 'fd00::/130'" in text
    assert "the network is fd00::/56" in errors(topo_text("[10.244.0.0/16, 'fd00::1/56']"))


@pytest.mark.parametrize("network", ["cloud-routes", "vpc"])
def test_a_backend_that_cannot_carry_ipv6_says_so(network):
    extra = "  proxy: iptables\n" if network == "vpc" else ""
    text = errors(topo_text(DUAL, network, extra).replace("nodes:", "underlay: {switch: ovs}\nnodes:"))
    assert f"cluster.network: network {network} cannot carry IPv6 pods (a dual-stack podCIDR" in text
    assert "use one of host-gw, vxlan, bgp" in text


def test_what_else_cannot_do_ipv6_says_so_all_at_once():
    text = errors(topo_text("fd00:10:244::/56", extra="  proxy: ebpf\n  cni: ./my-cni\n"))
    assert "cluster.proxy: proxy ebpf hooks IPv4 sockets only" in text
    assert "cluster.cni: a CNI plugin of one's own" in text and "an IPv6-only cluster" in text


def test_too_small_ipv6_prefixes_name_the_ipv6_mask():
    text = errors(topo_text("[10.244.0.0/16, 'fd00:10:244::/120']"))
    assert "podCIDR fd00:10:244::/120 is smaller than one node's pod subnet (nodeCIDRMaskSizeIPv6 64)" in text
    text = errors(topo_text("[10.244.0.0/16, 'fd00:10:244::/63']"))
    assert "podCIDR fd00:10:244::/63 with nodeCIDRMaskSizeIPv6 64 has room for 2 nodes, the topology has 3" in text
    text = errors(topo_text("[10.244.0.0/16, 'fd00:10::/32']"))
    assert "more than 16 bits longer" in text


def test_ipv6_ranges_must_not_overlap_either():
    text = errors(topo_text("[10.244.0.0/16, 'fd00:172:18::/56']"))
    assert "underlay.subnetIPv6 fd00:172:18::/64 overlaps cluster.podCIDR fd00:172:18::/56" in text


def test_a_vxlan_pod_mtu_fits_the_ipv6_tunnel():
    assert state_of("10.244.0.0/16").mtu == 1450
    assert state_of(DUAL).mtu == 1430
    assert state_of(DUAL, "host-gw").mtu == 1500


# --- the address plan ---

def test_every_pod_has_an_address_of_each_family_in_order_and_ip_is_the_first():
    s = state_of(DUAL)
    assert s.pod_cidrs == ("10.244.0.0/16", "fd00:10:244::/56")
    for p in s.pods:
        assert [ip_network(ip).version for ip in p.pod_ips] == [4, 6]
        assert p.ip == p.pod_ips[0]
    backends = [p for p in s.pods if not p.host_network]
    assert all(ip_network(p.ip_of(4)).subnet_of(ip_network(s.node(p.node).pod_cidr_of(4))) for p in backends)
    assert all(ip_network(p.ip_of(6)).subnet_of(ip_network(s.node(p.node).pod_cidr_of(6))) for p in backends)


def test_ipv6_primary_orders_everything_ipv6_first():
    s = state_of('"fd00:10:244::/56,10.244.0.0/16"')
    assert s.pod_cidr == "fd00:10:244::/56" and s.node("n1").pod_cidr == "fd00:10:244::/64"
    assert s.node("n1").cidrs == ("fd00:10:244::/64", "10.244.0.0/24")
    assert all(ip_network(p.ip).version == 6 for p in s.pods)


def test_nodes_and_hosts_get_deterministic_ula_underlay_addresses_and_pod_subnets():
    s = state_of(DUAL)
    assert [(n.ip, n.ip6, n.cidrs) for n in s.nodes] == [
        ("172.18.0.2", "fd00:172:18::2", ("10.244.0.0/24", "fd00:10:244::/64")),
        ("172.18.0.3", "fd00:172:18::3", ("10.244.1.0/24", "fd00:10:244:1::/64")),
        ("172.18.0.4", "fd00:172:18::4", ("10.244.2.0/24", "fd00:10:244:2::/64"))]
    assert s.hosts[0].ip6 == "fd00:172:18::5"
    assert s.node("n2").gateway_of(6) == "fd00:10:244:1::1"
    hostnet = next(p for p in s.pods if p.host_network)
    assert hostnet.pod_ips == ("172.18.0.2", "fd00:172:18::2")


def test_ipv6_only_pods_have_one_ipv6_address_and_the_record_keeps_the_single_stack_shape():
    s = state_of("fd00:10:244::/56", "host-gw")
    assert s.families == (6,) and s.pod_cidrs == ()
    assert all(p.ips == () and ip_network(p.ip).version == 6 for p in s.pods)
    assert next(p for p in s.pods if p.host_network).ip == "fd00:172:18::2"


def test_a_v4_only_plan_has_no_ipv6_anything():
    s = state_of("10.244.0.0/16")
    assert s.pod_cidrs == () and s.underlay_subnet6 == ""
    assert all(n.ip6 == "" and n.pod_cidrs == () for n in s.nodes)
    assert all(p.ips == () for p in s.pods)


def test_the_state_round_trips_through_the_record_with_both_families():
    s = state_of(DUAL)
    again = ClusterState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s


def test_lab_apply_keeps_both_addresses_and_the_round_robin_goes_on_per_family():
    topo = load_topology_text(topo_text(DUAL))
    first = plan(topo)
    doc = yaml.safe_load(topo_text(DUAL))
    doc["manifests"][0]["spec"]["replicas"] = 6
    second = plan(Topology.model_validate(doc), previous=first)
    before = {p.key: p.pod_ips for p in first.pods}
    assert all(p.pod_ips == before[p.key] for p in second.pods if p.key in before)
    new = [p for p in second.pods if p.key not in before]
    assert new and all(len(p.pod_ips) == 2 for p in new)
    used = [ip for p in second.pods if not p.host_network for ip in p.pod_ips]
    assert len(used) == len(set(used))


# --- CNI ---

def test_the_conflist_has_one_range_set_and_one_default_route_per_family():
    s = state_of(DUAL)
    ipam = config.pod_network(s, s.node("n2"), "/tmp/ipam")["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}],
                              [{"subnet": "fd00:10:244:1::/64", "gateway": "fd00:10:244:1::1"}]]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_an_ipv6_only_conflist_has_the_ipv6_range_only():
    s = state_of("fd00:10:244::/56", "host-gw")
    ipam = config.pod_network(s, s.node("n1"), "/tmp/ipam")["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[{"subnet": "fd00:10:244::/64", "gateway": "fd00:10:244::1"}]]
    assert ipam["routes"] == [{"dst": "::/0"}]


# --- routes per family ---

def test_host_gw_routes_each_family_via_the_peers_address_of_that_family():
    s = state_of(DUAL, "host-gw")
    assert hostgw.render(s, s.node("n1")).ip == (
        "route replace 10.244.1.0/24 via 172.18.0.3 dev eth0",
        "route replace fd00:10:244:1::/64 via fd00:172:18::3 dev eth0",
        "route replace 10.244.2.0/24 via 172.18.0.4 dev eth0",
        "route replace fd00:10:244:2::/64 via fd00:172:18::4 dev eth0")


def test_vxlan_has_a_second_vtep_over_the_ipv6_underlay():
    s = state_of(DUAL)
    ops = vxlan.render(s, s.node("n1"))
    v6 = [line for line in ops.ip if "flannel-v6.1" in line]
    mac2, mac3 = vxlan.vtep_mac(s.node("n2"), 6), vxlan.vtep_mac(s.node("n3"), 6)
    assert v6 == [
        f"link add flannel-v6.1 address {vxlan.vtep_mac(s.node('n1'), 6)} type vxlan id 1 local fd00:172:18::2 "
        "dev eth0 dstport 8472 nolearning",
        "link set flannel-v6.1 mtu 1430 up",
        "addr add fd00:10:244::/128 dev flannel-v6.1 nodad",
        f"neigh replace fd00:10:244:1:: lladdr {mac2} dev flannel-v6.1 nud permanent",
        "route replace fd00:10:244:1::/64 via fd00:10:244:1:: dev flannel-v6.1 onlink",
        f"neigh replace fd00:10:244:2:: lladdr {mac3} dev flannel-v6.1 nud permanent",
        "route replace fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1 onlink"]
    assert f"fdb append {mac2} dev flannel-v6.1 dst fd00:172:18::3" in ops.bridge
    assert len({vxlan.vtep_mac(n, f) for n in s.nodes for f in (4, 6)}) == 6
    assert "link set flannel.1 mtu 1450 up" in ops.ip  # the IPv4 VTEP is as before


def test_vxlan_ipv6_only_has_the_ipv6_vtep_only():
    s = state_of("fd00:10:244::/56")
    ops = vxlan.render(s, s.node("n1"))
    assert not any("flannel.1 " in line for line in ops.ip)
    assert any(line.startswith("link add flannel-v6.1") for line in ops.ip)


def test_bgp_announces_each_family_over_sessions_of_that_family():
    s = state_of(DUAL, "bgp")
    conf = bgp.frr_conf(s, "n1")
    assert " neighbor 172.18.0.3 remote-as 64512" in conf and " neighbor fd00:172:18::3 remote-as 64512" in conf
    v4 = conf[conf.index(" address-family ipv4 unicast"):conf.index(" address-family ipv6 unicast")]
    v6 = conf[conf.index(" address-family ipv6 unicast"):]
    assert "  network 10.244.0.0/24" in v4 and "  neighbor 172.18.0.3 activate" in v4 and "fd00" not in v4
    assert "  network fd00:10:244::/64" in v6 and "  neighbor fd00:172:18::3 activate" in v6
    assert "  neighbor 172.18.0.3 activate" not in v6
    assert bgp.render(s, s.node("n1")).ip == ("route replace blackhole 10.244.0.0/24 metric 1000",
                                              "route replace blackhole fd00:10:244::/64 metric 1000")


def test_bgp_ipv6_only_has_no_ipv4_sessions_but_an_ipv4_router_id():
    s = state_of("fd00:10:244::/56", "bgp")
    conf = bgp.frr_conf(s, "n1")
    assert " bgp router-id 172.18.0.2" in conf and "neighbor 172.18.0.3" not in conf
    assert "address-family ipv4" not in conf and "  network fd00:10:244::/64" in conf


def test_bgp_v4_config_is_unchanged_by_the_family_loop():
    """The shipped goldens (frr-*.conf) hold the exact v4 text; here: one AF block, as before."""
    conf = bgp.frr_conf(state_of("10.244.0.0/16", "bgp"), "n1")
    assert conf.count(" address-family ipv") == 1 and "ipv6" not in conf


def test_the_ipv4_egress_masquerade_has_nothing_to_do_for_ipv6_only_pods():
    s = state_of("fd00:10:244::/56", "host-gw")
    assert iptables.masq_agent_rules(s) == "" and nftables.masq_agent_rules(s) == ""   # no IPv4 pods: nothing
    assert "-s fd00:10:244::/56" in iptables.masq_agent_rules(s, "IPv6")              # the IPv6 proxier's own
    assert "table ip6 ip-masq-agent" in nftables.masq_agent_rules(s, "IPv6")


@pytest.mark.parametrize("name", ["dual-stack", "ipv6-only"])
def test_the_shipped_topologies_plan(name):
    from lab.topology.load import load_topology
    s = plan(load_topology(ROOT / "topologies" / f"{name}.yaml"))
    assert 6 in s.families
    assert all(p.ip_of(6) for p in s.pods if not p.host_network)


# --- what the user sees and what lab check probes ---

def test_get_pods_json_and_describe_show_both_addresses_as_kubectl_does():
    from lab import views
    s = state_of(DUAL)
    pod = next(p for p in s.pods if not p.host_network)
    obj = views.pod_object(pod, s, lambda key: True)
    assert obj["status"]["podIP"] == pod.ip_of(4)
    assert obj["status"]["podIPs"] == [{"ip": pod.ip_of(4)}, {"ip": pod.ip_of(6)}]
    node = views.node_object(s.node("n2"))
    assert node["spec"]["podCIDRs"] == ["10.244.1.0/24", "fd00:10:244:1::/64"]
    assert {"type": "InternalIP", "address": "fd00:172:18::3"} in node["status"]["addresses"]
    header, rows = views.pod_rows(s, lambda key: True, 0.0, "default", True)
    first = sorted(s.pods, key=lambda p: p.name)[0]
    assert rows[0][header.index("IP")] == first.ip  # kubectl's IP column: podIP only


def test_lab_check_plans_pod_to_pod_and_node_to_pod_rows_per_family():
    from lab.probe import invariants
    s = state_of(DUAL)
    rows = invariants.expectations(s)
    p2p = [e for e in rows if e.check == "pod-to-pod"]
    v6 = [e for e in p2p if ":" in e.probe.dst_ip]
    assert len(v6) * 2 == len(p2p) and all(e.source and ":" in e.source for e in v6 if e.source)
    assert any(e.check == "node-to-pod" and ":" in e.probe.dst_ip for e in rows)
    single = invariants.expectations(state_of("10.244.0.0/16"))
    assert not any(":" in e.probe.dst_ip for e in single)


def test_lab_check_expects_a_v4_only_policy_to_deny_the_v6_rows_only():
    from lab.probe import invariants
    text = topo_text(DUAL) + (
        "  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: only-v4}, spec: "
        "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}}\n")
    s = plan(load_topology_text(text))
    webs = {ip for p in s.pods if not p.host_network for ip in p.pod_ips}
    p2p = [e for e in invariants.expectations(s) if e.check == "pod-to-pod" and e.probe.dst_ip in webs]
    assert p2p and all(e.reply == (":" not in e.probe.dst_ip) for e in p2p)


def test_netexec_serves_both_families_where_the_pod_has_both():
    from lab.node.containers import netexec_args
    s = state_of(DUAL)
    pod = next(p for p in s.pods if not p.host_network)
    assert netexec_args(pod, pod.containers[0])[-4:] == ["--bind", "0.0.0.0", "--bind", "::"]
    v4 = state_of("10.244.0.0/16")
    assert "--bind" not in netexec_args(v4.pods[0], v4.pods[0].containers[0])


def test_the_renewed_link_local_is_the_kernels_eui64_of_the_planned_mac():
    from lab.controlplane import ipam, naming
    assert str(ipam.link_local(naming.node_mac("172.18.0.2"))) == "fe80::858:acff:fe12:2"  # as seen on eth0
