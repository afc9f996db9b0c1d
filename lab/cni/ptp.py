"""cni: ptp — Calico's routed model (and the AWS VPC CNI's): a veth per pod, the gateway on its host
side, a /32 route per pod on the node; no bridge."""
from __future__ import annotations

from lab.cni.kind import CNIKind
from lab.controlplane.state import ClusterState, NodeState


def plugin(state: ClusterState, node: NodeState, ipam: dict) -> dict:
    return {"type": "ptp", "ipMasq": False, "mtu": state.mtu, "ipam": ipam}


KIND = CNIKind(
    "ptp", plugin, "veth", False,
    local_route=lambda state, n, ip: f"{ip}/32 dev veth: the pod's own veth (ptp)",
    link=lambda state: "veth (ptp: routed, no bridge)",
    drawing=lambda state, n: ("ptp: a veth per pod", f"host side {n.gateway}, /32 routes"),
)
