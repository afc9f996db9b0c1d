"""Pod networks as kinds: how node 1 learns that 10.244.2.0/24 lives on node 3, and all else that
differs from one pod network to the next.

containerlab's registry of node kinds is the model: a `Backend` is one registered unit that
carries everything about itself, so no module outside lab/routing names a pod network:
- planning: the pod addresses each node hands out and the cluster's pod range (controlplane.plan),
  and the per-node pod budget a kind may impose (a clear error before anything is built);
- the kernel operations per node (pure), the addresses a node's traffic carries, whether a stopped
  node's routes are withdrawn, and its runtime (the module whose RUNTIME runs its daemons);
- the next hop `lab trace` predicts and what the packet looks like between nodes;
- how `lab graph` draws it; which fault targets and kinds it has.
The MTU overhead sits with the kind's name in lab/topology/kinds.py (the topology model needs it).

Adding a pod network is one module with its BACKEND, one line in `_registry` below and its name in
lab/topology/kinds.py (the model's allowed names; checked against this registry at import).
"""
from __future__ import annotations

from lab.controlplane.state import ClusterState, NodeState
from lab.routing.kind import Backend
from lab.routing.ops import NetOps
from lab.topology.kinds import IPV6_NETWORKS, NETWORKS, check_registry


def _registry() -> dict[str, Backend]:
    from lab.routing import bgp, fabric, hostgw, vpc, vxlan

    kinds = {b.name: b for b in (hostgw.BACKEND, vxlan.BACKEND, bgp.BACKEND, fabric.BACKEND, vpc.BACKEND)}
    check_registry("pod networks (lab/routing)", kinds, NETWORKS)
    check_registry("pod networks that carry IPv6 (Backend.ipv6)", {k for k, b in kinds.items() if b.ipv6}, IPV6_NETWORKS)
    return kinds


BACKENDS = _registry()


def of(network: str) -> Backend:
    try:
        return BACKENDS[network]
    except KeyError:
        raise ValueError(f"network {network!r} is not supported; supported: {', '.join(BACKENDS)}") from None


def backend(state: ClusterState) -> Backend:
    return of(state.network)


def render(state: ClusterState, node: NodeState) -> NetOps:
    """The operations that give `node` a path to every other node's podCIDR."""
    return backend(state).render(state, node)
