"""Finding and stopping the lab's processes by ownership, never by name on the whole machine.

A process is the lab's if it lives in one of the lab's named namespaces (pods, nodes and
hostNetwork pods all do), or if it is one of the Mininet shells the lab claimed by exact name
before spawning (they exist for a moment before their namespace gets its name), or a recorded
netexec child that has not entered its namespace yet.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterable

from lab import host
from lab.host import netns_path

NETEXEC_ARG = str(Path(__file__).resolve().parent.parent / "images" / "netexec.py").encode()


def _netns_inodes(names: Iterable[str]) -> set[int]:
    inodes = set()
    for n in names:
        try:
            inodes.add(host.inode(netns_path(n)))
        except OSError:
            pass
    return inodes


def owned_pids(netns: Iterable[str], shells: Iterable[str] = (), recorded: Iterable[int] = ()) -> set[int]:
    """recorded: PIDs the lab wrote down; taken if they are still a netexec of the fork server
    (one forked a moment ago may not have entered its pod's namespace yet)."""
    inodes = _netns_inodes(netns)
    recorded = set(recorded)
    shell_args = {f"mininet:{s}".encode() for s in shells}
    me = os.getpid()
    pids = set()
    for pid in host.pids():
        if pid == me:
            continue
        try:
            if inodes and host.inode(f"/proc/{pid}/ns/net") in inodes:
                pids.add(pid)
                continue
            if shell_args or pid in recorded:
                argv = host.read_bytes(f"/proc/{pid}/cmdline").split(b"\0")
                if argv[0] == b"bash" and len(argv) >= 2 and argv[-2] in shell_args:
                    pids.add(pid)
                elif pid in recorded and argv[-2:] == [b"--forkserver", b""] and NETEXEC_ARG in argv:
                    pids.add(pid)
        except OSError:
            continue  # gone meanwhile
    return pids


alive = host.alive


def signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        host.kill(pid, sig)


def reap(pids: set[int], grace: float = 0.3) -> None:
    """Wait up to `grace` for signalled processes to go, then SIGKILL what is left."""
    deadline = time.monotonic() + grace
    left = set(pids)
    while left and time.monotonic() < deadline:
        left = {p for p in left if alive(p)}
        if left:
            time.sleep(0.01)
    signal_all(left, signal.SIGKILL)
