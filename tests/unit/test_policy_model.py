"""lab.policy.model on the upstream netpol e2e layout (namespaces x, y, z; pods a, b, c; ports 80, 81
over TCP and UDP). Each case's expected matrix is written by hand as a predicate over pod keys."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, PolicyPortState, SelectorState
from lab.policy.model import (
    allowed, expected_matrix, isolated, node_addresses, peer_matches, port_matches, selects,
)
from lab.topology.load import load_topology_text

ROOT = Path(__file__).resolve().parents[2]
PODS = [f"{ns}/{p}" for ns in "xyz" for p in "abc"]
WORKER1 = {"x/b", "y/a", "z/c"}           # pods on worker1 (10.244.1.0/24) in topologies/netpol.yaml
PORTS, PROTOCOLS = (80, 81), ("TCP", "UDP")


def netpol_state(policies: str = "") -> ClusterState:
    """topologies/netpol.yaml with the NetworkPolicy manifests of `policies` (a YAML list) added."""
    doc = yaml.safe_load((ROOT / "topologies" / "netpol.yaml").read_text())
    doc["cluster"]["dns"] = {"enabled": False}      # the nine pods of the layout only, not the kube-dns add-on
    for m in yaml.safe_load(policies) or []:
        doc["manifests"].append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **m})
    return plan(load_topology_text(yaml.safe_dump(doc, sort_keys=False)))


def ns(key: str, name: str) -> bool:
    return key.split("/")[0] == name


# name -> (policies, allowed(src, dst, port, protocol) for src != dst; a pod always reaches itself)
CASES = {
    "no-policy": ("", lambda s, d, port, proto: True),
    "deny-ingress": ("""
- metadata: {name: deny-ingress, namespace: x}
  spec: {podSelector: {}}
""", lambda s, d, port, proto: not ns(d, "x")),
    "deny-egress": ("""
- metadata: {name: deny-egress, namespace: x}
  spec: {podSelector: {}, policyTypes: [Egress]}
""", lambda s, d, port, proto: not ns(s, "x")),
    "allow-from-namespace": ("""
- metadata: {name: from-y, namespace: x}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
""", lambda s, d, port, proto: not ns(d, "x") or ns(s, "y")),
    "namespace-and-pod": ("""
- metadata: {name: from-y-b, namespace: x}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]
""", lambda s, d, port, proto: not ns(d, "x") or s == "y/b"),
    "namespace-or-pod": ("""
- metadata: {name: from-y-or-b, namespace: x}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]
""", lambda s, d, port, proto: not ns(d, "x") or ns(s, "y") or s == "x/b"),
    "ipblock-except": ("""
- metadata: {name: from-cidr, namespace: x}
  spec:
    podSelector: {matchLabels: {pod: a}}
    ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24]}}]}]
""", lambda s, d, port, proto: d != "x/a" or s not in WORKER1),
    "named-port": ("""
- metadata: {name: only-81-tcp, namespace: x}
  spec:
    podSelector: {}
    ingress: [{ports: [{port: serve-81-tcp}]}]
""", lambda s, d, port, proto: not ns(d, "x") or (port, proto) == (81, "TCP")),
    "end-port": ("""
- metadata: {name: tcp-80-81, namespace: x}
  spec:
    podSelector: {}
    ingress: [{ports: [{port: 80, endPort: 81, protocol: TCP}]}]
""", lambda s, d, port, proto: not ns(d, "x") or proto == "TCP"),
    "end-port-above": ("""
- metadata: {name: udp-81-90, namespace: x}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 81, endPort: 90, protocol: UDP}]}]
""", lambda s, d, port, proto: not ns(d, "x") or (port, proto) == (81, "UDP")),
    "egress-dns-only": ("""
- metadata: {name: dns-only, namespace: x}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}]
""", lambda s, d, port, proto: not ns(s, "x")),
    "additive": ("""
- metadata: {name: from-y, namespace: x}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
- metadata: {name: from-z-c, namespace: x}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {pod: c}}}]}]
""", lambda s, d, port, proto: not ns(d, "x") or ns(s, "y") or s == "z/c"),
    "expressions-in": ("""
- metadata: {name: deny-a-b, namespace: x}
  spec:
    podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
""", lambda s, d, port, proto: d not in ("x/a", "x/b")),
    "expressions-notin": ("""
- metadata: {name: deny-not-a-b, namespace: x}
  spec:
    podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a, b]}]}
""", lambda s, d, port, proto: d != "x/c"),
    "expressions-exists": ("""
- metadata: {name: not-from-y, namespace: x}
  spec:
    podSelector: {matchExpressions: [{key: pod, operator: Exists}]}
    ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [y]}]}}]}]
""", lambda s, d, port, proto: not ns(d, "x") or not ns(s, "y")),
    "expressions-doesnotexist": ("""
- metadata: {name: selects-nothing, namespace: x}
  spec:
    podSelector: {matchExpressions: [{key: pod, operator: DoesNotExist}]}
- metadata: {name: only-c, namespace: y}
  spec:
    podSelector: {}
    ingress:
      - from:
          - namespaceSelector: {matchExpressions: [{key: ns, operator: DoesNotExist}]}
          - podSelector:
              matchExpressions: [{key: pod, operator: In, values: [c]}, {key: team, operator: DoesNotExist}]
""", lambda s, d, port, proto: not ns(d, "y") or s == "y/c"),
    "egress-only-ignores-ingress": ("""
- metadata: {name: egress-only, namespace: x}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    ingress: [{from: [{podSelector: {matchLabels: {pod: nobody}}}]}]
    egress: [{}]
""", lambda s, d, port, proto: True),
    "egress-to-namespace-port": ("""
- metadata: {name: a-to-y-80, namespace: x}
  spec:
    podSelector: {matchLabels: {pod: a}}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]
""", lambda s, d, port, proto: s != "x/a" or (ns(d, "y") and (port, proto) == (80, "TCP"))),
    "egress-named-port": ("""
- metadata: {name: to-z-81-udp, namespace: x}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: serve-81-udp, protocol: UDP}]}]
""", lambda s, d, port, proto: not ns(s, "x") or (ns(d, "z") and (port, proto) == (81, "UDP"))),
    "egress-named-port-anywhere": ("""
- metadata: {name: to-80-tcp, namespace: x}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{ports: [{port: serve-80-tcp}]}]
""", lambda s, d, port, proto: not ns(s, "x") or (port, proto) == (80, "TCP")),
    "egress-ipblock-outside": ("""
- metadata: {name: internet-only, namespace: x}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.244.0.0/16]}}]}]
""", lambda s, d, port, proto: not ns(s, "x")),
    "egress-ipblock-pods": ("""
- metadata: {name: to-worker2, namespace: z}
  spec:
    podSelector: {matchLabels: {pod: b}}
    policyTypes: [Egress]
    egress:
      - to: [{ipBlock: {cidr: 10.244.2.0/24, except: [10.244.2.4/32]}}]
        ports: [{port: serve-81-tcp}, {port: 80, protocol: UDP}]
""", lambda s, d, port, proto: s != "z/b" or (d in ("x/c", "y/b") and (port, proto) in ((81, "TCP"), (80, "UDP")))),
    "both-directions": ("""
- metadata: {name: to-y-only, namespace: x}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
- metadata: {name: from-x-a-only, namespace: y}
  spec:
    podSelector: {}
    policyTypes: [Ingress]
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]
""", lambda s, d, port, proto: (not ns(s, "x") or ns(d, "y")) and (not ns(d, "y") or s == "x/a")),
    "ingress-and-egress-one-policy": ("""
- metadata: {name: tight, namespace: z}
  spec:
    podSelector: {matchLabels: {pod: a}}
    policyTypes: [Ingress, Egress]
    ingress: [{from: [{podSelector: {}}], ports: [{port: 80, protocol: UDP}, {port: serve-81-tcp}]}]
    egress: [{to: [{podSelector: {matchLabels: {pod: c}}, namespaceSelector: {}}], ports: [{port: 81}]}]
""", lambda s, d, port, proto: (s != "z/a" or (d.endswith("/c") and (port, proto) == (81, "TCP")))
        and (d != "z/a" or (ns(s, "z") and (port, proto) in ((80, "UDP"), (81, "TCP"))))),
}


def hand_matrix(rule) -> dict:
    return {(s, d, port, proto): s == d or bool(rule(s, d, port, proto))
            for s in PODS for d in PODS for port in PORTS for proto in PROTOCOLS}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matrix(case):
    policies, rule = CASES[case]
    got = expected_matrix(netpol_state(policies), ports=PORTS, protocols=PROTOCOLS)
    want = hand_matrix(rule)
    assert len(got) == 9 * 9 * 2 * 2
    wrong = sorted(k for k in want if got[k] != want[k])
    assert not wrong, f"{len(wrong)} cells differ, e.g. {wrong[:5]} (expected {[want[k] for k in wrong[:5]]})"


def test_every_case_but_the_open_ones_denies_something():
    for case, (policies, rule) in CASES.items():
        denied = [k for k, v in hand_matrix(rule).items() if not v]
        assert bool(denied) == (case not in ("no-policy", "egress-only-ignores-ingress")), case


SEL = SelectorState


@pytest.mark.parametrize("selector,labels,want", [
    (SEL(), {}, True),
    (SEL(), {"a": "1"}, True),
    (SEL((("a", "1"),)), {"a": "1", "b": "2"}, True),
    (SEL((("a", "1"),)), {"a": "2"}, False),
    (SEL((("a", "1"),)), {}, False),
    (SEL((("a", "1"), ("b", "2"))), {"a": "1"}, False),
    (SEL(expressions=(("a", "In", ("1", "2")),)), {"a": "2"}, True),
    (SEL(expressions=(("a", "In", ("1", "2")),)), {"a": "3"}, False),
    (SEL(expressions=(("a", "In", ("1",)),)), {}, False),
    (SEL(expressions=(("a", "NotIn", ("1",)),)), {"a": "2"}, True),
    (SEL(expressions=(("a", "NotIn", ("1",)),)), {"a": "1"}, False),
    (SEL(expressions=(("a", "NotIn", ("1",)),)), {}, True),           # NotIn holds when the key is absent
    (SEL(expressions=(("a", "Exists", ()),)), {"a": ""}, True),
    (SEL(expressions=(("a", "Exists", ()),)), {"b": "1"}, False),
    (SEL(expressions=(("a", "DoesNotExist", ()),)), {"b": "1"}, True),
    (SEL(expressions=(("a", "DoesNotExist", ()),)), {"a": "1"}, False),
    (SEL((("b", "1"),), (("a", "Exists", ()),)), {"a": "1"}, False),   # matchLabels AND expressions
    (SEL((("b", "1"),), (("a", "Exists", ()),)), {"a": "1", "b": "1"}, True),
])
def test_selects(selector, labels, want):
    assert selects(selector, labels) is want


def pod(state, key):
    return next(p for p in state.pods if p.key == key)


def test_peer_podselector_alone_is_the_policys_namespace():
    state = netpol_state(CASES["namespace-or-pod"][0])
    policy = state.policies[0]
    by_pod = policy.ingress[0].peers[1]
    assert peer_matches(state, policy, by_pod, pod(state, "x/b"), "10.244.1.2")
    assert not peer_matches(state, policy, by_pod, pod(state, "y/b"), "10.244.2.3")
    assert not peer_matches(state, policy, by_pod, None, "10.244.1.2")     # selectors match pods, not addresses


def test_port_matches():
    state = netpol_state()
    a = pod(state, "x/a")
    assert port_matches(PolicyPortState("TCP", "serve-80-tcp"), a, 80, "TCP")
    assert not port_matches(PolicyPortState("TCP", "serve-80-tcp"), a, 80, "UDP")
    assert not port_matches(PolicyPortState("UDP", "serve-80-tcp"), a, 80, "UDP")     # name + protocol
    assert not port_matches(PolicyPortState("TCP", "serve-80-tcp"), None, 80, "TCP")  # no pod: no named port
    assert port_matches(PolicyPortState("TCP", "80", 85), None, 85, "TCP")
    assert not port_matches(PolicyPortState("TCP", "80", 85), None, 86, "TCP")
    assert port_matches(PolicyPortState("UDP", ""), None, 9, "UDP")
    assert not port_matches(PolicyPortState("UDP", ""), None, 9, "TCP")


def test_isolation_and_affecting_policies():
    state = netpol_state(CASES["both-directions"][0])
    assert isolated(state, pod(state, "x/a"), "Egress") and not isolated(state, pod(state, "x/a"), "Ingress")
    assert isolated(state, pod(state, "y/c"), "Ingress") and not isolated(state, pod(state, "y/c"), "Egress")
    assert not isolated(state, pod(state, "z/a"), "Ingress")


def test_addresses_outside_the_cluster():
    state = netpol_state(CASES["deny-ingress"][0])
    internet = state.hosts[0].ip
    x_a = pod(state, "x/a")                                   # on control-plane
    assert not allowed(state, internet, x_a, 80)
    assert allowed(state, x_a, internet, 80)
    assert not allowed(state, state.node("worker1").ip, x_a, 80)
    # traffic from the pod's own node is always allowed (its kubelet probes it)
    for addr in (state.node("control-plane").ip, state.node("control-plane").gateway, "10.244.0.0"):
        assert allowed(state, addr, x_a, 80), addr
    assert allowed(state, "10.244.1.2", "10.244.0.2", 80) is False          # pod IPs are the pods
    assert allowed(state, "10.244.0.2", "10.244.1.3", 80) is True          # x/a to y/a


def test_egress_ipblock_to_the_internet():
    state = netpol_state(CASES["egress-ipblock-outside"][0])
    x_b = pod(state, "x/b")
    assert allowed(state, x_b, state.hosts[0].ip, 80, "UDP")
    assert not allowed(state, x_b, pod(state, "y/a"), 80)
    assert allowed(state, x_b, state.node("worker2").ip, 80)                # 172.18.0.4 is outside 10.244/16
    assert allowed(state, x_b, state.node("worker1").ip, 80)                # its own node: always


def test_named_port_egress_to_an_address_matches_nothing():
    state = netpol_state("""
- metadata: {name: named-out, namespace: x}
  spec:
    podSelector: {}
    policyTypes: [Egress]
    egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: serve-80-tcp}]}]
""")
    x_a = pod(state, "x/a")
    assert not allowed(state, x_a, state.hosts[0].ip, 80)
    assert allowed(state, x_a, pod(state, "y/b"), 80)
    assert not allowed(state, x_a, pod(state, "y/b"), 81)


def test_host_network_pods_are_not_subject_to_policy_nor_matched_by_selectors():
    state = netpol_state(CASES["deny-ingress"][0] + """
- metadata: {name: from-pod-a, namespace: y}
  spec:
    podSelector: {}
    ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}]}]
""")
    node = state.node("worker1")
    host = dataclasses.replace(pod(state, "x/a"), name="h", node=node.name, ip=node.ip, host_network=True)
    state = dataclasses.replace(state, pods=state.pods + (host,))
    assert not isolated(state, host, "Ingress")
    assert allowed(state, pod(state, "z/a"), host, 80)
    assert not allowed(state, host, pod(state, "y/b"), 80)      # labelled pod=a, but seen as worker1's address
    assert allowed(state, host, pod(state, "y/a"), 80)          # y/a is on worker1: its node's traffic
    assert allowed(state, pod(state, "x/a"), pod(state, "y/b"), 80)
    assert (host.key, host.key, 80, "TCP") not in expected_matrix(state)


def test_a_pod_always_reaches_itself():
    state = netpol_state(CASES["deny-ingress"][0] + CASES["deny-egress"][0])
    x_a = pod(state, "x/a")
    assert allowed(state, x_a, x_a, 80, "UDP")
    assert not allowed(state, x_a, pod(state, "x/b"), 80)


def test_node_addresses():
    state = netpol_state()
    assert node_addresses(state, "worker1") == {"172.18.0.3", "10.244.1.1", "10.244.1.0"}   # flannel.1 on vxlan
    host_gw = dataclasses.replace(state, network="host-gw")
    assert node_addresses(host_gw, "worker1") == {"172.18.0.3", "10.244.1.1"}


def test_the_node_local_dns_cache_is_the_nodes_own_address_under_egress_deny():
    """NodeLocal DNSCache listens on the pod's own node (lo): a default-deny-egress does not cut a
    pod off from it, as the rules filter forwarded traffic only (the node exception)."""
    from lab.controlplane.state import PolicyState
    from lab.dns.records import NODE_LOCAL_IP
    from lab.policy.model import allowed
    from tests.unit.golden import shipped_state

    st = shipped_state("dns", dns={"enabled": True, "nodeLocalCache": True})
    pod = next(p for p in st.pods if not p.host_network and p.namespace == "default")
    deny = PolicyState("default", "deny-egress", SelectorState(), ("Egress",))
    st = dataclasses.replace(st, policies=(deny,))
    assert allowed(st, pod, NODE_LOCAL_IP, 53, "UDP")
    assert not allowed(dataclasses.replace(st, dns_node_cache=False), pod, NODE_LOCAL_IP, 53, "UDP")
