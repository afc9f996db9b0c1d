"""Errors a user can act on. The CLI prints them without a traceback; library code never exits."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem in an input file: where it is, what is wrong, how to fix it.

    A warning never blocks (unless --strict); warnings of one kind are grouped into one diagnostic
    whose `also` lists the other places, so each kind is printed once."""

    file: str
    line: Optional[int]
    path: str  # where in the document, e.g. "manifests[2].spec.replicas"
    message: str
    hint: Optional[str] = None
    severity: Severity = "error"
    also: tuple[tuple[str, Optional[int]], ...] = ()  # further (file, line) of a grouped warning

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.is_warning:
            where += ": warning"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if self.also:
            places = [f"{f}:{n}" if n else f for f, n in self.also]
            shown = ", ".join(places[:8]) + (f" and {len(places) - 8} more" if len(places) > 8 else "")
            text += f"\n    also at: {shown}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text


def group_warnings(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Errors as they are; warnings with the same message and hint merged into the first one."""
    out: list[Diagnostic] = []
    groups: dict[tuple[str, Optional[str]], int] = {}
    for d in diagnostics:
        if not d.is_warning:
            out.append(d)
            continue
        key = (d.message, d.hint)
        if key in groups:
            first = out[groups[key]]
            out[groups[key]] = Diagnostic(first.file, first.line, first.path, first.message, first.hint,
                                          "warning", first.also + ((d.file, d.line),) + d.also)
        else:
            groups[key] = len(out)
            out.append(d)
    return out


def warnings_text(warnings: list[Diagnostic]) -> str:
    count = len(warnings)
    return f"{count} warning{'s' if count != 1 else ''} (not blocking; --strict makes them errors):\n" + \
        "\n".join(str(w) for w in warnings)


class LabError(Exception):
    """Something went wrong that the user can fix; the message says how."""


class TopologyError(LabError):
    """A topology file is invalid; carries every problem found, not just the first (and the
    warnings found in the same pass, printed after the errors)."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if not d.is_warning]
        warnings = [d for d in self.diagnostics if d.is_warning]
        count = len(errors)
        head = f"{count} error{'s' if count != 1 else ''} in topology"
        text = head + ":\n" + "\n".join(str(d) for d in errors)
        if warnings:
            text += "\n" + warnings_text(warnings)
        super().__init__(text)
