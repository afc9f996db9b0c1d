"""A command run inside a pod, node or host as `lab exec` runs it: in the network namespace through
`ip netns exec` (so /etc/netns files apply), with the pod's or node's hostname (its UTS namespace),
and vtysh pointed at that node's own FRR. `lab exec` and scenario and exercise steps share it."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lab.host.record import LabRecord
from lab.routing import frr


def argv(rec: LabRecord, netns: str, uts: Path, name: str, command: Sequence[str]) -> list[str]:
    """name: the node (or host) a vtysh command speaks to."""
    command = list(command)
    if command and command[0] == "vtysh" and frr.directory(rec, name).is_dir():
        command = ["vtysh", "--vty_socket", str(frr.directory(rec, name)), *command[1:]]
    out = ["ip", "netns", "exec", netns, *command]
    return ["nsenter", f"--uts={uts}", *out] if uts.exists() else out
