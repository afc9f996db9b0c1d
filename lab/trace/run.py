"""One trace: resolve, observe, predict with the endpoint really picked, compare. keep: the lab's
directory for the captures as pcap (lab.trace.saved)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping, Optional

from lab import routing
from lab.kube_proxy.runtimes import nat_flows, socket_cgroups
from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.trace import compare, predict
from lab.trace.events import Leg, Observed
from lab.trace.target import Target, default_port, in_family, resolve


def targets(state: ClusterState, src: str, dst: str, protocol: str, namespace: str,
            family: Optional[int] = None) -> tuple[Target, Target]:
    """family: of a named destination (an IP destination says its own); the source follows it."""
    if family is not None and family not in state.families:
        raise LabError(f"--family {family}: lab {state.lab} is " + " and ".join(f"IPv{f}" for f in state.families))
    s, d = resolve(state, src, namespace, family), resolve(state, dst, namespace, family)
    if not s.netns:
        raise LabError(f"{s.name} is outside the lab: a trace starts from a pod, node/NAME or host/NAME")
    if d.family == 6 and protocol == "ICMP":
        raise LabError("--protocol icmp traces IPv4 only (ICMPv6 is not built): trace TCP or UDP, or an IPv4 address")
    return in_family(state, s, d.family), replace(d, port=default_port(state, d, protocol))


def with_request(dst: Target, host: Optional[str], path: Optional[str], headers: list[str]) -> Target:
    """A Gateway destination with the HTTP request its Envoy routes (--host, --path, --header)."""
    if dst.kind != "gateway":
        raise LabError(f"--host, --path and --header describe the HTTP request a Gateway routes; {dst.name} is no Gateway")
    pairs = []
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise LabError(f"--header {h!r}: write it as 'NAME: VALUE'")
        pairs.append((name.strip(), value.strip()))
    if path is not None and not path.startswith("/"):
        raise LabError(f"--path {path!r}: a path starts with /")
    return replace(dst, http_host=host or dst.http_host, http_path=path or dst.http_path, http_headers=tuple(pairs))


def after_masquerade(state: ClusterState, hops: list[predict.Hop], dst: Target, protocol: str) -> Optional[Leg]:
    """What the probe looks like after a masquerade on its way (pure): from any address of a node
    (its underlay IP, pod gateway, tunnel address) to the destination or any endpoint the Service
    may pick, at their ports. None without a masquerade, and for ICMP (its echo id is matched
    wherever it goes)."""
    if protocol == "ICMP" or not any(h.kind == "snat" and h.expect for h in hops):
        return None
    backend = routing.backend(state)
    sources = sorted({ip for n in state.nodes for ip in backend.node_addresses(state, n.name)
                      if (":" in ip) == (dst.family == 6)})   # the probe's family only
    eps = [e for h in hops if h.kind == "dnat" for e in h.expect]
    dsts = sorted({e.rpartition(":")[0].strip("[]") for e in eps} or {dst.ip})
    ports = sorted({int(e.rpartition(":")[2]) for e in eps} or ({dst.port} if dst.port else set()))
    return Leg(tuple(sources), tuple(dsts), tuple(ports)) if ports else None


def _endpoints(hops: list[predict.Hop], kinds: tuple[str, ...] = ("dnat", "socklb", "tclb")) -> list[str]:
    """The "ip:port" endpoints the hops of these kinds may translate to (a tc hop's expect starts
    with the client's and the SNAT's addresses)."""
    return [e for h in hops if h.kind in kinds for e in (h.expect[2:] if h.kind == "tclb" else h.expect) if ":" in e]


def trace(state: ClusterState, src: Target, dst: Target, protocol: str,
          ready: Optional[Mapping[str, bool]] = None, observe: bool = True, capture: bool = True,
          keep: Optional[Path] = None, record=None) -> tuple[list[predict.Hop], list[compare.Row], Optional[Observed]]:
    slices = endpoint_slices(state, ready)
    hops = predict.walk(state, src, dst, protocol, slices)
    obs = None
    if observe and protocol in ("TCP", "UDP", "ICMP"):
        from lab.trace import observe as watch

        # the source, every node, every namespace a hop happens in (pods, hosts), every possible endpoint
        endpoints = {e.rpartition(":")[0].strip("[]") for e in _endpoints(hops)}
        on_path = [src.netns, *(n.netns for n in state.nodes), *(h.namespace for h in hops if h.namespace),
                   *(p.netns for p in state.pods if endpoints & set(p.pod_ips) and not p.host_network)]
        obs = watch.observe(src.netns, dst.ip, dst.port or 0, protocol, on_path, {n.netns for n in state.nodes},
                            leg=after_masquerade(state, hops, dst, protocol), capture=capture,
                            cgroup_dir=socket_cgroups(state).get(src.netns, ""), keep=keep)
        chosen = next((compare.picked(obs, n.netns) for n in state.nodes if compare.picked(obs, n.netns)), None)
        if not chosen and obs.server:  # proxy ebpf: no DNAT to read; the server that answered was the pick
            ip = next((p.ip for p in state.pods if obs.server in (p.name, p.uts_name)), None)
            chosen = next((e for e in _endpoints(hops, ("socklb", "tclb")) if ip and e.startswith(f"{ip}:")), None)
        if chosen:
            hops = predict.walk(state, src, dst, protocol, slices, picked=chosen)
        if record is not None and any(h.kind == "tclb" for h in hops):  # what the tc program made of the probe
            obs.nat = nat_flows(record)
        watch.lookup_routes(obs, [(h.namespace, h.expect[2]) for h in hops if h.kind == "route"])
    return hops, compare.rows(hops, obs), obs
