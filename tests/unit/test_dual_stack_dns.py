"""Dual-stack DNS and `lab check` rows per family, pure: AAAA records for each IPv6 ClusterIP, one
per ready IPv6 endpoint of a headless Service, IPv6 pod names; `getent ahostsv6` questions that
expect the IPv6 addresses; Service rows for each ClusterIP of a dual-stack Service, from the
client's address of that family."""
from __future__ import annotations

import pytest

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.dns import records
from lab.probe import dns as dns_probe
from lab.probe import services as service_probe
from lab.topology.model import Topology


def pod(name: str, node: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "netexec",
                                                       "ports": [{"containerPort": 8080}]}], **spec}}


def service(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}], **spec}}


@pytest.fixture(scope="module")
def lab():
    doc = {"name": "dsdns", "cluster": {"podCIDR": "10.244.0.0/16,fd00:10:244::/56"},
           "nodes": [{"name": "n1", "role": "control-plane"}, {"name": "n2"}],
           "manifests": [pod("web-1", "n1"), pod("web-2", "n2"),
                         service("both", clusterIPs=["10.96.0.100", "fd00:10:96::100"], ipFamilyPolicy="RequireDualStack"),
                         service("six", clusterIP="fd00:10:96::101", ipFamilies=["IPv6"]),
                         service("four", clusterIP="10.96.0.102"),
                         service("headless", clusterIP="None", ipFamilyPolicy="PreferDualStack")]}
    state = plan(Topology.model_validate(doc))
    ready = {p.key: p.name != "web-2" for p in state.pods}   # web-2 not ready: not in the headless answers
    return state, endpoint_slices(state, ready)


def v6_of(state, name: str) -> str:
    return next(p.ip_of(6) for p in state.pods if p.name == name)


def test_aaaa_records_per_ipv6_cluster_ip_and_ready_ipv6_endpoint(lab):
    state, slices = lab
    hosts = dict.fromkeys(records.records(state, slices).hosts)
    d = state.dns_domain
    assert ("fd00:10:96::100", f"both.default.svc.{d}") in hosts and ("10.96.0.100", f"both.default.svc.{d}") in hosts
    assert ("fd00:10:96::101", f"six.default.svc.{d}") in hosts
    assert not any(ip.startswith("fd00") and name.startswith("four.") for ip, name in hosts)
    web1, web2 = v6_of(state, "web-1"), v6_of(state, "web-2")
    assert (web1, f"headless.default.svc.{d}") in hosts
    assert (web2, f"headless.default.svc.{d}") not in hosts           # not ready: no AAAA
    assert (web1, f"{web1.replace(':', '-')}.default.pod.{d}") in hosts  # the pod's own IPv6 name


def test_the_hosts_file_lists_ipv6_after_ipv4_and_puts_the_service_first_for_ptr(lab):
    state, slices = lab
    text = records.hosts_file(records.records(state, slices))
    lines = text.splitlines()
    first_v6 = next(i for i, line in enumerate(lines) if ":" in line.split()[0])
    assert all(":" not in line.split()[0] for line in lines[:first_v6])
    assert f"fd00:10:96::100 both.default.svc.{state.dns_domain}\n" in text   # dnsmasq's PTR: the first name


def test_getent_ahostsv6_questions_expect_the_ipv6_addresses(lab):
    state, slices = lab
    qs = {(q.argv[1], q.argv[2], q.pod.name): q for q in dns_probe.plan(state, slices) if q.argv[0] == "getent"}
    fqdn = f"both.default.svc.{state.dns_domain}"
    assert qs[("ahostsv6", fqdn, "web-1")].expected == {"fd00:10:96::100"}
    assert qs[("ahostsv4", fqdn, "web-1")].expected == {"10.96.0.100"}
    assert qs[("ahostsv6", f"six.default.svc.{state.dns_domain}", "web-1")].expected == {"fd00:10:96::101"}
    assert ("ahostsv4", f"six.default.svc.{state.dns_domain}", "web-1") not in qs   # no A record to ask for
    assert ("ahostsv6", f"four.default.svc.{state.dns_domain}", "web-1") not in qs  # glibc would map the A record
    assert qs[("ahostsv6", f"headless.default.svc.{state.dns_domain}", "web-1")].expected == {v6_of(state, "web-1")}


def test_an_aaaa_question_fails_on_an_ipv4_only_answer(lab):
    """The verdict can fail: a resolver that has only the A record answers ahostsv6 with the
    IPv4-mapped address (glibc's AI_V4MAPPED), which is not the IPv6 ClusterIP."""
    state, slices = lab
    q = next(q for q in dns_probe.plan(state, slices) if q.argv[1] == "ahostsv6" and q.argv[2].startswith("both."))
    mapped = dns_probe.Reply(0, "::ffff:10.96.0.100 STREAM both.default.svc.cluster.local\n")
    assert dns_probe.judge(q, mapped)[0] is False
    right = dns_probe.Reply(0, "fd00:10:96::100 STREAM both.default.svc.cluster.local\n")
    assert dns_probe.judge(q, right)[0] is True


def test_service_rows_for_each_cluster_ip_from_the_clients_address_of_its_family(lab):
    state, slices = lab
    asks = [a for a in service_probe.plan(state, slices) if a.check == "service" and a.client]
    v6 = [a for a in asks if a.probe.dst_ip == "fd00:10:96::100"]
    v4 = [a for a in asks if a.probe.dst_ip == "10.96.0.100"]
    assert v6 and v4
    assert all(":" in a.source for a in v6) and all(":" not in a.source for a in v4)
    assert any(a.probe.dst_ip == "fd00:10:96::101" for a in asks)
    assert not any(a.probe.dst_ip.startswith("fd00") and "four" in a.subject for a in asks)


def test_each_familys_probes_are_judged_apart(lab):
    """A broken IPv6 rule set must not hide in a pool with the IPv4 probes (48 of 96 passing)."""
    state, slices = lab
    groups = {a.group for a in service_probe.plan(state, slices) if a.group and "default/both" in a.group}
    assert any(" over IPv6 from node " in g for g in groups) and any(" over " not in g for g in groups)


def test_nodeport_rows_per_family_on_the_nodes_addresses_of_that_family():
    doc = {"name": "dsnp", "cluster": {"podCIDR": "10.244.0.0/16,fd00:10:244::/56"},
           "nodes": [{"name": "n1", "role": "control-plane"}, {"name": "n2"}], "hosts": [{"name": "internet"}],
           "manifests": [pod("web-1", "n1"),
                         service("np", type="NodePort", ipFamilyPolicy="PreferDualStack",
                                 ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}]),
                         service("np4", type="NodePort", ports=[{"port": 80, "targetPort": 8080, "nodePort": 30081}])]}
    state = plan(Topology.model_validate(doc))
    asks = [a for a in service_probe.plan(state, endpoint_slices(state, {})) if a.check == "nodeport"]
    v6 = {(a.probe.dst_ip, a.probe.port) for a in asks if ":" in a.probe.dst_ip}
    assert v6 == {(n.ip6, 30080) for n in state.nodes}              # the dual-stack Service only
    assert {(n.ip, 30081) for n in state.nodes} <= {(a.probe.dst_ip, a.probe.port) for a in asks}
    assert not any(a.probe.dst_ip == "::1" for a in asks)            # no localhost NodePorts in IPv6
