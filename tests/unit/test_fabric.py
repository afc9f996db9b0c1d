"""network: cloud-routes — the route table and the flows it becomes (pure)."""
from __future__ import annotations

from lab.controlplane import ipam, naming
from lab.routing import fabric
from tests.unit.golden import check_golden, shipped_state


def test_route_table_and_flows_golden():
    s = shipped_state("cloud-routes")
    ports = {n.name: f"knportp{i}" for i, n in enumerate(s.nodes)}
    table = fabric.routes(s, ports)
    assert [(r.cidr, r.node, r.port) for r in table] == [(n.pod_cidr, n.name, ports[n.name]) for n in s.nodes]
    assert all(r.mac == naming.node_mac(s.node(r.node).ip) for r in table)
    check_golden("fabric-flows.txt", "\n".join(fabric.show(f) for f in fabric.flows(s, table)) + "\n")
    routes = [f for f in fabric.flows(s, table) if f.priority == 50]
    assert [dict(f.match)["ipv4_dst"] for f in routes] == [(n.pod_cidr.split("/")[0], "255.255.255.0") for n in s.nodes]
    assert all(f.actions[-1] == ("output", ports[f.note]) for f in routes)


def test_gateway_is_the_underlay_first_address():
    s = shipped_state("cloud-routes")
    assert str(ipam.underlay_gateway(s.underlay_subnet)) == "172.18.0.1"


def test_node_macs_are_derived_and_distinct():
    s = shipped_state("cloud-routes")
    macs = [naming.node_mac(n.ip) for n in s.nodes]
    assert len(set(macs)) == len(macs) and all(m.startswith("0a:58:ac:12:00:") for m in macs)
