"""Names the way Kubernetes makes them, but deterministic: same file, same names, every run."""
from __future__ import annotations

import ipaddress

import hashlib
import json

# apimachinery's rand.SafeEncodeString alphabet: no vowels (no accidental words), no look-alikes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _safe_encode(text: str) -> str:
    return "".join(_SAFE[b % len(_SAFE)] for b in text.encode())


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def pod_template_hash(template: dict) -> str:
    """Like the Deployment controller's pod-template-hash: fnv32a of the template, safe-encoded."""
    return _safe_encode(str(_fnv32a(json.dumps(template, sort_keys=True).encode())))


def replica_suffix(*parts: str) -> str:
    """The 5-character suffix a ReplicaSet gives its pods; derived from the parts, not random."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:5])


def deployment_pod_names(lab: str, namespace: str, deployment: str, template: dict, replicas: int) -> list[str]:
    """`<deployment>-<pod-template-hash>-<suffix>`, as `kubectl get pods` shows them."""
    return replica_names(lab, namespace, deployment, f"{deployment}-{pod_template_hash(template)}", replicas)


def replica_names(lab: str, namespace: str, owner: str, prefix: str, replicas: int) -> list[str]:
    """`<prefix>-<suffix>`: a ReplicaSet's (or DaemonSet's) pods."""
    names, seen = [], set()
    for i in range(replicas):
        salt = 0
        while True:  # a suffix collision inside one ReplicaSet is possible in principle: re-derive
            name = f"{prefix}-{replica_suffix(lab, namespace, owner, str(i), str(salt))}"
            if name not in seen:
                break
            salt += 1
        seen.add(name)
        names.append(name)
    return names


def node_netns(lab: str, node: str) -> str:
    return f"{lab}-{node}"


def pod_netns(lab: str, namespace: str, pod: str) -> str:
    return f"{lab}-{namespace}-{pod}"


def switch_name(lab: str) -> str:
    """The underlay switch lives in the root namespace, where link names are global and at most
    15 characters: a short hash of the lab name keeps two labs apart."""
    return "kn" + hashlib.sha1(lab.encode()).hexdigest()[:6]


def dpid(switch: str) -> str:
    """A switch's datapath ID, from its name: Mininet derives one from the digits in the name, and
    a name whose hash has none (kn + six letters) would have none (OVS needs them unique)."""
    return hashlib.sha1(switch.encode()).hexdigest()[:16]


def public_switch_name(lab: str) -> str:
    """The public segment's switch (behind the NAT gateway): the underlay switch's name, 'kp' for 'kn'."""
    return "kp" + switch_name(lab)[2:]


def vtep_mac(node_ip: str) -> str:
    """flannel.1's MAC, derived from the node IP so every peer can be programmed up front."""
    a, b, c, d = (int(x) for x in node_ip.split("."))
    return f"0e:6e:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def vtep_mac6(node_ip6: str) -> str:
    """flannel-v6.1's MAC, from the low 32 bits of the node's IPv6 underlay address."""
    low = int(ipaddress.IPv6Address(node_ip6)) & 0xFFFFFFFF
    return "0e:6f:" + ":".join(f"{low >> s & 0xFF:02x}" for s in (24, 16, 8, 0))


def node_mac(ip: str) -> str:
    """A machine's underlay MAC, derived from its IP (as Kubernetes' 0a:58 pod MACs are): the
    cloud-routes fabric must know where each node is before it has seen a packet."""
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}"
