"""`lab node stop|start NAME`: a node drops off the network and comes back, as a powered-off or
unplugged machine does: its underlay link goes down (its processes keep running, like a kernel
that lost its NIC). With network: bgp the other nodes' sessions to it time out and its podCIDR is
withdrawn everywhere; the times until the others' kernels have no route, and have it again, are
measured and reported."""
from __future__ import annotations

import json
import time
from typing import Optional

from lab.controlplane import ipam
from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab import routing
from lab.host import record as records
from lab.host import ip_batch, output
from lab.node import underlay

TIMEOUT = 30.0


def _routes_to(state: ClusterState, cidr: str, exclude: str) -> dict[str, bool]:
    """Which other nodes have a route for `cidr` in their kernel."""
    out = {}
    for n in state.nodes:
        if n.name != exclude:
            routes = json.loads(output(["ip", "-n", n.netns, "-j", "route", "show", cidr]) or "[]")
            out[n.name] = any(r.get("type") != "blackhole" for r in routes)
    return out


def _wait(state: ClusterState, cidr: str, exclude: str, present: bool) -> Optional[float]:
    if not routing.backend(state).withdraws:
        return None  # static routes (host-gw, vxlan, the fabric's) stay: nothing withdraws them
    t0 = time.monotonic()
    while time.monotonic() - t0 < TIMEOUT:
        if all(v == present for v in _routes_to(state, cidr, exclude).values()):
            return time.monotonic() - t0
        time.sleep(0.02)
    raise LabError(f"after {TIMEOUT:.0f}s the other nodes still {'lack' if present else 'have'} a route to {cidr}")


def set_state(lab: Optional[str], name: str, up: bool) -> Optional[float]:
    rec = records.find(lab)
    state = rec.state
    try:
        node = state.node(name)
    except KeyError:
        raise LabError(f"no node {name!r} in lab {rec.name}; nodes: {', '.join(n.name for n in state.nodes)}") from None
    if (name in underlay.stopped(rec)) != up:
        raise LabError(f"node {name} is already {'running' if up else 'stopped'}")
    lines = [f"link set eth0 {'up' if up else 'down'}"]
    if up:
        # an interface set down loses the routes through it: put back what the lab installed
        lines.append(f"route replace default via {ipam.underlay_gateway(state.underlay_subnet)} dev eth0")
        if 6 in state.families:
            lines.append(f"route replace default via {underlay.ipv6_gateway(state)} dev eth0")
        lines += [op for op in routing.render(state, node).ip if op.startswith(("route replace", "neigh replace"))]
    ip_batch(lines, netns=node.netns)
    underlay.set_stopped(rec, [n for n in underlay.stopped(rec) if n != name] + ([] if up else [name]))
    rec.save()
    return _wait(state, node.pod_cidr, name, present=up)
