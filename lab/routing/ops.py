"""The operations a routing backend wants applied in one node."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NetOps:
    """`ip -batch` lines, then `bridge -batch` lines (FDB entries)."""

    ip: tuple[str, ...] = ()
    bridge: tuple[str, ...] = ()
