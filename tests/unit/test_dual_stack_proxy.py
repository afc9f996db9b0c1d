"""kube-proxy per family, pure: EndpointSlices of addressType IPv6, the IPv6 proxier's rules in both
modes (ip6tables-restore text; table ip6 kube-proxy), each family's rules holding only its own
addresses, and the v4 rules of a dual-stack cluster like those of a v4 one.

Goldens: tests/golden/{iptables,nftables}-dual-stack-<family>-<node>.* (UPDATE_GOLDEN=1 rewrites
them; review the diff).
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, EndpointSliceState
from lab.kube_proxy import iptables, model, nftables, proxiers
from lab.topology.model import Topology
from tests.unit.golden import check_golden

POD_CIDR = "10.244.0.0/16,fd00:10:244::/56"


def web_pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "netexec",
                                                       "ports": [{"name": "http", "containerPort": 8080}]}]}}


def service(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}], **spec}}


def dual(proxy: str = "iptables") -> tuple[ClusterState, tuple[EndpointSliceState, ...]]:
    """Two dual-stack nodes, a pod on each, and a Service of every family shape (serviceCIDR
    follows podCIDR: 10.96.0.0/12 and fd00:10:96::/112)."""
    doc = {"name": "ds", "cluster": {"proxy": proxy, "dns": {"enabled": False}, "podCIDR": POD_CIDR},
           "nodes": [{"name": "n1", "role": "control-plane"}, {"name": "n2"}],
           "manifests": [
               web_pod("web-1", "n1"), web_pod("web-2", "n2"),
               service("both", clusterIPs=["10.96.0.100", "fd00:10:96::100"], ipFamilyPolicy="RequireDualStack"),
               service("v6-only", clusterIP="fd00:10:96::101", ipFamilies=["IPv6"]),
               service("v4-only", clusterIP="10.96.0.102"),
               service("np6", clusterIP="fd00:10:96::103", type="NodePort",
                       ports=[{"port": 80, "targetPort": "http", "nodePort": 30600}]),
               service("ext", clusterIPs=["10.96.0.104", "fd00:10:96::104"], ipFamilyPolicy="PreferDualStack",
                       externalIPs=["172.18.0.200", "fd00:172:18::200"], sessionAffinity="ClientIP"),
               service("nobody", clusterIP="fd00:10:96::105", ipFamilies=["IPv6"], selector={"app": "nobody"}),
           ]}
    state = plan(Topology.model_validate(doc))
    return state, endpoint_slices(state, {})


# --- EndpointSlices ---

def test_a_service_gets_one_slice_per_family():
    state, slices = dual()
    types = {(s.service, s.address_type) for s in slices}
    assert {("both", "IPv4"), ("both", "IPv6"), ("v6-only", "IPv6"), ("v4-only", "IPv4")} <= types
    assert ("v6-only", "IPv4") not in types and ("v4-only", "IPv6") not in types
    v6 = next(s for s in slices if (s.service, s.address_type) == ("both", "IPv6"))
    assert len(v6.endpoints) == 2 and all(":" in e.address for e in v6.endpoints)


def test_each_proxier_reads_only_its_familys_slices():
    state, slices = dual()
    ports = {p.svc.name: p for p in model.service_ports(state, "n1", slices, family="IPv6")}
    assert set(ports) == {"both", "v6-only", "np6", "ext", "nobody"}
    assert ports["both"].cluster_ip == "fd00:10:96::100"
    assert all(":" in e.ip for p in ports.values() for e in p.cluster)
    assert ports["ext"].external_ips == ("fd00:172:18::200",)
    v4 = {p.svc.name for p in model.service_ports(state, "n1", slices)}
    assert v4 == {"both", "v4-only", "ext"}


# --- goldens of both modes, both families ---

@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_iptables_golden(family):
    state, slices = dual()
    check_golden(f"iptables-dual-stack-{family.lower()}-n1.txt", iptables.render(state, "n1", slices, family=family))


@pytest.mark.parametrize("family", ["IPv4", "IPv6"])
def test_nftables_golden(family):
    state, slices = dual("nftables")
    check_golden(f"nftables-dual-stack-{family.lower()}-n1.nft", nftables.render(state, "n1", slices, family=family))


def test_masquerade_is_per_family():
    state, _ = dual()
    assert "-s fd00:10:244::/56" in iptables.masq_agent_rules(state, "IPv6")
    assert "-d fd00:10:96::/112" in iptables.masq_agent_rules(state, "IPv6")
    nft6 = nftables.masq_agent_rules(state, "IPv6")
    assert "table ip6 ip-masq-agent" in nft6 and "ip6 saddr fd00:10:244::/56" in nft6 and "type ipv6_addr" in nft6


# --- what each family's rules hold, and what they must not ---

def test_ipv6_iptables_rules_hold_only_ipv6_addresses():
    state, slices = dual()
    text = iptables.render(state, "n1", slices, family="IPv6")
    assert "-d fd00:10:96::100/128 -p tcp" in text
    assert "DNAT --to-destination [fd00:10:244:" in text
    assert "icmp6-port-unreachable" in text and "icmp-port-unreachable" not in text
    assert "127.0.0.0/8" not in text            # the localnet guard is IPv4's
    assert "10.96." not in text and "172.18.0.200" not in text
    assert "--mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" in text
    assert "! -s fd00:10:244::/56 -d fd00:10:96::100/128" in text


def test_ipv6_nft_table_is_ip6_and_serves_the_v6_nodeport():
    state, slices = dual("nftables")
    text = nftables.render(state, "n1", slices, family="IPv6")
    assert "table ip6 kube-proxy {" in text and "table ip kube-proxy" not in text
    assert "fd00:10:96::103 . tcp . 80 : goto" in text and "tcp . 30600 : goto" in text
    assert "ip6 daddr { fd00:10:96::/112 } drop" in text
    assert "dnat to [fd00:10:244:" in text and "10.96." not in text


def test_v4_rules_of_a_dual_stack_cluster_leave_the_ipv6_services_out():
    state, slices = dual()
    text = iptables.render(state, "n1", slices, family="IPv4")
    assert "fd00" not in text
    assert "-d 10.96.0.100/32" in text and "-d 10.96.0.102/32" in text


def test_no_v6_rules_at_all_fails_the_v6_service():
    """The verdict can fail: render the IPv4 rules only (as before dual-stack) and the IPv6
    ClusterIP is nowhere: the probe of that row finds nothing to translate it."""
    state, slices = dual()
    v4_only = iptables.render(state, "n1", slices, family="IPv4")
    assert "fd00:10:96::101" not in v4_only
    assert "fd00:10:96::101" in iptables.render(state, "n1", slices, family="IPv6")


def test_the_proxiers_restore_each_family_with_its_own_command():
    state, _ = dual()
    ipt = proxiers.of(state)
    assert ipt.restore_for("IPv4") == ("iptables-restore", "--noflush")
    assert ipt.restore_for("IPv6") == ("ip6tables-restore", "--noflush")
    nft = proxiers.of(replace(state, proxy="nftables"))
    assert nft.restore_for("IPv6") == ("nft", "-f", "-")


def test_partial_sync_of_the_v6_table_touches_only_it():
    state, slices = dual("nftables")
    new = replace(state, services=tuple(replace(s, cluster_ip="fd00:10:96::1a1", cluster_ips=("fd00:10:96::1a1",))
                                        if s.name == "v6-only" else s for s in state.services))
    text = nftables.render_update(state, new, "n1", slices, slices, only={"default/v6-only"}, family="IPv6")
    assert "ip6 kube-proxy service-ips" in text and "fd00:10:96::1a1" in text
    assert nftables.render_update(state, new, "n1", slices, slices, only={"default/v6-only"}, family="IPv4") == ""


def test_stale_udp_covers_both_families():
    state, slices = dual()
    udp = replace(state, services=tuple(
        replace(s, ports=tuple(replace(p, protocol="UDP") for p in s.ports)) for s in state.services))
    udp_slices = tuple(replace(sl, ports=tuple(replace(p, protocol="UDP") for p in sl.ports)) for sl in slices)
    stale = {ip for ip, _ in model.stale_udp(udp, (), udp, udp_slices, first=True)}
    assert {"10.96.0.100", "fd00:10:96::100", "fd00:10:96::101"} <= stale
