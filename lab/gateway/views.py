"""`lab get gatewayclasses|gateways|httproutes`: kubectl's columns and the objects' shape, with the
status a controller writes. Gateway Programmed also needs its Envoy pod ready (as Envoy Gateway
waits for its proxy Deployment): a dataplane still starting says so."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Mapping, Optional

from lab.controlplane import gateway, gateway_state
from lab.controlplane.gateway_state import GatewayCondition, GatewayState, HTTPRouteState, RouteBackendState
from lab.controlplane.state import ClusterState
from lab.topology.gatewayapi import API, GROUP
from lab.views import age

def _age(created: float) -> str:
    return age(time.time() - created)


def live(state: ClusterState, gw: GatewayState, pod_ready: Mapping[str, bool]) -> GatewayState:
    """The Gateway with Programmed False while its Envoy pod is not ready."""
    pod = gateway_state.dataplane(state, gw)
    if pod is None or pod_ready.get(pod.key, False):
        return gw
    conds = tuple(GatewayCondition("Programmed", "False", "Pending", f"the Envoy pod {pod.key} is not ready")
                  if c.type == "Programmed" else c for c in gw.conditions)
    return replace(gw, conditions=conds)


def _status(conds, kind: str) -> str:
    return next((c.status for c in conds if c.type == kind), "Unknown")


def rows(kind: str, state: ClusterState, pod_ready: Mapping[str, bool], created: float, namespace: Optional[str], wide: bool):
    ns_col = ["NAMESPACE"] if namespace is None else []

    def mine(obj) -> bool:
        return namespace is None or obj.namespace == namespace

    if kind == "gatewayclasses":
        return (["NAME", "CONTROLLER", "ACCEPTED", "AGE"],
                [[c.name, c.controller, _status(c.conditions, "Accepted"), _age(created)] for c in state.gateway_classes])
    if kind == "gateways":
        header = ns_col + ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"] + (["PORTS", "DATAPLANE"] if wide else [])
        out = []
        for g in (live(state, g, pod_ready) for g in state.gateways if mine(g)):
            row = ([g.namespace] if namespace is None else []) + [
                g.name, g.class_name, g.address or "<pending>", _status(g.conditions, "Programmed"), _age(created)]
            if wide:
                row += [",".join(f"{lp}" if lp == rp else f"{lp}:{rp}" for lp, rp in g.ports) or "<none>",
                        f"{gateway.NAMESPACE}/{g.service}"]
            out.append(row)
        return header, out
    header = ns_col + ["NAME", "HOSTNAMES", "AGE"] + (["PARENTS", "ACCEPTED", "RESOLVEDREFS"] if wide else [])
    out = []
    for r in (r for r in state.http_routes if mine(r)):
        row = ([r.namespace] if namespace is None else []) + [r.name, ",".join(r.hostnames) or "*", _age(created)]
        if wide:
            row += [",".join(p.gateway for p in r.parents) or "<none>",
                    ",".join(_status(p.conditions, "Accepted") for p in r.parents) or "-",
                    ",".join(_status(p.conditions, "ResolvedRefs") for p in r.parents) or "-"]
        out.append(row)
    return header, out


def _conditions(conds) -> list[dict]:
    return [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message} for c in conds]


def _backend(b: RouteBackendState) -> dict:
    return {"name": b.service, "namespace": b.namespace, "port": b.port, "weight": b.weight}


def objects(kind: str, state: ClusterState, pod_ready: Mapping[str, bool], namespace: Optional[str]) -> list[dict]:
    def mine(obj) -> bool:
        return namespace is None or obj.namespace == namespace

    if kind == "gatewayclasses":
        return [{"apiVersion": API, "kind": "GatewayClass", "metadata": {"name": c.name},
                 "spec": {"controllerName": c.controller}, "status": {"conditions": _conditions(c.conditions)}}
                for c in state.gateway_classes]
    if kind == "gateways":
        return [_gateway(live(state, g, pod_ready)) for g in state.gateways if mine(g)]
    return [_route(r) for r in state.http_routes if mine(r)]


def _gateway(g: GatewayState) -> dict:
    listeners = [{"name": ls.name, "port": ls.port, "protocol": ls.protocol, **({"hostname": ls.hostname} if ls.hostname else {})}
                 for ls in g.listeners]
    return {"apiVersion": API, "kind": "Gateway", "metadata": {"name": g.name, "namespace": g.namespace},
            "spec": {"gatewayClassName": g.class_name, "listeners": listeners},
            "status": {"addresses": [{"type": "IPAddress", "value": g.address}] if g.address else [],
                       "conditions": _conditions(g.conditions),
                       "listeners": [{"name": ls.name, "attachedRoutes": ls.attached_routes,
                                      "supportedKinds": [{"group": GROUP, "kind": k} for k in ls.supported_kinds],
                                      "conditions": _conditions(ls.conditions)} for ls in g.listeners]}}


def _route(r: HTTPRouteState) -> dict:
    rules = [{"matches": [{"path": {"type": m.path_type, "value": m.path},
                           **({"headers": [{"type": t, "name": n, "value": v} for t, n, v in m.headers]} if m.headers else {}),
                           **({"queryParams": [{"type": t, "name": n, "value": v} for t, n, v in m.query]} if m.query else {}),
                           **({"method": m.method} if m.method else {})} for m in rule.matches],
              **({"filters": [{"type": f.type} for f in rule.filters]} if rule.filters else {}),
              "backendRefs": [_backend(b) for b in rule.backends]} for rule in r.rules]
    parents = [{"parentRef": {"name": p.gateway.split("/")[1], "namespace": p.gateway.split("/")[0],
                              **({"sectionName": p.section} if p.section else {})},
                "controllerName": gateway.CONTROLLER, "conditions": _conditions(p.conditions)} for p in r.parents]
    return {"apiVersion": API, "kind": "HTTPRoute", "metadata": {"name": r.name, "namespace": r.namespace},
            "spec": {"hostnames": list(r.hostnames), "rules": rules}, "status": {"parents": parents}}
