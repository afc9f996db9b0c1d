"""Errors a user can act on. The CLI prints them without a traceback; library code never exits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Diagnostic:
    """One problem in an input file: where it is, what is wrong, how to fix it."""

    file: str
    line: Optional[int]
    path: str  # where in the document, e.g. "manifests[2].spec.replicas"
    message: str
    hint: Optional[str] = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


class LabError(Exception):
    """Something went wrong that the user can fix; the message says how."""


class TopologyError(LabError):
    """A topology file is invalid; carries every problem found, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        count = len(self.diagnostics)
        head = f"{count} error{'s' if count != 1 else ''} in topology"
        super().__init__(head + ":\n" + "\n".join(str(d) for d in self.diagnostics))
