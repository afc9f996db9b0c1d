"""Ingress as the API server and an ingress-nginx install see it (pure).

A topology with Ingress or IngressClass objects gets what kind's ingress-nginx manifest installs:
the `ingress-nginx-controller` Deployment (one pod, hostPort 80 and 443 on its node, so names point
at a node as a bare-metal install does) behind a NodePort Service (30080, 30443), watching the
IngressClass `nginx` and Ingresses without a class. Which Ingresses it serves, their paths and their
certificates become IngressStates; the runtime (lab.ingress) renders nginx.conf from them.
"""
from __future__ import annotations

import base64
import binascii
from typing import Optional

from lab.controlplane.addon import AddOn
from lab.controlplane.state import ClusterState, IngressPathState, IngressState, IngressTLSState, PodState
from lab.topology.ingress import classes
from lab.topology.lenient import TLS_SECRET
from lab.topology.model import Deployment, Ingress, IngressBackend, IngressClass, Secret, Service, Topology

NAMESPACE = "ingress-nginx"
NAME = "ingress-nginx-controller"
IMAGE = "ingress-nginx"              # the container runs Debian's nginx (lab.ingress.runtime)
LABELS = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
NODE_PORTS = {"http": 30080, "https": 30443}
HTTP, HTTPS = 80, 443


def wanted(topo: Topology) -> bool:
    return any(isinstance(m, (Ingress, IngressClass)) for m in topo.manifests)


def served(topo: Topology, ing: Ingress) -> bool:
    """ingress-nginx's own class, or no class at all (kind's install: --watch-ingress-without-class)."""
    ours, default = classes(topo)
    cls = ing.spec.ingressClassName or default
    return cls is None or cls in ours


def secret_pem(secret: Secret, key: str) -> Optional[str]:
    """tls.crt or tls.key as PEM text: stringData wins over data (base64), as the API server merges them."""
    if key in secret.stringData:
        return secret.stringData[key]
    if key in secret.data:
        try:
            return base64.b64decode(secret.data[key], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def _path(host: str, path: str, path_type: str, backend: IngressBackend) -> IngressPathState:
    port = backend.service.port
    return IngressPathState(host, path, "Exact" if path_type == "Exact" else "Prefix", backend.service.name,
                            str(port.number) if port.number is not None else port.name or "")


def states(topo: Topology) -> tuple[IngressState, ...]:
    secrets = {(m.metadata.namespace or "default", m.metadata.name): m for m in topo.manifests
               if isinstance(m, Secret) and m.type == TLS_SECRET}
    out = []
    for m in topo.manifests:
        if not isinstance(m, Ingress) or not served(topo, m):
            continue
        ns, spec = m.metadata.namespace or "default", m.spec
        paths = tuple(_path(r.host or "", p.path or "/", p.pathType, p.backend)
                      for r in spec.rules if r.http for p in r.http.paths)
        tls = []
        for t in spec.tls:
            s = secrets.get((ns, t.secretName or ""))
            cert, key = (secret_pem(s, "tls.crt"), secret_pem(s, "tls.key")) if s else (None, None)
            tls.append(IngressTLSState(tuple(t.hosts), t.secretName or "", cert or "", key or "")
                       if cert and key else IngressTLSState(tuple(t.hosts), t.secretName or ""))
        default = _path("", "/", "Prefix", spec.defaultBackend) if spec.defaultBackend else None
        out.append(IngressState(ns, m.metadata.name, paths, default, tuple(tls)))
    return tuple(out)


def addon(topo: Topology, taken_node_ports: set[int]) -> list:
    """The controller's Deployment and Service, on the first control-plane node (kind pins it to
    its control plane), or none when the topology has no Ingress or IngressClass."""
    if not wanted(topo):
        return []
    node = next((n.name for n in topo.nodes if n.role == "control-plane"), topo.nodes[0].name)
    deployment = Deployment.model_validate({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": LABELS}, "template": {"metadata": {"labels": LABELS}, "spec": {
            "nodeName": node, "containers": [{
                "name": "controller", "image": IMAGE,
                "ports": [{"name": "http", "containerPort": HTTP, "hostPort": HTTP},
                          {"name": "https", "containerPort": HTTPS, "hostPort": HTTPS}],
                "readinessProbe": {"tcpSocket": {"port": HTTP}, "periodSeconds": 1}}]}}},
    })
    service = Service.model_validate({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"type": "NodePort", "selector": LABELS, "ports": [
            {"name": name, "port": port, "targetPort": name,
             **({} if NODE_PORTS[name] in taken_node_ports else {"nodePort": NODE_PORTS[name]})}
            for name, port in (("http", HTTP), ("https", HTTPS))]},
    })
    return [deployment, service]


ADDON = AddOn("ingress-nginx", IMAGE, NAMESPACE, wanted, addon)


def controller(state: ClusterState) -> Optional[PodState]:
    return next((p for p in state.pods if any(c.image == IMAGE for c in p.containers)), None)


def entry(state: ClusterState) -> Optional[str]:
    """The address the outside world reaches the controller at on ports 80 and 443 (its hostPorts):
    its node's; where the lab's outside resolver points every Ingress host."""
    pod = controller(state)
    return state.node(pod.node).ip if pod else None


def hosts(state: ClusterState) -> list[str]:
    """Every host name the Ingresses serve (wildcards have no single name to publish)."""
    names = [p.host for i in state.ingresses for p in i.paths] + [h for i in state.ingresses for t in i.tls for h in t.hosts]
    return sorted({h for h in names if h and not h.startswith("*")})
