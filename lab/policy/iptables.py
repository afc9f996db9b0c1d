"""NetworkPolicy enforcement on one node (pure): filter-table text for `iptables-restore --noflush`.

The layout is kube-router's (a per-pod chain per direction, jumped to from one top-level chain in
FORWARD), with our own names:

  filter FORWARD (first rule, base_rules) -> LAB-NETPOL:
      -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN        replies and later packets: not ours
      -s P -d P -j RETURN            per isolated local pod: a pod cannot block access to itself
                                     (hairpin through a Service passes FORWARD with src = dst)
      -s P -j LAB-NP-OUT-<hash>      per local pod isolated for egress (whatever the destination's node)
      -d P -j LAB-NP-IN-<hash>       per local pod isolated for ingress
  LAB-NP-OUT-/LAB-NP-IN-<hash>: one `-j RETURN` per (allowed peer, port) of every rule of every
      policy selecting the pod, then `-j DROP` (Kubernetes drops what no rule allows).

Policy rules never ACCEPT: a packet a chain allows RETURNs and goes on, so a connection from an
egress-isolated local pod to an ingress-isolated local pod passes both checks, and whatever follows
in FORWARD (kube-proxy's KUBE-FORWARD, KUBE-SERVICES ...) still sees it. For the same reason the
conntrack rule RETURNs rather than ACCEPTs: the policy layer only ever drops NEW connections, and
replies to allowed connections are never dropped by it. Ingress of a remote pod is enforced on that
pod's node; egress of a local pod here, wherever the destination is.

Everything is resolved at render time, purely from ClusterState: pod selectors become pod IPs (/32),
ipBlock becomes its cidr minus its excepts, computed as a list of CIDRs (exact, no marks, no extra
chains), named ports become the destination pod's numbers (ingress: the local pod's; egress: each
destination pod's, which then appears as -d <ip>/32). lab.policy.model is the specification; the
unit tests run these rules through an evaluator and compare with it on the whole matrix.

What the rules do not see, on purpose (the Kubernetes exceptions, see lab.policy.model): traffic of
the node itself to its pods (filter OUTPUT) and of its pods to the node (filter INPUT), and a pod
talking to itself over its own IP (it never leaves its netns). Same-node pod-to-pod traffic on a
bridge reaches FORWARD only with br_netfilter (net.bridge.bridge-nf-call-iptables=1) in the node.

Why iptables in both kube-proxy modes: the lab's iptables is the nf_tables backend (iptables-nft),
so these rules become nf_tables rules anyway, next to kube-proxy's nftables table, and FORWARD is a
base chain both see; one renderer, readable with `iptables-save`, instead of two.

Chain names are LAB-NP-IN-/LAB-NP-OUT- + the first 16 characters of base32(sha256(pod key)), at
most 27 characters (iptables allows 28). Every render rewrites LAB-NETPOL and every per-pod chain
whole (declared = flushed); chains of the previous render (`existing`, see declared_chains) no longer
needed are flushed and deleted (-X) once LAB-NETPOL no longer jumps to them, as kube-proxy does.
"""
from __future__ import annotations

import base64
import hashlib
import re
from ipaddress import IPv4Network, collapse_addresses, ip_network
from typing import AbstractSet, Optional, Union

from lab.controlplane.state import ClusterState, NodeState, PeerState, PodState, PolicyPortState, PolicyState
from lab.netfilter import comment as _comment
from lab.policy.model import EGRESS, INGRESS, named_port_numbers, peer_matches, in_ip_block, selecting_policies

POLICY_CHAIN = "LAB-NETPOL"
IN_PREFIX, OUT_PREFIX = "LAB-NP-IN-", "LAB-NP-OUT-"
CHAIN_MAX = 28


def pod_chain(pod: Union[PodState, str], direction: str) -> str:
    """LAB-NP-IN-<hash> (direction "Ingress") or LAB-NP-OUT-<hash> ("Egress") of a pod (or its key)."""
    key = pod.key if isinstance(pod, PodState) else pod
    digest = base64.b32encode(hashlib.sha256(f"{direction}/{key}".encode()).digest()).decode()
    return (IN_PREFIX if direction == INGRESS else OUT_PREFIX) + digest[:16]


def is_policy_chain(name: str) -> bool:
    return name.startswith((IN_PREFIX, OUT_PREFIX))


def base_rules() -> str:
    """Once per node, before the first render: the LAB-NETPOL chain and the jump to it, inserted
    FIRST in FORWARD so policies are decided before kube-proxy's KUBE-FORWARD accepts anything."""
    return "\n".join([
        "*filter",
        f":{POLICY_CHAIN} - [0:0]",
        f"-I FORWARD 1 {_comment('lab netpol: network policies')} -j {POLICY_CHAIN}",
        "COMMIT",
    ]) + "\n"


# --- resolving peers and ports to matches ---

def _cidrs(peer: PeerState, family: int = 4) -> list[str]:
    """The ipBlock as CIDRs: its cidr minus every except, exactly; none for a block of the other
    family (an IPv4 block allows no IPv6 peer: the rules are per family)."""
    if ip_network(peer.cidr, strict=False).version != family:
        return []
    nets: list[IPv4Network] = [ip_network(peer.cidr, strict=False)]
    for e in peer.excepts:
        cut = ip_network(e, strict=False)
        if cut.version != family:
            continue
        out = []
        for n in nets:
            if cut.supernet_of(n):
                continue
            out.extend(n.address_exclude(cut) if n.supernet_of(cut) else [n])
        nets = out
    return [str(n) for n in collapse_addresses(nets)]


def _pods_matching(state: ClusterState, policy: PolicyState, peer: PeerState, family: int = 4) -> list[PodState]:
    return [p for p in state.pods if not p.host_network and p.ip_of(family)
            and peer_matches(state, policy, peer, p, p.ip_of(family))]


def _host(ip: str) -> str:
    """One address as a match: /32, or /128 for IPv6."""
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def _addresses(state: ClusterState, policy: PolicyState, peers: tuple[PeerState, ...], family: int = 4) -> list[str]:
    """The peers as address matches of one family: "" for every address, else pod /32s (/128s)
    and ipBlock CIDRs."""
    if not peers:
        return [""]
    out: list[str] = []
    for peer in peers:
        if peer.cidr:
            out += _cidrs(peer, family)
        else:
            out += [_host(p.ip_of(family)) for p in _pods_matching(state, policy, peer, family)]
    return list(dict.fromkeys(out))


def _port_text(protocol: str, low: int = 0, high: int = 0) -> str:
    proto = protocol.lower()
    if not low:
        return f"-p {proto}"
    return f"-p {proto} -m {proto} --dport {low}" + (f":{high}" if high and high != low else "")


def _is_named(p: PolicyPortState) -> bool:
    return p.port != "" and not p.port.isdigit()


def _port_matches(ports: tuple[PolicyPortState, ...], dst: Optional[PodState]) -> list[str]:
    """The entries as port matches, in their order: named ones resolved in `dst`, left out when
    `dst` is None (the caller resolves them per destination pod)."""
    out = []
    for p in ports:
        if p.port == "":
            out.append(_port_text(p.protocol))
        elif p.port.isdigit():
            out.append(_port_text(p.protocol, int(p.port), p.end_port))
        elif dst is not None:
            out += [_port_text(p.protocol, n) for n in named_port_numbers(dst, p.port, p.protocol)]
    return out


def _named_ports(ports: tuple[PolicyPortState, ...], dst: PodState) -> list[str]:
    return _port_matches(tuple(p for p in ports if _is_named(p)), dst)


def _egress_destinations(state: ClusterState, policy: PolicyState, peers: tuple[PeerState, ...],
                         family: int = 4) -> list[PodState]:
    """The pods an egress rule's peers reach (at their address of `family`): where its named ports
    are resolved."""
    pods = [p for p in state.pods if not p.host_network and p.ip_of(family)]
    if not peers:
        return pods
    return [p for p in pods if any(in_ip_block(peer, p.ip_of(family)) if peer.cidr
                                   else peer_matches(state, policy, peer, p, p.ip_of(family)) for peer in peers)]


def _rules(state: ClusterState, pod: PodState, direction: str, family: int = 4) -> list[str]:
    """RETURN rules for what the policies selecting `pod` allow in `direction`: matched on the
    peer's address (-s for ingress, -d for egress) and port. Named ports belong to the destination:
    for ingress that is `pod` itself; for egress each destination pod gets rules of its own."""
    flag = "-s" if direction == INGRESS else "-d"
    rules = []
    for policy in selecting_policies(state, pod, direction):
        policy_rules = policy.ingress if direction == INGRESS else policy.egress
        for i, rule in enumerate(policy_rules):
            comment = _comment(f"{policy.key} {direction.lower()}[{i}]")
            ports = [""] if not rule.ports else _port_matches(rule.ports, pod if direction == INGRESS else None)
            for peer in _addresses(state, policy, rule.peers, family):
                for port in ports:
                    rules.append(" ".join(x for x in (f"{flag} {peer}" if peer else "", port, comment, "-j RETURN") if x))
            if direction == EGRESS and any(_is_named(p) for p in rule.ports):
                for dst_pod in _egress_destinations(state, policy, rule.peers, family):
                    for port in _named_ports(rule.ports, dst_pod):
                        rules.append(f"-d {_host(dst_pod.ip_of(family))} {port} {comment} -j RETURN")
    return rules


# --- the node's text ---

def local_pods(state: ClusterState, node: str, family: int = 4) -> tuple[PodState, ...]:
    """The pods whose traffic this node's rules police: its pods with their own network namespace
    (and an address of the family)."""
    return tuple(p for p in state.pods_on(node) if not p.host_network and p.ip_of(family))


def render(state: ClusterState, node: Union[str, NodeState], existing: AbstractSet[str] = frozenset(),
           family: int = 4) -> str:
    """The policy chains of `node`, rewritten whole, for `iptables-restore --noflush` over base_rules()
    (family 6: the same layout for `ip6tables-restore`, with the IPv6 addresses and blocks).

    existing: the per-pod chains the previous render left (declared_chains of its text); those no
    longer needed are flushed and deleted."""
    name = node.name if isinstance(node, NodeState) else state.node(node).name
    established = _comment("lab netpol: replies and established connections")
    top: list[str] = [f"-m conntrack --ctstate RELATED,ESTABLISHED {established} -j RETURN"]
    chains: dict[str, list[str]] = {}
    pods = local_pods(state, name, family)
    isolated_pods = [(p, d) for p in pods for d in (EGRESS, INGRESS) if selecting_policies(state, p, d)]
    for p in dict.fromkeys(p for p, _ in isolated_pods):
        own = _host(p.ip_of(family))
        top.append(f"-s {own} -d {own} {_comment(f'{p.key}: a pod cannot block access to itself')} -j RETURN")
    for direction in (EGRESS, INGRESS):
        for p in (p for p, d in isolated_pods if d == direction):
            chain = pod_chain(p, direction)
            own = _host(p.ip_of(family))
            match, what = (f"-s {own}", "egress") if direction == EGRESS else (f"-d {own}", "ingress")
            top.append(f"{match} {_comment(f'{p.key} {what}')} -j {chain}")
            body = _rules(state, p, direction, family)
            chains[chain] = [*dict.fromkeys(body),
                             f"{_comment(f'{p.key}: {what} not allowed by any policy')} -j DROP"]
    stale = sorted(c for c in set(existing) - set(chains) if is_policy_chain(c))
    lines = ["*filter", f":{POLICY_CHAIN} - [0:0]", *(f":{c} - [0:0]" for c in [*chains, *stale]),
             *(f"-A {POLICY_CHAIN} {r}" for r in top),
             *(f"-A {c} {r}" for c, rules in chains.items() for r in rules),
             *(f"-X {c}" for c in stale), "COMMIT"]
    return "\n".join(lines) + "\n"


def declared_chains(text: str, existing: AbstractSet[str] = frozenset()) -> set[str]:
    """The per-pod policy chains on the node once `text` is applied over `existing`; keep it as
    `existing` for the next render."""
    declared = {c for c in re.findall(r"^:(\S+) ", text, re.M) if is_policy_chain(c)}
    deleted = set(re.findall(r"^-X (\S+)$", text, re.M))
    return (set(existing) | declared) - deleted
