"""Endpoint references in `checks:`: `[namespace/]kind/name[:port]`, kubectl style.

Kinds are pod, deploy (alias deployment), svc (alias service), node and host; the namespace
(default "default") only means something for pods, deployments and services, so it is an error
on nodes and hosts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

from lab.topology.constants import DNS_LABEL, DNS_SUBDOMAIN

RefKind = Literal["pod", "deploy", "svc", "node", "host"]
KINDS: dict[str, RefKind] = {"pod": "pod", "deploy": "deploy", "deployment": "deploy", "svc": "svc",
                             "service": "svc", "node": "node", "host": "host"}
NAMESPACED = ("pod", "deploy", "svc")
SYNTAX = "[namespace/]kind/name[:port], e.g. pod/web, team-a/deploy/api:8080, svc/web:80, host/internet"


@dataclass(frozen=True)
class Ref:
    namespace: str
    kind: RefKind
    name: str
    port: Optional[int] = None

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.kind in NAMESPACED else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{where}{self.kind}/{self.name}{port}"


def parse_ref(text: str) -> Ref:
    """Parse an endpoint reference; ValueError says what is wrong in the user's terms."""
    body, colon, port_text = text.strip().partition(":")
    parts = body.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"'{text}' is not an endpoint reference: expected {SYNTAX}")
    *namespace, kind_text, name = parts
    kind = KINDS.get(kind_text)
    if kind is None:
        raise ValueError(f"'{text}': unknown kind '{kind_text}', use pod, deploy, svc, node or host")
    if namespace and kind not in NAMESPACED:
        raise ValueError(f"'{text}': a {kind} has no namespace, write {kind}/{name}")
    if namespace and not re.match(DNS_LABEL, namespace[0]):
        raise ValueError(f"'{text}': '{namespace[0]}' is not a valid namespace name")
    if not re.match(DNS_SUBDOMAIN, name):
        raise ValueError(f"'{text}': '{name}' is not a valid {kind} name")
    return Ref(namespace[0] if namespace else "default", kind, name, _port(text, port_text) if colon else None)


def _port(text: str, port_text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"'{text}': port '{port_text}' must be a number from 1 to 65535")
    return int(port_text)
