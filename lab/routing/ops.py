"""The operations a routing backend wants applied in one node."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NetOps:
    """`ip -batch` lines, then `bridge -batch` lines (FDB entries), and the node's sysctls the
    network needs (e.g. proxy ARP on eth0)."""

    ip: tuple[str, ...] = ()
    bridge: tuple[str, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
