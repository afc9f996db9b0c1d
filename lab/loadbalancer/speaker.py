"""MetalLB's L2 speaker: one node answers ARP for each load-balancer address, and the address moves
when that node stops or (externalTrafficPolicy Local) loses its last ready endpoint.

The address is never assigned to the node (as with MetalLB and kube-proxy in iptables mode): the
speaker holds a proxy neighbour entry (`ip neigh add proxy IP dev eth0`), so its kernel answers ARP
for the address, the underlay delivers the address's packets to it, and kube-proxy's rules (every
node has them) DNAT them in PREROUTING. The kernel answers for a proxied address only if its route
leaves by another device than the request came in on (arp_process), so the speaker also routes the
address to lo (what kube-proxy does not DNAT goes nowhere); and proxy_delay is set to 0, else it
waits up to 0.8 s before answering a broadcast request. After a move the new speaker
sends gratuitous ARP (a request and a reply, as MetalLB does) so the hosts' caches follow at
once instead of after their entries go stale. A node taken down loses its proxy entries with its
link: `refresh` writes them again when a node comes back.

Who speaks is lab.controlplane.loadbalancer.speakers (pure); the current choice is this
controller's section of the record (speaking()). It syncs with every controller (`lab up`,
`lab apply`, the agent on a readiness change); the agent also refreshes after a node came back.
"""
from __future__ import annotations

from typing import Mapping

from lab import host
from lab.controlplane.controller import Controller
from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.loadbalancer import speakers
from lab.controlplane.state import ClusterState
from lab.host.record import LabRecord
from lab.node import underlay

DEV = "eth0"
NAME = "loadbalancer"


def wanted(rec: LabRecord, state: ClusterState, pod_ready: Mapping[str, bool]) -> dict[str, str]:
    """Who should speak for each address now (running nodes only)."""
    if not any(s.load_balancer_ip for s in state.services):
        return {}
    down = set(underlay.stopped(rec))
    running = [n.name for n in state.nodes if n.name not in down]
    return speakers(state.services, endpoint_slices(state, pod_ready), running)


def sync(rec: LabRecord, state: ClusterState, pod_ready: Mapping[str, bool], refresh: bool = False) -> list[str]:
    """Move the addresses whose speaker changed (refresh: write every entry again); returns what it
    did, one line per address. Writes its section; the caller holds the lock and saves."""
    want, have = wanted(rec, state, pod_ready), speaking(rec)
    done = []
    for ip, node in have.items():
        if want.get(ip) != node and node in {n.name for n in state.nodes}:
            # a stopped node's entries went with its link: failures are fine (-force runs both lines)
            host.run(["ip", "-n", state.node(node).netns, "-force", "-batch", "-"], check=False,
                     input=f"neigh del proxy {ip} dev {DEV}\nroute del {ip}/32 dev lo\n")
            done.append(f"{ip}: {node} stops answering")
    for ip, node in want.items():
        if have.get(ip) != node or refresh:
            netns = state.node(node).netns
            host.sysctl(netns, {f"net.ipv4.neigh.{DEV}.proxy_delay": "0"})
            host.ip_batch([f"route replace {ip}/32 dev lo", f"neigh replace proxy {ip} dev {DEV}"], netns=netns)
            host.announce(netns, ip, DEV)
            done.append(f"{ip}: {node} answers ARP" + ("" if have.get(ip) in (None, node) else f" (was {have[ip]})"))
    rec.section(NAME)["speakers"] = want
    return done


def speaking(rec: LabRecord) -> dict[str, str]:
    """Load-balancer IP -> the node answering ARP for it, as last synced."""
    return dict(rec.sections.get(NAME, {}).get("speakers", {}))


CONTROLLER = Controller(NAME, sync=lambda rec, diff: sync(rec, diff.new, diff.new_ready))
