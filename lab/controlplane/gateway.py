"""Gateway API as the lab's Envoy controller sees it (pure), the way Envoy Gateway works.

The lab ships the GatewayClass `envoy` (controller k8s-netlab/gateway). Each Gateway of that class
gets its own Envoy dataplane, an add-on Deployment (one pod) behind a LoadBalancer Service in
`envoy-gateway-system`: an address from the lab's pool, or its node's address and NodePorts when
the lab has no pool. HTTPRoutes attach to its listeners (sectionName, port, allowedRoutes,
hostnames), their backends are resolved (ReferenceGrant for another namespace), and every object
gets the status conditions a controller writes, with the upstream reasons. The runtime
(lab.gateway) renders Envoy's configuration from the result.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Optional

from lab.controlplane.addon import AddOn
from lab.controlplane.gateway_state import (IMAGE, NAME_LABEL, NAMESPACE, NS_LABEL, GatewayClassState, GatewayCondition,
                                            GatewayState, HTTPRouteState, ListenerState, RouteBackendState,
                                            RouteFilterState, RouteMatchState, RouteParentState, RouteRuleState,
                                            host_match)
from lab.controlplane.ingress import secret_pem
from lab.controlplane.state import NodeState, PodState, ServiceState
from lab.topology.gatewayapi import (GROUP, BackendRef, Gateway, GatewayClass, HTTPRoute, Listener, ParentRef,
                                     ReferenceGrant, RouteFilter)
from lab.topology.gateway import CLASS, CONTROLLER
from lab.topology.lenient import TLS_SECRET
from lab.topology.model import Deployment, Secret, Service, Topology

HTTP_PROTOCOLS = ("HTTP", "HTTPS")


def cond(type_: str, ok: bool, reason: str, message: str = "") -> GatewayCondition:
    return GatewayCondition(type_, "True" if ok else "False", reason, message)


def classes(topo: Topology) -> dict[str, str]:
    """GatewayClass name -> controllerName: the declared ones, and `envoy` unless declared."""
    out = {m.metadata.name: m.spec.controllerName for m in topo.manifests if isinstance(m, GatewayClass)}
    out.setdefault(CLASS, CONTROLLER)
    return out


def served(topo: Topology) -> list[Gateway]:
    ours = {name for name, ctl in classes(topo).items() if ctl == CONTROLLER}
    return [m for m in topo.manifests if isinstance(m, Gateway) and m.spec.gatewayClassName in ours]


def wanted(topo: Topology) -> bool:
    return bool(served(topo))


def dataplane_name(namespace: str, name: str) -> str:
    """The Envoy Deployment's and Service's name, as Envoy Gateway names them: envoy-<ns>-<name>,
    shortened with a hash when that would not fit a Service name."""
    base = f"envoy-{namespace}-{name}"
    return base if len(base) <= 48 else f"{base[:39]}-{hashlib.sha256(base.encode()).hexdigest()[:8]}"


def port_name(protocol: str, port: int) -> str:
    return f"{protocol.lower()}-{port}"


def _ports(gw: Gateway) -> dict[int, str]:
    """Listener port -> protocol of the first HTTP(S) listener on it (what the dataplane listens on)."""
    out: dict[int, str] = {}
    for ls in gw.spec.listeners:
        if ls.protocol in HTTP_PROTOCOLS:
            out.setdefault(ls.port, ls.protocol)
    return out


def addon(topo: Topology, taken_node_ports: set[int]) -> list:
    """Per served Gateway: its Envoy Deployment, on a worker (in turn, as add-ons are pinned), and its
    LoadBalancer Service."""
    del taken_node_ports  # NodePorts are allocated from the Service's name, clear of the taken ones
    workers = [n.name for n in topo.nodes if n.role != "control-plane"] or [n.name for n in topo.nodes]
    out: list = []
    for i, gw in enumerate(served(topo)):
        ns, name = gw.metadata.namespace or "default", gw.metadata.name
        ports = _ports(gw)
        if not ports:
            continue
        dp = dataplane_name(ns, name)
        labels = {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy",
                  NAME_LABEL: name, NS_LABEL: ns}
        out.append(Deployment.model_validate({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": dp, "namespace": NAMESPACE},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
                "nodeName": workers[i % len(workers)], "containers": [{
                    "name": "envoy", "image": IMAGE,
                    "ports": [{"name": port_name(p, port), "containerPort": port} for port, p in ports.items()],
                    "readinessProbe": {"tcpSocket": {"port": next(iter(ports))}, "periodSeconds": 1}}]}}},
        }))
        out.append(Service.model_validate({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": dp, "namespace": NAMESPACE},
            "spec": {"type": "LoadBalancer", "selector": labels, "ports": [
                {"name": port_name(p, port), "port": port, "targetPort": port} for port, p in ports.items()]},
        }))
    return out


ADDON = AddOn("gateway", IMAGE, NAMESPACE, wanted, addon)  # "gateway": its controller's name (lab.gateway.runtime)


# --- hostnames ---

def _hostnames(listener: Optional[str], route: Iterable[str]) -> list[str]:
    route = list(route) or [""]
    return list(dict.fromkeys(h for h in (host_match(listener or "", r) for r in route) if h is not None))


# --- references ---

def granted(grants: list[ReferenceGrant], from_ns: str, from_kind: str, to_ns: str, to_kind: str, to_name: str,
            to_group: str = "") -> bool:
    """A ReferenceGrant in the target namespace lets `from_kind`s of `from_ns` refer to the target."""
    return any((g.metadata.namespace or "default") == to_ns
               and any(f.group == GROUP and f.kind == from_kind and f.namespace == from_ns for f in g.spec.from_)
               and any(t.group == to_group and t.kind == to_kind and t.name in (None, to_name) for t in g.spec.to)
               for g in grants)


def _backend(ns: str, ref: BackendRef, weight: int, services: dict[tuple[str, str], ServiceState],
             grants: list[ReferenceGrant]) -> RouteBackendState:
    target = ref.namespace or ns
    error = ""
    svc = services.get((target, ref.name))
    if ref.group not in ("", "core") or ref.kind != "Service":
        error = "InvalidKind"
    elif target != ns and not granted(grants, ns, "HTTPRoute", target, "Service", ref.name):
        error = "RefNotPermitted"
    elif svc is None or ref.port is None or not any(p.port == ref.port and p.protocol == "TCP" for p in svc.ports):
        error = "BackendNotFound"
    return RouteBackendState(target, ref.name, ref.port or 0, weight, error)


_BACKEND_WHY = {"InvalidKind": "only core Services are supported backends",
                "RefNotPermitted": "no ReferenceGrant in {ns} allows HTTPRoutes from {route_ns} to refer to Service {name}",
                "BackendNotFound": "Service {ns}/{name} with TCP port {port} does not exist"}


def backend_message(route_ns: str, b: RouteBackendState) -> str:
    return _BACKEND_WHY[b.error].format(ns=b.namespace, name=b.service, port=b.port or "(none given)", route_ns=route_ns)


def _filter(ns: str, f: RouteFilter, services, grants) -> RouteFilterState:
    if f.type in ("RequestHeaderModifier", "ResponseHeaderModifier"):
        h = f.requestHeaderModifier if f.type == "RequestHeaderModifier" else f.responseHeaderModifier
        if h is None:
            return RouteFilterState(f.type)
        return RouteFilterState(f.type, set=tuple((x.name, x.value) for x in h.set),
                                add=tuple((x.name, x.value) for x in h.add), remove=tuple(h.remove))
    if f.type in ("RequestRedirect", "URLRewrite"):
        r = f.requestRedirect if f.type == "RequestRedirect" else f.urlRewrite
        if r is None:
            return RouteFilterState(f.type)
        path = r.path
        value = (path.replaceFullPath if path.type == "ReplaceFullPath" else path.replacePrefixMatch) if path else None
        extra = ({"scheme": r.scheme or "", "port": r.port or 0, "status_code": r.statusCode}
                 if f.type == "RequestRedirect" else {})
        return RouteFilterState(f.type, hostname=r.hostname or "", path_type=path.type if path else "",
                                path=value if value is not None else "", **extra)
    m = f.requestMirror
    return RouteFilterState(f.type, mirror=_backend(ns, m.backendRef, 1, services, grants) if m else None)


def _rules(route: HTTPRoute, services, grants) -> tuple[RouteRuleState, ...]:
    ns = route.metadata.namespace or "default"
    return tuple(RouteRuleState(
        matches=tuple(RouteMatchState(m.path.type, m.path.value,
                                      tuple((h.type, h.name, h.value) for h in m.headers),
                                      tuple((q.type, q.name, q.value) for q in m.queryParams), m.method or "")
                      for m in rule.matches),
        filters=tuple(_filter(ns, f, services, grants) for f in rule.filters),
        backends=tuple(_backend(ns, b, b.weight, services, grants) for b in rule.backendRefs),
        timeout=rule.timeouts.request or "" if rule.timeouts else "",
        backend_timeout=rule.timeouts.backendRequest or "" if rule.timeouts else "")
        for rule in route.spec.rules)


def _resolved(route: HTTPRouteState) -> GatewayCondition:
    refs = [b for r in route.rules for b in r.backends] + [f.mirror for r in route.rules for f in r.filters if f.mirror]
    bad = next((b for b in refs if b.error), None)
    if bad is None:
        return cond("ResolvedRefs", True, "ResolvedRefs", "every backendRef resolved")
    return cond("ResolvedRefs", False, bad.error, backend_message(route.namespace, bad))


# --- listeners and attachment ---

def _allows(ls: Listener, gw_ns: str, route_ns: str, ns_labels: dict[str, dict[str, str]]) -> bool:
    kinds = ls.allowedRoutes.kinds
    if kinds and not any(k.kind == "HTTPRoute" and k.group == GROUP for k in kinds):
        return False
    rn = ls.allowedRoutes.namespaces
    if rn.from_ == "All":
        return True
    if rn.from_ == "Same":
        return route_ns == gw_ns
    want = rn.selector.matchLabels if rn.selector else {}
    have = ns_labels.get(route_ns, {})
    return all(have.get(k) == v for k, v in want.items())


def _attach(route: HTTPRoute, ref: ParentRef, gateways: dict[tuple[str, str], Gateway], ours: set[str],
            ns_labels: dict[str, dict[str, str]]) -> RouteParentState:
    ns = route.metadata.namespace or "default"
    key = (ref.namespace or ns, ref.name)
    gw = gateways.get(key)
    where = f"{key[0]}/{key[1]}"

    def refused(reason: str, message: str) -> RouteParentState:
        return RouteParentState(where, ref.sectionName or "", (), (cond("Accepted", False, reason, message),))

    if ref.group != GROUP or ref.kind != "Gateway":
        return refused("NoMatchingParent", f"parentRef kind {ref.kind} is not a Gateway")
    if gw is None:
        return refused("NoMatchingParent", f"Gateway {where} does not exist")
    if gw.spec.gatewayClassName not in ours:
        return refused("NoMatchingParent", f"Gateway {where} is of class {gw.spec.gatewayClassName}, "
                       f"which the lab's controller ({CONTROLLER}) does not serve")
    candidates = [ls for ls in gw.spec.listeners if ref.sectionName in (None, ls.name) and ref.port in (None, ls.port)
                  and ls.protocol in HTTP_PROTOCOLS]
    if not candidates:
        return refused("NoMatchingParent", f"Gateway {where} has no HTTP listener"
                       + (f" named {ref.sectionName}" if ref.sectionName else "") + (f" on port {ref.port}" if ref.port else ""))
    allowed = [ls for ls in candidates if _allows(ls, key[0], ns, ns_labels)]
    if not allowed:
        return refused("NotAllowedByListeners", f"no listener of Gateway {where} allows HTTPRoutes from namespace {ns}")
    matching = [ls for ls in allowed if _hostnames(ls.hostname, route.spec.hostnames)]
    if not matching:
        return refused("NoMatchingListenerHostname", f"no hostname of the route matches a listener of Gateway {where}")
    names = tuple(ls.name for ls in matching)
    return RouteParentState(where, ref.sectionName or "", names,
                            (cond("Accepted", True, "Accepted", f"attached to listener(s) {', '.join(names)}"),))


def routes(topo: Topology, services: Iterable[ServiceState], ns_labels: dict[str, dict[str, str]]) -> tuple[HTTPRouteState, ...]:
    """Every HTTPRoute with its parents' status and its resolved rules, in manifest order (older first,
    which is the tie-break of the upstream precedence)."""
    ours = {name for name, ctl in classes(topo).items() if ctl == CONTROLLER}
    gateways = {(m.metadata.namespace or "default", m.metadata.name): m for m in topo.manifests if isinstance(m, Gateway)}
    grants = [m for m in topo.manifests if isinstance(m, ReferenceGrant)]
    svcs = {(s.namespace, s.name): s for s in services}
    out = []
    for m in topo.manifests:
        if not isinstance(m, HTTPRoute):
            continue
        rules = _rules(m, svcs, grants)
        base = HTTPRouteState(m.metadata.namespace or "default", m.metadata.name, tuple(m.spec.hostnames), (), rules)
        resolved = _resolved(base)
        parents = tuple(RouteParentState(p.gateway, p.section, p.listeners, (*p.conditions, resolved))
                        for p in (_attach(m, ref, gateways, ours, ns_labels) for ref in m.spec.parentRefs))
        out.append(HTTPRouteState(base.namespace, base.name, base.hostnames, parents, rules))
    return tuple(out)


def _listener(gw: Gateway, ls: Listener, attached: int, secrets: dict, grants: list[ReferenceGrant]) -> ListenerState:
    ns = gw.metadata.namespace or "default"
    same_port = [o for o in gw.spec.listeners if o.port == ls.port and o is not ls]
    conds = []
    if ls.protocol not in HTTP_PROTOCOLS:
        conds.append(cond("Accepted", False, "UnsupportedProtocol",
                          f"the lab's Envoy serves HTTP and HTTPS listeners, not {ls.protocol}"))
    elif any(o.protocol != ls.protocol for o in same_port):
        conds.append(cond("Conflicted", True, "ProtocolConflict", f"another listener on port {ls.port} has another protocol"))
    elif any((o.hostname or "") == (ls.hostname or "") for o in same_port):
        conds.append(cond("Conflicted", True, "HostnameConflict", f"another listener on port {ls.port} has the same hostname"))
    else:
        conds.append(cond("Accepted", True, "Accepted"))
    secret, cert, key = "", "", ""
    if ls.protocol == "HTTPS":
        refs = ls.tls.certificateRefs if ls.tls else []
        if ls.tls and ls.tls.mode != "Terminate":
            conds.append(cond("ResolvedRefs", False, "UnsupportedValue", "only tls.mode Terminate is supported"))
        elif not refs:
            conds.append(cond("ResolvedRefs", True, "ResolvedRefs", "no certificateRefs: the lab's CA issues the certificate"))
        else:
            ref = refs[0]
            target = ref.namespace or ns
            s = secrets.get((target, ref.name))
            if ref.kind != "Secret" or ref.group not in ("", "core"):
                conds.append(cond("ResolvedRefs", False, "InvalidCertificateRef", f"{ref.kind} is not a Secret"))
            elif target != ns and not granted(grants, ns, "Gateway", target, "Secret", ref.name):
                conds.append(cond("ResolvedRefs", False, "RefNotPermitted",
                                  f"no ReferenceGrant in {target} allows Gateways from {ns} to refer to Secret {ref.name}"))
            elif s is None or not _valid_pair(secret_pem(s, "tls.crt"), secret_pem(s, "tls.key")):
                conds.append(cond("ResolvedRefs", False, "InvalidCertificateRef",
                                  f"Secret {target}/{ref.name} is not a {TLS_SECRET} Secret with a PEM certificate and "
                                  "key in tls.crt and tls.key"))
            else:
                secret, cert, key = f"{target}/{ref.name}", secret_pem(s, "tls.crt"), secret_pem(s, "tls.key")
                conds.append(cond("ResolvedRefs", True, "ResolvedRefs"))
    else:
        conds.append(cond("ResolvedRefs", True, "ResolvedRefs"))
    kinds = ls.allowedRoutes.kinds
    supported = tuple(k.kind for k in kinds if k.kind == "HTTPRoute" and k.group == GROUP) if kinds else ("HTTPRoute",)
    invalid = [f"{k.group}/{k.kind}" for k in kinds if not (k.kind == "HTTPRoute" and k.group == GROUP)]
    if invalid and ls.protocol in HTTP_PROTOCOLS:  # the upstream reason, whatever else resolved
        conds = [c for c in conds if c.type != "ResolvedRefs" or c.status == "False"]
        if not any(c.type == "ResolvedRefs" and c.status == "False" for c in conds):
            conds.append(cond("ResolvedRefs", False, "InvalidRouteKinds",
                              f"allowedRoutes.kinds names {', '.join(invalid)}: the lab's Envoy serves HTTPRoute only"))
    ok = all(c.status == "True" for c in conds if c.type != "Conflicted") and not any(c.type == "Conflicted" for c in conds)
    conds.append(cond("Programmed", ok, "Programmed" if ok else "Invalid"))
    return ListenerState(ls.name, ls.port, ls.protocol, ls.hostname or "", attached, tuple(conds), supported,
                         secret, cert, key)


def _valid_pair(cert: Optional[str], key: Optional[str]) -> bool:
    """A PEM certificate and private key that load: Envoy refuses a whole listener update over one
    that does not, so a malformed Secret must stay a condition, never reach Envoy."""
    if not cert or not key:
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        x509.load_pem_x509_certificate(cert.encode())
        serialization.load_pem_private_key(key.encode(), None)
    except (ValueError, TypeError):
        return False
    return True


def gateways(topo: Topology, services: Iterable[ServiceState], pods: Iterable[PodState], nodes: Iterable[NodeState],
             http_routes: tuple[HTTPRouteState, ...]) -> tuple[GatewayState, ...]:
    """Every Gateway of the lab's classes with its address (its Service's pool address, else its
    Envoy pod's node and NodePorts) and the conditions of it and its listeners."""
    svcs = {(s.namespace, s.name): s for s in services}
    node_ip = {n.name: n.ip for n in nodes}
    pods = list(pods)
    secrets = {(m.metadata.namespace or "default", m.metadata.name): m for m in topo.manifests if isinstance(m, Secret)}
    grants = [m for m in topo.manifests if isinstance(m, ReferenceGrant)]
    out = []
    for gw in served(topo):
        ns, name = gw.metadata.namespace or "default", gw.metadata.name
        dp = dataplane_name(ns, name)
        attached = {ls.name: sum(1 for r in http_routes for p in r.parents
                                 if p.gateway == f"{ns}/{name}" and ls.name in p.listeners) for ls in gw.spec.listeners}
        listeners = tuple(_listener(gw, ls, attached[ls.name], secrets, grants) for ls in gw.spec.listeners)
        svc = svcs.get((NAMESPACE, dp))
        pod = next((p for p in pods if p.namespace == NAMESPACE and dict(p.labels).get(NAME_LABEL) == name
                    and dict(p.labels).get(NS_LABEL) == ns), None)
        address, ports, how = "", (), ""
        if svc and svc.load_balancer_ip:
            address, ports, how = svc.load_balancer_ip, tuple((p.port, p.port) for p in svc.ports), "its LoadBalancer address"
        elif svc and pod:
            address = node_ip[pod.node]
            ports = tuple((p.port, p.node_port) for p in svc.ports if p.node_port)
            how = f"no LoadBalancer pool: node {pod.node}'s NodePorts"
        valid = any(c.type == "Programmed" and c.status == "True" for ls in listeners for c in ls.conditions)
        conds = (cond("Accepted", valid, "Accepted" if valid else "ListenersNotValid",
                      "" if valid else "no listener is valid"),
                 cond("Programmed", bool(address) and valid, "Programmed" if address and valid else
                      ("AddressNotAssigned" if not address else "Invalid"),
                      f"reached at {address} ({how})" if address else "the dataplane Service has no address"))
        out.append(GatewayState(ns, name, gw.spec.gatewayClassName, dp, listeners, conds, address, ports))
    return tuple(out)


def gateway_classes(topo: Topology) -> tuple[GatewayClassState, ...]:
    return tuple(GatewayClassState(name, ctl, (cond("Accepted", True, "Accepted", "served by the lab's Envoy controller")
                                               if ctl == CONTROLLER else
                                               cond("Accepted", False, "Pending", f"no controller {ctl} runs in the lab"),))
                 for name, ctl in sorted(classes(topo).items()))
