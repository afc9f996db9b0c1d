"""Address plan: node podCIDRs, node and host underlay addresses, pod IPs.

Pod IPs are planned here and handed to the CNI host-local IPAM as a request (CNI_ARGS IP=...), so
the model knows every pod's address before the plugin runs, and the order of ADDs cannot change it.
"""
from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Optional

from lab.errors import LabError


def node_pod_cidrs(pod_cidr: IPv4Network | IPv6Network, mask: int, count: int) -> list[IPv4Network]:
    """The first `count` /mask subnets of the cluster CIDR, in node order (nodeipam's range allocator)."""
    subnets = pod_cidr.subnets(new_prefix=mask)
    out = []
    for _ in range(count):
        try:
            out.append(next(subnets))
        except StopIteration:
            raise LabError(f"podCIDR {pod_cidr} has room for {len(out)} /{mask} node subnets, {count} needed") from None
    return out


def underlay_gateway(subnet: IPv4Network | str) -> IPv4Address:
    """The underlay's first address, left for a gateway: every node's default route points at it;
    the cloud-routes fabric answers for it, with the other networks nothing does."""
    return IPv4Network(subnet).network_address + 1


def underlay_addresses(subnet: IPv4Network, count: int) -> list[IPv4Address]:
    """Nodes, then hosts, from the second usable address on (the first is the gateway's)."""
    first = int(underlay_gateway(subnet)) + 1
    last = int(subnet.broadcast_address) - 1
    if first + count - 1 > last:
        raise LabError(f"underlay subnet {subnet} has room for {max(0, last - first + 1)} machines, {count} needed")
    return [IPv4Address(first + i) for i in range(count)]


def underlay_ipv6(subnet: IPv4Network | str, subnet6: IPv6Network | str, ip: str) -> IPv6Address:
    """A machine's IPv6 underlay address: the IPv6 prefix with its IPv4 host part (172.18.0.3 is
    fd00:172:18::3), so the same file gives the same addresses and each is easy to tell."""
    return IPv6Network(subnet6).network_address + (int(IPv4Address(ip)) - int(IPv4Network(subnet).network_address))


def link_local(mac: str) -> IPv6Address:
    """The EUI-64 link-local address of a MAC (the kernel's default for an interface)."""
    b = [int(x, 16) for x in mac.split(":")]
    eui = [b[0] ^ 0x02, *b[1:3], 0xFF, 0xFE, *b[3:]]
    return IPv6Address(int.from_bytes(bytes([0xFE, 0x80, 0, 0, 0, 0, 0, 0, *eui]), "big"))


def gateway(node_cidr: IPv4Network | IPv6Network) -> IPv4Address | IPv6Address:
    return node_cidr.network_address + 1


def pod_addresses(node: str, node_cidr: IPv4Network | IPv6Network, count: int, taken: frozenset = frozenset(),
                  last: Optional[IPv4Address | IPv6Address] = None) -> list[IPv4Address | IPv6Address]:
    """host-local's order: after the gateway, upwards, never the IPv4 broadcast address; round-robin
    from just after `last` (host-local's lastReservedIP), wrapping around, so an address freed by
    a deleted pod is not handed out again at once (neighbour caches still hold its old MAC);
    `taken` (addresses of pods that keep theirs across a `lab apply`) are skipped."""
    first = int(node_cidr.network_address) + 2
    end = int(node_cidr.broadcast_address) - (node_cidr.version == 4)
    start = int(last) + 1 if last is not None and first <= int(last) < end else first
    order = itertools.chain(range(start, end + 1), range(first, start))
    make = IPv4Address if node_cidr.version == 4 else IPv6Address
    free = (make(a) for a in order if make(a) not in taken)
    out = [ip for ip, _ in zip(free, range(count))]
    if len(out) < count:
        raise LabError(
            f"node {node} has {count + len(taken)} pods but its podCIDR {node_cidr} holds {max(0, end - first + 1)}; "
            "use a smaller cluster.nodeCIDRMaskSize (bigger node subnets) or spread the pods over more nodes"
        )
    return out
