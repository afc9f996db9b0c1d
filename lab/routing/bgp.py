"""network: bgp, as Calico does it with BIRD, here with FRR: every node's bgpd announces its
podCIDR and zebra installs the others' into the kernel (proto bgp). iBGP full mesh by default;
with route reflectors (nodes or plain hosts), nodes peer only with the reflectors.

Pure: the kernel side (one blackhole route for the node's own podCIDR, so the prefix exists to be
announced whatever the CNI and however many pods — with ptp there is no /24 route otherwise, as in
Calico) and the
frr.conf of each speaker. Timers are short (keepalive 1 s, hold 3 s, connect retry 1 s): a lab
converges in about a second; BFD (100 ms x 3) tells a peer's death well before the hold time, so a
stopped node's routes are withdrawn in well under a second."""
from __future__ import annotations

from lab.controlplane.state import ClusterState, NodeState
from lab.routing.kind import Backend, Drawing, NextHop
from lab.routing.ops import NetOps


def render(state: ClusterState, node: NodeState) -> NetOps:
    """The blackhole has a high metric: with the bridge CNI, cni0's connected route for the same
    prefix (metric 0) wins and the blackhole only keeps the prefix announced. One per family."""
    return NetOps(ip=tuple(f"route replace blackhole {cidr} metric {BLACKHOLE_METRIC}" for cidr in node.cidrs))


BLACKHOLE_METRIC = 1000


def speakers(state: ClusterState) -> list[tuple[str, str, str]]:
    """(name, ip, netns) of every BGP speaker: the nodes, and plain hosts that reflect or route."""
    out = [(n.name, n.ip, n.netns) for n in state.nodes]
    out += [(h.name, h.ip, h.netns) for h in state.hosts
            if h.name in state.route_reflectors or h.name == state.top_of_rack]
    return out


def as_of(state: ClusterState, name: str) -> int:
    """The cluster's AS (iBGP), or with a top-of-rack router one AS per node, as Calico's AS-per-rack
    designs give each node its own (the router keeps the cluster's)."""
    if not state.top_of_rack or name == state.top_of_rack:
        return state.bgp_as
    return state.bgp_as + 1 + [n.name for n in state.nodes].index(name)


def peers(state: ClusterState, name: str) -> list[tuple[str, str, bool]]:
    """(peer name, ip, is my route-reflector client) for speaker `name`."""
    everyone = speakers(state)
    rrs = set(state.route_reflectors)
    if state.top_of_rack:
        tor = state.top_of_rack
        return [(n, ip, False) for n, ip, _ in everyone if (n == tor) != (name == tor)]
    if not rrs:
        return [(n, ip, False) for n, ip, _ in everyone if n != name]
    if name in rrs:
        return [(n, ip, n not in rrs) for n, ip, _ in everyone if n != name]
    return [(n, ip, False) for n, ip, _ in everyone if n in rrs and n != name]


def address6(state: ClusterState, name: str) -> str:
    """A speaker's IPv6 underlay address: IPv6 sessions carry the IPv6 pod subnets (MP-BGP's
    ipv6 unicast family), so each family's next hop is an address of that family."""
    return next(m.ip6 for m in (*state.nodes, *state.hosts) if m.name == name)


def frr_conf(state: ClusterState, name: str) -> str:
    ip = next(ip for n, ip, _ in speakers(state) if n == name)
    node = next((n for n in state.nodes if n.name == name), None)
    lines = [
        f"! {state.lab}: FRR for {name} (lab/routing/bgp.py)", "frr defaults datacenter", f"hostname {name}",
        "log stdout informational", "!",
        f"router bgp {as_of(state, name)}", f" bgp router-id {ip}", " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast", " timers bgp 1 3",
    ]
    families = {f: [(peer, peer_ip if f == 4 else address6(state, peer), client)
                     for peer, peer_ip, client in peers(state, name)] for f in state.families}
    for f in sorted(families):
        for peer, peer_ip, _ in families[f]:
            lines += [f" neighbor {peer_ip} remote-as {as_of(state, peer)}", f" neighbor {peer_ip} description {peer}",
                      f" neighbor {peer_ip} timers connect 1", f" neighbor {peer_ip} bfd profile lab"]
    for f in sorted(families):
        lines.append(f" address-family ipv{f} unicast")
        if node is not None:
            lines.append(f"  network {node.pod_cidr_of(f)}")
        for peer, peer_ip, client in families[f]:
            lines.append(f"  neighbor {peer_ip} activate")
            if client:
                lines.append(f"  neighbor {peer_ip} route-reflector-client")
        lines.append(" exit-address-family")
    lines += ["!",
              # BFD notices a dead peer in 3 x 100 ms, long before BGP's hold timer (3 s)
              "bfd", " profile lab", "  detect-multiplier 3", "  receive-interval 100", "  transmit-interval 100",
              " exit", "exit", "!"]
    return "\n".join(lines) + "\n"


def next_hop(state: ClusterState, node: NodeState, peer: NodeState) -> NextHop:
    return NextHop("eth0", peer.ip, f"{peer.pod_cidr} via {peer.ip} dev eth0: {peer.name}, learned by BGP (proto bgp)",
                   "bgp")


def role(state: ClusterState, name: str) -> tuple[str, ...]:
    """A speaker's part, for lab graph: top-of-rack router, route reflector or a node's bgpd."""
    if name == state.top_of_rack:
        return (f"top-of-rack router, AS {as_of(state, name)}",)
    if name in state.route_reflectors:
        return (f"BGP route reflector, AS {as_of(state, name)}",)
    if any(n.name == name for n in state.nodes):
        return (f"bgpd AS {as_of(state, name)}",)
    return ()


def sessions(state: ClusterState) -> list[tuple[tuple[str, str], tuple[str, str], str, str]]:
    """One graph link per BGP session, between the speakers' eth0 (a node's) or box (a host's)."""
    nodes = {n.name for n in state.nodes}
    out, seen, rrs = [], set(), set(state.route_reflectors)
    for name, _, _ in speakers(state):
        for peer, _, _ in peers(state, name):
            if frozenset((name, peer)) in seen:
                continue
            seen.add(frozenset((name, peer)))
            client = (name in rrs) != (peer in rrs)
            kind = "eBGP" if state.top_of_rack else "iBGP, RR client" if client else "iBGP"
            out.append((("eth0" if name in nodes else "host", name), ("eth0" if peer in nodes else "host", peer), kind, "bgp"))
    return out


BACKEND = Backend("bgp", render, withdraws=True, ipv6=True, runtime="lab.routing.frr", next_hop=next_hop,
                  drawing=Drawing(role=role, links=sessions), node_daemon="bgpd", faults=("bgp-peer-as",),
                  peers=peers, local_as=as_of)
