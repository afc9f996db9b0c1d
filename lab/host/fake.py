"""A Host that records instead of acting, for unit tests of orchestration without root (the model:
kube-proxy's iptablestest.NewFake). Every call lands in `calls`; programs answer from `answers`
(the first argv prefix that matches), otherwise they succeed with no output. An answer limited to
a number of calls (`times`) or to one namespace (`netns`) is tried first, in the order given, and
used up after `times` matching calls (a refusal of the first restore only)."""
from __future__ import annotations

import io
import itertools
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from lab.errors import LabError
from lab.host import Completed


@dataclass
class Call:
    kind: str                      # run | spawn | sysctl | link_up | uts | drop_uts | announce
    argv: tuple[str, ...] = ()
    netns: Optional[str] = None
    input: object = None
    settings: dict = field(default_factory=dict)
    env: Optional[dict] = None


@dataclass
class FakeProcess:
    pid: int
    stdin: object = None
    stdout: object = None


class FakeHost:
    def __init__(self, answers: Optional[dict[tuple[str, ...], Completed]] = None):
        self.calls: list[Call] = []
        self.answers = dict(answers or {})
        self._limited: list[list] = []   # [prefix, netns, Completed, calls left (None: no limit)]
        self._lock = threading.Lock()    # the lab runs programs from thread pools
        self._pids = itertools.count(40000)

    def answer(self, prefix: tuple[str, ...], code: Optional[int] = 0, stdout: str = "", stderr: str = "", *,
               times: Optional[int] = None, netns: Optional[str] = None) -> None:
        """Programs whose argv starts with prefix answer so; times: only the next that many of
        them; netns: only those run in that namespace."""
        if times is None and netns is None:
            self.answers[prefix] = Completed(code, stdout, stderr)
        else:
            self._limited.append([tuple(prefix), netns, Completed(code, stdout, stderr), times])

    def _answer(self, argv: tuple[str, ...], netns: Optional[str]) -> Completed:
        with self._lock:
            for rule in self._limited:
                prefix, where, done, left = rule
                if argv[:len(prefix)] == prefix and where in (None, netns) and left != 0:
                    if left is not None:
                        rule[3] = left - 1
                    return done
        return next((c for p, c in self.answers.items() if argv[:len(p)] == p), Completed(0, "", ""))

    def run(self, argv, *, netns=None, input=None, env=None, timeout=60, check=True) -> Completed:
        argv = tuple(str(a) for a in argv)
        self.calls.append(Call("run", argv, netns, input, env=dict(env) if env is not None else None))
        done = self._answer(argv, netns)
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

    def link_up(self, netns, ifname) -> None:
        self.calls.append(Call("link_up", (ifname,), netns))

    def make_uts(self, path, hostname) -> None:
        self.calls.append(Call("uts", (path, hostname)))

    def drop_uts(self, path) -> None:
        self.calls.append(Call("drop_uts", (path,)))

    def announce(self, netns, ip, dev) -> None:
        self.calls.append(Call("announce", (ip, dev), netns))

    # --- what tests ask ---
    def ran(self, *prefix: str) -> list[Call]:
        """The run calls whose argv starts with prefix."""
        return [c for c in self.calls if c.kind == "run" and c.argv[:len(prefix)] == prefix]
