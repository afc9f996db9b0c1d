"""NetworkPolicy per family on a dual-stack cluster: the model decides per family (an ipBlock of
one family matches no peer of the other), and the rendered ip6tables rules agree with it on every
case of the netpol layout, as the IPv4 rules do (tests/unit/test_policy_iptables.py)."""
from __future__ import annotations

import re

import pytest
import yaml

from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, PodState
from lab.policy.iptables import base_rules, render
from lab.policy.model import allowed, node_addresses, sending_address
from lab.topology.load import load_topology_text
from tests.unit.golden import ROOT
from tests.unit.test_policy_iptables import Node
from tests.unit.test_policy_model import CASES

DUAL = ["10.244.0.0/16", "fd00:10:244::/56"]
ONLY_V4 = """
- metadata: {name: only-v4, namespace: x}
  spec:
    podSelector: {matchLabels: {pod: a}}
    ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]
"""


def dual_state(policies: str = "", pod_cidr=None) -> ClusterState:
    doc = yaml.safe_load((ROOT / "topologies" / "netpol.yaml").read_text())
    doc["cluster"]["dns"] = {"enabled": False}
    doc["cluster"]["podCIDR"] = pod_cidr or DUAL
    for m in yaml.safe_load(policies) or []:
        doc["manifests"].append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **m})
    return plan(load_topology_text(yaml.safe_dump(doc, sort_keys=False)))


V6 = {r"0\.0\.0\.0/0": "'::/0'", r"10\.244\.0\.0/16": "'fd00:10:244::/56'",
      r"10\.244\.(\d+)\.0/24": r"'fd00:10:244:\1::/64'", r"10\.244\.(\d+)\.(\d+)/32": r"'fd00:10:244:\1::\2/128'"}


def as_ipv6(policies: str) -> str:
    """A case's IPv4 blocks as the same blocks of the IPv6 plan (10.244.2.0/24 is fd00:10:244:2::/64)."""
    for v4, v6 in V6.items():
        policies = re.sub(v4, v6, policies)
    return policies


def nodes_for(state: ClusterState, family: int) -> dict[str, Node]:
    out = {}
    for n in state.nodes:
        out[n.name] = Node()
        out[n.name].restore(base_rules())
        out[n.name].restore(render(state, n.name, family=family))
    return out


def address(state: ClusterState, e, family: int) -> str:
    return e.ip_of(family) if isinstance(e, PodState) else e


def path(state: ClusterState, src, dst, family: int) -> list[str]:
    hops = []
    if isinstance(src, PodState) and not (isinstance(dst, str) and dst in node_addresses(state, src.node)):
        hops.append(src.node)
    if isinstance(dst, PodState) and not (isinstance(src, str) and src in node_addresses(state, dst.node)):
        hops.append(dst.node)
    return list(dict.fromkeys(hops))


@pytest.mark.parametrize("case", sorted(CASES))
def test_ipv6_rules_agree_with_the_model_per_family(case):
    state = dual_state(as_ipv6(CASES[case][0]))
    nodes = nodes_for(state, 6)
    v6_nodes = sorted(a for n in state.nodes for a in node_addresses(state, n.name) if ":" in a)
    eps = [*state.pods, *(h.ip6 for h in state.hosts if h.ip6), *v6_nodes]
    wrong = []
    for src in eps:
        for dst in eps:
            if isinstance(src, str) and isinstance(dst, str):
                continue
            for port, proto in ((80, "TCP"), (81, "UDP"), (53, "UDP")):
                want = allowed(state, src, dst, port, proto, family=6)
                s, d = address(state, src, 6), address(state, dst, 6)
                got = all(nodes[n].verdict(s, d, proto, port) == "ACCEPT" for n in path(state, src, dst, 6))
                if want != got:
                    wrong.append((getattr(src, "key", src), getattr(dst, "key", dst), port, proto, want))
    assert not wrong, f"{len(wrong)} disagree: {wrong[:6]}"


def test_an_ipv4_only_block_lets_ipv4_in_and_keeps_ipv6_out():
    state = dual_state(ONLY_V4)
    a = next(p for p in state.pods if p.key == "x/a")
    b = next(p for p in state.pods if p.key == "y/b")
    assert allowed(state, b, a, 80, "TCP", family=4)
    assert not allowed(state, b, a, 80, "TCP", family=6)
    assert allowed(state, b.ip_of(4), a, 80) and not allowed(state, b.ip_of(6), a, 80)
    v4, v6 = render(state, a.node, family=4), render(state, a.node, family=6)
    assert "-s 0.0.0.0/0" in v4 and "0.0.0.0/0" not in v6
    assert f"-d {a.ip_of(6)}/128" in v6 and v6.rstrip().endswith("COMMIT")
    chain6 = [line for line in v6.splitlines() if line.startswith("-A LAB-NP-IN-")]
    assert len(chain6) == 1 and chain6[0].endswith("-j DROP")  # no rule allows any IPv6 source


def test_a_v4_only_render_is_unchanged_by_the_family_parameter():
    state = dual_state(ONLY_V4, pod_cidr="10.244.0.0/16")
    assert render(state, "worker1") == render(state, "worker1", family=4)


def test_a_node_sends_from_its_address_of_the_connections_family():
    state = dual_state()
    pod = next(p for p in state.pods if p.node != state.nodes[0].name)
    assert ":" in sending_address(state, state.nodes[0].name, pod, 6)
    assert "." in sending_address(state, state.nodes[0].name, pod, 4)


def test_the_truth_table_of_each_family_expects_that_familys_verdict():
    from lab.probe import netpol
    state = dual_state(ONLY_V4)
    v4, v6 = netpol.plan(state, [80], ["TCP"], 4), netpol.plan(state, [80], ["TCP"], 6)
    to_a = [k for k in v6.probed if k[1] == "x/a" and k[0] != "x/a"]
    assert to_a and all(v4.expected[k] for k in to_a) and not any(v6.expected[k] for k in to_a)
    assert netpol.plan(state, [80], ["TCP"]).family == 4
    with pytest.raises(netpol.NothingToProbe, match="no IPv6 pod addresses"):
        netpol.plan(dual_state(pod_cidr="10.244.0.0/16"), [80], ["TCP"], 6)
