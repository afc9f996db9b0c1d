"""One verdict of the harness: what was checked, whether it held, what was expected and seen."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    check: str        # a key of lab.probe.invariants.INVARIANTS
    subject: str      # the pair or the pod this is about, for people
    passed: bool
    expected: str
    observed: str
    source: str = ""  # for programs: the namespace the probe left from
    target: str = ""  # and where it went, "ip:port/protocol"
