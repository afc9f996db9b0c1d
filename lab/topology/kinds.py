"""The names of the registered kinds, for the topology model at the bottom of the house.

The kinds themselves live above (a pod network in lab/routing, a proxy mode in lab/kube_proxy, a
CNI in lab/cni, an add-on in lab/controlplane/addons.py): they import the model, so the model cannot
import them. Each registry asserts at import time that it holds exactly the names listed here (and a
unit test imports them all), so a kind registered without its name here, or a name without its
kind, fails at once. Adding a kind is its module, its line in its registry, and its name here.

What the topology model checks of a pod network lives with its name (`Network`): its MTU overhead
(the default pod MTU and the MTU check), the underlay switch it needs, whether a NAT gateway can be
the nodes' gateway, and the cluster section only it reads. lab.topology.semantics asks these, never
a network's name; the kind's own module reads the overhead here too.
"""
from __future__ import annotations

from dataclasses import dataclass

from lab.topology.constants import VXLAN_OVERHEAD


@dataclass(frozen=True)
class Network:
    """What validation needs of a pod network, before any renderer loads."""

    overhead: int = 0          # bytes its encapsulation takes from the underlay MTU
    switch: str = ""           # the underlay switch it needs ("" = either)
    needs: str = ""            # that switch, as the error says it
    nat_gateway: str = ""      # why a NAT gateway cannot be the nodes' gateway ("" = it can)
    section: str = ""          # a cluster section only it reads (cluster.bgp)
    cni: str = ""              # the built-in CNI it needs ("" = any)
    cni_why: str = ""          # what that CNI does for it, as the error says it


NETWORKS: dict[str, Network] = {
    "host-gw": Network(),
    "vxlan": Network(VXLAN_OVERHEAD),
    "bgp": Network(section="bgp"),
    "cloud-routes": Network(switch="ovs", needs="the OVS underlay (an OpenFlow switch)",
                            nat_gateway="the fabric is the nodes' gateway"),
    "vpc": Network(cni="ptp", cni_why="gives each pod a veth and a /32 route on its node (the VPC CNI's model)"),
}
PROXY_MODES: tuple[str, ...] = ("iptables", "nftables", "ebpf")
DEFAULT_PROXY = "iptables"  # kube-proxy's own default mode
CNIS: tuple[str, ...] = ("bridge", "ptp")  # built in; any other cni is the path of a plugin of one's own
# the images of the add-ons the lab installs (lab/controlplane/addons.py): programs of their controllers
ADDON_IMAGES: tuple[str, ...] = ("kube-dns", "ingress-nginx", "envoy")


# the pod networks that carry IPv6 (dual-stack or IPv6-only clusters); each Backend says so too
# (Backend.ipv6), checked against this at import
IPV6_NETWORKS: tuple[str, ...] = ("host-gw", "vxlan", "bgp")
# the proxy modes that serve IPv6 Services (proxy ebpf's programs hook IPv4 sockets only: connect4, sendmsg4)
IPV6_PROXY_MODES: tuple[str, ...] = ("iptables", "nftables")


def carries_ipv6(network: str) -> bool:
    return network in IPV6_NETWORKS


def serves_ipv6(proxy: str) -> bool:
    return proxy in IPV6_PROXY_MODES


def cni_needed(network_name: str, cni: str) -> str:
    """The CNI `network_name` needs when `cni` is not it; "" when it takes any, or has it."""
    need = network(network_name).cni
    return need if need and cni != need else ""


def builtin_cni(cni: str) -> bool:
    """A CNI the lab plans (bridge, ptp: one range per family); any other is a plugin of one's own,
    which the lab hands one IPv4 range."""
    return cni in CNIS
IPV6_HEADER_GROWTH = 20  # an IPv6 outer header is 40 bytes, IPv4's 20: VXLAN over IPv6 costs 70


def mtu_overhead(network: str, ipv6: bool = False) -> int:
    """With an IPv6 family the tunnel also runs over the IPv6 underlay (flannel-v6.1), whose outer
    header is larger: the pods' one MTU must fit both tunnels, as flannel sets it."""
    base = NETWORKS[network].overhead if network in NETWORKS else 0
    return base + IPV6_HEADER_GROWTH if base and ipv6 else base


def network(name: str) -> Network:
    return NETWORKS.get(name, Network())


def section_owner(section: str) -> str:
    """The network that reads cluster.<section>."""
    return next(name for name, n in NETWORKS.items() if n.section == section)


def check_registry(what: str, registered: set[str] | dict, names) -> None:
    """Raise at import when a registry and its names here disagree."""
    if set(registered) != set(names):
        raise RuntimeError(f"{what}: registered {sorted(registered)}, lab/topology/kinds.py names {sorted(names)}")
