"""The neutral graph both writers draw: boxes, boxes grouped in clusters, and labelled links.

Kinds, not colours: each writer styles a kind its own way, so mermaid and DOT show the same
picture. Ids are safe identifiers in both languages (letters, digits, underscores, unique).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Box:
    id: str
    lines: tuple[str, ...]           # the label, one entry per line
    kind: str                        # switch | host | eth0 | device | vtep | pod | host-pod | group | service | controller
                                     # | ingress
    keys: tuple[str, ...] = ()       # what it stands for: pod keys (ns/name), svc/NS/NAME, node/NAME (eth0),
                                     # host/NAME, ingress/NS/NAME


@dataclass(frozen=True)
class Cluster:
    id: str
    lines: tuple[str, ...]
    kind: str                        # node | services | ingresses (Ingresses, and Gateways drawn alike)
    boxes: tuple[Box, ...]
    keys: tuple[str, ...] = ()       # a node cluster: the node's name


@dataclass(frozen=True)
class Link:
    src: str
    dst: str
    label: str = ""
    kind: str = "wire"               # wire | cut (a stopped node) | kernel | veth | host-net | tunnel | bgp | endpoint | control
                                     # | route (an Ingress's rules to a Service)


@dataclass(frozen=True)
class Graph:
    title: str
    boxes: tuple[Box, ...]           # outside every cluster (the switch, hosts, the controller)
    clusters: tuple[Cluster, ...]
    links: tuple[Link, ...]
    notes: tuple[str, ...] = ()      # said to the reader as well (e.g. pods grouped in a large lab)


@dataclass
class Ids:
    """Readable identifiers from names (pod-1.x → pod_1_x), made unique with a counter suffix."""

    taken: set[str] = field(default_factory=set)

    def new(self, prefix: str, *parts: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", "_".join((prefix, *parts)))
        ident, n = base, 1
        while ident in self.taken:
            n += 1
            ident = f"{base}_{n}"
        self.taken.add(ident)
        return ident
