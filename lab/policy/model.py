"""NetworkPolicy semantics (networking.k8s.io/v1), pure: which connections the policies allow.

This is the reference the enforcement (lab.policy.iptables) and the harness are checked against. It
follows the Kubernetes documentation and the upstream e2e suite (test/e2e/network/netpol):

- A pod is isolated for a direction when some policy of its namespace selects it and lists that
  direction in policyTypes (plan.py defaults policyTypes as the API server does). Policies are
  additive: a connection is allowed when some rule of some selecting policy allows it. A connection
  needs the source's egress AND the destination's ingress to allow it.
- Rules: empty peers = every peer; empty ports = every port and protocol. A peer is a podSelector
  (pods of the POLICY's namespace), a namespaceSelector (every pod of the matching namespaces), both
  (matching pods of matching namespaces), or an ipBlock (cidr minus its excepts).
- ipBlock applies to every IP, pod IPs included (as iptables-based implementations do: they match
  addresses, not identities). Pod selectors match only pods with their own IP: a hostNetwork pod is
  seen as its node's address, and only an ipBlock can match it (what implementations do varies).
- Named ports are resolved against the DESTINATION pod (name and protocol), for ingress and egress
  alike; towards an address that is no pod a named port matches nothing. endPort: port..endPort.
- hostNetwork pods are not subject to policy (they live in the node's network namespace).
- Two exceptions from the Kubernetes documentation: "a pod cannot block access to itself" (the
  upstream e2e matrix calls AllowLoopback: "loopback logic follows no policy"), and "traffic to and
  from the node where a Pod is running is always allowed, regardless of the IP address of the Pod or
  the node" (its kubelet must probe it). The node's addresses are its underlay IP, its pod-CIDR
  gateway (cni0 / the ptp host side) and, with vxlan, the pod CIDR's network address (flannel.1).

An endpoint is a PodState or an IP string; an IP string that is a (non-hostNetwork) pod's IP is that
pod, so the model sees what the packet filter sees.
"""
from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Iterable, Optional, Sequence, Union

from lab import routing
from lab.dns.records import NODE_LOCAL_IP
from lab.controlplane.state import (
    ClusterState, PeerState, PodState, PolicyPortState, PolicyState, RuleState, SelectorState,
)

INGRESS, EGRESS = "Ingress", "Egress"
Endpoint = Union[PodState, str]


def selects(selector: SelectorState, labels: dict) -> bool:
    """A label selector: every matchLabels pair and every expression holds; empty selects all."""
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    for key, op, values in selector.expressions:
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError(f"unknown selector operator {op!r}")
        if not ok:
            return False
    return True


def in_ip_block(peer: PeerState, ip: str) -> bool:
    """The address is in the block's cidr and in none of its excepts."""
    addr = ip_address(ip)
    return addr in ip_network(peer.cidr, strict=False) and \
        not any(addr in ip_network(e, strict=False) for e in peer.excepts)


def peer_matches(state: ClusterState, policy: PolicyState, peer: PeerState, pod: Optional[PodState],
                 ip: str) -> bool:
    """Does the peer (one `from`/`to` entry of `policy`) match the other end: `pod` (None when it is
    no pod, or a hostNetwork pod) at `ip`?"""
    if peer.cidr:
        return in_ip_block(peer, ip)
    if pod is None or pod.host_network:
        return False
    if peer.namespace_selector is None:
        if pod.namespace != policy.namespace:
            return False
    elif not selects(peer.namespace_selector, state.labels_of_namespace(pod.namespace)):
        return False
    return peer.pod_selector is None or selects(peer.pod_selector, pod.label_dict())


def named_port_numbers(pod: Optional[PodState], name: str, protocol: str) -> tuple[int, ...]:
    """The numbers a named port stands for in `pod` (its containers' ports of that name and protocol)."""
    if pod is None or pod.host_network:
        return ()
    return tuple(sorted({p.port for c in pod.containers for p in c.ports
                         if p.name == name and p.protocol.upper() == protocol.upper()}))


def port_matches(rule_port: PolicyPortState, dst_pod: Optional[PodState], port: int, protocol: str) -> bool:
    """Does one `ports` entry match a connection to `port`/`protocol` of `dst_pod` (None: no pod)?"""
    if rule_port.protocol.upper() != protocol.upper():
        return False
    if rule_port.port == "":
        return True
    if rule_port.port.isdigit():
        low = int(rule_port.port)
        return low <= port <= rule_port.end_port if rule_port.end_port else port == low
    return port in named_port_numbers(dst_pod, rule_port.port, protocol)


def rule_allows(state: ClusterState, policy: PolicyState, rule: RuleState, peer_pod: Optional[PodState],
                peer_ip: str, dst_pod: Optional[PodState], port: int, protocol: str) -> bool:
    """One ingress rule (peer = the source) or egress rule (peer = the destination)."""
    return (not rule.peers or any(peer_matches(state, policy, p, peer_pod, peer_ip) for p in rule.peers)) and \
        (not rule.ports or any(port_matches(p, dst_pod, port, protocol) for p in rule.ports))


def selecting_policies(state: ClusterState, pod: PodState, direction: str) -> tuple[PolicyState, ...]:
    """The policies that isolate `pod` for `direction` ("Ingress" or "Egress"), in state order."""
    if pod.host_network:
        return ()
    labels = pod.label_dict()
    return tuple(p for p in state.policies
                 if p.namespace == pod.namespace and direction in p.types and selects(p.pod_selector, labels))


def isolated(state: ClusterState, pod: PodState, direction: str) -> bool:
    return bool(selecting_policies(state, pod, direction))


def node_addresses(state: ClusterState, node: str) -> frozenset[str]:
    """The addresses traffic from/to the node itself carries (the pod network's backend says),
    and NodeLocal DNSCache's address, which every node holds on its lo (the policy rules filter
    forwarded traffic, never what a node receives itself)."""
    cache = {NODE_LOCAL_IP} if state.dns_node_cache else set()
    return routing.backend(state).node_addresses(state, node) | cache


def sending_address(state: ClusterState, node: str, dst: Endpoint, family: int = 0) -> str:
    """The source address traffic from a node (itself, a hostNetwork pod on it, or what it SNATs)
    carries towards `dst`: its underlay IP; with vxlan, towards another node's pod, flannel.1's
    (the podCIDR's network address). family: of the connection (0: the cluster's primary)."""
    pod = dst.node if isinstance(dst, PodState) and not dst.host_network else None
    return routing.backend(state).sending_address(state, node, pod, family or state.families[0])


def resolve(state: ClusterState, endpoint: Endpoint, family: int = 0) -> tuple[Optional[PodState], str]:
    """(the pod with its own IP, or None; the address packets carry: a pod's of `family`, 0 for
    its primary one)."""
    if isinstance(endpoint, PodState):
        return (None if endpoint.host_network else endpoint), endpoint.ip_of(family) if family else endpoint.ip
    for p in state.pods:
        if not p.host_network and endpoint in p.pod_ips:
            return p, endpoint
    return None, endpoint


def allowed(state: ClusterState, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP",
            family: int = 0) -> bool:
    """May `src` open a connection to `dst` on port/protocol? Endpoints: PodState, or an IP string.
    family: the connection's (4 or 6; 0: an address given decides, else the cluster's primary), so
    an ipBlock of the other family matches nothing, as the per-family rules do."""
    if not family:
        given = next((e for e in (src, dst) if isinstance(e, str)), None)
        family = ip_address(given).version if given else state.families[0]
    src_pod, src_ip = resolve(state, src, family)
    dst_pod, dst_ip = resolve(state, dst, family)
    if src_pod is not None and dst_pod is not None and src_pod.key == dst_pod.key:
        return True                                    # a pod cannot block access to itself
    if src_pod is not None and dst_ip not in node_addresses(state, src_pod.node):
        policies = selecting_policies(state, src_pod, EGRESS)
        if policies and not any(rule_allows(state, pol, r, dst_pod, dst_ip, dst_pod, port, protocol)
                                for pol in policies for r in pol.egress):
            return False
    if dst_pod is not None and src_ip not in node_addresses(state, dst_pod.node):
        policies = selecting_policies(state, dst_pod, INGRESS)
        if policies and not any(rule_allows(state, pol, r, src_pod, src_ip, dst_pod, port, protocol)
                                for pol in policies for r in pol.ingress):
            return False
    return True


def expected_matrix(state: ClusterState, pods: Optional[Sequence[PodState]] = None,
                    ports: Iterable[int] = (80, 81), protocols: Iterable[str] = ("TCP", "UDP"),
                    ) -> dict[tuple[str, str, int, str], bool]:
    """(src pod key, dst pod key, port, protocol) -> allowed, for every ordered pair of `pods`
    (default: every pod that is not hostNetwork), a pod to itself included (always allowed)."""
    pods = tuple(pods) if pods is not None else tuple(p for p in state.pods if not p.host_network)
    ports, protocols = tuple(ports), tuple(protocols)
    return {(s.key, d.key, port, proto): allowed(state, s, d, port, proto)
            for s in pods for d in pods for port in ports for proto in protocols}
