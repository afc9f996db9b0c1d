"""Where a trace's captures are kept: the lab's run directory (traces/ID/, one pcap per namespace and
the merged trace.pcap), so the lab owns them and `lab down` removes them. The newest KEEP are kept."""
from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Optional

from lab import host

DIR = "traces"
MERGED = "trace.pcap"
KEEP = 20
ID = re.compile(r"[0-9]{20}-[0-9a-f]{16}")   # creation time (ns, for order) and a random part


def new_id(now_ns: int, random_hex: str) -> str:
    """An opaque id that sorts by creation time (pure)."""
    return f"{now_ns:020d}-{random_hex}"


def stale(names: list[str], keep: int = KEEP) -> list[str]:
    """Of the trace directories' names, those beyond the newest `keep` (pure); other names are not ours."""
    ours = sorted(n for n in names if ID.fullmatch(n))
    return ours[:max(len(ours) - keep, 0)]


def create(lab_dir: Path) -> Path:
    """A fresh directory for one trace's captures, older ones beyond KEEP removed."""
    import time

    root = lab_dir / DIR
    host.make_dir(root, 0o700)
    for name in stale(host.list_dir(root), KEEP - 1):
        host.remove(root / name)
    path = root / new_id(time.time_ns(), secrets.token_hex(8))
    host.make_dir(path, 0o700)
    return path


def merged(path: Path) -> Optional[Path]:
    """The trace's merged pcap, if its capture wrote one."""
    file = path / MERGED
    return file if host.path_exists(file) else None
