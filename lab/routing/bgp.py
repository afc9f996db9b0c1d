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
from lab.routing import Backend
from lab.routing.ops import NetOps


def render(state: ClusterState, node: NodeState) -> NetOps:
    """The blackhole has a high metric: with the bridge CNI, cni0's connected route for the same
    prefix (metric 0) wins and the blackhole only keeps the prefix announced."""
    return NetOps(ip=(f"route replace blackhole {node.pod_cidr} metric {BLACKHOLE_METRIC}",))


BLACKHOLE_METRIC = 1000
BACKEND = Backend("bgp", render, withdraws=True)


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


def frr_conf(state: ClusterState, name: str) -> str:
    ip = next(ip for n, ip, _ in speakers(state) if n == name)
    node = next((n for n in state.nodes if n.name == name), None)
    lines = [
        f"! {state.lab}: FRR for {name} (lab/routing/bgp.py)", "frr defaults datacenter", f"hostname {name}",
        "log stdout informational", "!",
        f"router bgp {as_of(state, name)}", f" bgp router-id {ip}", " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast", " timers bgp 1 3",
    ]
    for peer, peer_ip, _ in peers(state, name):
        lines += [f" neighbor {peer_ip} remote-as {as_of(state, peer)}", f" neighbor {peer_ip} description {peer}",
                  f" neighbor {peer_ip} timers connect 1", f" neighbor {peer_ip} bfd profile lab"]
    lines.append(" address-family ipv4 unicast")
    if node is not None:
        lines.append(f"  network {node.pod_cidr}")
    for peer, peer_ip, client in peers(state, name):
        lines.append(f"  neighbor {peer_ip} activate")
        if client:
            lines.append(f"  neighbor {peer_ip} route-reflector-client")
    lines += [" exit-address-family", "!",
              # BFD notices a dead peer in 3 x 100 ms, long before BGP's hold timer (3 s)
              "bfd", " profile lab", "  detect-multiplier 3", "  receive-interval 100", "  transmit-interval 100",
              " exit", "exit", "!"]
    return "\n".join(lines) + "\n"
