"""What a fault names: node/NAME, pod/NAME[.NS][/CONTAINER], overlay[/NODE], kube-dns, agent; parsed
without a lab (scenario validation), then resolved against a ClusterState."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lab.controlplane import kube_dns
from lab.controlplane.state import ClusterState, NodeState, PodState
from lab.errors import LabError

FORMS = "node/NAME, pod/NAME[.NAMESPACE][/CONTAINER], overlay[/NODE], kube-dns or agent"
KUBE_DNS = kube_dns.NAME  # the cluster DNS add-on's pods
SINGLE = (KUBE_DNS, "agent", "overlay")


@dataclass(frozen=True)
class Target:
    kind: str            # node | pod | overlay | kube-dns | agent
    name: str = ""       # node/pod name as written (a pod's may carry .NAMESPACE)
    container: str = ""


def parse(text: str) -> Target:
    """The target's form, or ValueError saying which forms exist."""
    kind, _, rest = str(text).partition("/")
    if kind in SINGLE and not rest:
        return Target(kind)
    if kind == "overlay" and rest and "/" not in rest:
        return Target("overlay", rest)
    if kind == "node" and rest and "/" not in rest:
        return Target("node", rest)
    if kind == "pod" and rest:
        name, _, container = rest.partition("/")
        if name and "/" not in container:
            return Target("pod", name, container)
    raise ValueError(f"target {text!r} is not one of {FORMS}")


def node(state: ClusterState, name: str) -> NodeState:
    try:
        return state.node(name)
    except KeyError:
        raise LabError(f"no node {name!r} in lab {state.lab}; nodes: {', '.join(n.name for n in state.nodes)}") from None


def pod(state: ClusterState, name: str) -> PodState:
    """pod/NAME is in namespace default unless NAME ends in .NAMESPACE (a pod name may hold dots itself)."""
    candidates = [(name, "default")]
    if "." in name:
        candidates.append(tuple(name.rsplit(".", 1)))
    for n, ns in candidates:
        found: Optional[PodState] = next((p for p in state.pods if p.name == n and p.namespace == ns), None)
        if found:
            return found
    pods = ", ".join(p.name if p.namespace == "default" else f"{p.name}.{p.namespace}" for p in state.pods)
    raise LabError(f"no pod {name!r} in lab {state.lab}; pods: {pods or 'none'}")


def sandboxed(state: ClusterState, name: str) -> PodState:
    """A pod with a network namespace of its own (a hostNetwork pod's links are its node's)."""
    p = pod(state, name)
    if p.host_network:
        raise LabError(f"pod {p.key} uses the host network: its links are node/{p.node}'s")
    return p
