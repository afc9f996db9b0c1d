"""network: vpc (the AWS VPC CNI model) and the pod-network kinds' registry: the shipped
topologies/vpc-cni.yaml planned and rendered against goldens, the per-node IP budget's error, and
the names the topology model allows, derived from the registry.

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_routing_vpc.py   # then review git diff tests/golden
"""
from __future__ import annotations

import typing
from ipaddress import ip_address, ip_network

import pytest

from lab import routing
from lab.controlplane.plan import plan
from lab.errors import LabError
from lab.graph.build import build
from lab.graph.mermaid import render as mermaid
from lab.routing import runtimes
from lab.topology.kinds import NETWORKS, check_registry
from lab.topology.load import load_topology, load_topology_text
from lab.topology.model import ClusterSpec
from lab.trace.predict import route, walk
from lab.trace.target import resolve
from tests.unit.golden import ROOT, check_golden

SHIPPED = ROOT / "topologies" / "vpc-cni.yaml"


def shipped():
    return plan(load_topology(SHIPPED), source="topologies/vpc-cni.yaml")


def topo_text(pods_on_b: int, cni: str = "ptp", vpc_spec: str = "{enisPerNode: 1, ipsPerEni: 4}",
              subnet: str = "10.0.1.0/24") -> str:
    pods = "\n".join(f"  - {{apiVersion: v1, kind: Pod, metadata: {{name: p{i}}}, "
                     f"spec: {{nodeName: b, containers: [{{name: c, image: pause}}]}}}}" for i in range(pods_on_b))
    return (f"name: v\ncluster: {{network: vpc, cni: {cni}, vpc: {vpc_spec}, dns: {{enabled: false}}}}\n"
            f"underlay: {{subnet: {subnet}}}\nnodes: [{{name: a}}, {{name: b}}]\nmanifests:\n{pods or '  []'}\n")


# --- the kinds' names ---

def test_the_model_allows_exactly_the_registered_networks():
    assert set(routing.BACKENDS) == set(NETWORKS)
    assert set(typing.get_args(ClusterSpec.model_fields["network"].annotation)) == set(routing.BACKENDS)


def test_a_registry_that_disagrees_with_the_names_fails_at_import():
    with pytest.raises(RuntimeError, match="registered .*'extra'.*lab/topology/kinds.py names"):
        check_registry("pod networks", {**routing.BACKENDS, "extra": None}, NETWORKS)


def test_only_kinds_with_daemons_have_a_runtime():
    assert runtimes.of("vpc") is None and runtimes.of("vxlan") is None
    assert runtimes.of("bgp").ready.startswith("BGP converged")
    assert runtimes.of("cloud-routes").ready.startswith("fabric")


# --- planning: pod IPs from the VPC subnet ---

def test_pod_ips_are_in_the_underlay_subnet_and_in_their_nodes_block():
    state = shipped()
    subnet = ip_network(state.underlay_subnet)
    assert state.pod_cidr == state.underlay_subnet
    machines = {ip_address(m.ip) for m in (*state.nodes, *state.hosts)}
    for p in state.pods:
        assert ip_address(p.ip) in subnet and ip_address(p.ip) not in machines
        assert ip_address(p.ip) in ip_network(state.node(p.node).pod_cidr)
    blocks = [ip_network(n.pod_cidr) for n in state.nodes]
    assert all(not a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1:])
    text = "\n".join(f"{n.name} {n.ip} pods {n.pod_cidr} gateway {n.gateway}" for n in state.nodes) + "\n" + \
        "\n".join(f"{p.key} {p.node} {p.ip}" for p in state.pods) + "\n"
    check_golden("vpc-plan.txt", text)


def test_render_turns_on_proxy_arp_and_adds_no_route():
    state = shipped()
    for n in state.nodes:
        ops = routing.render(state, n)
        assert ops.ip == () and ops.bridge == ()
        assert ops.sysctls == (("net.ipv4.conf.eth0.proxy_arp", "1"),)


def test_ip_exhaustion_is_refused_naming_the_node_the_pods_and_the_budget():
    plan(load_topology_text(topo_text(3)))  # 1 ENI x (4 - 1) = 3: fits
    with pytest.raises(LabError) as e:
        plan(load_topology_text(topo_text(4)), source="v.yaml")
    check_golden("vpc-budget-error.txt", str(e.value) + "\n")
    assert "IP exhaustion risk per node: node b has 4 pods" in str(e.value)
    assert "node a" not in str(e.value)


def test_vpc_needs_the_ptp_cni_and_validation_says_so_at_its_line():
    with pytest.raises(LabError) as e:
        load_topology_text(topo_text(3, cni="bridge"))
    assert "network vpc gives each pod a veth and a /32 route on its node" in str(e.value)
    assert "set cluster.cni: ptp" in str(e.value) and "cni" in str(e.value)


def test_a_subnet_too_small_for_the_blocks_is_refused():
    with pytest.raises(LabError, match=r"room for 1 nodes' pod IPs, the topology has 2 nodes.*larger underlay.subnet"):
        plan(load_topology_text(topo_text(0, vpc_spec="{enisPerNode: 3, ipsPerEni: 6}", subnet="10.0.1.0/26")))


# --- trace and graph ---

def test_trace_predicts_a_direct_route_and_no_snat_inside_the_vpc():
    state = shipped()
    client = next(p for p in state.pods if p.name == "client")
    other = next(p for p in state.pods if p.node != client.node and not p.host_network)
    dev, via, why, proto = route(state, client.node, other.ip)
    assert (dev, via, proto) == ("eth0", "", "")
    assert f"{other.node} answers ARP" in why
    hops = walk(state, resolve(state, "pod/client"), resolve(state, f"{other.ip}:8080"))
    text = "\n".join(f"{h.component} | {h.interface} | {h.what}" for h in hops) + "\n"
    check_golden("vpc-trace-pod-to-pod.txt", text)
    assert not any(h.kind == "encap" for h in hops)
    assert not any(h.kind == "snat" and h.expect for h in hops)


def test_trace_predicts_snat_to_the_node_leaving_the_vpc():
    state = shipped()
    hops = walk(state, resolve(state, "pod/client"), resolve(state, "host/internet:8080"))
    snat = [h for h in hops if h.kind == "snat" and h.expect]
    assert snat and snat[0].expect == (state.node("worker1").ip,)


def test_graph_draws_the_eni_and_proxy_arp():
    text = mermaid(build(shipped()))
    assert "ENI: pods' secondary IPs" in text and "VPC subnet: nodes and pods" in text
    assert "VTEP" not in text and "bgpd" not in text


def test_vpc_module_names_nothing_outside_itself():
    """The proof of the kind: network vpc is named by its own module, its registration and the
    names list only (lab/routing/vpc.py, lab/routing/__init__.py, lab/topology/kinds.py)."""
    hits = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "lab").rglob("*.py")
                  if '"vpc"' in p.read_text() or "'vpc'" in p.read_text())
    assert hits == ["lab/routing/vpc.py", "lab/topology/kinds.py"]


def test_the_built_in_cnis_are_exactly_the_registered_kinds():
    from lab.cni import kinds as cni_kinds
    from lab.topology.kinds import CNIS

    assert set(cni_kinds.KINDS) == set(CNIS)
    assert cni_kinds.of(replace_cni(shipped(), "/opt/cni/my-cni")) is cni_kinds.OWN


def replace_cni(state, cni):
    from dataclasses import replace

    return replace(state, cni=cni)
