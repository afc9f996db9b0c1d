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
                `goto reject-chain` (ICMP port-unreachable) when a Service has no usable endpoint
                anywhere, `drop` when a Local traffic policy finds none on this node.
  ClusterIPs    `cluster-ips-check` rejects ports a ClusterIP does not serve and drops traffic to
                unallocated addresses of the service CIDR.
  per port      `service-<HASH>-<ns>/<name>/<proto>/<port name>`: masquerade off-cluster sources,
                session affinity, then `numgen random mod N vmap { ... }` over the endpoints;
                `local-<HASH>-...` the same over this node's endpoints (Local traffic policies);
                `external-<HASH>-...` the NodePort, externalIP and LB IP entry (masquerade for eTP
                Cluster; for eTP Local keep the client's address and use local endpoints only);
                `firewall-<HASH>-...` drops sources outside loadBalancerSourceRanges, reached from
                `firewall-check` (@firewall-ips) before DNAT.
  per endpoint  `endpoint-<HASH>-<ns>/<name>/<proto>/<port name>__<ip>/<port>`: hairpin masquerade,
                affinity update, `dnat to`; `affinity-<HASH>-...` sets for sessionAffinity ClientIP.
  masquerading  packets marked 0x4000 (by `mark-for-masquerade`) are masqueraded in nat-postrouting.

Which endpoints each Service port uses (ready ones, else serving-terminating ones; this node's for
a Local policy), and whether it rejects or drops, comes from lab.kube_proxy.model, as in the
iptables mode.

render() replaces the whole table in one transaction (a resync; affinity memory is lost).
render_update() is kube-proxy's partial sync: a transaction touching only what changed.
masq_agent_rules() is egress NAT for pods, like ip-masq-agent, in its own table.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_address, ip_network
from typing import AbstractSet, Iterable, Optional, Union

from lab.controlplane.state import ClusterState, EndpointSliceState, NodeState
from lab.kube_proxy.model import MASQ_MARK, Endpoint, ServicePort, pod_cidr_of, service_ports
from lab.kube_proxy.proxier import Proxier

TABLE = "kube-proxy"
FAMILY = "ip"
# a proxier family -> (nft's table family and address match, its address type): kube-proxy's
# dual-stack nftables mode has two tables, ip kube-proxy and ip6 kube-proxy, one per proxier
NFT = {"IPv4": ("ip", "ipv4_addr"), "IPv6": ("ip6", "ipv6_addr")}

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


def _port_name(p: ServicePort) -> str:
    """"ns/name/protocol/port name": what kube-proxy's nftables names are made of."""
    return f"{p.svc.namespace}/{p.svc.name}/{p.proto}/{p.port.name}"


def _endpoint_base(p: ServicePort, e: Endpoint) -> str:
    return hash_and_truncate(f"{_port_name(p)}__{e.ip.replace(':', '.')}/{e.port}")


def _cluster_chain(p: ServicePort) -> str:
    return f"service-{hash_and_truncate(_port_name(p))}"


def _local_chain(p: ServicePort) -> str:
    return f"local-{hash_and_truncate(_port_name(p))}"


def _external_chain(p: ServicePort) -> str:
    return f"external-{hash_and_truncate(_port_name(p))}"


def _firewall_chain(p: ServicePort) -> str:
    return f"firewall-{hash_and_truncate(_port_name(p))}"


def _policy_chain(p: ServicePort, local: bool) -> str:
    return _local_chain(p) if local else _cluster_chain(p)


def _endpoint_chain(p: ServicePort, e: Endpoint) -> str:
    return f"endpoint-{_endpoint_base(p, e)}"


def _affinity_set(p: ServicePort, e: Endpoint) -> str:
    return f"affinity-{_endpoint_base(p, e)}"


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
    family: str = FAMILY              # nft's table family: ip, or ip6 for the IPv6 proxier

    def add_chain(self, chain: Chain) -> None:
        assert chain.name not in self.chains, chain.name
        self.chains[chain.name] = chain

    def add_container(self, c: Container) -> None:
        assert c.name not in self.containers, c.name
        self.containers[c.name] = c


def _node(state: ClusterState, node: Union[str, NodeState]) -> NodeState:
    return state.node(node) if isinstance(node, str) else node


def node_address(node: NodeState, family: str) -> Optional[str]:
    """The node's address of that family, where NodePorts answer (--nodeport-addresses primary)."""
    return node.address_of(6 if family == "IPv6" else 4) or None


def _skeleton(state: ClusterState, node: NodeState, family: str = "IPv4") -> Ruleset:
    """setupNFTables(): base chains, dispatch, the no-endpoint and ClusterIP checks, masquerading."""
    ip, addr = NFT[family]
    rs = Ruleset(family=ip)
    vmap_key = f"{addr} . inet_proto . inet_service : verdict"
    node_ip = node_address(node, family)
    rs.add_container(Container("set", "cluster-ips", (f"type {addr}", 'comment "Active ClusterIPs"')))
    rs.add_container(Container("set", "nodeport-ips", (f"type {addr}", 'comment "IPs that accept NodePort traffic"'),
                               (Element(node_ip),) if node_ip else ()))
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

    rs.add_chain(Chain("firewall-check", (f"{ip} daddr . meta l4proto . th dport vmap @firewall-ips",)))
    rs.add_chain(Chain("service-endpoints-check", (f"{ip} daddr . meta l4proto . th dport vmap @no-endpoint-services",)))
    rs.add_chain(Chain("nodeport-endpoints-check", (
        f"{ip} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",)))
    rs.add_chain(Chain("cluster-ips-check", (
        f'{ip} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
        f'{ip} daddr {{ {state.service_cidr_of(family)} }} drop comment "Drop traffic to unallocated ClusterIPs"',
    )))
    rs.add_chain(Chain("services", (
        f"{ip} daddr . meta l4proto . th dport vmap @service-ips",
        f"{ip} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
    )))
    rs.add_chain(Chain("masquerading", (
        f"mark and {MASQ_MARK} == 0 return",
        f"mark set mark xor {MASQ_MARK}",
        "masquerade fully-random",
    )))
    rs.add_chain(Chain(MARK_MASQ_CHAIN, (f"mark set mark or {MASQ_MARK}",)))
    rs.add_chain(Chain(REJECT_CHAIN, ("reject",), comment="helper for @no-endpoint-services / @no-endpoint-nodeports"))
    return rs


_VERDICTS = {"reject": f"goto {REJECT_CHAIN}", "drop": "drop"}


def _elements(p: ServicePort, elements: dict[str, list[Element]]) -> None:
    """The port's entries in the dispatch and no-endpoint maps."""
    key = f"{p.cluster_ip} . {p.proto} . {p.port.port}"
    verdict = _VERDICTS[p.no_endpoints_verdict]
    elements["cluster-ips"].append(Element(p.cluster_ip))
    if p.has_internal:
        elements["service-ips"].append(Element(key, f"goto {_policy_chain(p, p.internal_local)}"))
    else:
        elements["no-endpoint-services"].append(Element(key, verdict, p.spn))
    if not p.external:
        return
    for ip in p.external_ips + ((p.load_balancer_ip,) if p.load_balancer_ip else ()):
        key = f"{ip} . {p.proto} . {p.port.port}"
        if p.has_endpoints:
            elements["service-ips"].append(Element(key, f"goto {_external_chain(p)}"))
        if p.uses_firewall and ip == p.load_balancer_ip:
            elements["firewall-ips"].append(Element(key, f"goto {_firewall_chain(p)}"))
        if not p.has_external:
            elements["no-endpoint-services"].append(Element(key, verdict, p.spn))
    if not p.port.node_port:
        return
    node_port = f"{p.proto} . {p.port.node_port}"
    if p.uses_external_chain:
        elements["service-nodeports"].append(Element(node_port, f"goto {_external_chain(p)}"))
    if not p.has_external:
        elements["no-endpoint-nodeports"].append(Element(node_port, verdict, p.spn))


def _dispatch(p: ServicePort, local: bool, pod_cidr: str) -> Chain:
    """The Cluster or Local policy chain: masquerade off-cluster sources (in the chain ClusterIP
    traffic enters), session affinity, then `numgen` over the endpoints."""
    eps, ip = p.local if local else p.cluster, NFT[p.family][0]
    rules = []
    if p.has_internal and local == p.internal_local and pod_cidr:
        rules.append(f"{ip} daddr {p.cluster_ip} {p.proto} dport {p.port.port} {ip} saddr != {pod_cidr} "
                     f"jump {MARK_MASQ_CHAIN}")
    if p.affinity:
        rules += [f"{ip} saddr @{_affinity_set(p, e)} goto {_endpoint_chain(p, e)}" for e in eps]
    spread = ", ".join(f"{i} : goto {_endpoint_chain(p, e)}" for i, e in enumerate(eps))
    return Chain(_policy_chain(p, local), tuple(rules + [f"numgen random mod {len(eps)} vmap {{ {spread} }}"]))


def _external(p: ServicePort, pod_cidr: str) -> Chain:
    """The NodePort entry: masquerade for eTP Cluster; for eTP Local keep the client's address,
    except for pods and the node itself, which go to every endpoint."""
    if not p.external_local:
        rules = [f"jump {MARK_MASQ_CHAIN}"]
    else:
        rules = [
            *([f'{NFT[p.family][0]} saddr {pod_cidr} goto {_cluster_chain(p)} comment "short-circuit pod traffic"']
              if pod_cidr else []),
            f'fib saddr type local jump {MARK_MASQ_CHAIN} comment "masquerade local traffic"',
            f'fib saddr type local goto {_cluster_chain(p)} comment "short-circuit local traffic"',
        ]
    if p.has_external:
        rules.append(f"goto {_policy_chain(p, p.external_local)}")
    return Chain(_external_chain(p), tuple(rules))


def _firewall(p: ServicePort, node_ip: str) -> Chain:
    """loadBalancerSourceRanges, checked before DNAT (filter-prerouting via @firewall-ips): other
    sources are dropped; a node inside a range may also come from the LB IP itself."""
    sources = list(p.svc.source_ranges)
    if node_ip and any(ip_address(node_ip) in ip_network(r) for r in sources):
        sources.append(p.load_balancer_ip)
    return Chain(_firewall_chain(p), (f"{NFT[p.family][0]} saddr != {{ {', '.join(sources)} }} drop",))


def _affinity(p: ServicePort, e: Endpoint) -> Container:
    return Container("set", _affinity_set(p, e), (
        f"type {NFT[p.family][1]}", "flags dynamic,timeout", f"timeout {p.svc.affinity_timeout}s"))


def _endpoint(p: ServicePort, e: Endpoint) -> Chain:
    """Hairpin masquerade, affinity update, DNAT."""
    ip = NFT[p.family][0]
    rules = [f"{ip} saddr {e.ip} jump {MARK_MASQ_CHAIN}"]
    if p.affinity:
        rules.append(f"update @{_affinity_set(p, e)} {{ {ip} saddr }}")
    rules.append(f"meta l4proto {p.proto} dnat to {e}")
    return Chain(_endpoint_chain(p, e), tuple(rules))


def _service_port(rs: Ruleset, p: ServicePort, pod_cidr: str, elements: dict[str, list[Element]],
                  node_ip: Optional[str]) -> None:
    """syncProxyRules() for one Service port: its map elements, chains and affinity sets."""
    _elements(p, elements)
    if p.cluster:
        rs.add_chain(_dispatch(p, False, pod_cidr))
    if p.local:
        rs.add_chain(_dispatch(p, True, pod_cidr))
    if p.uses_external_chain:
        rs.add_chain(_external(p, pod_cidr))
    if p.uses_firewall:
        rs.add_chain(_firewall(p, node_ip))
    for e in p.reachable:
        if p.affinity:
            rs.add_container(_affinity(p, e))
        rs.add_chain(_endpoint(p, e))


def build(state: ClusterState, node: Union[str, NodeState], slices: Iterable[EndpointSliceState],
          only: Optional[AbstractSet[str]] = None, family: str = "IPv4") -> Ruleset:
    """The kube-proxy table of `family` for `node` (with only the Services in `only`, if given: each
    Service's elements and chains stand alone in the table, so two such builds diff to that
    Service's change)."""
    node = _node(state, node)
    rs = _skeleton(state, node, family)
    elements: dict[str, list[Element]] = {name: list(c.elements) for name, c in rs.containers.items()}
    for p in service_ports(state, node.name, slices, only, family):
        _service_port(rs, p, pod_cidr_of(state, family), elements, node_address(node, family))
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
        f"# kube-proxy (nftables mode): replaces table {rs.family} {TABLE} in one transaction",
        f"add table {rs.family} {TABLE}",
        f"delete table {rs.family} {TABLE}",
        f"table {rs.family} {TABLE} {{",
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


def render(state: ClusterState, node: Union[str, NodeState], slices: Iterable[EndpointSliceState],
           family: str = "IPv4") -> str:
    """A complete script for `node` that replaces table ip kube-proxy (ip6 kube-proxy for IPv6)
    atomically (`nft -f -`)."""
    return _script(build(state, node, slices, family=family))


def _obj(kind: str, name: str, family: str = FAMILY) -> str:
    return f"{kind} {family} {TABLE} {name}"


def _add_chain(c: Chain, family: str = FAMILY) -> str:
    spec = []
    if c.hook:
        spec.append(f"{c.hook} ;")
    if c.comment:
        spec.append(f'comment "{c.comment}" ;')
    return f"add {_obj('chain', c.name, family)}" + (f" {{ {' '.join(spec)} }}" if spec else "")


def _add_container(c: Container, family: str = FAMILY) -> list[str]:
    out = [f"add {_obj(c.kind, c.name, family)} {{ {' ; '.join(c.spec)} ; }}"]
    if c.elements:
        out.append(f"add element {family} {TABLE} {c.name} {{ {', '.join(e.text() for e in c.elements)} }}")
    return out


def diff(old: Ruleset, new: Ruleset) -> list[str]:
    """Commands that turn table `old` into `new` in one transaction, touching only what differs.

    Order matters inside a transaction: chains exist before anything refers to them; rules and
    elements that refer to a chain or set are gone before it is deleted."""
    fam = new.family
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

    out = [_add_chain(c, fam) for c in added_chains]
    out += [f"flush {_obj('chain', c.name, fam)}" for c in changed_chains]

    element_adds: list[str] = []
    for name, c in new.containers.items():
        if name not in old.containers or name in forced:
            continue
        before = {e.key: e for e in old.containers[name].elements}
        after = {e.key: e for e in c.elements}
        gone = [e for k, e in before.items() if k not in after or after[k] != e]
        come = [e for k, e in after.items() if k not in before or before[k] != e]
        if gone:
            out.append(f"delete element {fam} {TABLE} {name} {{ {', '.join(e.key for e in gone)} }}")
        if come:
            element_adds.append(f"add element {fam} {TABLE} {name} {{ {', '.join(e.text() for e in come)} }}")
    for c in respecced:
        out.append(f"delete {_obj(c.kind, c.name, fam)}")
    for c in respecced + added_sets:
        out += _add_container(c, fam)
    for c in added_chains + changed_chains:
        out += [f"add rule {fam} {TABLE} {c.name} {r}" for r in c.rules]
    out += element_adds
    # stale chains: empty them all first (they may jump to each other), then delete them
    out += [f"flush {_obj('chain', c.name, fam)}" for c in stale_chains if c.rules]
    out += [f"delete {_obj('chain', c.name, fam)}" for c in stale_chains]
    out += [f"delete {_obj(c.kind, c.name, fam)}" for c in stale_sets]
    return out


def render_update(old_state: ClusterState, new_state: ClusterState, node: Union[str, NodeState],
                  old_slices: Iterable[EndpointSliceState], new_slices: Iterable[EndpointSliceState],
                  only: Optional[AbstractSet[str]] = None, family: str = "IPv4") -> str:
    """kube-proxy's partial sync for `node` (its table of `family`): one transaction, applied on top of the table that
    render(old_state, node, old_slices) made, that leaves it as render(new_state, ...) would,
    touching only the elements, chains and sets that differ. Never recreates the table, so the
    affinity sets of unchanged endpoints keep their entries. "" when nothing changed.
    only: the Services that may have changed (keys "ns/name"); the others are not even built,
    so the cost follows the change rather than the cluster."""
    name = node if isinstance(node, str) else node.name
    cmds = diff(build(old_state, old_state.node(name), old_slices, only, family),
                build(new_state, new_state.node(name), new_slices, only, family))
    if not cmds:
        return ""
    return f"# kube-proxy (nftables mode): partial sync of table {NFT[family][0]} {TABLE}\n" + "\n".join(cmds) + "\n"


# --- ip-masq-agent ---

MASQ_AGENT_TABLE = "ip-masq-agent"
MASQ_AGENT_PRIORITY = SRCNAT_PRIORITY + 10   # after kube-proxy's masquerading: its mark wins


def masq_agent_rules(state: ClusterState, family: str = "IPv4") -> str:
    """Egress NAT like ip-masq-agent, as its own table (ip, or ip6 for IPv6): pod traffic to a
    destination outside the pod CIDR and the service CIDR of `family` that is not local to the
    node is masqueraded. Nothing for a family without a pod range."""
    pod_cidr, (ip, addr) = pod_cidr_of(state, family), NFT[family]
    if not pod_cidr:
        return ""
    nets = sorted({ip_network(c) for c in (pod_cidr, state.service_cidr_of(family)) if c},
                  key=lambda n: (int(n.network_address), n.prefixlen))
    lines = [
        "#!/usr/sbin/nft -f",
        f"# ip-masq-agent: replaces table {ip} {MASQ_AGENT_TABLE} in one transaction",
        f"add table {ip} {MASQ_AGENT_TABLE}",
        f"delete table {ip} {MASQ_AGENT_TABLE}",
        f"table {ip} {MASQ_AGENT_TABLE} {{",
        '\tcomment "egress NAT for pod traffic leaving the cluster network, like ip-masq-agent"',
        "\tset non-masquerade-cidrs {",
        f"\t\ttype {addr}",
        "\t\tflags interval",
        "\t\tauto-merge",
        f"\t\telements = {{ {', '.join(str(n) for n in nets)} }}",
        "\t}",
        "\tchain nat-postrouting {",
        f"\t\ttype nat hook postrouting priority {MASQ_AGENT_PRIORITY}; policy accept;",
        f"\t\t{ip} saddr {pod_cidr} {ip} daddr != @non-masquerade-cidrs fib daddr type != local masquerade",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


# kube-proxy's nftables mode does not serve NodePorts on localhost (no route_localnet).
PROXIER = Proxier(
    "nftables", ("nft", "-f", "-"),
    setup_rules=lambda state, family: masq_agent_rules(state, family),
    render=lambda state, node, slices, existing, family: render(state, node, slices, family=family),
    render_update=lambda old, new, node, old_slices, new_slices, only, family: render_update(
        old, new, node, old_slices, new_slices, only=only, family=family),
)
