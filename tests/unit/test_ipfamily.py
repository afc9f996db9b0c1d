"""Dual-stack Services, pure: serviceCIDR with two ranges, ipFamilies/ipFamilyPolicy defaulted and
validated as the API server does (lab.topology.ipfamily), ClusterIPs allocated per family."""
from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

import pytest

from lab.controlplane.plan import plan
from lab.topology import semantics
from lab.topology.ipfamily import service_families
from lab.topology.model import ClusterSpec, Topology

DUAL, V4, V6 = ("IPv4", "IPv6"), ("IPv4",), ("IPv6",)


def resolve(cluster=DUAL, *, type="ClusterIP", cluster_ip=None, cluster_ips=(), families=(), policy=None,
            selector=True):
    return service_families(type=type, cluster_ip=cluster_ip, cluster_ips=list(cluster_ips), ip_families=list(families),
                            policy=policy, has_selector=selector, cluster=cluster)


# --- the API server's defaulting (pkg/registry/core/service/storage/alloc.go, initIPFamilyFields) ---

@pytest.mark.parametrize("cluster, fields, policy, families, requested", [
    # nothing asked: SingleStack in the cluster's primary family
    (DUAL, {}, "SingleStack", V4, ("",)),
    (("IPv6", "IPv4"), {}, "SingleStack", V6, ("",)),
    (V4, {}, "SingleStack", V4, ("",)),
    # PreferDualStack takes both where there are both, and one where there is one
    (DUAL, {"policy": "PreferDualStack"}, "PreferDualStack", DUAL, ("", "")),
    (V4, {"policy": "PreferDualStack"}, "PreferDualStack", V4, ("",)),
    (DUAL, {"policy": "RequireDualStack", "families": ["IPv6"]}, "RequireDualStack", ("IPv6", "IPv4"), ("", "")),
    (DUAL, {"families": ["IPv6"]}, "SingleStack", V6, ("",)),
    # families follow the addresses asked for
    (DUAL, {"cluster_ip": "fd00:10:96::50"}, "SingleStack", V6, ("fd00:10:96::50",)),
    (DUAL, {"cluster_ips": ["10.96.0.50", "fd00:10:96::50"], "policy": "RequireDualStack"},
     "RequireDualStack", DUAL, ("10.96.0.50", "fd00:10:96::50")),
    (DUAL, {"cluster_ip": "10.96.0.50", "policy": "PreferDualStack"}, "PreferDualStack", DUAL, ("10.96.0.50", "")),
    # headless: families but no address; without a selector it defaults to RequireDualStack, even single-stack
    (DUAL, {"cluster_ip": "None", "policy": "PreferDualStack"}, "PreferDualStack", DUAL, ("None",)),
    (DUAL, {"cluster_ip": "None"}, "SingleStack", V4, ("None",)),
    (V4, {"cluster_ip": "None", "selector": False}, "RequireDualStack", DUAL, ("None",)),
])
def test_defaults_as_the_api_server(cluster, fields, policy, families, requested):
    resolved, problems = resolve(cluster, **fields)
    assert problems == []
    assert (resolved.policy, resolved.families, resolved.requested) == (policy, families, requested)


@pytest.mark.parametrize("cluster, fields, where, message", [
    (V4, {"policy": "RequireDualStack"}, ("ipFamilyPolicy",), "this cluster is not configured for dual-stack services"),
    (V4, {"families": ["IPv6"]}, ("ipFamilies", 0), "IPv6 not configured on this cluster"),
    (V4, {"cluster_ip": "fd00:10:96::5"}, ("clusterIPs", 0), "IPv6 is not configured on this cluster"),
    (DUAL, {"families": ["IPv4", "IPv6"]}, ("ipFamilyPolicy",),
     "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"),
    (DUAL, {"cluster_ips": ["10.96.0.5", "fd00:10:96::5"]}, ("ipFamilyPolicy",),
     "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"),
    (DUAL, {"families": ["IPv4", "IPv4"], "policy": "PreferDualStack"}, ("ipFamilies", 1), 'Duplicate value: "IPv4"'),
    (DUAL, {"cluster_ips": ["10.96.0.5", "10.96.0.6"], "policy": "RequireDualStack"}, ("clusterIPs",),
     "may specify no more than one IP for each IP family"),
    (DUAL, {"cluster_ip": "10.96.0.5", "cluster_ips": ["10.96.0.6"]}, ("clusterIPs",), "first value must match `clusterIP`"),
    (DUAL, {"cluster_ip": "10.96.0.5", "families": ["IPv6"]}, ("clusterIPs", 0),
     "expected an IPv6 value as indicated by `ipFamilies[0]`"),
    (DUAL, {"cluster_ips": ["None", "fd00:10:96::5"], "policy": "PreferDualStack"}, ("clusterIPs",),
     "'None' must be the first and only value"),
    (DUAL, {"type": "ExternalName", "policy": "SingleStack"}, ("ipFamilyPolicy",),
     "may not be set when `type` is 'ExternalName'"),
])
def test_refuses_as_the_api_server(cluster, fields, where, message):
    _, problems = resolve(cluster, **fields)
    assert (where, message) in [(w, m) for w, m, _ in problems]


# --- the topology: serviceCIDR ---

def topology(cluster: dict, *manifests: dict) -> Topology:
    return Topology.model_validate({"name": "t", "cluster": cluster, "nodes": [{"name": "n1"}, {"name": "n2"}],
                                    "manifests": list(manifests)})


def errors(t: Topology) -> list[str]:
    return [d.message for d in semantics.check(t, lambda path: ("t.yaml", 1)) if d.severity == "error"]


@pytest.mark.parametrize("written", ["10.96.0.0/12,fd00:10:96::/112", ["10.96.0.0/12", "fd00:10:96::/112"]])
def test_service_cidr_takes_two_ranges_as_a_list_or_as_the_flag(written):
    assert topology({"serviceCIDR": written}).cluster.serviceCIDR == (
        IPv4Network("10.96.0.0/12"), IPv6Network("fd00:10:96::/112"))


def test_a_single_range_and_the_default_are_as_before():
    assert topology({}).cluster.serviceCIDR == (IPv4Network("10.96.0.0/12"),)
    assert topology({"serviceCIDR": "10.100.0.0/16"}).cluster.serviceCIDR == (IPv4Network("10.100.0.0/16"),)


def test_an_ipv6_or_dual_stack_pod_range_gets_kinds_service_ranges():
    follow = ClusterSpec._service_cidr_follows_pods.__func__
    assert follow(ClusterSpec, {"podCIDR": "fd00:10:244::/56"})["serviceCIDR"] == ["fd00:10:96::/112"]
    assert follow(ClusterSpec, {"podCIDR": "fd00:10:244::/56,10.244.0.0/16"})["serviceCIDR"] == [
        "fd00:10:96::/112", "10.96.0.0/12"]
    assert "serviceCIDR" not in follow(ClusterSpec, {"podCIDR": "10.244.0.0/16"})


@pytest.mark.parametrize("cidr, wanted", [
    ("10.96.0.0/12,fd00:10:96::/64", "is too large; for 128-bit addresses, the mask must be >= 108"),
    ("10.96.0.0/12,fd00:10:96::/126", "is too small: it holds 4 addresses"),
    ("fd00:10:96::/112", "serviceCIDR is IPv6 but podCIDR is IPv4: other families"),
])
def test_service_cidr_errors_say_what_is_wrong(cidr, wanted):
    found = errors(topology({"serviceCIDR": cidr}))
    assert any(wanted in e for e in found), found


def test_two_families_need_the_pods_in_the_same_order():
    found = errors(topology({"serviceCIDR": "fd00:10:96::/112,10.96.0.0/12"}))
    assert any("serviceCIDR is IPv6 and IPv4 but podCIDR is IPv4" in e for e in found), found


def test_two_ranges_of_one_family_are_refused_by_the_model():
    with pytest.raises(ValueError, match="two CIDRs of one family"):
        topology({"serviceCIDR": "10.96.0.0/12,10.100.0.0/16"})


def test_proxy_ebpf_refuses_a_dual_stack_cluster():
    found = errors(topology({"podCIDR": "10.244.0.0/16,fd00:10:244::/56", "serviceCIDR": "10.96.0.0/12,fd00:10:96::/112",
                             "proxy": "ebpf"}))
    assert any("proxy ebpf hooks IPv4 sockets only" in e for e in found), found


def service(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def test_a_service_family_the_cluster_lacks_is_an_error_with_its_place():
    t = topology({}, service("v6", ipFamilies=["IPv6"]))
    [d] = [d for d in semantics.check(t, lambda path: ("t.yaml", 1)) if d.severity == "error"]
    assert d.path == "manifests[0].spec.ipFamilies[0]"
    assert "IPv6 not configured on this cluster" in d.message


def test_a_requested_v6_clusterip_must_be_in_the_v6_range():
    t = topology({"serviceCIDR": "10.96.0.0/12,fd00:10:96::/112"},
                 service("v6", clusterIPs=["10.96.0.50", "fd00:99::1"], ipFamilyPolicy="RequireDualStack"))
    assert any("clusterIP 'fd00:99::1' is not a usable address of serviceCIDR fd00:10:96::/112" in e
               for e in errors(t))


# --- the control plane: one ClusterIP per family ---

def dual_state(*manifests: dict):
    doc = {"name": "ds", "cluster": {"serviceCIDR": "10.96.0.0/12,fd00:10:96::/112", "dns": {"enabled": False}},
           "nodes": [{"name": "n1"}], "manifests": list(manifests)}
    return plan(Topology.model_validate(doc))


def test_cluster_ips_are_allocated_from_both_ranges_in_family_order():
    st = dual_state(service("both", ipFamilyPolicy="RequireDualStack"),
                    service("six-first", ipFamilyPolicy="PreferDualStack", ipFamilies=["IPv6"]),
                    service("single"), service("only-six", ipFamilies=["IPv6"]),
                    service("asked", clusterIPs=["10.96.0.50", "fd00:10:96::50"], ipFamilyPolicy="RequireDualStack"))
    both, six_first, single, only_six, asked = (st.service("default", n) for n in
                                                ("both", "six-first", "single", "only-six", "asked"))
    assert both.ip_families == DUAL and len(both.cluster_ips) == 2
    assert IPv4Network("10.96.0.0/12").overlaps(IPv4Network(both.cluster_ips[0]))
    assert both.cluster_ips[1].startswith("fd00:10:96::") and both.cluster_ip == both.cluster_ips[0]
    assert six_first.ip_families == ("IPv6", "IPv4") and six_first.cluster_ip.startswith("fd00:10:96::")
    assert single.ip_families == V4 and single.ip_family_policy == "SingleStack" and len(single.cluster_ips) == 1
    assert only_six.cluster_ips == (only_six.cluster_ip,) and ":" in only_six.cluster_ip
    assert asked.cluster_ips == ("10.96.0.50", "fd00:10:96::50")
    assert st.service_cidrs() == ("10.96.0.0/12", "fd00:10:96::/112")


def test_headless_services_have_families_and_no_addresses():
    st = dual_state(service("h", clusterIP="None", ipFamilyPolicy="PreferDualStack"))
    h = st.service("default", "h")
    assert (h.cluster_ip, h.cluster_ips, h.ip_families) == (None, (), DUAL)


def test_a_v4_cluster_plans_as_before():
    doc = {"name": "v4", "cluster": {"dns": {"enabled": False}}, "nodes": [{"name": "n1"}], "manifests": [service("a")]}
    st = plan(Topology.model_validate(doc))
    a = st.service("default", "a")
    assert (st.service_cidr, st.secondary_service_cidr) == ("10.96.0.0/12", "")
    assert (a.cluster_ips, a.ip_families, a.ip_family_policy) == ((a.cluster_ip,), V4, "SingleStack")


def test_a_file_keeps_the_family_fields(tmp_path):
    """The loader's lenient pass (fields the lab ignores) leaves ipFamilies, ipFamilyPolicy and clusterIPs alone."""
    from lab.topology.load import load_topology

    path = tmp_path / "t.yaml"
    path.write_text("""name: t
cluster: {podCIDR: "10.244.0.0/16,fd00:10:244::/56"}
nodes: [{name: n1}]
manifests:
  - apiVersion: v1
    kind: Service
    metadata: {name: s}
    spec: {selector: {app: s}, ports: [{port: 80}], ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv6, IPv4],
           clusterIPs: ["fd00:10:96::50", 10.96.0.50]}
""")
    spec = load_topology(path).manifests[0].spec
    assert (spec.ipFamilyPolicy, spec.ipFamilies, spec.clusterIPs) == (
        "RequireDualStack", ["IPv6", "IPv4"], ["fd00:10:96::50", "10.96.0.50"])


def test_the_views_show_the_families_as_kubectl_does():
    from lab import views

    st = dual_state(service("both", clusterIPs=["10.96.0.50", "fd00:10:96::50"], ipFamilyPolicy="RequireDualStack"),
                    service("h", clusterIP="None", ipFamilyPolicy="PreferDualStack"))
    spec = views.service_object(st.service("default", "both"))["spec"]
    assert (spec["clusterIP"], spec["clusterIPs"]) == ("10.96.0.50", ["10.96.0.50", "fd00:10:96::50"])
    assert (spec["ipFamilies"], spec["ipFamilyPolicy"]) == (["IPv4", "IPv6"], "RequireDualStack")
    h = views.service_object(st.service("default", "h"))["spec"]
    assert (h["clusterIPs"], h["ipFamilies"]) == (["None"], ["IPv4", "IPv6"])
    _, rows = views.service_rows(st, 0, "default", wide=True)
    assert ["both", "ClusterIP", "10.96.0.50"] == rows[[r[0] for r in rows].index("both")][:3]  # CLUSTER-IP: clusterIP


def test_endpointslices_show_their_address_type():
    from lab import views
    from lab.controlplane.endpoints import endpoint_slices

    st = dual_state(service("both", ipFamilyPolicy="RequireDualStack"))
    slices = endpoint_slices(st, {})
    assert sorted(views.endpointslice_object(s)["addressType"] for s in slices if s.service == "both") == ["IPv4", "IPv6"]
    _, rows = views.endpointslice_rows(slices, 0, "default")
    assert sorted(r[1] for r in rows if r[0].startswith("both-")) == ["IPv4", "IPv6"]
