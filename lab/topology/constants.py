"""Numbers the topology's validation and the renderers must agree on, without pydantic: the
renderers run in commands (`lab check`, `lab down`) that never load the topology model."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Union

# Kubernetes' own name rules (apimachinery validation): DNS-1123 labels and subdomains.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 bytes
VXLAN_PORT = 8472    # flannel's UDP port (not IANA's 4789): the vxlan network's, and trace's filters for probes inside it

# Addresses of the service CIDR that no Service may ask for, as kubeadm lays them out.
KUBERNETES_SERVICE_OFFSET = 1   # the `kubernetes` Service: the first address (10.96.0.1)
KUBE_DNS_OFFSET = 10            # kube-dns: the tenth address (10.96.0.10), kubeadm's default clusterDNS


Address = Union[IPv4Address, IPv6Address]


def kubernetes_service_ip(service_cidr: IPv4Network | IPv6Network | str) -> Address:
    """In either family: 10.96.0.1, fd00:10:96::1."""
    return ip_network(service_cidr).network_address + KUBERNETES_SERVICE_OFFSET


def kube_dns_ip(service_cidr: IPv4Network | IPv6Network | str) -> Address:
    """In either family: 10.96.0.10, fd00:10:96::a."""
    return ip_network(service_cidr).network_address + KUBE_DNS_OFFSET
