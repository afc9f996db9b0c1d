"""kube-proxy's iptables mode (pure): the iptables-restore text kube-proxy would load on one node.

Why kube-proxy's own layout rather than a simpler one: `iptables-save -t nat | grep <clusterIP>` on a
lab node should read like it does on a real node (kube-proxy >= 1.28), chain names and comments
included, so what is learned here carries over. The structure follows pkg/proxy/iptables/proxier.go:

  nat PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash> (or KUBE-SVL-, traffic policy Local)
      -> KUBE-SEP-<hash> (one per endpoint: hairpin mark, DNAT); NodePorts: the last KUBE-SERVICES
      rule -> KUBE-NODEPORTS -> KUBE-EXT-<hash> -> KUBE-SVC/KUBE-SVL; externalIPs and load-balancer IPs:
      KUBE-SERVICES -> KUBE-EXT-<hash>, or KUBE-FW-<hash> first when loadBalancerSourceRanges is set (the
      ranges go on to KUBE-EXT; the rest is dropped by KUBE-PROXY-FIREWALL in filter).
  Anything marked 0x4000 on the way (KUBE-MARK-MASQ) is masqueraded in KUBE-POSTROUTING.
  filter: Services without endpoints are REJECTed (KUBE-SERVICES, KUBE-EXTERNAL-SERVICES), those
      whose Local policy has nothing on this node are DROPped; KUBE-FORWARD lets marked traffic pass.

Every sync is one `iptables-restore --noflush` transaction: each chain written is declared
(":NAME - [0:0]", which flushes it) and rewritten whole, chains left over from the previous sync are
flushed and deleted (-X), and nothing else on the node is touched. render() writes every chain;
render_update(), kube-proxy's partial sync, leaves the other Services' chains out entirely (not
declared, so untouched) and edits the shared chains rule by rule: adding one Service to a thousand
costs a few lines, not the whole table.

Which endpoints each Service port uses, and whether it rejects or drops, comes from
lab.kube_proxy.model, as in the nftables mode.

The text is written in iptables-save's argument order (-s/-d/-p first, then the matches in order)
so it reads like `iptables-save` output; it is also valid restore input as is. Two spellings stay
as kube-proxy writes them, and the kernel hands them back normalized: `-j MARK --or-mark 0x4000`
and `--xor-mark 0x4000` are saved as `--set-xmark 0x4000/0x4000` and `--set-xmark 0x4000/0x0`, and
`--probability 0.3333333333` ("%0.10f") as `0.33333333349` (the kernel keeps a 31-bit fraction).
"""
from __future__ import annotations

import re
from ipaddress import ip_address, ip_network
from typing import AbstractSet, Iterable, Union

from lab.controlplane.state import ClusterState, EndpointSliceState, NodeState
from lab.kube_proxy import chains as ch
from lab.kube_proxy.model import MASQ_MARK, Endpoint, ServicePort, pod_cidr_of, service_ports
from lab.kube_proxy.proxier import Proxier
from lab.netfilter import comment as _comment

MARK_MASQ = "KUBE-MARK-MASQ"
REJECT = {"IPv4": "REJECT --reject-with icmp-port-unreachable", "IPv6": "REJECT --reject-with icmp6-port-unreachable"}
HOST_MASK = {"IPv4": "255.255.255.255", "IPv6": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}  # -m recent --mask
RESTORE = {"IPv4": ("iptables-restore", "--noflush"), "IPv6": ("ip6tables-restore", "--noflush")}
_NEW = "-m conntrack --ctstate NEW"

# kube-proxy's iptablesJumpChains, then iptablesKubeletJumpChains, in its order:
# (table, chain jumped to, builtin chain, comment, extra matches). kube-proxy prepends each rule,
# so in a builtin chain they end up in the reverse of this order.
_JUMPS = (
    ("filter", "KUBE-EXTERNAL-SERVICES", "INPUT", "kubernetes externally-visible service portals", _NEW),
    ("filter", "KUBE-EXTERNAL-SERVICES", "FORWARD", "kubernetes externally-visible service portals", _NEW),
    ("filter", "KUBE-NODEPORTS", "INPUT", "kubernetes health check service ports", ""),
    ("filter", "KUBE-SERVICES", "FORWARD", "kubernetes service portals", _NEW),
    ("filter", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", _NEW),
    ("filter", "KUBE-FORWARD", "FORWARD", "kubernetes forwarding rules", ""),
    ("filter", "KUBE-PROXY-FIREWALL", "INPUT", "kubernetes load balancer firewall", _NEW),
    ("filter", "KUBE-PROXY-FIREWALL", "OUTPUT", "kubernetes load balancer firewall", _NEW),
    ("filter", "KUBE-PROXY-FIREWALL", "FORWARD", "kubernetes load balancer firewall", _NEW),
    ("nat", "KUBE-SERVICES", "OUTPUT", "kubernetes service portals", ""),
    ("nat", "KUBE-SERVICES", "PREROUTING", "kubernetes service portals", ""),
    ("nat", "KUBE-POSTROUTING", "POSTROUTING", "kubernetes postrouting rules", ""),
    ("filter", "KUBE-FIREWALL", "INPUT", "", ""),
    ("filter", "KUBE-FIREWALL", "OUTPUT", "", ""),
)
_BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
# The top-level chains every sync rewrites, in kube-proxy's order.
_FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
                  "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL")
_NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", MARK_MASQ)


# --- text ---

class _Table:
    """One table of a restore file: declared chains, their rules (kept per chain), deletions."""

    def __init__(self, name: str):
        self.name = name
        self.rules: dict[str, list[str]] = {c: [] for c in _BUILTIN[name]}
        self.declared: list[str] = []
        self._declared: set[str] = set()
        self.deleted: list[str] = []
        self.edits: list[str] = []  # -D / -I lines on chains that are not rewritten (partial sync)

    def chain(self, name: str) -> None:
        if name not in self.rules:
            self.rules[name] = []
        if name not in self._declared:
            self._declared.add(name)
            self.declared.append(name)

    def add(self, chain: str, *parts: str) -> None:
        assert chain in self.rules, f"{chain} is not declared in {self.name}"
        self.rules[chain].append(" ".join(p for p in parts if p))

    def delete(self, name: str) -> None:
        self.chain(name)
        self.deleted.append(name)

    def lines(self) -> list[str]:
        return [f"*{self.name}", *(f":{c} - [0:0]" for c in self.declared), *self.edits,
                *(f"-A {c} {r}" for c, rules in self.rules.items() for r in rules),
                *(f"-X {c}" for c in self.deleted), "COMMIT"]

    @classmethod
    def scratch(cls, name: str) -> "_Table":
        """A table to collect shared-chain rules in without declaring (flushing) those chains."""
        t = cls(name)
        t.rules.update({c: [] for c in (_FILTER_CHAINS if name == "filter" else _NAT_CHAINS)})
        return t


def _text(*tables: _Table) -> str:
    return "\n".join(line for t in tables for line in t.lines()) + "\n"


# --- chain names ---

def _svc(p: ServicePort) -> str:
    """Dispatch to all usable endpoints (traffic policy Cluster)."""
    return ch.svc_chain(p.spn, p.proto)


def _svl(p: ServicePort) -> str:
    """Dispatch to this node's endpoints only (traffic policy Local)."""
    return ch.svl_chain(p.spn, p.proto)


def _ext(p: ServicePort) -> str:
    return ch.ext_chain(p.spn, p.proto)


def _fw(p: ServicePort) -> str:
    return ch.fw_chain(p.spn, p.proto)


def _sep(p: ServicePort, ep: Endpoint) -> str:
    return ch.sep_chain(p.spn, p.proto, str(ep))


def _policy_chain(p: ServicePort, local: bool) -> str:
    return _svl(p) if local else _svc(p)


# --- rules ---

def _host(ip: str) -> str:
    """An address as a match: /32, or /128 for IPv6 (as iptables-save and ip6tables-save write it)."""
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def _top_level(filt: _Table, nat: _Table, family: str = "IPv4") -> None:
    for c in _FILTER_CHAINS:
        filt.chain(c)
    for c in _NAT_CHAINS:
        nat.chain(c)
    nat.add("KUBE-POSTROUTING", f"-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN")
    nat.add("KUBE-POSTROUTING", f"-j MARK --xor-mark {MASQ_MARK}")
    nat.add("KUBE-POSTROUTING", _comment("kubernetes service traffic requiring SNAT"), "-j MASQUERADE --random-fully")
    nat.add(MARK_MASQ, f"-j MARK --or-mark {MASQ_MARK}")
    # Guards route_localnet, which localhost NodePorts need (kube-proxy writes it, kubelet did): IPv4 only.
    if family == "IPv4":
        filt.add("KUBE-FIREWALL", "! -s 127.0.0.0/8 -d 127.0.0.0/8", _comment("block incoming localnet connections"),
                 "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")


def _tail(filt: _Table, nat: _Table) -> None:
    nat.add("KUBE-SERVICES", _comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain"),
            "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    filt.add("KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP")
    filt.add("KUBE-FORWARD", _comment("kubernetes forwarding rules"), f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT")
    filt.add("KUBE-FORWARD", _comment("kubernetes forwarding conntrack rule"),
             "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")


_VERDICTS = {"reject": "has no endpoints", "drop": "has no local endpoints"}


def _no_endpoints(p: ServicePort) -> tuple[str, str]:
    """(comment, target) for traffic that has nowhere to go."""
    verdict = p.no_endpoints_verdict
    return f"{p.spn} {_VERDICTS[verdict]}", REJECT[p.family] if verdict == "reject" else "DROP"


def _entry_rules(p: ServicePort, filt: _Table, nat: _Table) -> None:
    """The rules in the shared chains: always written, even in a partial sync."""
    cip = f"-d {_host(p.cluster_ip)} -p {p.proto}"
    dport = f"-m {p.proto} --dport {p.port.port}"
    if p.has_internal:
        nat.add("KUBE-SERVICES", cip, _comment(f"{p.spn} cluster IP"), dport,
                f"-j {_policy_chain(p, p.internal_local)}")
    else:
        comment, target = _no_endpoints(p)
        filt.add("KUBE-SERVICES", cip, _comment(comment), dport, f"-j {target}")
    if not p.external:
        return
    blocked = () if p.has_external else _no_endpoints(p)
    for ip in p.external_ips:
        if p.has_endpoints:
            nat.add("KUBE-SERVICES", f"-d {_host(ip)} -p {p.proto}", _comment(f"{p.spn} external IP"), dport, f"-j {_ext(p)}")
        if blocked:
            filt.add("KUBE-EXTERNAL-SERVICES", f"-d {_host(ip)} -p {p.proto}", _comment(blocked[0]), dport,
                     f"-j {blocked[1]}")
    if lb := p.load_balancer_ip:
        if p.has_endpoints:
            nat.add("KUBE-SERVICES", f"-d {_host(lb)} -p {p.proto}", _comment(f"{p.spn} loadbalancer IP"), dport,
                    f"-j {_fw(p) if p.uses_firewall else _ext(p)}")
        if p.uses_firewall:
            filt.add("KUBE-PROXY-FIREWALL", f"-d {_host(lb)} -p {p.proto}",
                     _comment(f"{p.spn} traffic not accepted by {_fw(p)}"), dport, "-j DROP")
        if blocked:
            filt.add("KUBE-EXTERNAL-SERVICES", f"-d {_host(lb)} -p {p.proto}", _comment(blocked[0]), dport,
                     f"-j {blocked[1]}")
    if not p.port.node_port:
        return
    node_port = f"-m {p.proto} --dport {p.port.node_port}"
    if p.uses_external_chain:
        nat.add("KUBE-NODEPORTS", f"-p {p.proto}", _comment(p.spn), node_port, f"-j {_ext(p)}")
    if blocked:
        filt.add("KUBE-EXTERNAL-SERVICES", f"-p {p.proto}", _comment(blocked[0]), "-m addrtype --dst-type LOCAL",
                 node_port, f"-j {blocked[1]}")


def _chains_of(p: ServicePort) -> list[str]:
    """The per-service nat chains this service port needs on this node, in writing order."""
    out = [_ext(p)] if p.uses_external_chain else []
    out += [_fw(p)] if p.uses_firewall else []
    out += [_svc(p)] if p.cluster else []
    out += [_svl(p)] if p.local else []
    return out + [_sep(p, ep) for ep in p.reachable]


def _ext_rules(p: ServicePort, nat: _Table, pod_cidr: str) -> None:
    ext, spn = _ext(p), p.spn
    if not p.external_local:
        nat.add(ext, _comment(f"masquerade traffic for {spn} external destinations"), f"-j {MARK_MASQ}")
    else:
        # Pods and the node itself are not held to the Local policy; only they need the short-circuit.
        if pod_cidr:
            nat.add(ext, f"-s {pod_cidr}", _comment(f"pod traffic for {spn} external destinations"), f"-j {_svc(p)}")
        nat.add(ext, _comment(f"masquerade LOCAL traffic for {spn} external destinations"),
                f"-m addrtype --src-type LOCAL -j {MARK_MASQ}")
        nat.add(ext, _comment(f"route LOCAL traffic for {spn} external destinations"),
                f"-m addrtype --src-type LOCAL -j {_svc(p)}")
    if p.has_external:
        nat.add(ext, f"-j {_policy_chain(p, p.external_local)}")


def _fw_rules(p: ServicePort, nat: _Table, node_ip: str) -> None:
    """loadBalancerSourceRanges: the ranges go on to KUBE-EXT; the rest falls off the end of the chain
    un-DNATed, and KUBE-PROXY-FIREWALL (filter) drops it. A node inside a range may also come from the
    LB IP itself (a VIP bound locally loops back with that source)."""
    fw, comment = _fw(p), _comment(f"{p.spn} loadbalancer IP")
    sources = [f"-s {r}" for r in p.svc.source_ranges]
    if any(ip_address(node_ip) in ip_network(r) for r in p.svc.source_ranges):
        sources.append(f"-s {_host(p.load_balancer_ip)}")
    for source in sources:
        nat.add(fw, source, comment, f"-j {_ext(p)}")
    nat.add(fw, _comment(f"other traffic to {p.spn} will be dropped by KUBE-PROXY-FIREWALL"))


# kube-proxy's largeClusterEndpointsThreshold: above it, per-endpoint rules carry no comments
# (they are most of the rules, and iptables-restore time grows with every match parsed).
LARGE_CLUSTER_ENDPOINTS = 1000


def large_cluster(slices: Iterable[EndpointSliceState]) -> bool:
    return sum(len(s.endpoints) for s in slices) > LARGE_CLUSTER_ENDPOINTS


def _dispatch_rules(p: ServicePort, nat: _Table, chain: str, eps: tuple[Endpoint, ...], large: bool) -> None:
    """writeServiceToEndpointRules: affinity checks first, then 1/n, 1/(n-1), ... spreading."""
    if p.affinity:
        for ep in eps:
            sep = _sep(p, ep)
            nat.add(chain, "" if large else _comment(f"{p.spn} -> {ep}"),
                    f"-m recent --rcheck --seconds {p.svc.affinity_timeout} --reap --name {sep} "
                    f"--mask {HOST_MASK[p.family]} --rsource -j {sep}")
    n = len(eps)
    for i, ep in enumerate(eps):
        statistic = f"-m statistic --mode random --probability {1.0 / (n - i):0.10f}" if i < n - 1 else ""
        nat.add(chain, "" if large else _comment(f"{p.spn} -> {ep}"), statistic, f"-j {_sep(p, ep)}")


def _endpoint_rules(p: ServicePort, nat: _Table, ep: Endpoint, large: bool) -> None:
    sep, comment = _sep(p, ep), "" if large else _comment(p.spn)
    nat.add(sep, f"-s {_host(ep.ip)}", comment, f"-j {MARK_MASQ}")   # hairpin: a pod reaching itself
    recent = f"-m recent --set --name {sep} --mask {HOST_MASK[p.family]} --rsource" if p.affinity else ""
    nat.add(sep, f"-p {p.proto}", comment, recent, f"-m {p.proto} -j DNAT --to-destination {ep}")


def _service_rules(p: ServicePort, nat: _Table, pod_cidr: str, large: bool, node_ip: str) -> None:
    """The service port's own chains (KUBE-EXT/SVC/SVL/SEP), declared and written whole."""
    for c in _chains_of(p):
        nat.chain(c)
    if p.has_internal and pod_cidr:  # kube-proxy's local detector: without a pod range of this family, no rule
        nat.add(_policy_chain(p, p.internal_local), f"! -s {pod_cidr} -d {_host(p.cluster_ip)} -p {p.proto}",
                _comment(f"{p.spn} cluster IP"), f"-m {p.proto} --dport {p.port.port} -j {MARK_MASQ}")
    if p.uses_external_chain:
        _ext_rules(p, nat, pod_cidr)
    if p.uses_firewall:
        _fw_rules(p, nat, node_ip)
    if p.cluster:
        _dispatch_rules(p, nat, _svc(p), p.cluster, large)
    if p.local:
        _dispatch_rules(p, nat, _svl(p), p.local, large)
    for ep in p.reachable:
        _endpoint_rules(p, nat, ep, large)


def _node_name(node: Union[str, NodeState]) -> str:
    return node if isinstance(node, str) else node.name


def render(state: ClusterState, node: Union[str, NodeState], slices: Iterable[EndpointSliceState], *,
           existing: AbstractSet[str] = frozenset(), family: str = "IPv4") -> str:
    """The filter and nat tables kube-proxy's proxier of `family` would load on `node`, for
    `iptables-restore --noflush` (IPv4) or `ip6tables-restore --noflush` (IPv6).

    existing: the service chains the previous sync left (declared_chains of its text); those no
    longer needed are flushed and deleted."""
    name = state.node(_node_name(node)).name
    filt, nat = _Table("filter"), _Table("nat")
    _top_level(filt, nat, family)
    active: set[str] = set()
    slices = tuple(slices)
    large = large_cluster(slices)
    for p in service_ports(state, name, slices, family=family):
        _entry_rules(p, filt, nat)
        active.update(_chains_of(p))
        _service_rules(p, nat, pod_cidr_of(state, family), large, state.node(name).ip)
    for stale in sorted(c for c in set(existing) - active if ch.is_service_chain(c)):
        nat.delete(stale)
    _tail(filt, nat)
    return _text(filt, nat)


def render_update(old_state: ClusterState, new_state: ClusterState, node: Union[str, NodeState],
                  old_slices: Iterable[EndpointSliceState], new_slices: Iterable[EndpointSliceState],
                  only: AbstractSet[str], family: str = "IPv4") -> str:
    """A partial sync whose size follows the change, not the cluster: for the Services in `only`,
    their rules in the shared chains (KUBE-SERVICES, KUBE-NODEPORTS, ...) are deleted as the old
    state wrote them (-D) and inserted as the new one wants them (-I at the top, which keeps the
    NodePorts jump last), their own chains are rewritten, and chains they no longer need go.
    Applied over render(old_state, ...), it leaves the same rules as render(new_state, ...), in
    another order within the shared chains (kube-proxy's own order there is not meaningful)."""
    name = _node_name(node)
    new_slices = tuple(new_slices)
    old_ports = service_ports(old_state, name, old_slices, only, family)
    new_ports = service_ports(new_state, name, new_slices, only, family)
    tables = {}
    for which, ports in (("old", old_ports), ("new", new_ports)):
        filt, nat = _Table.scratch("filter"), _Table.scratch("nat")
        for p in ports:
            _entry_rules(p, filt, nat)
        tables[which] = {"filter": filt, "nat": nat}
    filt, nat = _Table("filter"), _Table("nat")
    for out in (filt, nat):
        old_rules, new_rules = tables["old"][out.name].rules, tables["new"][out.name].rules
        for chain in old_rules:
            gone, born = set(old_rules[chain]) - set(new_rules[chain]), set(new_rules[chain]) - set(old_rules[chain])
            out.edits += [f"-D {chain} {r}" for r in old_rules[chain] if r in gone]
            out.edits += [f"-I {chain} 1 {r}" for r in reversed(new_rules[chain]) if r in born]
    large = large_cluster(new_slices)
    for p in new_ports:
        _service_rules(p, nat, pod_cidr_of(new_state, family), large, new_state.node(name).ip)
    stale = {c for p in old_ports for c in _chains_of(p)} - {c for p in new_ports for c in _chains_of(p)}
    for c in sorted(stale):
        nat.delete(c)
    if not (filt.edits or nat.edits or nat.declared):
        return ""
    return _text(filt, nat)


def declared_chains(text: str, existing: AbstractSet[str] = frozenset()) -> set[str]:
    """The service chains (KUBE-SVC/SVL/EXT/FW/SEP) on the node once `text` is applied over
    `existing`: those it declares, plus those it leaves alone, minus those it deletes. Keep it as
    `existing` for the next sync (for a full sync, `existing` does not change the answer)."""
    declared = {c for c in re.findall(r"^:(\S+) ", text, re.M) if ch.is_service_chain(c)}
    deleted = set(re.findall(r"^-X (\S+)$", text, re.M))
    return (set(existing) | declared) - deleted


def base_rules() -> str:
    """The jumps from the builtin chains into kube-proxy's chains, applied once on a fresh node
    (`iptables-restore --noflush`); render() fills the chains they jump to."""
    tables = {"filter": _Table("filter"), "nat": _Table("nat")}
    for table, target, _, _, _ in sorted(_JUMPS, key=lambda j: j[1]):
        tables[table].chain(target)
    for table, target, builtin, comment, extra in reversed(_JUMPS):
        tables[table].add(builtin, extra, _comment(comment) if comment else "", f"-j {target}")
    return _text(tables["filter"], tables["nat"])


def masq_agent_rules(state: ClusterState, family: str = "IPv4") -> str:
    """Egress NAT as ip-masq-agent does it (nat table, applied once per node with --noflush): pod
    traffic leaving the cluster's pod and service ranges of `family` takes the node's address.
    Only traffic from the pod CIDR: the node's own connections keep their address. Nothing for a
    family without a pod range."""
    pod_cidr = pod_cidr_of(state, family)
    if not pod_cidr:
        return ""
    nat = _Table("nat")
    nat.chain("IP-MASQ-AGENT")
    nat.add("POSTROUTING", f"-s {pod_cidr}",
            _comment("ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our "
                     "custom IP-MASQ-AGENT chain"),
            "-m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT")
    for cidr in (c for c in (pod_cidr, state.service_cidr_of(family)) if c):
        nat.add("IP-MASQ-AGENT", f"-d {cidr}", _comment("ip-masq-agent: local traffic is not subject to MASQUERADE"),
                "-j RETURN")
    nat.add("IP-MASQ-AGENT", _comment("ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)"),
            "-j MASQUERADE")
    return _text(nat)


PROXIER = Proxier(
    "iptables", RESTORE["IPv4"], restore6=RESTORE["IPv6"],
    setup_rules=lambda state, family: base_rules() + masq_agent_rules(state, family),
    render=lambda state, node, slices, existing, family: render(state, node, slices, existing=existing, family=family),
    render_update=render_update,
    chains=declared_chains,
    # NodePorts on 127.0.0.1 need route_localnet; kube-proxy's iptables mode sets it too.
    sysctls={"net.ipv4.conf.all.route_localnet": "1"},
    localhost_nodeports=True,
)
