"""The add-on registry: what the lab installs in the cluster by itself, in the order the plan adds
it (that order places the pods and hands out the ClusterIPs, so it stays). Pure.

The plan asks here and names no add-on; each add-on is one value in its own module (AddOn), and its
controller names it in its registration (lab.runtime.controllers checks that the two registries
agree). The images must be exactly lab/topology/kinds.py ADDON_IMAGES (checked at import).
"""
from __future__ import annotations

from lab.controlplane import gateway, ingress, kube_dns
from lab.controlplane.addon import AddOn
from lab.topology.kinds import ADDON_IMAGES, check_registry

ADDONS: tuple[AddOn, ...] = (
    kube_dns.ADDON,   # cluster DNS (kube-dns, dnsmasq)
    ingress.ADDON,    # ingress-nginx, when there are Ingresses
    gateway.ADDON,    # an Envoy per Gateway of the lab's class
)
check_registry("add-on images (lab/controlplane/addons.py)", {a.image: a for a in ADDONS}, ADDON_IMAGES)


def objects(topo) -> list:
    """Every add-on's Deployments and Services, clear of the NodePorts the user's Services took."""
    from lab.topology.model import Service

    taken = {p.nodePort for m in topo.manifests if isinstance(m, Service) for p in m.spec.ports if p.nodePort}
    return [m for a in ADDONS for m in a.objects(topo, taken)]


def namespaces(topo) -> list[str]:
    """The namespaces the wanted add-ons live in, in registration order."""
    return [a.namespace for a in ADDONS if a.wanted(topo)]
