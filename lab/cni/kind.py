"""What a CNI kind is (lab.cni.kinds holds one per built-in plugin): apart from the registry so a
kind's module imports this, not the registry that imports it (no circle)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lab.controlplane.state import ClusterState, NodeState


@dataclass(frozen=True)
class CNIKind:
    name: str
    plugin: Callable[[ClusterState, NodeState, dict], dict]  # (state, node, ipam) -> the plugin's conflist entry
    device: str                   # where the node sees its pods: "cni0" or "veth"
    bridged: bool                 # pods of a node share a bridge: a connected route between them, bridge ports
    local_route: Callable[[ClusterState, NodeState, str], str]  # the node's route to its pod at an IP, as trace says it
    link: Callable[[ClusterState], str]                         # a pod's packet into its node, as trace says it
    drawing: Callable[[ClusterState, NodeState], tuple[str, ...]]  # lab graph's box for the node's pod device
    confined: bool = True         # all it makes lives in the lab's namespaces and run directory
