"""The fault vocabulary (kinds, targets, params), validation without a lab, the Fault record, and
plan(): what was observed in, apply and undo operations out."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any, Optional

from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.faults import ops, plans, targets


@dataclass(frozen=True)
class Param:
    type: str                 # int | float | choice | node | cidr | tc (a tc rate, size or time: 1mbit, 32kb, 50ms)
    help: str
    default: Any = None       # None and not required: optional
    required: bool = False
    choices: tuple[str, ...] = ()
    low: float = 0
    high: float = 1e9


@dataclass(frozen=True)
class KindInfo:
    help: str
    targets: tuple[str, ...]
    params: dict[str, Param] = field(default_factory=dict)


_DEV = Param("choice", "the node's link (default its underlay eth0)", choices=("eth0", "cni0", "flannel.1", "flannel-v6.1"))
_SIDE = Param("choice", "pod: its eth0 (default); host: the host-side veth (the bridge port)", choices=("pod", "host"))
_TO = Param("node", "node/OTHER: the route to that node's podCIDR")
_CIDR = Param("cidr", "the route to this CIDR instead (IPv4 or IPv6)")
_FAMILY = Param("choice", "with to=/via=: that node's podCIDR of this IP family (default the cluster's primary)",
                choices=("4", "6"))
_LINK = {"dev": _DEV, "side": _SIDE}
_SYSCTL = ("ip_forward", "rp_filter", "bridge-nf-call-iptables")

KINDS: dict[str, KindInfo] = {
    "link-down": KindInfo("set a link down (clear: up again, with the routes and neighbours the kernel dropped)",
                          ("node", "pod"), _LINK),
    "link-flap": KindInfo("set a link down and up COUNT times, PERIOD seconds each; blocks while it runs",
                          ("node", "pod"), {**_LINK, "count": Param("int", "times down and up", 3, low=1, high=1000),
                                            "period": Param("float", "seconds per down+up", 1.0, low=0.01, high=60)}),
    "route-delete": KindInfo("delete the node's route to a podCIDR (to=node/X) or to cidr=", ("node",),
                             {"to": _TO, "cidr": _CIDR, "family": _FAMILY}),
    "route-blackhole": KindInfo("replace the node's route to a podCIDR (to=node/X) or cidr= by a blackhole", ("node",),
                                {"to": _TO, "cidr": _CIDR, "family": _FAMILY}),
    "route-wrong": KindInfo("route X's podCIDR through node Y on this node", ("node",),
                            {"to": Param("node", "node/X: whose podCIDR", required=True),
                             "via": Param("node", "node/Y: the wrong next hop", required=True), "family": _FAMILY}),
    "drop": KindInfo("drop a protocol (and port) on a link with the lab's own nft table (e.g. proto=udp port=8472: VXLAN)",
                     ("node", "pod"), {"proto": Param("choice", "what to drop", required=True, choices=("udp", "tcp", "icmp")),
                                       "port": Param("int", "destination port (udp, tcp)", low=1, high=65535),
                                       "direction": Param("choice", "in, out or both", "both", choices=("in", "out", "both")),
                                       "dev": _DEV}),
    "forward-drop": KindInfo("iptables -P FORWARD DROP in the node (kubernetes#40182)", ("node",)),
    "mtu": KindInfo("set a link's MTU: node/NAME (dev=), pod/NAME's eth0, or overlay[/NODE] (the VXLAN device)",
                    ("node", "pod", "overlay"), {"value": Param("int", "the MTU", required=True, low=68, high=65535),
                                                 "dev": _DEV}),
    "sysctl": KindInfo("set a sysctl in the node's namespace", ("node",),
                       {"name": Param("choice", "which", required=True, choices=_SYSCTL),
                        "value": Param("int", "the value", required=True, low=0, high=2)}),
    "ip-forward-off": KindInfo("net.ipv4.ip_forward=0 in the node: its pods are islands", ("node",)),
    "rp-filter-strict": KindInfo("net.ipv4.conf.all.rp_filter=1 (strict reverse-path filter) in the node", ("node",)),
    "bridge-nf-off": KindInfo("net.bridge.bridge-nf-call-iptables=0 in the node: bridged traffic skips iptables",
                              ("node",)),
    "hairpin-off": KindInfo("hairpin mode off on the pod's bridge port (kubernetes#13375); cni: bridge only", ("pod",)),
    "rate": KindInfo("limit what a link sends with tbf", ("node", "pod"),
                     {"rate": Param("tc", "e.g. 1mbit", required=True), "burst": Param("tc", "bucket size", "32kb"),
                      "latency": Param("tc", "longest wait in the queue", "50ms"), "dev": _DEV}),
    "loss": KindInfo("drop PERCENT of the packets a link sends and receives (nft numgen random)", ("node", "pod"),
                     {"percent": Param("int", "1-100", required=True, low=1, high=100), "dev": _DEV}),
    "delay": KindInfo("delay what a link sends with netem (needs sch_netem in the kernel)", ("node", "pod"),
                      {"delay": Param("tc", "e.g. 100ms", required=True), "jitter": Param("tc", "e.g. 10ms"), "dev": _DEV}),
    "stop": KindInfo("SIGSTOP: a pod's containers (pod/NAME[/CONTAINER]), kube-dns, the lab's agent (its rules go "
                     "stale), or node/NAME's FRR bgpd (clear: SIGCONT)", ("pod", targets.KUBE_DNS, "agent", "node")),
    "kill": KindInfo("SIGKILL a pod's containers, kube-dns, or the lab's agent (nothing follows readiness any more; "
                     "clear: started again, a new agent re-syncs everything)", ("pod", targets.KUBE_DNS, "agent")),
    "bgp-peer-as": KindInfo("misconfigure a BGP neighbour's remote-as through vtysh", ("node",),
                            {"peer": Param("node", "node/OTHER", required=True), "as": Param("int", "the wrong AS", required=True,
                                                                                           low=1, high=4294967295)}),
}
_TC = re.compile(r"^\d+(\.\d+)?[a-z]*$")


def _coerce(p: Param, name: str, value: Any) -> tuple[Any, Optional[str]]:
    """(the typed value, None) or (None, what is wrong with a hint)."""
    text = str(value)
    try:
        if p.type in ("int", "float"):
            v = int(text) if p.type == "int" else float(text)
            if not p.low <= v <= p.high:
                return None, f"{name}={text} is out of range ({p.low:g}-{p.high:g})"
            return v, None
        if p.type == "choice":
            return (text, None) if text in p.choices else (None, f"{name}={text}: choose one of {', '.join(p.choices)}")
        if p.type == "node":
            t = targets.parse(text)
            return (text, None) if t.kind == "node" else (None, f"{name}={text}: give node/NAME")
        if p.type == "cidr":
            return str(ip_network(text, strict=False)), None
        return (text, None) if _TC.match(text) else (None, f"{name}={text}: give a number with a tc unit, e.g. 1mbit, 32kb, 50ms")
    except ValueError:
        return None, f"{name}={text} is not a valid {p.type}" + (" (e.g. node/worker1)" if p.type == "node" else "")


def normalize(kind: str, target: str, params: dict) -> tuple[dict, list[str]]:
    """The params with defaults and types, and every problem with the spec (pure: no lab needed)."""
    info = KINDS.get(kind)
    if info is None:
        return {}, [f"unknown fault kind {kind!r}; kinds: {', '.join(KINDS)} (`lab fault kinds` explains each)"]
    problems = []
    try:
        t = targets.parse(target)
        if t.kind not in info.targets:
            problems.append(f"{kind} cannot target {target!r}: it takes {' or '.join(info.targets)}")
        elif t.container and kind not in ("stop", "kill"):
            problems.append(f"{kind} acts on a pod's network, not a container: give pod/NAME without /{t.container}")
    except ValueError as e:
        problems.append(str(e))
    out: dict = {}
    for name, value in params.items():
        if name not in info.params:
            problems.append(f"{kind} has no parameter {name!r}; it takes: {', '.join(info.params) or 'none'}")
            continue
        v, bad = _coerce(info.params[name], name, value)
        problems += [bad] if bad else []
        out[name] = v
    for name, p in info.params.items():
        if name not in out:
            if p.required:
                problems.append(f"{kind} needs {name}= ({p.help})")
            elif p.default is not None:
                out[name] = p.default
    problems += _relations(kind, out, params)
    return out, problems


def _relations(kind: str, p: dict, given: dict) -> list[str]:
    if kind in ("route-delete", "route-blackhole") and ("to" in p) == ("cidr" in p):
        return [f"{kind} needs exactly one of to=node/X or cidr=CIDR"]
    if kind == "drop" and p.get("port") is not None and p.get("proto") == "icmp":
        return ["drop: port= goes with proto=udp or tcp, not icmp"]
    if kind == "route-wrong" and p.get("to") and p.get("to") == p.get("via"):
        return ["route-wrong: to= and via= must be different nodes"]
    return []


def validate(kind: str, target: str, params: dict) -> list[str]:
    """Every problem with a fault spec, as text with a hint; [] when it can be tried on a lab."""
    return normalize(kind, target, params)[1]


def _checked(kind: str, target: str, params: dict) -> dict:
    typed, problems = normalize(kind, target, params)
    if problems:
        raise LabError("; ".join(problems))
    return typed


def reads(state: ClusterState, kind: str, target: str, params: dict) -> list[tuple]:
    """What the executor must look at before plan() (old routes, MTUs, policies, sysctls, PIDs)."""
    return plans.reads(state, kind, targets.parse(target), _checked(kind, target, params))


@dataclass(frozen=True)
class Step:
    apply: tuple
    undo: tuple           # undoes this step's apply


@dataclass(frozen=True)
class FaultPlan:
    steps: tuple[Step, ...]
    blocking: bool = False   # link-flap: recorded only while it runs

    @property
    def undo(self) -> list:
        """Every step's undo, last step first."""
        return [ops.normal(op) for s in reversed(self.steps) for op in s.undo]


def plan(state: ClusterState, kind: str, target: str, params: dict, observed: dict, fault_id: str = "f0") -> FaultPlan:
    """Apply and undo operations for a fault; observed: what reads() asked for, keyed by ops.key.
    LabError when the lab cannot take it (no such node, a kernel without the feature, ...)."""
    typed = _checked(kind, target, params)
    steps, blocking = plans.plan(state, kind, targets.parse(target), typed, observed, fault_id)
    return FaultPlan(tuple(Step(tuple(a), tuple(u)) for a, u in steps), blocking)


@dataclass(frozen=True)
class Fault:
    id: str
    kind: str
    target: str
    params: dict
    undo: list
    applied_at: float

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "target": self.target, "params": dict(self.params),
                "undo": [list(op) for op in self.undo], "applied_at": self.applied_at}

    @classmethod
    def from_dict(cls, d: dict) -> "Fault":
        return cls(d["id"], d["kind"], d["target"], dict(d["params"]), [ops.normal(op) for op in d["undo"]],
                   d["applied_at"])


def next_id(faults: list[Fault]) -> str:
    """f1, f2, ... in order: one more than the highest id still active."""
    return f"f{max((int(f.id[1:]) for f in faults), default=0) + 1}"
