"""Ingress validation: what the API server rejects is an error; what it accepts and ingress-nginx
then serves badly (a missing Service or port: 503; a class no controller watches) is a warning."""
from __future__ import annotations

import re
from typing import Optional

from lab.topology.lenient import TLS_SECRET
from lab.topology.model import Ingress, IngressBackend, IngressClass, Secret, Service, Topology

# Characters nginx.conf would read as syntax (a path is written into a location line): ingress-nginx's
# strict path validation refuses them too, and a submission must not write nginx's configuration.
NGINX_SYNTAX = re.compile(r"[\s{};\"'\\$#]")

CONTROLLER = "k8s.io/ingress-nginx"
CLASS = "nginx"                      # the IngressClass a real install creates
DEFAULT_CLASS = "ingressclass.kubernetes.io/is-default-class"


def classes(topo: Topology) -> tuple[set[str], Optional[str]]:
    """The class names ingress-nginx serves, and the default class (as the admission plugin sets it
    on an Ingress without one), if exactly one is marked."""
    declared = [m for m in topo.manifests if isinstance(m, IngressClass)]
    ours = {m.metadata.name for m in declared if m.spec.controller == CONTROLLER}
    if all(m.metadata.name != CLASS for m in declared):
        ours.add(CLASS)
    defaults = [m.metadata.name for m in declared if m.metadata.annotations.get(DEFAULT_CLASS) == "true"]
    return ours, defaults[0] if len(defaults) == 1 else None


def check(ctx) -> None:
    """ctx: lab.topology.semantics' context (manifests with their paths, error, warn)."""
    topo: Topology = ctx.topology
    ours, default = classes(topo)
    declared = {m.metadata.name: m for _, m in ctx.manifests if isinstance(m, IngressClass)}
    defaults = [p for p, m in ctx.manifests if isinstance(m, IngressClass)
                and m.metadata.annotations.get(DEFAULT_CLASS) == "true"]
    for path in defaults[1:]:
        ctx.warn(path + ("metadata", "annotations"), "a second default IngressClass: the API server then sets no "
                 "class on an Ingress without one", f"keep {DEFAULT_CLASS}: \"true\" on one class only")
    for path, m in ctx.manifests:
        if isinstance(m, IngressClass) and m.spec.controller not in (None, CONTROLLER):
            ctx.warn(path + ("spec", "controller"), f"IngressClass {m.metadata.name}: controller {m.spec.controller} "
                     "does not run in the lab; its Ingresses are not served", f"the lab runs {CONTROLLER}")
        if isinstance(m, Ingress):
            _ingress(ctx, path, m, ours, default, declared)


def _ingress(ctx, path, m: Ingress, ours: set[str], default: Optional[str], declared: dict) -> None:
    ns, spec, sp = m.metadata.namespace or "default", m.spec, path + ("spec",)
    who = f"Ingress {ns}/{m.metadata.name}"
    cls = spec.ingressClassName or default
    if cls is not None and cls not in ours:
        why = f"IngressClass {cls} does not exist" if cls not in declared else \
            f"IngressClass {cls} belongs to controller {declared[cls].spec.controller}"
        ctx.warn(sp + ("ingressClassName",) if spec.ingressClassName else path, f"{who} is not served: {why}",
                 f"the lab's ingress-nginx serves class {CLASS} and Ingresses without a class")
    if not spec.defaultBackend and not any(r.http for r in spec.rules):
        ctx.error(sp, f"{who} needs a defaultBackend or rules with http paths",
                  "add rules: [{host: NAME, http: {paths: [{path: /, pathType: Prefix, backend: ...}]}}]")
    if spec.defaultBackend:
        _backend(ctx, sp + ("defaultBackend",), ns, spec.defaultBackend)
    for i, rule in enumerate(spec.rules):
        for j, p in enumerate(rule.http.paths if rule.http else []):
            pp = sp + ("rules", i, "http", "paths", j)
            if p.path is None and p.pathType != "ImplementationSpecific":
                ctx.error(pp, f"pathType {p.pathType} needs a path", "add path: /")
            elif p.path is not None and not p.path.startswith("/"):
                ctx.error(pp + ("path",), f"path '{p.path}' must be an absolute path", f"write /{p.path}")
            elif p.path is not None and NGINX_SYNTAX.search(p.path):
                ctx.error(pp + ("path",), f"path {p.path!r} holds {NGINX_SYNTAX.search(p.path).group()!r}, which "
                          "ingress-nginx refuses (its configuration would read it as syntax)",
                          "letters, digits and / . _ ~ - % in a path")
            _backend(ctx, pp + ("backend",), ns, p.backend)
    for i, t in enumerate(spec.tls):
        _tls(ctx, sp + ("tls", i), ns, t.secretName, t.hosts)


def _backend(ctx, path, ns: str, backend: IngressBackend) -> None:
    if ctx.partial:
        return
    name, port = backend.service.name, backend.service.port
    if (port.number is None) == (port.name is None):
        ctx.error(path + ("service", "port"), "a backend port is a number or a name, exactly one", "port: {number: 80}")
        return
    svc = next((m for _, m in ctx.manifests if isinstance(m, Service) and m.metadata.name == name
                and (m.metadata.namespace or "default") == ns), None)
    if svc is None:
        ctx.warn(path + ("service", "name"), f"Service {ns}/{name} does not exist: ingress-nginx answers 503 there",
                 "an Ingress reaches Services of its own namespace")
        return
    if svc.spec.type == "ExternalName":
        ctx.warn(path + ("service", "name"), f"Service {ns}/{name} is an ExternalName: the lab's ingress-nginx "
                 "proxies to endpoints only, and answers 503 there")
    elif not any(p.port == port.number if port.number is not None else p.name == port.name for p in svc.spec.ports):
        ctx.warn(path + ("service", "port"), f"Service {ns}/{name} has no port {port.number or port.name}: "
                 "ingress-nginx answers 503 there",
                 "ports: " + ", ".join(f"{p.port}" + (f" ({p.name})" if p.name else "") for p in svc.spec.ports))


def _tls(ctx, path, ns: str, secret_name: Optional[str], hosts: list[str]) -> None:
    issued = f"the lab issues the certificate for {', '.join(hosts) or 'the Ingress hosts'} from its CA " \
             "(/run/k8s-netlab/<lab>/ca.crt)"
    if not secret_name:
        ctx.warn(path, f"no secretName: {issued}", "name a kubernetes.io/tls Secret to serve your own")
        return
    if ctx.partial:
        return
    secret = next((m for _, m in ctx.manifests if isinstance(m, Secret) and m.metadata.name == secret_name
                   and (m.metadata.namespace or "default") == ns), None)
    if secret is None:
        ctx.warn(path + ("secretName",), f"Secret {ns}/{secret_name} is not in the topology: {issued}",
                 "add the Secret (type kubernetes.io/tls, data tls.crt and tls.key) to serve your own")
    elif secret.type != TLS_SECRET or not all(k in secret.data or k in secret.stringData for k in ("tls.crt", "tls.key")):
        ctx.warn(path + ("secretName",), f"Secret {ns}/{secret_name} is not a {TLS_SECRET} Secret with tls.crt "
                 f"and tls.key: {issued}", "type: kubernetes.io/tls, data: {tls.crt: <base64 PEM>, tls.key: ...}")
