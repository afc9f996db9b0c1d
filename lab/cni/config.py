"""CNI network configurations for a node (pure): the conflist a kubelet would find in /etc/cni/net.d."""
from __future__ import annotations

import os
from ipaddress import ip_network

from lab.cni import kinds
from lab.controlplane.controller import Controller
from lab.controlplane.state import ClusterState, NodeState, PodState

CNI_VERSION = "1.0.0"


def _ipam(node: NodeState, data_dir: str) -> dict:
    """host-local with one range set per family, in the cluster's order: a dual-stack pod gets one
    address of each (CNI_ARGS IP= asks for both), and a default route per family."""
    cidrs = node.cidrs
    return {
        "type": "host-local",
        "ranges": [[{"subnet": c, "gateway": str(ip_network(c).network_address + 1)}] for c in cidrs],
        "routes": [{"dst": "0.0.0.0/0" if ip_network(c).version == 4 else "::/0"} for c in cidrs],
        "dataDir": data_dir,
    }


def port_mappings(pod: PodState) -> tuple[dict, ...]:
    """The portMappings capability a runtime passes for a pod's hostPorts (as containerd does)."""
    return tuple({"hostPort": p.host_port, "containerPort": p.port, "protocol": p.protocol.lower(),
             **({"hostIP": p.host_ip} if p.host_ip else {})}
            for c in pod.containers for p in c.ports if p.host_port)


def pod_network(state: ClusterState, node: NodeState, data_dir: str, mappings: tuple[dict, ...] = (),
                ips: tuple[str, ...] = ()) -> dict:
    """The pod network's conflist: the CNI kind's plugin (lab/cni/kinds.py) with host-local's ipam.
    mappings (a pod's hostPorts): the portmap plugin is chained, as flannel's and Calico's conflists
    do, with the runtime's portMappings in its runtimeConfig; pods without hostPorts skip it (for
    them it would do nothing, at the price of one more plugin run).
    ips: a dual-stack pod's planned addresses (a single one goes in CNI_ARGS, lab.node.pods)."""
    plugin = kinds.of(state).plugin(state, node, _ipam(node, data_dir))
    if len(ips) > 1:  # host-local 1.1.1 takes one CNI_ARGS IP=; several are asked as the network's args
        plugin = {**plugin, "args": {"cni": {"ips": list(ips)}}}
    chain = [plugin]
    if mappings:
        chain.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True,
                      "runtimeConfig": {"portMappings": list(mappings)}})
    return {"cniVersion": CNI_VERSION, "name": f"{state.lab}-podnet", "plugins": chain}


def confined(state: ClusterState) -> bool:
    """Whether all that the pod network's plugins make lives in the lab's own namespaces (the pod's
    veth, cni0, routes, portmap's rules in the node) and run directory (host-local's dataDir):
    deleting those undoes an ADD as a DEL would, so `lab down` can skip DEL (~10 ms of plugin per
    pod). A plugin of one's own may keep state anywhere: it always gets its DEL."""
    return kinds.of(state).confined


def plugin_dirs(state: ClusterState) -> tuple[str, ...]:
    """Where the runtime looks for plugins (CNI_PATH): a plugin of one's own's folder first."""
    return (os.path.dirname(state.cni),) if os.path.isabs(state.cni) else ()


def host_ports(record) -> dict[str, list[str]]:
    """hostPort's status: node -> the ports it maps, each to its pod. The mappings are made by the
    portmap plugin, chained into the pod's conflist at CNI ADD: nothing is left to sync later."""
    out: dict[str, list[str]] = {}
    for pod in record.state.pods:
        for m in port_mappings(pod):
            out.setdefault(pod.node, []).append(f"{m.get('hostIP', '')}:{m['hostPort']}/{m['protocol']} -> "
                                                f"{pod.key}:{m['containerPort']}")
    return out


HOST_PORTS = Controller("hostport", status=host_ports)
