"""What a proxy mode is (lab.kube_proxy.proxiers holds one per mode): kube-proxy's `Proxier`
interface, as a kind. Apart from the registry so a mode's module imports this, not the registry that
imports it (no circle).

The sync loop (lab.kube_proxy.sync) is the same for every mode: it renders a full or a partial
text per node and feeds it to the mode's restore command; the probes and `lab trace` ask the kind
what differs for them (localhost NodePorts, a socket load balancer). Effects beyond the restore
(proxy ebpf's programs and maps) are the mode's runtime, a module in the layer that runs things,
named here as a string as lab.routing's kinds name theirs (lab.kube_proxy.runtimes imports it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Iterable, Mapping, Optional, Sequence

from lab.controlplane.state import ClusterState, EndpointSliceState, NodeState, ServiceState
from lab.kube_proxy.model import Endpoint, ServicePort

Slices = Iterable[EndpointSliceState]


@dataclass(frozen=True)
class ExternalChoice:
    """What a program at the node's ingress does with a new flow from outside to a NodePort (proxy
    ebpf's tc program), as `lab trace` predicts it: the map that holds the address, the endpoints it
    spreads over and, for each, the source a SNAT gives the packet ("" = the client's kept)."""

    program: str                                # the program's name, as `tc filter show` lists it
    entry: str                                  # the map entry that chose: "lb_external 172.18.0.3:30080/tcp"
    endpoints: tuple[Endpoint, ...]
    verdict: str                                # "balance" | "refuse" (passes untouched) | "drop"
    snat: Mapping[str, str] = field(default_factory=dict)   # "ip:port" of an endpoint -> its SNAT source


@dataclass(frozen=True)
class Runtime:
    """A mode's effects beyond its restore command (proxy ebpf: cgroups, BPF programs and maps).
    record: the lab's LabRecord (lab.host.record)."""

    preflight: Callable[[ClusterState, bool], str]  # can this machine run it (deep: by running it)? LabError if not
    start: Callable[[ClusterState, Any], None]  # before any process of a node starts
    # after a node's rules are restored: (record, node, old state, new state, old slices, new slices, changed, first)
    update: Callable[[Any, NodeState, ClusterState, ClusterState, Slices, Slices, set[str], bool], Any]
    socket_cgroups: Callable[[ClusterState], dict[str, str]]  # source netns -> the cgroup its sockets are made in
    teardown: Callable[[Any], list[str]]        # from the record's ledger at `lab down`; -> errors
    # what a node's maps hold now, as the mode plans them: (record, node name) -> {(map, key): value}
    read_maps: Optional[Callable[[Any, str], dict]] = None
    # the flows a node's ingress program translated, as lines (record, node name) -> (proxy ebpf's
    # lb_nat: "SRC:SPORT → DST:DPORT/proto => SRC:SPORT → DST:DPORT"), for `lab trace`
    nat_flows: Optional[Callable[[Any, str], list[str]]] = None


@dataclass(frozen=True)
class Proxier:
    """A proxy mode's pure description (see the module's docstring)."""

    name: str
    restore: tuple[str, ...]                    # argv that applies a rendered IPv4 text (on stdin) in a node's namespace
    # Every text is one family's: kube-proxy runs a proxier per family of a dual-stack cluster, each
    # with its own rules (iptables and ip6tables; the ip and ip6 kube-proxy tables). A family is
    # "IPv4" or "IPv6".
    # written once per node and family at `lab up`: base jumps, ip-masq-agent's NAT
    setup_rules: Callable[[ClusterState, str], str]
    # full sync: (state, node, slices, service chains the node holds, family) -> a text that replaces the mode's rules
    render: Callable[[ClusterState, NodeState, Slices, AbstractSet[str], str], str]
    # partial sync: (old state, new state, node, old slices, new slices, changed Services, family) -> a text;
    # "" = nothing to do
    render_update: Callable[[ClusterState, ClusterState, NodeState, Slices, Slices, AbstractSet[str], str], str]
    restore6: tuple[str, ...] = ()              # the IPv6 texts' argv; () = the same as restore (nft -f -)
    # service chains the node holds once a text is applied over those it held (iptables: what the next render deletes)
    chains: Callable[[str, AbstractSet[str]], AbstractSet[str]] = lambda text, existing: frozenset()
    sysctls: Mapping[str, str] = field(default_factory=dict)  # set on each node before its first rules
    localhost_nodeports: bool = False           # NodePorts answer on 127.0.0.1 too (iptables: route_localnet)
    # a socket load balancer before any packet (proxy ebpf): a Service port -> (the endpoints a
    # connect() from this node is spread over, whether it is refused rather than dropped when none)
    socket_lb: Optional[Callable[[ServicePort], tuple[tuple[Endpoint, ...], bool]]] = None
    # a program at the node's ingress that translates traffic from outside before netfilter (proxy
    # ebpf's tc program): (state, node, a NodePort's Service port) -> what it does; None = kube-proxy's rules
    external_lb: Optional[Callable[[ClusterState, str, ServicePort], ExternalChoice]] = None
    runtime: str = ""                           # the module whose RUNTIME holds its other effects; "" = none
    # what serves a proxied Service on the nodes, for `lab get svc` and `lab describe svc`: (a short
    # key, a sentence); "" = kube-proxy's rules in this mode
    dataplane: Optional[Callable[[ServiceState], tuple[str, str]]] = None
    # where the mode keeps Services in maps (proxy ebpf), `lab describe svc`'s rows of them: (state, the
    # Service, its slices, node -> the entries read from its maps) -> each node's entries beside the model's
    map_rows: Optional[Callable[[ClusterState, ServiceState, Sequence, Mapping], list[list[str]]]] = None

    def restore_for(self, family: str) -> tuple[str, ...]:
        return self.restore6 or self.restore if family == "IPv6" else self.restore
