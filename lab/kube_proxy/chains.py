"""kube-proxy's iptables chain names: the hashed per-service chains.

These follow pkg/proxy/iptables (portProtoHash, servicePortEndpointChainName) byte for byte, so a
chain in the lab has the name it would have on a real node: "default/kubernetes:https" over tcp
is KUBE-SVC-NPX46M4PTMTKRN6Y. A chain name is a prefix plus 16 base32 characters: at most 25,
under the kernel's 28.
"""
from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

SVC, SVL, EXT, FW, SEP = "KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"
SERVICE_CHAIN_PREFIXES = (SVC, SVL, EXT, FW, SEP)


@lru_cache(maxsize=65536)
def _hash16(text: str) -> str:
    """The first 16 base32 characters encode exactly the first 10 bytes: encode only those
    (base64's base32 is pure Python; a 1000-Service sync asks for 20k of these)."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()[:10]).decode()


def port_proto_hash(spn: str, protocol: str) -> str:
    """base32(sha256(spn + lowercase protocol))[:16], as kube-proxy's portProtoHash."""
    return _hash16(spn + protocol.lower())


def svc_chain(spn: str, protocol: str) -> str:
    """Dispatch to all usable endpoints (traffic policy Cluster)."""
    return SVC + port_proto_hash(spn, protocol)


def svl_chain(spn: str, protocol: str) -> str:
    """Dispatch to this node's endpoints only (traffic policy Local)."""
    return SVL + port_proto_hash(spn, protocol)


def ext_chain(spn: str, protocol: str) -> str:
    """Entry for external destinations (NodePorts, externalIPs, LB IPs): masquerade, short-circuits, then SVC or SVL."""
    return EXT + port_proto_hash(spn, protocol)


def fw_chain(spn: str, protocol: str) -> str:
    """Firewall for load-balancer IPs with loadBalancerSourceRanges: the ranges go on to EXT."""
    return FW + port_proto_hash(spn, protocol)


def sep_chain(spn: str, protocol: str, endpoint: str) -> str:
    """One endpoint ("ip:port") of a service port: hairpin masquerade and the DNAT."""
    return SEP + _hash16(spn + protocol.lower() + endpoint)


def is_service_chain(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)
