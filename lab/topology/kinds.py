"""The names of the registered kinds, for the topology model at the bottom of the house.

The kinds themselves live above (a pod network in lab/routing, a proxy mode in lab/kube_proxy, a
CNI in lab/cni): they import the model, so the model cannot import them. Each registry asserts at
import time that it holds exactly the names listed here (and a unit test imports them all), so a
kind registered without its name here, or a name without its kind, fails at once. Adding a kind is
its module, its line in its registry, and its name here.

A pod network's MTU overhead lives here too: the topology's default pod MTU and its MTU check
need it, without loading a renderer.
"""
from __future__ import annotations

from lab.topology.constants import VXLAN_OVERHEAD

# pod network name -> bytes its encapsulation takes from the underlay MTU
NETWORKS: dict[str, int] = {"host-gw": 0, "vxlan": VXLAN_OVERHEAD, "bgp": 0, "cloud-routes": 0, "vpc": 0}
PROXY_MODES: tuple[str, ...] = ("iptables", "nftables", "ebpf")
DEFAULT_PROXY = "iptables"  # kube-proxy's own default mode
CNIS: tuple[str, ...] = ("bridge", "ptp")  # built in; any other cni is the path of a plugin of one's own


# the pod networks that carry IPv6 (dual-stack or IPv6-only clusters); each Backend says so too
# (Backend.ipv6), checked against this at import
IPV6_NETWORKS: tuple[str, ...] = ("host-gw", "vxlan", "bgp")
IPV6_HEADER_GROWTH = 20  # an IPv6 outer header is 40 bytes, IPv4's 20: VXLAN over IPv6 costs 70


def mtu_overhead(network: str, ipv6: bool = False) -> int:
    """With an IPv6 family the tunnel also runs over the IPv6 underlay (flannel-v6.1), whose outer
    header is larger: the pods' one MTU must fit both tunnels, as flannel sets it."""
    base = NETWORKS.get(network, 0)
    return base + IPV6_HEADER_GROWTH if base and ipv6 else base


def check_registry(what: str, registered: set[str] | dict, names) -> None:
    """Raise at import when a registry and its names here disagree."""
    if set(registered) != set(names):
        raise RuntimeError(f"{what}: registered {sorted(registered)}, lab/topology/kinds.py names {sorted(names)}")
