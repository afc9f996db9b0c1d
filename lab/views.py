"""What `lab get` prints: kubectl's columns and object shapes, computed from the lab's record."""
from __future__ import annotations

import platform
import time
from typing import Callable, Optional, Sequence

from lab.controlplane.state import ClusterState, NodeState, PodState

Alive = Callable[[str], bool]  # container key "<ns>/<pod>/<container>" -> running?


def age(seconds: float) -> str:
    """kubectl's AGE column (apimachinery's duration.HumanDuration): 90s, 5m30s, 2h15m, 3d4h."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m, h = s // 60, s // 3600
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if h < 24 * 365 * 2:
        return f"{d}d"
    y = d // 365
    if h < 24 * 365 * 8:
        return f"{y}y{d % 365}d" if d % 365 else f"{y}y"
    return f"{y}y"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("   ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def pod_status(pod: PodState, alive: Alive) -> tuple[str, str]:
    running = sum(alive(f"{pod.key}/{c.name}") for c in pod.containers)
    status = "Running" if running == len(pod.containers) else "Error"
    return f"{running}/{len(pod.containers)}", status


def pod_rows(state: ClusterState, alive: Alive, created: float, namespace: Optional[str], wide: bool):
    header = (["NAMESPACE"] if namespace is None else []) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        header += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES", "NETNS"]
    rows = []
    for p in sorted(state.pods, key=lambda p: (p.namespace, p.name)):  # the API server's order
        if namespace is not None and p.namespace != namespace:
            continue
        ready, status = pod_status(p, alive)
        row = ([p.namespace] if namespace is None else []) + [p.name, ready, status, "0", age(time.time() - created)]
        if wide:
            row += [p.ip, p.node, "<none>", "<none>", p.netns]
        rows.append(row)
    return header, rows


def node_rows(state: ClusterState, created: float, wide: bool):
    header = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if wide:
        header += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME", "POD-CIDR", "NETNS"]
    rows = []
    for n in state.nodes:
        row = [n.name, "Ready", n.role if n.role == "control-plane" else "<none>", age(time.time() - created), "k8s-netlab"]
        if wide:
            row += [n.ip, "<none>", "Mininet host", platform.release(), "netns", n.pod_cidr, n.netns]
        rows.append(row)
    return header, rows


def pod_object(p: PodState, state: ClusterState, alive: Alive) -> dict:
    _, status = pod_status(p, alive)
    meta = {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels)}
    if p.owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": p.name.rsplit("-", 1)[0]}]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {
            "nodeName": p.node, "hostNetwork": p.host_network,
            "containers": [
                {"name": c.name, "image": c.image, **({"command": list(c.argv)} if c.argv else {}),
                 "ports": [{"containerPort": x.port, "protocol": x.protocol, **({"name": x.name} if x.name else {})}
                           for x in c.ports]}
                for c in p.containers
            ],
        },
        "status": {
            "phase": "Running" if status == "Running" else "Failed",
            "hostIP": state.node(p.node).ip, "podIP": p.ip, "podIPs": [{"ip": p.ip}],
            "containerStatuses": [{"name": c.name, "ready": alive(f"{p.key}/{c.name}")} for c in p.containers],
        },
    }


def node_object(n: NodeState) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": {**dict(n.labels), "kubernetes.io/hostname": n.name,
                                                 **({"node-role.kubernetes.io/control-plane": ""} if n.role == "control-plane" else {})}},
        "spec": {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}]},
    }


def as_list(items: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": items}
