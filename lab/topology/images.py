"""Images the lab does not have: each runs as a stand-in that serves what the pod would serve.

There is no container runtime. A container whose image is not built in (and that has no
`command:` naming a program this machine has) runs as netexec serving its declared ports and the numeric
targetPorts of the Services that select its pod (named targetPorts name declared ports), or as
`pause` when there is nothing to serve. semantics announces it; plan builds it; both ask here.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterable
from typing import Optional

from lab.topology.kinds import ADDON_IMAGES as _ADDON_IMAGES  # the lab's own add-ons (lab.controlplane.addons)
from lab.topology.model import Container, PodSpec, Service

# The lab has no container runtime: `image:` names a program built into the lab.
BUILTIN_IMAGES = ("netexec", "pause")

Served = tuple[tuple[int, str, Optional[str]], ...]  # (port, protocol, name)


def missing_program(c: Container) -> Optional[str]:
    """The program a real image's `command:` names when this machine does not have it (a PATH
    lookup, nothing runs): `redis-server` of `image: redis` is not a host program."""
    if c.command and c.image not in BUILTIN_IMAGES + _ADDON_IMAGES and shutil.which(c.command[0]) is None:
        return c.command[0]
    return None


def stands_in(c: Container) -> bool:
    return c.image not in BUILTIN_IMAGES + _ADDON_IMAGES and (not c.command or missing_program(c) is not None)


def selects(service: Service, namespace: str, labels: dict[str, str]) -> bool:
    selector = service.spec.selector
    return bool(selector) and service.spec.type != "ExternalName" and \
        (service.metadata.namespace or "default") == namespace and all(labels.get(k) == v for k, v in selector.items())


def stand_ins(spec: PodSpec, namespace: str, labels: dict[str, str], services: Iterable[Service]) -> dict[int, Served]:
    """For each container of the pod that runs as a stand-in (by index): the ports it serves, empty
    for `pause`. Service targetPorts no container declares are served by the first stand-in."""
    chosen = [j for j, c in enumerate(spec.containers) if stands_in(c)]
    if not chosen:
        return {}
    declared = {(p.containerPort, p.protocol) for c in spec.containers for p in c.ports}
    extra: list[tuple[int, str]] = []
    for svc in services:
        if not selects(svc, namespace, labels):
            continue
        for sp in svc.spec.ports:
            target = sp.targetPort if sp.targetPort is not None else sp.port
            key = (target, sp.protocol)
            if isinstance(target, int) and key not in declared and key not in extra:
                extra.append(key)
    out = {j: tuple((p.containerPort, p.protocol, p.name) for p in spec.containers[j].ports) for j in chosen}
    out[chosen[0]] += tuple((port, protocol, None) for port, protocol in extra)
    return out


def grpc_health_probe(c: Container) -> Optional[tuple[int, str]]:
    """(port, service) when a stand-in's readinessProbe execs grpc_health_probe, the tool images
    carried before the kubelet probed gRPC itself (Online Boutique's older manifests): the stand-in
    serves grpc.health.v1.Health, so the lab probes that. None for anything else, or for flags it
    cannot play (-tls...): that exec probe runs as written."""
    probe = c.readinessProbe
    if probe is None or probe.exec is None or not stands_in(c) or \
            probe.exec.command[0].rsplit("/", 1)[-1] != "grpc_health_probe":
        return None
    flags: dict[str, str] = {}
    args = list(probe.exec.command[1:])
    while args:
        name, eq, value = args.pop(0).lstrip("-").partition("=")
        if not eq and args and not args[0].startswith("-"):
            value = args.pop(0)
        flags[name] = value
    port = flags.get("addr", "").rpartition(":")[2]
    if not port.isdigit() or not 0 < int(port) < 65536 or any(f.startswith("tls") for f in flags):
        return None
    return int(port), flags.get("service", "")


def describe(served: Served) -> str:
    return ", ".join(f"{port}/{protocol}" for port, protocol, _ in served)
