"""CNI kinds: what differs between the pod network's plugins, in one unit each (lab/cni/bridge.py,
lab/cni/ptp.py, and the plugin of one's own below), so nothing outside lab/cni names a plugin:
- the plugin's entry in the conflist (the lab adds host-local's ipam and chains portmap);
- where a node sees its pods (cni0 or each pod's veth): the route `lab trace` predicts to a local
  pod, how a pod's packet enters its node, and whether pods share a bridge (the connected route
  between them, bridge ports for a hairpin fault);
- how `lab graph` draws the node's pod device;
- whether all it makes lives in the lab's namespaces and run directory (`lab down` skips DEL).
Adding a built-in CNI is its module with its KIND, one line in `_registry` and its name in
lab/topology/kinds.py (checked against this registry at import)."""
from __future__ import annotations

import os
from pathlib import PurePath

from lab.cni.kind import CNIKind
from lab.controlplane.state import ClusterState, NodeState
from lab.topology.kinds import CNIS, check_registry


def _own_plugin(state: ClusterState, node: NodeState, ipam: dict) -> dict:
    """What a ptp-like plugin needs, and host-local's ipam to delegate to."""
    return {"type": os.path.basename(state.cni), "mtu": state.mtu, "podCIDR": node.pod_cidr,
            "gateway": node.gateway, "ipam": ipam}


OWN = CNIKind(
    "plugin", _own_plugin, "veth", False,
    local_route=lambda state, n, ip: f"{ip}/32 dev veth: the pod's own veth ({state.cni})",
    link=lambda state: f"veth ({state.cni}: routed, no bridge)",
    drawing=lambda state, n: (f"CNI {PurePath(state.cni).name}", f"gateway {n.gateway}"),
    confined=False,  # a plugin of one's own may keep state anywhere: it always gets its DEL
)


def _registry() -> dict[str, CNIKind]:
    from lab.cni import bridge, ptp

    kinds = {k.name: k for k in (bridge.KIND, ptp.KIND)}
    check_registry("CNIs (lab/cni)", kinds, CNIS)
    return kinds


KINDS = _registry()


def of(state: ClusterState) -> CNIKind:
    """The state's CNI: a built-in one, or the plugin of one's own its path names."""
    return KINDS.get(state.cni, OWN)


def display_name(state: ClusterState) -> str:
    return state.cni if state.cni in KINDS else PurePath(state.cni).name
