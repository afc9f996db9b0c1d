"""Gateway API validation: what the API server's CRD validation (CEL rules) rejects is an error;
what it accepts and the controller then reports in status (a missing Service, a reference no
ReferenceGrant allows, a Gateway of another class) is a warning naming the condition it gives."""
from __future__ import annotations

import re

from lab.topology.gatewayapi import GROUP, Gateway, GatewayClass, HTTPRoute, ReferenceGrant
from lab.topology.model import Service, Topology

CONTROLLER = "k8s-netlab/gateway"   # the lab's Envoy controller (lab.controlplane.gateway)
CLASS = "envoy"                     # the GatewayClass the lab ships
_FIELD = {"RequestHeaderModifier": "requestHeaderModifier", "ResponseHeaderModifier": "responseHeaderModifier",
          "RequestRedirect": "requestRedirect", "URLRewrite": "urlRewrite", "RequestMirror": "requestMirror"}


def check(ctx) -> None:
    """ctx: lab.topology.semantics' context (manifests with their paths, error, warn)."""
    topo: Topology = ctx.topology
    ours = {m.metadata.name for _, m in ctx.manifests if isinstance(m, GatewayClass) and m.spec.controllerName == CONTROLLER}
    if not any(isinstance(m, GatewayClass) and m.metadata.name == CLASS for _, m in ctx.manifests):
        ours.add(CLASS)
    gateways = {(m.metadata.namespace or "default", m.metadata.name): m for _, m in ctx.manifests if isinstance(m, Gateway)}
    for path, m in ctx.manifests:
        if isinstance(m, GatewayClass) and m.spec.controllerName != CONTROLLER:
            ctx.warn(path + ("spec", "controllerName"), f"GatewayClass {m.metadata.name}: controller "
                     f"{m.spec.controllerName} does not run in the lab; its Gateways are not served",
                     f"the lab runs {CONTROLLER} (class {CLASS})")
        elif isinstance(m, Gateway):
            _gateway(ctx, path, m, ours)
        elif isinstance(m, HTTPRoute):
            _route(ctx, path, m, gateways, topo)


def _gateway(ctx, path, m: Gateway, ours: set[str]) -> None:
    sp = path + ("spec",)
    if m.spec.gatewayClassName not in ours:
        ctx.warn(sp + ("gatewayClassName",), f"Gateway {m.metadata.name} is not served: class "
                 f"{m.spec.gatewayClassName} is not the lab's", f"gatewayClassName: {CLASS}")
    seen: dict[str, int] = {}
    for i, ls in enumerate(m.spec.listeners):
        lp = sp + ("listeners", i)
        if ls.name in seen:
            ctx.error(lp + ("name",), f"listener name {ls.name} is used twice", "give every listener its own name")
        seen[ls.name] = i
        if ls.protocol == "TLS" and ls.tls is None:
            ctx.error(lp, "a TLS listener needs tls", "tls: {mode: Passthrough}")
        if ls.protocol == "HTTP" and ls.tls is not None:
            ctx.error(lp + ("tls",), "an HTTP listener takes no tls", "protocol: HTTPS, or remove tls")
        if ls.protocol not in ("HTTP", "HTTPS"):
            ctx.warn(lp + ("protocol",), f"listener {ls.name}: protocol {ls.protocol} is not served by the lab's Envoy "
                     "(Accepted False, UnsupportedProtocol)", "protocol: HTTP or HTTPS")
        if ls.protocol == "HTTPS" and not (ls.tls and ls.tls.certificateRefs):
            ctx.warn(lp, f"listener {ls.name}: no certificateRefs: the lab's CA issues its certificate "
                     "(/run/k8s-netlab/<lab>/ca.crt)", "name a kubernetes.io/tls Secret to serve your own")
        ns = ls.allowedRoutes.namespaces
        if (ns.from_ == "Selector") != (ns.selector is not None):
            ctx.error(lp + ("allowedRoutes", "namespaces"), "a selector goes with from: Selector, and only with it",
                      "namespaces: {from: Selector, selector: {matchLabels: {team: a}}}")


def _route(ctx, path, m: HTTPRoute, gateways: dict, topo: Topology) -> None:
    ns, sp = m.metadata.namespace or "default", path + ("spec",)
    who = f"HTTPRoute {ns}/{m.metadata.name}"
    if not m.spec.parentRefs:
        ctx.warn(sp, f"{who} has no parentRefs: it attaches to no Gateway", "parentRefs: [{name: GATEWAY}]")
    for i, ref in enumerate(m.spec.parentRefs):
        key = (ref.namespace or ns, ref.name)
        if ref.group == GROUP and ref.kind == "Gateway" and key not in gateways and not ctx.partial:
            ctx.warn(sp + ("parentRefs", i, "name"), f"Gateway {key[0]}/{key[1]} does not exist: {who} is not "
                     "Accepted there (NoMatchingParent)", "name a Gateway of the topology")
    for i, rule in enumerate(m.spec.rules):
        rp = sp + ("rules", i)
        types = [f.type for f in rule.filters]
        if "RequestRedirect" in types and "URLRewrite" in types:
            ctx.error(rp + ("filters",), "RequestRedirect and URLRewrite cannot both be in one rule",
                      "keep one of them")
        if "RequestRedirect" in types and rule.backendRefs:
            ctx.error(rp + ("backendRefs",), "a rule with a RequestRedirect takes no backendRefs", "remove backendRefs")
        for t in ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"):
            if types.count(t) > 1:
                ctx.error(rp + ("filters",), f"{t} appears twice in one rule", "merge them into one")
        for j, f in enumerate(rule.filters):
            _filter(ctx, rp + ("filters", j), f, rule.matches)
        for j, match in enumerate(rule.matches):
            mp = rp + ("matches", j)
            if match.path.type != "RegularExpression" and not match.path.value.startswith("/"):
                ctx.error(mp + ("path", "value"), f"path {match.path.value!r} must start with /", f"/{match.path.value}")
            for kind, values in (("path", [match.path] if match.path.type == "RegularExpression" else []),
                                 ("headers", [h for h in match.headers if h.type == "RegularExpression"]),
                                 ("queryParams", [q for q in match.queryParams if q.type == "RegularExpression"])):
                for v in values:
                    try:
                        re.compile(v.value)
                    except re.error as e:
                        ctx.error(mp + (kind,), f"regular expression {v.value!r} does not compile: {e}",
                                  "Envoy reads RE2 syntax: no look-arounds or back-references")
        for j, b in enumerate(rule.backendRefs):
            _backend(ctx, rp + ("backendRefs", j), ns, b, topo)


def _filter(ctx, path, f, matches) -> None:
    given = [k for k in _FIELD.values() if getattr(f, k) is not None]
    if given != [_FIELD[f.type]]:
        ctx.error(path, f"a {f.type} filter needs its {_FIELD[f.type]} field and no other",
                  f"{{type: {f.type}, {_FIELD[f.type]}: {{...}}}}")
        return
    mod = getattr(f, _FIELD[f.type])
    p = getattr(mod, "path", None)
    if p is not None:
        value = p.replaceFullPath if p.type == "ReplaceFullPath" else p.replacePrefixMatch
        if value is None:
            ctx.error(path, f"path type {p.type} needs its {p.type[0].lower() + p.type[1:]} value", "e.g. /new")
        if p.type == "ReplacePrefixMatch" and any(m.path.type != "PathPrefix" for m in matches):
            ctx.error(path, "ReplacePrefixMatch needs every match of the rule to be a PathPrefix",
                      "match with path: {type: PathPrefix, value: /old}")


def _backend(ctx, path, ns: str, b, topo: Topology) -> None:
    if b.kind != "Service" or b.group not in ("", "core"):
        ctx.warn(path + ("kind",), f"backend kind {b.group}/{b.kind} is not supported: its requests get a 500 "
                 "(ResolvedRefs False, InvalidKind)", "backendRefs name Services")
        return
    if ctx.partial:
        return
    target = b.namespace or ns
    if b.port is None:
        ctx.error(path, "a Service backendRef needs a port", "port: 80")
        return
    svc = next((m for _, m in ctx.manifests if isinstance(m, Service) and m.metadata.name == b.name
                and (m.metadata.namespace or "default") == target), None)
    if svc is None or not any(p.port == b.port for p in svc.spec.ports):
        ctx.warn(path, f"Service {target}/{b.name} with port {b.port} does not exist: its share of requests gets a 500 "
                 "(ResolvedRefs False, BackendNotFound)", "name a Service port of the topology")
    elif target != ns and not any(
            isinstance(m, ReferenceGrant) and (m.metadata.namespace or "default") == target
            and any(x.group == GROUP and x.kind == "HTTPRoute" and x.namespace == ns for x in m.spec.from_)
            and any(t.group == "" and t.kind == "Service" and t.name in (None, b.name) for t in m.spec.to)
            for _, m in ctx.manifests):
        ctx.warn(path + ("namespace",), f"no ReferenceGrant in {target} lets HTTPRoutes of {ns} use Service {b.name}: "
                 "its share of requests gets a 500 (ResolvedRefs False, RefNotPermitted)",
                 f"add a ReferenceGrant in {target}: from [{{group: {GROUP}, kind: HTTPRoute, namespace: {ns}}}], "
                 f"to [{{group: \"\", kind: Service, name: {b.name}}}]")
