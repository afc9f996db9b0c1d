"""One trace: resolve, observe, predict with the endpoint really picked, compare."""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Optional

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.trace import compare, predict
from lab.trace.events import Observed
from lab.trace.target import Target, default_port, resolve


def targets(state: ClusterState, src: str, dst: str, protocol: str, namespace: str) -> tuple[Target, Target]:
    s, d = resolve(state, src, namespace), resolve(state, dst, namespace)
    if not s.netns:
        raise LabError(f"{s.name} is outside the lab: a trace starts from a pod, node/NAME or host/NAME")
    return s, replace(d, port=default_port(state, d, protocol))


def trace(state: ClusterState, src: Target, dst: Target, protocol: str,
          ready: Optional[Mapping[str, bool]] = None, observe: bool = True
          ) -> tuple[list[predict.Hop], list[compare.Row], Optional[Observed]]:
    slices = endpoint_slices(state, ready)
    hops = predict.walk(state, src, dst, protocol, slices)
    obs = None
    if observe and protocol in ("TCP", "UDP"):
        from lab.trace import observe as watch

        pods = {p.netns for p in state.pods if not p.host_network}
        on_path = [src.netns, *(n.netns for n in state.nodes), *(h.namespace for h in hops if h.namespace in pods)]
        if dst.service is not None:  # every endpoint the Service might pick
            on_path += [p.netns for p in state.pods if p.ip in {h.split(":")[0] for x in hops if x.kind == "dnat"
                                                               for h in x.expect}]
        obs = watch.observe(src.netns, dst.ip, dst.port or 0, protocol, on_path, {n.netns for n in state.nodes})
        chosen = next((compare.picked(obs, n.netns) for n in state.nodes if compare.picked(obs, n.netns)), None)
        if chosen:
            hops = predict.walk(state, src, dst, protocol, slices, picked=chosen)
        watch.lookup_routes(obs, [(h.namespace, h.expect[2]) for h in hops if h.kind == "route"])
    return hops, compare.rows(hops, obs), obs
