"""Source ports for probes, so no probe ever reuses a 5-tuple that conntrack may still track.

A reused UDP tuple inside conntrack's 30 s window is ESTABLISHED, and a policy chain that passes
tracked flows lets it through: the truth table would report a flow allowed before a policy change
as allowed after it. So every probe socket is bound to a port handed out here: per source
namespace a counter that moves on with every probe, kept in one file under flock so that
concurrent checks (several labs, several users) never hand out the same port twice. The range is
below the kernel's ephemeral range (32768-60999), so programs in the pods never compete for it.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from lab import host

FIRST, LAST = 20000, 32767
SPAN = LAST - FIRST + 1
STATE = Path("/run/k8s-netlab/probe-ports.json")


def advance(counters: dict[str, int], wanted: dict[str, int]) -> dict[str, int]:
    """Pure: the first port of each namespace's block of wanted[ns] ports, and the counters moved
    past those blocks (wrapping inside FIRST..LAST)."""
    starts = {}
    for netns, n in wanted.items():
        start = counters.get(netns, 0) % SPAN
        starts[netns] = FIRST + start
        counters[netns] = (start + n) % SPAN
    return starts


def reserve(wanted: dict[str, int], state: Path = STATE) -> dict[str, int]:
    """Reserve wanted[ns] consecutive ports (wrapping) per namespace; returns the first of each.
    Counters of namespaces that no longer exist are dropped as the file is rewritten."""
    state.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(state, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, 1 << 24)
        try:
            counters = {k: int(v) for k, v in json.loads(raw or b"{}").items()}
        except (ValueError, AttributeError):
            counters = {}  # a damaged file only costs the memory of past ports
        counters = {k: v for k, v in counters.items() if k in wanted or host.exists(k)}
        starts = advance(counters, wanted)
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(counters).encode())
        return starts
    finally:
        os.close(fd)


def port_at(start: int, offset: int) -> int:
    """The offset-th port of a block that starts at `start`, wrapping inside FIRST..LAST."""
    return FIRST + (start - FIRST + offset) % SPAN
