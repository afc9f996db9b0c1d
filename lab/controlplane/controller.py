"""What a controller is, as the registry (lab.runtime.controllers) drives it, and the diff its sync
works from. Pure: the hooks are given, never called here.

A controller is one registered unit that carries everything about itself (containerlab's kinds):
the objects it installs in the cluster (its add-on, lab.controlplane.addon) and the programs of
their images, the effects of `lab up` before and after the pods, what it does when pods come and
go, its sync from a `Diff` (controller-runtime's reconcile, driven by what changed), and its status
(by default its own section of the lab's record). Teardown is not a hook:
whatever a controller creates outside the lab's namespaces it claims in the record's ownership
ledger first, and `lab down` and `lab clean` remove what the ledger lists, with no controller code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from lab.controlplane.addon import AddOn
from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import ClusterState, EndpointSliceState, PodState

Record = Any    # lab.host.record.LabRecord (a layer above this one: the hooks receive it)
Program = Callable[[Record, PodState], list]  # the lab's record and the pod -> its container's argv


@dataclass(frozen=True)
class Diff:
    """From what the record holds (the last committed state and readiness) to what is wanted."""

    old: ClusterState
    old_ready: Mapping[str, bool]
    new: ClusterState
    new_ready: Mapping[str, bool]
    first: bool = False   # write everything (lab up, a rollback), whatever the record says was written

    @cached_property
    def old_slices(self) -> tuple[EndpointSliceState, ...]:
        return endpoint_slices(self.old, self.old_ready)

    @cached_property
    def new_slices(self) -> tuple[EndpointSliceState, ...]:
        return endpoint_slices(self.new, self.new_ready)

    @property
    def objects_changed(self) -> bool:
        """The cluster's objects were replaced (lab up, lab apply, a rollback), not only readiness
        (the agent): a controller that reads no endpoints has nothing to do otherwise."""
        return self.first or self.new is not self.old


@dataclass(frozen=True)
class Controller:
    """One controller's registration. Every hook is optional; the registry calls them in
    registration order."""

    name: str
    images: Mapping[str, Program] = field(default_factory=dict)   # image -> its container's program
    addon: Optional[AddOn] = None  # the objects it installs in the cluster (lab.controlplane.addons), run by `images`
    # can this machine run it? a note, or LabError; deep=False (lab validate): without running anything
    preflight: Optional[Callable[[ClusterState, bool], Optional[str]]] = None
    start: Optional[Callable[[ClusterState, Record], None]] = None        # lab up, before any pod: files, daemons
    pods_starting: Optional[Callable[[ClusterState, Record, Sequence[PodState]], None]] = None  # before they start
    pods_gone: Optional[Callable[[Record, Sequence[PodState]], None]] = None  # after they were removed
    wait_ready: Optional[Callable[[ClusterState], None]] = None            # lab up: answering before the first probe
    setup: Optional[Callable[[ClusterState], None]] = None                 # lab up: once per node, before the first sync
    sync: Optional[Callable[[Record, Diff], Optional[Iterable[str]]]] = None  # apply the diff; what it touched
    status: Optional[Callable[[Record], dict]] = None                     # else: its section of the record
