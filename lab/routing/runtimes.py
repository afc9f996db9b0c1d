"""The processes a pod network runs, per backend: FRR for bgp, the OpenFlow controller for
cloud-routes; host-gw and vxlan are kernel state only. `lab up` starts them after the nodes'
kernel ops, waits for them once the pods are wired, and `lab down` stops them first."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from lab.controlplane.state import ClusterState
from lab.routing import fabric_runtime, frr
from lab.host.record import LabRecord


@dataclass(frozen=True)
class Runtime:
    start: Callable[[ClusterState, LabRecord], None]
    wait_ready: Callable[[ClusterState], float]
    ready: str                                           # what wait_ready waits for, for progress lines
    stop: Callable[[LabRecord], None] = lambda record: None  # daemons in lab namespaces die with them


def _start_frr(state: ClusterState, record: LabRecord) -> None:
    frr.check_config(state)  # FRR's own dry run before anything starts
    frr.start(state, record)


RUNTIMES = {
    "bgp": Runtime(_start_frr, frr.wait_converged, "BGP converged: every node has a route to every podCIDR"),
    "cloud-routes": Runtime(fabric_runtime.start, fabric_runtime.wait_ready,
                            "fabric: the controller installed a route per podCIDR", fabric_runtime.stop),
}


def of(network: str) -> Optional[Runtime]:
    """The backend's runtime, or None when it is kernel state only."""
    return RUNTIMES.get(network)
