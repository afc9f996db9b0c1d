"""lab graph: the picture of a lab as mermaid and DOT (goldens of shipped topologies, reviewed by eye
as rendered PNGs), text both languages parse (safe ids, escaped labels), what a running lab's
readiness changes, the grouping of large labs, BGP sessions per design, and graphviz's errors."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest

from lab import cli
from lab.errors import LabError
from lab.graph import dot, image, mermaid
from lab.graph.build import GROUP_ABOVE, build
from lab.graph.model import Ids
from lab.host import Completed
from tests.unit.golden import ROOT, check_golden, shipped_state

ID = r"[A-Za-z][A-Za-z0-9_]*"
LABEL = r'"[^"]*"'
MERMAID_LINE = re.compile("|".join((
    r"---", r'title: "[^"]*"', r"flowchart LR", r"  end",
    rf"  +{ID}\[{LABEL}\]",
    rf"  subgraph {ID}\[{LABEL}\]",
    rf"  {ID} (---|-\.-|-\.->)(\|{LABEL}\|)? {ID}",
    rf"  classDef {ID} [a-z:#0-9,.-]+",
    rf"  class {ID}(,{ID})* {ID}",
    r"  linkStyle \d+(,\d+)* [a-z:#0-9,.-]+",
)))


@pytest.mark.parametrize("topology", ["vxlan", "calico-bgp", "services", "ingress", "gateway", "dual-stack"])
def test_goldens_of_shipped_topologies(topology):
    g = build(shipped_state(topology))
    check_golden(f"graph-{topology}.mmd", mermaid.render(g))
    check_golden(f"graph-{topology}.dot", dot.render(g))


@pytest.mark.parametrize("topology", ["vxlan", "calico-bgp", "services", "cloud-routes", "host-gw", "ingress", "gateway",
                                      "dual-stack", "ipv6-only"])
def test_mermaid_is_statements_mermaid_parses(topology):
    text = mermaid.render(build(shipped_state(topology)))
    bad = [line for line in text.splitlines() if not MERMAID_LINE.fullmatch(line)]
    assert not bad, bad
    declared = set(re.findall(rf"^ +({ID})\[", text, re.M))
    link = re.compile(rf"  ({ID}) (?:---|-\.-|-\.->)(?:\|{LABEL}\|)? ({ID})")
    linked = {x for line in text.splitlines() if (m := link.fullmatch(line)) for x in m.groups()}
    assert len(linked) >= 10
    assert linked <= declared and not {"end", "graph", "subgraph"} & declared


def test_labels_with_syntax_in_them_are_escaped():
    assert mermaid.escape('a"b#c<d>&e') == "a#quot;b#35;c#lt;d#gt;#amp;e"
    assert dot.quote('say "hi"\\ \n') == '"say \\"hi\\"\\\\ \\n"'
    ids = Ids()
    assert [ids.new("pod", "default", "web-1.a/b"), ids.new("pod", "default", "web-1_a_b")] == \
        ["pod_default_web_1_a_b", "pod_default_web_1_a_b_2"]


def test_the_picture_names_what_a_reader_needs():
    text = mermaid.render(build(shipped_state("vxlan")))
    for needed in ("underlay 172.18.0.0/24", "eth0 172.18.0.3", "podCIDR 10.244.1.0/24", "cni0 bridge<br/>10.244.1.1/24",
                   "flannel.1 VTEP", "VXLAN VNI 1, UDP 8472", "node-agent<br/>172.18.0.3 hostNetwork",
                   "namespace kube-system", "host internet<br/>172.18.0.5", "ClusterIP 10.96.0.10"):
        assert needed in text, needed
    assert text.count("VXLAN VNI 1") == 3   # three nodes: a tunnel per pair


def test_a_running_lab_draws_only_ready_endpoints():
    s = shipped_state("services")
    warming = {p.key for p in s.pods if p.name.startswith("warming")}
    planned = build(s)
    running = build(s, {p.key: p.key not in warming for p in s.pods})
    svc = next(c for c in running.clusters if c.kind == "services")
    lines = {b.id: b.lines for b in svc.boxes}
    assert lines["svc_default_warming"][-1] == "endpoints: 0 ready of 2"
    assert lines["svc_default_warming_published"][-1] == "endpoints: 2 ready of 2"   # publishNotReadyAddresses

    def targets(g, service):
        return {link.dst for link in g.links if link.src == service}
    assert len(targets(planned, "svc_default_warming")) == 2 and not targets(running, "svc_default_warming")
    assert len(targets(running, "svc_default_backend")) == 3
    assert "(planned)" in planned.title and "(planned)" not in running.title


def test_large_labs_are_grouped_per_node_and_owner():
    s = shipped_state("vxlan")
    extra = tuple(replace(s.pods[0], name=f"backend-x{i}", ip=f"10.244.0.{100 + i}") for i in range(GROUP_ABOVE))
    g = build(replace(s, pods=s.pods + extra))
    groups = [b for c in g.clusters for b in c.boxes if b.kind == "group"]
    assert [b.lines[0] for b in groups] == [f"Deployment/backend ×{2 + GROUP_ABOVE}"]
    assert groups[0].lines[1] == "10.244.0.2 … 10.244.0.139"
    assert g.notes and "grouped per node and owner" in mermaid.render(g) and "grouped" in dot.render(g)


@pytest.mark.parametrize("bgp, sessions", [
    ({}, {("control-plane", "worker1", "iBGP"), ("control-plane", "worker2", "iBGP"), ("worker1", "worker2", "iBGP")}),
    ({"routeReflectors": ["control-plane"]},
     {("control-plane", "worker1", "iBGP, RR client"), ("control-plane", "worker2", "iBGP, RR client")}),
    ({"topOfRack": "internet"}, {("control-plane", "internet", "eBGP"), ("worker1", "internet", "eBGP"),
                                 ("worker2", "internet", "eBGP")}),
])
def test_bgp_sessions_follow_the_design(bgp, sessions):
    s = shipped_state("calico-bgp", bgp=bgp)
    names = {**{f"eth0_{n.name.replace('-', '_')}": n.name for n in s.nodes}, **{f"host_{h.name}": h.name for h in s.hosts}}
    drawn = {(frozenset((names[link.src], names[link.dst])), link.label) for link in build(s).links if link.kind == "bgp"}
    assert drawn == {(frozenset((a, b)), label) for a, b, label in sessions}


def test_images_go_through_graphviz_dot(fake, tmp_path):
    out = tmp_path / "x.png"
    assert image.render("digraph {}", "png", str(out)) == ""
    assert fake.calls[-1].argv == ("dot", "-Tpng", "-o", str(out)) and fake.calls[-1].input == "digraph {}"
    with pytest.raises(LabError, match="writes a file"):
        image.render("digraph {}", "png", None)
    fake.answer(("dot",), 127, stderr="dot: not installed")
    with pytest.raises(LabError, match="apt-get install graphviz"):
        image.render("digraph {}", "svg", None)
    fake.answers[("dot",)] = Completed(1, "", "syntax error in line 1")
    with pytest.raises(LabError, match="syntax error in line 1"):
        image.render("digraph {", "svg", None)


def test_cli_draws_a_topology_file_without_a_lab(capsys, tmp_path):
    assert cli.main(["graph", str(ROOT / "topologies" / "vxlan.yaml")]) == 0
    assert capsys.readouterr().out.startswith('---\ntitle: "lab vxlan: network vxlan')
    out = tmp_path / "g.dot"
    assert cli.main(["graph", str(ROOT / "topologies" / "vxlan.yaml"), "-o", "dot", "--out", str(out)]) == 0
    assert out.read_text().startswith('digraph "lab" {') and capsys.readouterr().out == ""


def test_pod_ids_survive_any_name():
    s = shipped_state("vxlan")
    odd = replace(s.pods[0], name="end", namespace="x-y.z")
    text = mermaid.render(build(replace(s, pods=(odd,))))
    assert "pod_x_y_z_end[" in text and all(MERMAID_LINE.fullmatch(line) for line in text.splitlines())


def test_the_docs_show_what_lab_graph_draws_today():
    doc = (ROOT / "docs" / "GRAPH.md").read_text()
    assert "```mermaid\n" + mermaid.render(build(shipped_state("default"))) + "```" in doc, \
        "docs/GRAPH.md is stale: paste `lab graph topologies/default.yaml` (and re-render docs/img/default-topology.png)"


def test_a_stopped_node_is_drawn_off_the_underlay():
    g = build(shipped_state("vxlan"), {}, stopped=["worker1"])
    worker1 = next(c for c in g.clusters if c.id == "node_worker1")
    assert worker1.lines[-1] == "stopped: off the underlay"
    assert [(link.label, link.kind) for link in g.links if link.dst == "underlay"] == \
        [("", "wire"), ("link down", "cut"), ("", "wire")]
    assert 'eth0_worker1 -.-|"link down"| underlay' in mermaid.render(g)


def test_a_private_cluster_draws_the_internet_behind_its_nat_gateway():
    text = mermaid.render(build(shipped_state("nat-gateway")))
    assert 'public["public segment 203.0.113.0/24<br/>the internet"]' in text
    assert "NAT gateway<br/>public 203.0.113.1" in text
    assert "host_nat ---|\"SNAT to 203.0.113.1\"| public" in text
    assert "public --- host_internet" in text and "underlay --- host_internet" not in text


def test_ingresses_are_drawn_with_their_rules_to_services():
    g = build(shipped_state("ingress"))
    [cluster] = [c for c in g.clusters if c.kind == "ingresses"]
    [box] = cluster.boxes
    assert box.keys == ("ingress/default/web",) and box.lines == ("ingress web", "shop.example (TLS)", "api.example")
    svc = {b.id: b.keys[0] for c in g.clusters for b in c.boxes if b.kind == "service"}
    routes = {svc[link.dst]: link.label for link in g.links if link.kind == "route" and link.src == box.id}
    assert routes == {"svc/default/shop": "shop.example/, default backend",
                      "svc/default/api": "shop.example/api, api.example/v1, api.example/healthz (exact)"}
    pods = {b.id: b.keys[0] for c in g.clusters for b in c.boxes if b.kind == "pod"}
    served = [pods[link.dst] for link in g.links if link.src == box.id and link.kind == "control"]
    assert served and served[0].startswith("ingress-nginx/ingress-nginx-controller-")


def test_gateways_are_drawn_with_their_listeners_and_routes_to_services():
    g = build(shipped_state("gateway"))
    [cluster] = [c for c in g.clusters if c.lines[0].startswith("Gateways")]
    [box] = cluster.boxes
    assert box.keys == ("gateway/default/eg",)
    assert box.lines[0] == "gateway eg" and "https :443 HTTPS shop.example" in box.lines
    svc = {b.id: b.keys[0] for c in g.clusters for b in c.boxes if b.kind == "service"}
    routes = {svc[link.dst]: link.label for link in g.links if link.kind == "route" and link.src == box.id}
    assert routes["svc/default/shop-v1"] == "shop: / (weight 80)"
    assert routes["svc/default/shop-v2"] == "shop: / env: canary; shop: / (weight 20)"
    assert routes["svc/billing/invoices"] == "shop: /billing"
    pods = {b.id: b.keys[0] for c in g.clusters for b in c.boxes if b.kind == "pod"}
    served = [pods[link.dst] for link in g.links if link.src == box.id and link.kind == "control"]
    assert served and served[0].startswith("envoy-gateway-system/envoy-default-eg-")


def test_labs_without_ingress_draw_no_ingress_cluster():
    g = build(shipped_state("services"))
    assert not [c for c in g.clusters if c.kind == "ingresses"] and not [l for l in g.links if l.kind == "route"]


def test_a_dual_stack_picture_draws_both_families():
    s = shipped_state("dual-stack")
    text = mermaid.render(build(s))
    client = next(p for p in s.pods if p.name == "client")
    backend = next(x for x in s.services if x.name == "backend")
    for needed in ("underlay fd00:172:18::/64", "eth0 172.18.0.3<br/>fd00:172:18::3", "podCIDR fd00:10:244:1::/64",
                   "flannel.1 VTEP<br/>10.244.1.0/32<br/>flannel-v6.1 VTEP<br/>fd00:10:244:1::/128",
                   "cni0 bridge<br/>10.244.1.1/24<br/>fd00:10:244:1::1/64", f"client<br/>{'<br/>'.join(client.pod_ips)}",
                   f"ClusterIP {backend.cluster_ips[0]}<br/>{backend.cluster_ips[1]}", "172.18.0.5<br/>fd00:172:18::5"):
        assert needed in text, needed
    # a slice per family holds the same pods: each is one endpoint, in the planned and in the running picture
    assert "2 endpoints" not in text
    running = build(s, {p.key: True for p in s.pods})
    svc = next(c for c in running.clusters if c.kind == "services")
    assert next(b for b in svc.boxes if b.id == "svc_default_backend").lines[-1] == "endpoints: 3 ready of 3"
