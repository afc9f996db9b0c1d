"""A command run inside a pod, node or host as `lab exec` runs it: in the network namespace through
`ip netns exec` (so /etc/netns files apply), with the pod's or node's hostname (its UTS namespace),
and a command for the pod network's daemons pointed at that machine's own (vtysh at its FRR).
`lab exec` and scenario and exercise steps share it."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lab.host.record import LabRecord
from lab.routing import runtimes


def argv(rec: LabRecord, netns: str, uts: Path, name: str, command: Sequence[str],
         confine: tuple[Sequence[str], Sequence[str]] = ((), ())) -> list[str]:
    """name: the node (or host) a daemon's command speaks to. confine: what goes before and after
    `ip netns exec` for a submission's command (lab.exercise.sandbox.exec_confinement)."""
    command = list(command)
    daemons = runtimes.of(rec.state.network)
    if daemons:
        command = daemons.command(rec, name, command)
    namespaces, runner = confine
    out = ["ip", "netns", "exec", netns, *runner, *command]
    # nsenter opens every namespace file it is given before it enters the first
    enter = ([f"--uts={uts}"] if uts.exists() else []) + list(namespaces)
    out = ["nsenter", *enter, "--", *out] if enter else out
    if not rec.cgroups:
        return out
    # proxy ebpf: in the node's cgroup, so the node's socket LB applies as to its pods' own processes
    node = next((n.name for n in rec.state.nodes if n.netns == netns), None) or \
        next((p.node for p in rec.state.pods if p.netns == netns), None)
    return rec.in_node_cgroup(node, out) if node else out
