"""The cluster DNS add-on, as the API server holds it: a kube-dns Deployment of one pod (dnsmasq,
lab.dns.runtime) and its Service at the tenth address of the serviceCIDR, as kubeadm and kind install
CoreDNS (on the first node, labelled k8s-app=kube-dns). Pure.

Its names are read on `lab check`'s path, which must not load the topology model (pydantic):
`objects` imports the model when it plans, not this module.
"""
from __future__ import annotations

from lab.controlplane.addon import AddOn
from lab.topology.constants import kube_dns_ip

NAME = "kube-dns"            # the Deployment, the Service and the controller's registered name
NAMESPACE = "kube-system"
IMAGE = "kube-dns"           # the container runs dnsmasq (lab.dns.runtime)
LABELS = {"k8s-app": "kube-dns"}


def wanted(topo) -> bool:
    return topo.cluster.dns.enabled


def objects(topo, taken_node_ports: set[int]) -> list:
    """The Deployment and its Service, or none when the topology turns cluster DNS off."""
    from lab.topology.model import Deployment, Pod, Service

    del taken_node_ports  # a ClusterIP Service: no NodePort
    if not wanted(topo):
        return []
    pod = Pod.model_validate({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
        "spec": {"nodeName": topo.nodes[0].name, "dnsPolicy": "Default", "containers": [{
            "name": "dnsmasq", "image": IMAGE,
            "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                      {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
            "readinessProbe": {"tcpSocket": {"port": 53}, "periodSeconds": 1}}]},
    })
    deployment = Deployment.model_validate({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"replicas": 1, "selector": {"matchLabels": LABELS},
                 "template": {"metadata": {"labels": LABELS}, "spec": pod.spec.model_dump()}},
    })
    service = Service.model_validate({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"clusterIP": str(kube_dns_ip(topo.cluster.serviceCIDR[0])), "selector": LABELS,
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]},
    })
    return [deployment, service]


ADDON = AddOn(NAME, IMAGE, NAMESPACE, wanted, objects)
