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
SINGLE_STACK_PROXIES: tuple[str, ...] = ("ebpf",)  # IPv4 programs only: no IPv6 or dual-stack Services
CNIS: tuple[str, ...] = ("bridge", "ptp")  # built in; any other cni is the path of a plugin of one's own


def mtu_overhead(network: str) -> int:
    return NETWORKS.get(network, 0)


def check_registry(what: str, registered: set[str] | dict, names) -> None:
    """Raise at import when a registry and its names here disagree."""
    if set(registered) != set(names):
        raise RuntimeError(f"{what}: registered {sorted(registered)}, lab/topology/kinds.py names {sorted(names)}")
