"""CNI network configurations for a node (pure): the conflist a kubelet would find in /etc/cni/net.d."""
from __future__ import annotations

import os

from lab.controlplane.state import ClusterState, NodeState

CNI_VERSION = "1.0.0"


def _ipam(node: NodeState, data_dir: str) -> dict:
    return {
        "type": "host-local",
        "ranges": [[{"subnet": node.pod_cidr, "gateway": node.gateway}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": data_dir,
    }


def pod_network(state: ClusterState, node: NodeState, data_dir: str) -> dict:
    """The pod network's conflist. bridge: flannel's cni0 setup (gateway on the bridge, hairpin on so
    a pod reaches itself through a Service). ptp: Calico's routed model (a /32 route per pod veth)."""
    if state.cni == "bridge":
        plugin = {
            "type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
            "hairpinMode": True, "mtu": state.mtu, "ipam": _ipam(node, data_dir),
        }
    elif state.cni == "ptp":
        plugin = {"type": "ptp", "ipMasq": False, "mtu": state.mtu, "ipam": _ipam(node, data_dir)}
    else:  # a plugin of one's own: what a ptp-like plugin needs, and host-local's ipam to delegate to
        plugin = {"type": os.path.basename(state.cni), "mtu": state.mtu, "podCIDR": node.pod_cidr,
                  "gateway": node.gateway, "ipam": _ipam(node, data_dir)}
    return {"cniVersion": CNI_VERSION, "name": f"{state.lab}-podnet", "plugins": [plugin]}


def plugin_dirs(state: ClusterState) -> tuple[str, ...]:
    """Where the runtime looks for plugins (CNI_PATH): a plugin of one's own's folder first."""
    return (os.path.dirname(state.cni),) if os.path.isabs(state.cni) else ()


def loopback_network() -> dict:
    """The runtime brings `lo` up with the loopback plugin, as containerd and CRI-O do."""
    return {"cniVersion": CNI_VERSION, "name": "cni-loopback", "plugins": [{"type": "loopback"}]}
