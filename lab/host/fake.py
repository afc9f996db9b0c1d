"""A Host that records instead of acting, for unit tests of orchestration without root (the model:
kube-proxy's iptablestest.NewFake). Every call lands in `calls`; programs answer from `answers`
(the first argv prefix that matches), otherwise they succeed with no output."""
from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, field
from typing import Callable, Optional

from lab.errors import LabError
from lab.host import Completed


@dataclass
class Call:
    kind: str                      # run | spawn | sysctl
    argv: tuple[str, ...] = ()
    netns: Optional[str] = None
    input: object = None
    settings: dict = field(default_factory=dict)


@dataclass
class FakeProcess:
    pid: int
    stdin: object = None
    stdout: object = None


class FakeHost:
    def __init__(self, answers: Optional[dict[tuple[str, ...], Completed]] = None):
        self.calls: list[Call] = []
        self.answers = dict(answers or {})
        self._pids = itertools.count(40000)

    def answer(self, prefix: tuple[str, ...], code: Optional[int] = 0, stdout: str = "", stderr: str = "") -> None:
        self.answers[prefix] = Completed(code, stdout, stderr)

    def run(self, argv, *, netns=None, input=None, env=None, timeout=60, check=True) -> Completed:
        argv = tuple(str(a) for a in argv)
        self.calls.append(Call("run", argv, netns, input))
        done = next((c for p, c in self.answers.items() if argv[:len(p)] == p), Completed(0, "", ""))
        if check and not done.ok:
            raise LabError(f"{' '.join(argv)} failed (exit {done.code}): {done.stderr}")
        return done

    def spawn(self, argv, *, log=None, env=None, pipes=False, fresh_log=False) -> FakeProcess:
        self.calls.append(Call("spawn", tuple(str(a) for a in argv)))
        return FakeProcess(next(self._pids), io.StringIO() if pipes else None, io.StringIO() if pipes else None)

    def sysctl(self, netns, settings) -> None:
        self.calls.append(Call("sysctl", netns=netns, settings=dict(settings)))

    def in_netns(self, netns, fn: Callable):
        return fn()

    # --- what tests ask ---
    def ran(self, *prefix: str) -> list[Call]:
        """The run calls whose argv starts with prefix."""
        return [c for c in self.calls if c.kind == "run" and c.argv[:len(prefix)] == prefix]
