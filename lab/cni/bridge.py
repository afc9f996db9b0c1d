"""cni: bridge — flannel's cni0 setup: the gateway on the bridge, hairpin on so a pod reaches itself
through a Service; a node's pods share one L2 segment."""
from __future__ import annotations

from ipaddress import ip_network

from lab.cni.kind import CNIKind
from lab.controlplane.state import ClusterState, NodeState


def plugin(state: ClusterState, node: NodeState, ipam: dict) -> dict:
    return {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "mtu": state.mtu, "ipam": ipam}


KIND = CNIKind(
    "bridge", plugin, "cni0", True,
    local_route=lambda state, n, ip: f"{n.pod_cidr} dev cni0: the pod's bridge port",
    link=lambda state: "veth → cni0 (bridge)",
    drawing=lambda state, n: ("cni0 bridge", *(f"{ip_network(c).network_address + 1}/{ip_network(c).prefixlen}"
                                               for c in n.cidrs)),   # its gateway of each family
)
