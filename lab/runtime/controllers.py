"""The controller registry: every add-on controller of a lab, one registration line each, in the
order they sync (kube-proxy first: the others report after the Services are in place).

`reconcile()` is the one sync of every controller that `lab up`, `lab apply`, its rollback and
the agent run: from what the record holds to a new state and readiness, then the commit. The other
functions run one hook of every controller that has it. Nothing below this module names an add-on
or its image: `programs()` hands lab.node.containers the image -> program lookup it does not own,
and the plan asks lab.controlplane.addons, which `check()` holds equal to the controllers' add-ons.
How to add a controller: docs/ARCHITECTURE.md.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from lab.cni import config as cni_config
from lab.controlplane import addons
from lab.controlplane.controller import Controller, Diff, Program
from lab.controlplane.state import ClusterState, PodState
from lab.dns import runtime as dns
from lab.gateway import runtime as gateway
from lab.host.record import LabRecord
from lab.ingress import runtime as ingress
from lab.kube_proxy import sync as kube_proxy
from lab.loadbalancer import speaker
from lab.policy import sync as policy

CONTROLLERS: tuple[Controller, ...] = (
    kube_proxy.CONTROLLER,     # kube-proxy: Service rules on every node (iptables or nftables)
    dns.CONTROLLER,            # kube-dns (dnsmasq) and the outside world's resolver
    dns.NODE_LOCAL,            # NodeLocal DNSCache on every node
    ingress.CONTROLLER,        # ingress-nginx
    gateway.CONTROLLER,        # Gateway API: an Envoy per Gateway, routes applied live (file-based xDS)
    policy.CONTROLLER,         # NetworkPolicy rules on every node
    speaker.CONTROLLER,        # MetalLB's L2 speaker: who answers ARP for each LoadBalancer address
    cni_config.HOST_PORTS,     # hostPort: the portmap plugin, chained at CNI ADD
)


def check(controllers: Sequence[Controller] = CONTROLLERS) -> None:
    """Raise at import when the controllers and the add-on registry the plan reads disagree: each
    add-on is run by exactly one controller, of its name, which registers the program of its image."""
    ran = tuple(c.addon for c in controllers if c.addon)
    if ran != addons.ADDONS:
        raise RuntimeError(f"controllers run the add-ons {[a.name for a in ran]}, lab/controlplane/addons.py "
                           f"lists {[a.name for a in addons.ADDONS]}")
    for c in controllers:
        if c.addon and (c.addon.name != c.name or c.addon.image not in c.images):
            raise RuntimeError(f"controller {c.name} runs add-on {c.addon.name} and registers the images "
                               f"{sorted(c.images)}: its name and the program of {c.addon.image} must be its own")


check()


def programs(controllers: Sequence[Controller] = CONTROLLERS) -> dict[str, Program]:
    """image -> the program its containers run, from every registration."""
    out: dict[str, Program] = {}
    for c in controllers:
        for image, program in c.images.items():
            if image in out:
                raise ValueError(f"image {image} is registered twice (controller {c.name})")
            out[image] = program
    return out


def preflight(state: ClusterState, deep: bool, controllers: Sequence[Controller] = CONTROLLERS) -> list[str]:
    """Each controller's check that this machine can run it for `state`; raises LabError with what
    is missing. Returns their notes. deep=False (`lab validate`, which never runs anything): what
    can be seen without running a program; deep=True (`lab up`, before anything is built): all."""
    return [note for c in controllers if c.preflight for note in [c.preflight(state, deep)] if note]


def start(state: ClusterState, rec: LabRecord, controllers: Sequence[Controller] = CONTROLLERS) -> None:
    for c in controllers:
        if c.start:
            c.start(state, rec)


def pods_starting(state: ClusterState, rec: LabRecord, pods: Sequence[PodState],
                  controllers: Sequence[Controller] = CONTROLLERS) -> None:
    for c in controllers:
        if c.pods_starting:
            c.pods_starting(state, rec, pods)


def pods_gone(rec: LabRecord, pods: Sequence[PodState], controllers: Sequence[Controller] = CONTROLLERS) -> None:
    for c in controllers:
        if c.pods_gone:
            c.pods_gone(rec, pods)


def wait_ready(state: ClusterState, controllers: Sequence[Controller] = CONTROLLERS) -> None:
    for c in controllers:
        if c.wait_ready:
            c.wait_ready(state)


def setup(state: ClusterState, controllers: Sequence[Controller] = CONTROLLERS) -> None:
    for c in controllers:
        if c.setup:
            c.setup(state)


def reconcile(rec: LabRecord, state: ClusterState, pod_ready: Mapping[str, bool], *, first: bool = False,
              errors: Optional[list[str]] = None,
              controllers: Sequence[Controller] = CONTROLLERS) -> dict[str, tuple[str, ...]]:
    """Every controller's sync from the record's committed state and readiness to `state` with
    `pod_ready`, then the commit; returns what each touched. The caller holds the record's lock
    and saves. A failed sync raises before the commit, unless `errors` collects the failures (a
    rollback: every controller is tried, and the record says `state` whatever happened)."""
    diff = Diff(rec.state, dict(rec.pod_ready), state, dict(pod_ready), first)
    done: dict[str, tuple[str, ...]] = {}
    for c in controllers:
        if not c.sync:
            continue
        try:
            done[c.name] = tuple(c.sync(rec, diff) or ())
        except Exception as e:
            if errors is None:
                raise
            errors.append(str(e))
    rec.commit(state, pod_ready)
    return done


def status(rec: LabRecord, controllers: Sequence[Controller] = CONTROLLERS) -> dict[str, dict]:
    """Each controller's status: its own hook, else its section of the record."""
    return {c.name: c.status(rec) if c.status else dict(rec.section(c.name)) for c in controllers}
