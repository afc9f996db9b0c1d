"""Cross-node pod routing: how node 1 learns that 10.244.2.0/24 lives on node 3."""
from __future__ import annotations

from lab.controlplane.state import ClusterState, NodeState
from lab.routing import bgp, hostgw, vxlan
from lab.routing.ops import NetOps

_RENDERERS = {"host-gw": hostgw.render, "vxlan": vxlan.render, "bgp": bgp.render,
              "cloud-routes": lambda state, node: NetOps()}  # the fabric routes; nodes keep their default route


def render(state: ClusterState, node: NodeState) -> NetOps:
    """The operations that give `node` a path to every other node's podCIDR."""
    try:
        renderer = _RENDERERS[state.network]
    except KeyError:
        raise ValueError(f"network {state.network!r} is not supported; supported: {', '.join(_RENDERERS)}") from None
    return renderer(state, node)
