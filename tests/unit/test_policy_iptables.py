"""lab.policy.iptables: goldens, structure, and an evaluator that runs the rendered rules of every
node for every connection of the netpol layout and must agree with lab.policy.model.allowed."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Optional

import pytest

from lab.controlplane.state import ClusterState, PodState
from lab.policy.iptables import (
    CHAIN_MAX, POLICY_CHAIN, base_rules, declared_chains, is_policy_chain, local_pods, pod_chain, render,
)
from lab.policy.model import allowed, isolated, node_addresses
from tests.unit.golden import check_golden
from tests.unit.test_policy_model import CASES, netpol_state

# --- a tiny evaluator of exactly the subset render() writes ---


@dataclass
class Rule:
    text: str
    src: Optional[object] = None
    dst: Optional[object] = None
    proto: Optional[str] = None
    dports: Optional[tuple[int, int]] = None
    ctstate: Optional[set] = None
    target: str = ""


def parse(chain_rest: list[str], text: str) -> Rule:
    r, i = Rule(text), 0
    modules = set()
    while i < len(chain_rest):
        tok, arg = chain_rest[i], chain_rest[i + 1] if i + 1 < len(chain_rest) else None
        if tok == "-s":
            r.src = ip_network(arg)
        elif tok == "-d":
            r.dst = ip_network(arg)
        elif tok == "-p":
            r.proto = arg
        elif tok == "-m":
            modules.add(arg)
            assert arg in ("conntrack", "comment") or arg == r.proto, text
        elif tok == "--dport":
            assert r.proto in modules, f"--dport without -m {r.proto}: {text}"
            low, _, high = arg.partition(":")
            r.dports = (int(low), int(high or low))
            assert r.dports[0] <= r.dports[1], text
        elif tok == "--ctstate":
            assert "conntrack" in modules, text
            r.ctstate = set(arg.split(","))
        elif tok == "--comment":
            assert "comment" in modules, text
        elif tok == "-j":
            r.target = arg
            assert i + 2 == len(chain_rest), f"options after the target: {text}"
        else:
            raise AssertionError(f"unknown option {tok!r}: {text}")
        i += 2
    assert r.target, text
    return r


@dataclass
class Node:
    """One node's filter table, as `iptables-restore --noflush` leaves it (strict like the real one)."""

    chains: dict[str, list[Rule]] = field(default_factory=lambda: {"INPUT": [], "FORWARD": [], "OUTPUT": []})

    def restore(self, text: str) -> None:
        work = None
        for line in text.splitlines():
            if line == "*filter":
                work = {c: list(rules) for c, rules in self.chains.items()}
            elif line == "COMMIT":
                for rules in work.values():
                    for r in rules:
                        assert r.target in ("RETURN", "DROP", "ACCEPT") or r.target in work, f"no chain: {r.text}"
                self.chains, work = work, None
            elif line.startswith(":"):
                name = line[1:].split()[0]
                assert name not in ("INPUT", "FORWARD", "OUTPUT") and len(name) <= CHAIN_MAX, line
                work[name] = []
            elif line.startswith("-X "):
                name = line.split()[1]
                assert not work[name], f"{line}: not empty"
                assert not any(r.target == name for rules in work.values() for r in rules), f"{line}: referenced"
                del work[name]
            else:
                tokens = shlex.split(line)
                if tokens[0] == "-A":
                    work[tokens[1]].append(parse(tokens[2:], line))
                elif tokens[0] == "-I":
                    work[tokens[1]].insert(int(tokens[2]) - 1, parse(tokens[3:], line))
                else:
                    raise AssertionError(f"unsupported line {line!r}")
        assert work is None, "missing COMMIT"

    def verdict(self, src: str, dst: str, proto: str, dport: int, ctstate: str = "NEW") -> str:
        """The first packet of a connection through FORWARD: ACCEPT (the policy) or DROP."""
        v = self._run("FORWARD", ip_address(src), ip_address(dst), proto.lower(), dport, ctstate)
        return "DROP" if v == "DROP" else "ACCEPT"

    def _run(self, chain, src, dst, proto, dport, ctstate) -> Optional[str]:
        for r in self.chains[chain]:
            if r.src is not None and src not in r.src or r.dst is not None and dst not in r.dst:
                continue
            if r.proto is not None and r.proto != proto:
                continue
            if r.dports is not None and not r.dports[0] <= dport <= r.dports[1]:
                continue
            if r.ctstate is not None and ctstate not in r.ctstate:
                continue
            if r.target in self.chains:
                v = self._run(r.target, src, dst, proto, dport, ctstate)
                if v in ("DROP", "ACCEPT"):
                    return v
                continue
            return r.target
        return None


def nodes_for(state: ClusterState) -> dict[str, Node]:
    out = {}
    for n in state.nodes:
        out[n.name] = Node()
        out[n.name].restore(base_rules())
        out[n.name].restore(render(state, n.name))
    return out


def path(state: ClusterState, src, dst) -> list[str]:
    """The nodes whose FORWARD the first packet crosses. Pods on one node: that node (ptp routes,
    or the bridge with br_netfilter; a pod to itself through a Service hairpins there); the node's
    own traffic to its pods takes OUTPUT, its pods' traffic to it INPUT: no FORWARD at all."""
    hops = []
    if isinstance(src, PodState):
        if not (isinstance(dst, str) and dst in node_addresses(state, src.node)):
            hops.append(src.node)
    if isinstance(dst, PodState):
        if not (isinstance(src, str) and src in node_addresses(state, dst.node)):
            hops.append(dst.node)
    return list(dict.fromkeys(hops))


def simulate(state, nodes, src, dst, port, proto) -> bool:
    s = src.ip if isinstance(src, PodState) else src
    d = dst.ip if isinstance(dst, PodState) else dst
    return all(nodes[n].verdict(s, d, proto, port) == "ACCEPT" for n in path(state, src, dst))


def endpoints(state: ClusterState) -> list:
    """Every pod, the internet host, and every node's addresses."""
    nodes = sorted(a for n in state.nodes for a in node_addresses(state, n.name))
    return [*state.pods, *(h.ip for h in state.hosts), *nodes]


@pytest.mark.parametrize("case", sorted(CASES))
def test_rules_agree_with_the_model(case):
    """All 9x9 pod pairs (self included) plus the internet host and the nodes' addresses, on every
    port 79..82 and protocol: the rules of the nodes on the path decide what the model says."""
    state = netpol_state(CASES[case][0])
    nodes = nodes_for(state)
    eps = endpoints(state)
    wrong, checked = [], 0
    for src in eps:
        for dst in eps:
            if isinstance(src, str) and isinstance(dst, str):
                continue
            for port in (79, 80, 81, 82, 53):
                for proto in ("TCP", "UDP"):
                    want, got = allowed(state, src, dst, port, proto), simulate(state, nodes, src, dst, port, proto)
                    checked += 1
                    if want != got:
                        wrong.append((getattr(src, "key", src), getattr(dst, "key", dst), port, proto, want))
    assert checked > 9 * 9 * 2 * 2
    assert not wrong, f"{len(wrong)} disagree (src, dst, port, proto, model): {wrong[:6]}"


def test_replies_pass():
    state = netpol_state(CASES["deny-ingress"][0] + CASES["deny-egress"][0])
    nodes = nodes_for(state)
    assert nodes["control-plane"].verdict("10.244.1.3", "10.244.0.2", "tcp", 80) == "DROP"
    assert nodes["control-plane"].verdict("10.244.1.3", "10.244.0.2", "tcp", 80, "ESTABLISHED") == "ACCEPT"
    assert nodes["control-plane"].verdict("10.244.0.2", "10.244.1.3", "udp", 80, "ESTABLISHED") == "ACCEPT"


# --- goldens ---

GOLDENS = [("deny-ingress", "control-plane"), ("namespace-and-pod", "worker1"), ("ipblock-except", "control-plane"),
           ("ingress-and-egress-one-policy", "worker2"), ("egress-named-port", "worker1"), ("no-policy", "worker1")]


@pytest.mark.parametrize("case,node", GOLDENS)
def test_golden(case, node):
    check_golden(f"netpol-{case}-{node}.txt", render(netpol_state(CASES[case][0]), node))


def test_golden_base():
    check_golden("netpol-base.txt", base_rules())


# --- structure ---

def chain_rules(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {c: [] for c in re.findall(r"^:(\S+) ", text, re.M)}
    for chain, rest in re.findall(r"^-A (\S+) (.*)$", text, re.M):
        out[chain].append(rest)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_structure(case):
    state = netpol_state(CASES[case][0])
    for node in state.nodes:
        text = render(state, node.name)
        assert text == render(state, node.name), "not deterministic"
        assert text.startswith("*filter\n") and text.endswith("COMMIT\n") and text.count("*filter") == 1
        rules = chain_rules(text)
        top = rules[POLICY_CHAIN]
        assert top[0].startswith("-m conntrack --ctstate RELATED,ESTABLISHED ") and top[0].endswith("-j RETURN")
        assert all(len(c) <= CHAIN_MAX for c in rules)
        for p in local_pods(state, node.name):
            for direction, match in (("Ingress", f"-d {p.ip}/32 "), ("Egress", f"-s {p.ip}/32 ")):
                chain = pod_chain(p, direction)
                jumps = [r for r in top if r.startswith(match) and r.endswith(f"-j {chain}")]
                assert len(jumps) == (1 if isolated(state, p, direction) else 0), (p.key, direction)
                if jumps:
                    assert rules[chain][-1].endswith("-j DROP")
                    assert all(r.endswith("-j RETURN") for r in rules[chain][:-1])
        assert set(rules) - {POLICY_CHAIN} == {c for c in rules if is_policy_chain(c)}
        remote = {p.ip for p in state.pods if p.node != node.name}
        assert not any(f"-d {ip}/32 " in r and "-j LAB-NP-IN-" in r for r in top for ip in remote)


def test_chain_names():
    assert len(pod_chain("some-long-namespace-name/some-pod-with-a-long-name-0123456789", "Egress")) == 27
    assert pod_chain("x/a", "Ingress").startswith("LAB-NP-IN-") and pod_chain("x/a", "Egress").startswith("LAB-NP-OUT-")
    assert pod_chain("x/a", "Ingress") != pod_chain("x/b", "Ingress")
    assert re.fullmatch(r"LAB-NP-IN-[A-Z2-7]{16}", pod_chain("x/a", "Ingress"))


def test_stale_chains_are_deleted():
    before = netpol_state(CASES["both-directions"][0])
    after = netpol_state(CASES["deny-ingress"][0])
    node = Node()
    node.restore(base_rules())
    first = render(before, "control-plane")
    node.restore(first)
    existing = declared_chains(first)
    assert existing == {c for c in node.chains if is_policy_chain(c)} and existing
    second = render(after, "control-plane", existing=existing)
    node.restore(second)                                       # strict: -X of a referenced chain fails
    now = declared_chains(second, existing)
    assert now == {c for c in node.chains if is_policy_chain(c)}
    assert now == {pod_chain(p, "Ingress") for p in local_pods(after, "control-plane") if p.namespace == "x"}
    gone = existing - now
    assert gone and all(f"-X {c}\n" in second for c in gone)
    assert second.index(f"-A {POLICY_CHAIN} ") < second.index("-X ")
    # a chain still needed is rewritten, not deleted; one that is not ours is never touched
    third = render(after, "control-plane", existing=now | {"KUBE-SVC-ABC"})
    assert "-X" not in third and "KUBE-SVC-ABC" not in third
    # nothing left: everything goes, LAB-NETPOL keeps only the conntrack rule
    last = render(netpol_state(), "control-plane", existing=now)
    node.restore(last)
    assert declared_chains(last, now) == set()
    assert [r.target for r in node.chains[POLICY_CHAIN]] == ["RETURN"]


def test_base_rules_jump_first_in_forward():
    node = Node()
    node.chains["FORWARD"].append(parse(["-j", "ACCEPT"], "-A FORWARD -j ACCEPT"))  # stands for KUBE-FORWARD
    node.restore(base_rules())
    assert node.chains["FORWARD"][0].target == POLICY_CHAIN


def test_hairpin_to_itself_passes():
    state = netpol_state(CASES["deny-ingress"][0] + CASES["deny-egress"][0])
    node = nodes_for(state)["control-plane"]
    assert node.verdict("10.244.0.2", "10.244.0.2", "tcp", 80) == "ACCEPT"
    assert node.verdict("10.244.0.4", "10.244.0.2", "tcp", 80) == "DROP"
