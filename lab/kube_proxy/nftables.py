"""kube-proxy's nftables mode (KEP-3866) for one node, rendered as `nft -f` scripts. Pure.

The same Service semantics as the iptables mode, laid out the way kube-proxy's nftables proxier
(pkg/proxy/nftables) lays them out, in one table `ip kube-proxy`:

  base chains   filter-prerouting/-input/-forward/-output at priority -110 (dstnat - 10: filters see
                the pre-DNAT destination), filter-output-post-dnat at -90, nat-prerouting and
                nat-output at -100 (dstnat), nat-postrouting at 100 (srcnat). Priorities are written
                as numbers: nft 1.0.6 rejects `priority dstnat` on the output hook.
  dispatch      `services` looks the packet up in the verdict maps
                  service-ips        ipv4_addr . inet_proto . inet_service : verdict  (ClusterIPs)
                  service-nodeports  inet_proto . inet_service : verdict             (NodePorts)
                NodePorts answer on the node's own address only (set `nodeport-ips`): that is the
                nftables mode's default, `--nodeport-addresses primary`.
  no endpoints  filter chains look the packet up in `no-endpoint-services` / `no-endpoint-nodeports`:
                `goto reject-chain` (ICMP port-unreachable) when a Service has no ready endpoint
                anywhere, `drop` when a Local traffic policy finds none on this node.
  ClusterIPs    `cluster-ips-check` rejects ports a ClusterIP does not serve and drops traffic to
                unallocated addresses of the service CIDR.
  per port      `service-<HASH>-<ns>/<name>/<proto>/<port name>`: masquerade off-cluster sources,
                session affinity, then `numgen random mod N vmap { ... }` over the endpoints;
                `local-<HASH>-...` the same over this node's endpoints (Local traffic policies);
                `external-<HASH>-...` the NodePort entry (masquerade for eTP Cluster; for eTP Local
                keep the client's address and use local endpoints only).
  per endpoint  `endpoint-<HASH>-<ns>/<name>/<proto>/<port name>__<ip>/<port>`: hairpin masquerade,
                affinity update, `dnat to`; `affinity-<HASH>-...` sets for sessionAffinity ClientIP.
  masquerading  packets marked 0x4000 (by `mark-for-masquerade`) are masqueraded in nat-postrouting.

Endpoints of a Service port: the ready endpoints of the Service's slices that have a port of that
name and protocol (the port number comes from that slice); with a Local policy, only those on this
node. Serving-but-terminating fallbacks and topology hints are not modelled.

render() replaces the whole table in one transaction (a resync; affinity memory is lost).
render_update() is kube-proxy's partial sync: a transaction touching only what changed.
masq_agent_rules() is egress NAT for pods, like ip-masq-agent, in its own table.
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import AbstractSet, Iterable, Optional, Union

from lab.controlplane.endpoints import slices_by_service
from lab.controlplane.state import (
    ClusterState, EndpointSliceState, NodeState, ServicePortState, ServiceState,
)

TABLE = "kube-proxy"
FAMILY = "ip"
MASQ_MARK = "0x4000"                 # 1 << --masquerade-bit (14), kube-proxy's default

FILTER_PRIORITY = -110               # dstnat - 10
FILTER_POST_DNAT_PRIORITY = -90      # dstnat + 10
DSTNAT_PRIORITY = -100
SRCNAT_PRIORITY = 100

# kube-proxy truncates chain names so that a prefix of up to 16 characters still fits in 256
NAME_LENGTH_MAX = 256
CHAIN_NAME_BASE_LENGTH_MAX = NAME_LENGTH_MAX - 16

REJECT_CHAIN = "reject-chain"
MARK_MASQ_CHAIN = "mark-for-masquerade"


# --- names (kube-proxy's servicePortChainNameBase / servicePortEndpointChainNameBase) ---

@lru_cache(maxsize=65536)
def hash_and_truncate(name: str) -> str:
    """8 characters of base32(sha256(name)), a dash, the readable name; truncated to 240.
    (8 base32 characters encode exactly the first 5 bytes: only those are encoded.)"""
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()[:5]).decode()
    out = f"{digest[:8]}-{name}"
    if len(out) > CHAIN_NAME_BASE_LENGTH_MAX:
        out = out[:CHAIN_NAME_BASE_LENGTH_MAX - 3] + "..."
    return out


def port_name_base(svc: ServiceState, sp: ServicePortState) -> str:
    return hash_and_truncate(f"{svc.namespace}/{svc.name}/{sp.protocol.lower()}/{sp.name}")


def endpoint_name_base(svc: ServiceState, sp: ServicePortState, ip: str, port: int) -> str:
    return hash_and_truncate(f"{svc.namespace}/{svc.name}/{sp.protocol.lower()}/{sp.name}__{ip.replace(':', '.')}/{port}")


def service_port_string(svc: ServiceState, sp: ServicePortState) -> str:
    """ServicePortName.String(): ns/name, or ns/name:port for a named port."""
    return f"{svc.namespace}/{svc.name}" + (f":{sp.name}" if sp.name else "")


# --- endpoint selection (the same rules as the iptables mode) ---

@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str


def port_endpoints(svc: ServiceState, sp: ServicePortState, slices: Iterable[EndpointSliceState]) -> tuple[Endpoint, ...]:
    """The ready endpoints of a Service port, ordered by address then port, each once."""
    found: dict[tuple[str, int], Endpoint] = {}
    for sl in slices:
        if sl.namespace != svc.namespace or sl.service != svc.name:
            continue
        port = next((p.port for p in sl.ports if p.name == sp.name and p.protocol == sp.protocol), None)
        if port is None:
            continue
        for ep in sl.endpoints:
            if ep.ready and (ep.address, port) not in found:
                found[(ep.address, port)] = Endpoint(ep.address, port, ep.node)
    return tuple(sorted(found.values(), key=lambda e: (int(IPv4Address(e.ip)), e.port)))


# --- the model: what the table should hold ---

@dataclass(frozen=True)
class Element:
    key: str
    value: Optional[str] = None       # None in a set
    comment: Optional[str] = None

    def text(self) -> str:
        out = self.key + (f' comment "{self.comment}"' if self.comment else "")
        return out + (f" : {self.value}" if self.value is not None else "")


@dataclass(frozen=True)
class Container:
    """A set or a map. `spec` holds its declaration lines (type, flags, timeout, comment)."""

    kind: str                         # set | map
    name: str
    spec: tuple[str, ...]
    elements: tuple[Element, ...] = ()


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[str, ...]
    hook: Optional[str] = None        # "type nat hook output priority -100" for a base chain
    comment: Optional[str] = None


@dataclass
class Ruleset:
    """The table's contents in a deterministic order: skeleton first, then per Service port."""

    containers: dict[str, Container] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)

    def add_chain(self, chain: Chain) -> None:
        assert chain.name not in self.chains, chain.name
        self.chains[chain.name] = chain

    def add_container(self, c: Container) -> None:
        assert c.name not in self.containers, c.name
        self.containers[c.name] = c


def _node(state: ClusterState, node: Union[str, NodeState]) -> NodeState:
    return state.node(node) if isinstance(node, str) else node


def _skeleton(state: ClusterState, node: NodeState) -> Ruleset:
    """setupNFTables(): base chains, dispatch, the no-endpoint and ClusterIP checks, masquerading."""
    rs = Ruleset()
    vmap_key = "ipv4_addr . inet_proto . inet_service : verdict"
    rs.add_container(Container("set", "cluster-ips", ("type ipv4_addr", 'comment "Active ClusterIPs"')))
    rs.add_container(Container("set", "nodeport-ips", ("type ipv4_addr", 'comment "IPs that accept NodePort traffic"'),
                               (Element(node.ip),)))
    rs.add_container(Container("map", "no-endpoint-services", (
        f"type {vmap_key}", 'comment "vmap to drop or reject packets to services with no endpoints"')))
    rs.add_container(Container("map", "no-endpoint-nodeports", (
        "type inet_proto . inet_service : verdict",
        'comment "vmap to drop or reject packets to service nodeports with no endpoints"')))
    rs.add_container(Container("map", "firewall-ips", (
        f"type {vmap_key}", 'comment "destinations that are subject to LoadBalancerSourceRanges"')))
    rs.add_container(Container("map", "service-ips", (
        f"type {vmap_key}", 'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"')))
    rs.add_container(Container("map", "service-nodeports", (
        "type inet_proto . inet_service : verdict", 'comment "NodePort traffic"')))

    def base(name: str, kind: str, hook: str, priority: int, *jumps: str) -> None:
        rs.add_chain(Chain(name, jumps, hook=f"type {kind} hook {hook} priority {priority}"))

    new = "ct state new jump"
    base("filter-prerouting", "filter", "prerouting", FILTER_PRIORITY, f"{new} firewall-check")
    base("filter-input", "filter", "input", FILTER_PRIORITY,
         f"{new} nodeport-endpoints-check", f"{new} service-endpoints-check")
    base("filter-forward", "filter", "forward", FILTER_PRIORITY,
         f"{new} service-endpoints-check", f"{new} cluster-ips-check")
    base("filter-output", "filter", "output", FILTER_PRIORITY,
         f"{new} service-endpoints-check", f"{new} firewall-check")
    base("filter-output-post-dnat", "filter", "output", FILTER_POST_DNAT_PRIORITY, f"{new} cluster-ips-check")
    base("nat-prerouting", "nat", "prerouting", DSTNAT_PRIORITY, "jump services")
    base("nat-output", "nat", "output", DSTNAT_PRIORITY, "jump services")
    base("nat-postrouting", "nat", "postrouting", SRCNAT_PRIORITY, "jump masquerading")

    rs.add_chain(Chain("firewall-check", ("ip daddr . meta l4proto . th dport vmap @firewall-ips",)))
    rs.add_chain(Chain("service-endpoints-check", ("ip daddr . meta l4proto . th dport vmap @no-endpoint-services",)))
    rs.add_chain(Chain("nodeport-endpoints-check", (
        "ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",)))
    rs.add_chain(Chain("cluster-ips-check", (
        'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
        f'ip daddr {{ {state.service_cidr} }} drop comment "Drop traffic to unallocated ClusterIPs"',
    )))
    rs.add_chain(Chain("services", (
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
    )))
    rs.add_chain(Chain("masquerading", (
        f"mark and {MASQ_MARK} == 0 return",
        f"mark set mark xor {MASQ_MARK}",
        "masquerade fully-random",
    )))
    rs.add_chain(Chain(MARK_MASQ_CHAIN, (f"mark set mark or {MASQ_MARK}",)))
    rs.add_chain(Chain(REJECT_CHAIN, ("reject",), comment="helper for @no-endpoint-services / @no-endpoint-nodeports"))
    return rs


def _service_rules(svc: ServiceState, sp: ServicePortState, slices, node: NodeState, pod_cidr: str,
                   chains: list[Chain], sets: list[Container], elements: dict[str, list[Element]]) -> None:
    """syncProxyRules() for one Service port: its chains, affinity sets and map elements."""
    proto = sp.protocol.lower()
    base = port_name_base(svc, sp)
    cluster_chain, local_chain, external_chain = f"service-{base}", f"local-{base}", f"external-{base}"
    name_string = service_port_string(svc, sp)

    ready = port_endpoints(svc, sp, slices)
    external = svc.type == "NodePort" and sp.node_port is not None      # ExternallyAccessible()
    itp_local = svc.internal_traffic_policy == "Local"
    etp_local = external and svc.external_traffic_policy == "Local"
    uses_cluster = not itp_local or external     # external traffic needs them to short-circuit
    uses_local = itp_local or etp_local
    cluster_eps = ready if uses_cluster else ()
    local_eps = tuple(e for e in ready if e.node == node.name) if uses_local else ()
    reachable = cluster_eps if uses_cluster else local_eps
    has_endpoints = bool(ready)
    has_internal = has_endpoints and (not itp_local or bool(local_eps))
    has_external = has_endpoints and (not etp_local or bool(local_eps))
    internal_chain = local_chain if itp_local else cluster_chain
    external_policy_chain = local_chain if etp_local else cluster_chain
    affinity = svc.session_affinity == "ClientIP"

    if not has_endpoints:
        internal_verdict = external_verdict = f"goto {REJECT_CHAIN}"
    else:
        internal_verdict = "drop" if not has_internal else None
        external_verdict = "drop" if not has_external else None

    key = f"{svc.cluster_ip} . {proto} . {sp.port}"
    elements["cluster-ips"].append(Element(svc.cluster_ip))
    if has_internal:
        elements["service-ips"].append(Element(key, f"goto {internal_chain}"))
    else:
        elements["no-endpoint-services"].append(Element(key, internal_verdict, name_string))
    if external:
        np_key = f"{proto} . {sp.node_port}"
        if has_endpoints:
            elements["service-nodeports"].append(Element(np_key, f"goto {external_chain}"))
        if not has_external:
            elements["no-endpoint-nodeports"].append(Element(np_key, external_verdict, name_string))

    def ep_chain(e: Endpoint) -> str:
        return f"endpoint-{endpoint_name_base(svc, sp, e.ip, e.port)}"

    def ep_set(e: Endpoint) -> str:
        return f"affinity-{endpoint_name_base(svc, sp, e.ip, e.port)}"

    def balance(eps: tuple[Endpoint, ...]) -> list[str]:
        rules = [f"ip saddr @{ep_set(e)} goto {ep_chain(e)}" for e in eps] if affinity else []
        spread = ", ".join(f"{i} : goto {ep_chain(e)}" for i, e in enumerate(eps))
        return rules + [f"numgen random mod {len(eps)} vmap {{ {spread} }}"]

    masq_clusterip = f"ip daddr {svc.cluster_ip} {proto} dport {sp.port} ip saddr != {pod_cidr} jump {MARK_MASQ_CHAIN}"
    if cluster_eps:
        rules = ([masq_clusterip] if has_internal and internal_chain == cluster_chain else []) + balance(cluster_eps)
        chains.append(Chain(cluster_chain, tuple(rules)))
    if local_eps:
        rules = ([masq_clusterip] if has_internal and internal_chain == local_chain else []) + balance(local_eps)
        chains.append(Chain(local_chain, tuple(rules)))
    if has_endpoints and external:
        if not etp_local:
            rules = [f"jump {MARK_MASQ_CHAIN}"]
        else:
            rules = [
                f'ip saddr {pod_cidr} goto {cluster_chain} comment "short-circuit pod traffic"',
                f'fib saddr type local jump {MARK_MASQ_CHAIN} comment "masquerade local traffic"',
                f'fib saddr type local goto {cluster_chain} comment "short-circuit local traffic"',
            ]
        if has_external:
            rules.append(f"goto {external_policy_chain}")
        chains.append(Chain(external_chain, tuple(rules)))
    for e in reachable:
        if affinity:
            sets.append(Container("set", ep_set(e), (
                "type ipv4_addr", "flags dynamic,timeout", f"timeout {svc.affinity_timeout}s")))
        rules = [f"ip saddr {e.ip} jump {MARK_MASQ_CHAIN}"]
        if affinity:
            rules.append(f"update @{ep_set(e)} {{ ip saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {e.ip}:{e.port}")
        chains.append(Chain(ep_chain(e), tuple(rules)))


def build(state: ClusterState, node: Union[str, NodeState], slices: Iterable[EndpointSliceState]) -> Ruleset:
    """The kube-proxy table for `node`. Headless Services get nothing."""
    node = _node(state, node)
    by_service = slices_by_service(slices)
    rs = _skeleton(state, node)
    elements: dict[str, list[Element]] = {name: list(c.elements) for name, c in rs.containers.items()}
    for svc in sorted(state.services, key=lambda s: (s.namespace, s.name)):
        if svc.cluster_ip is None:
            continue
        for sp in svc.ports:
            chains: list[Chain] = []
            sets: list[Container] = []
            _service_rules(svc, sp, by_service.get((svc.namespace, svc.name), ()), node, state.pod_cidr,
                           chains, sets, elements)
            for s in sets:
                rs.add_container(s)
            for c in chains:
                rs.add_chain(c)
    for name, elems in elements.items():
        c = rs.containers[name]
        rs.containers[name] = Container(c.kind, c.name, c.spec, tuple(dict.fromkeys(elems)))
    return rs


# --- scripts ---

def _declare_container(c: Container, indent: str = "\t") -> list[str]:
    lines = [f"{indent}{c.kind} {c.name} {{"] + [f"{indent}\t{s}" for s in c.spec]
    if c.elements:
        elems = [e.text() for e in c.elements]
        lines.append(f"{indent}\telements = {{")
        lines += [f"{indent}\t\t{t}," for t in elems[:-1]] + [f"{indent}\t\t{elems[-1]}"]
        lines.append(f"{indent}\t}}")
    return lines + [f"{indent}}}"]


def _declare_chain(c: Chain, indent: str = "\t") -> list[str]:
    lines = [f"{indent}chain {c.name} {{"]
    if c.comment:
        lines.append(f'{indent}\tcomment "{c.comment}"')
    if c.hook:
        lines.append(f"{indent}\t{c.hook}; policy accept;")
    return lines + [f"{indent}\t{r}" for r in c.rules] + [f"{indent}}}"]


SKELETON_CONTAINERS = ("cluster-ips", "nodeport-ips", "no-endpoint-services", "no-endpoint-nodeports",
                       "firewall-ips", "service-ips", "service-nodeports")


def _script(rs: Ruleset) -> str:
    lines = [
        "#!/usr/sbin/nft -f",
        f"# kube-proxy (nftables mode): replaces table {FAMILY} {TABLE} in one transaction",
        f"add table {FAMILY} {TABLE}",
        f"delete table {FAMILY} {TABLE}",
        f"table {FAMILY} {TABLE} {{",
        '\tcomment "rules for kube-proxy"',
    ]
    # skeleton sets and maps, then the skeleton chains, then per Service port its affinity sets
    # and chains; nft creates all chains before sets/maps and rules, so order is free.
    for name in SKELETON_CONTAINERS:
        lines += _declare_container(rs.containers[name])
    per_port_sets = [c for n, c in rs.containers.items() if n not in SKELETON_CONTAINERS]
    sets_by_chain: dict[str, list[Container]] = {}
    for s in per_port_sets:  # attach each affinity set before its endpoint chain
        sets_by_chain.setdefault("endpoint-" + s.name[len("affinity-"):], []).append(s)
    for c in rs.chains.values():
        for s in sets_by_chain.pop(c.name, ()):
            lines += _declare_container(s)
        lines += _declare_chain(c)
    for leftover in sets_by_chain.values():
        for s in leftover:
            lines += _declare_container(s)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(state: ClusterState, node: Union[str, NodeState], slices: Iterable[EndpointSliceState]) -> str:
    """A complete script for `node` that replaces table ip kube-proxy atomically (`nft -f -`)."""
    return _script(build(state, node, slices))


def _obj(kind: str, name: str) -> str:
    return f"{kind} {FAMILY} {TABLE} {name}"


def _add_chain(c: Chain) -> str:
    spec = []
    if c.hook:
        spec.append(f"{c.hook} ;")
    if c.comment:
        spec.append(f'comment "{c.comment}" ;')
    return f"add {_obj('chain', c.name)}" + (f" {{ {' '.join(spec)} }}" if spec else "")


def _add_container(c: Container) -> list[str]:
    out = [f"add {_obj(c.kind, c.name)} {{ {' ; '.join(c.spec)} ; }}"]
    if c.elements:
        out.append(f"add element {FAMILY} {TABLE} {c.name} {{ {', '.join(e.text() for e in c.elements)} }}")
    return out


def diff(old: Ruleset, new: Ruleset) -> list[str]:
    """Commands that turn table `old` into `new` in one transaction, touching only what differs.

    Order matters inside a transaction: chains exist before anything refers to them; rules and
    elements that refer to a chain or set are gone before it is deleted."""
    added_chains = [c for n, c in new.chains.items() if n not in old.chains]
    stale_chains = [c for n, c in old.chains.items() if n not in new.chains]
    for n, c in new.chains.items():
        if n in old.chains and (old.chains[n].hook, old.chains[n].comment) != (c.hook, c.comment):
            raise ValueError(f"chain {n} changed its hook or comment: render() the table instead")

    added_sets = [c for n, c in new.containers.items() if n not in old.containers]
    stale_sets = [c for n, c in old.containers.items() if n not in new.containers]
    respecced = [c for n, c in new.containers.items() if n in old.containers and old.containers[n].spec != c.spec]
    changed_chains = [c for n, c in new.chains.items() if n in old.chains and old.chains[n].rules != c.rules]
    # a set recreated with a new spec (an affinity timeout) must first lose the rules that use it
    forced = {r.name for r in respecced}
    changed_names = {c.name for c in changed_chains}
    for n, c in new.chains.items():
        if n in old.chains and n not in changed_names and any(f"@{s}" in r for s in forced for r in old.chains[n].rules):
            changed_chains.append(c)
            changed_names.add(n)

    out = [_add_chain(c) for c in added_chains]
    out += [f"flush {_obj('chain', c.name)}" for c in changed_chains]

    element_adds: list[str] = []
    for name, c in new.containers.items():
        if name not in old.containers or name in forced:
            continue
        before = {e.key: e for e in old.containers[name].elements}
        after = {e.key: e for e in c.elements}
        gone = [e for k, e in before.items() if k not in after or after[k] != e]
        come = [e for k, e in after.items() if k not in before or before[k] != e]
        if gone:
            out.append(f"delete element {FAMILY} {TABLE} {name} {{ {', '.join(e.key for e in gone)} }}")
        if come:
            element_adds.append(f"add element {FAMILY} {TABLE} {name} {{ {', '.join(e.text() for e in come)} }}")
    for c in respecced:
        out.append(f"delete {_obj(c.kind, c.name)}")
    for c in respecced + added_sets:
        out += _add_container(c)
    for c in added_chains + changed_chains:
        out += [f"add rule {FAMILY} {TABLE} {c.name} {r}" for r in c.rules]
    out += element_adds
    # stale chains: empty them all first (they may jump to each other), then delete them
    out += [f"flush {_obj('chain', c.name)}" for c in stale_chains if c.rules]
    out += [f"delete {_obj('chain', c.name)}" for c in stale_chains]
    out += [f"delete {_obj(c.kind, c.name)}" for c in stale_sets]
    return out


def render_update(old_state: ClusterState, new_state: ClusterState, node: Union[str, NodeState],
                  old_slices: Iterable[EndpointSliceState], new_slices: Iterable[EndpointSliceState],
                  only: Optional[AbstractSet[str]] = None) -> str:
    """kube-proxy's partial sync for `node`: one transaction, applied on top of the table that
    render(old_state, node, old_slices) made, that leaves it as render(new_state, ...) would,
    touching only the elements, chains and sets that differ. Never recreates the table, so the
    affinity sets of unchanged endpoints keep their entries. "" when nothing changed.
    only: the Services that may have changed (keys "ns/name"); the others are not even built,
    so the cost follows the change rather than the cluster."""
    name = node if isinstance(node, str) else node.name
    if only is not None:
        old_state, old_slices = _restricted(old_state, old_slices, only)
        new_state, new_slices = _restricted(new_state, new_slices, only)
    cmds = diff(build(old_state, old_state.node(name), old_slices), build(new_state, new_state.node(name), new_slices))
    if not cmds:
        return ""
    return f"# kube-proxy (nftables mode): partial sync of table {FAMILY} {TABLE}\n" + "\n".join(cmds) + "\n"


def _restricted(state: ClusterState, slices: Iterable[EndpointSliceState], keys: AbstractSet[str]):
    """The state and slices of just the Services in `keys` (their elements and chains stand
    alone in the table, so a diff of the restricted builds is the diff of those Services)."""
    return (replace(state, services=tuple(s for s in state.services if s.key in keys)),
            tuple(sl for sl in slices if f"{sl.namespace}/{sl.service}" in keys))


# --- ip-masq-agent ---

MASQ_AGENT_TABLE = "ip-masq-agent"
MASQ_AGENT_PRIORITY = SRCNAT_PRIORITY + 10   # after kube-proxy's masquerading: its mark wins


def masq_agent_rules(state: ClusterState) -> str:
    """Egress NAT like ip-masq-agent, as its own table: pod traffic to a destination outside the pod
    CIDR and the service CIDR that is not local to the node is masqueraded."""
    nets = sorted({IPv4Network(state.pod_cidr), IPv4Network(state.service_cidr)}, key=lambda n: (int(n.network_address), n.prefixlen))
    lines = [
        "#!/usr/sbin/nft -f",
        f"# ip-masq-agent: replaces table {FAMILY} {MASQ_AGENT_TABLE} in one transaction",
        f"add table {FAMILY} {MASQ_AGENT_TABLE}",
        f"delete table {FAMILY} {MASQ_AGENT_TABLE}",
        f"table {FAMILY} {MASQ_AGENT_TABLE} {{",
        '\tcomment "egress NAT for pod traffic leaving the cluster network, like ip-masq-agent"',
        "\tset non-masquerade-cidrs {",
        "\t\ttype ipv4_addr",
        "\t\tflags interval",
        "\t\tauto-merge",
        f"\t\telements = {{ {', '.join(str(n) for n in nets)} }}",
        "\t}",
        "\tchain nat-postrouting {",
        f"\t\ttype nat hook postrouting priority {MASQ_AGENT_PRIORITY}; policy accept;",
        f"\t\tip saddr {state.pod_cidr} ip daddr != @non-masquerade-cidrs fib daddr type != local masquerade",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"
