"""A Host that records instead of acting, for unit tests of orchestration without root (the model:
kube-proxy's iptablestest.NewFake). Every call lands in `calls`; programs answer from `answers`
(the first argv prefix that matches), otherwise they succeed with no output. An answer limited to
a number of calls (`times`) or to one namespace (`netns`) is tried first, in the order given, and
used up after `times` matching calls (a refusal of the first restore only).

Files are a table (`files`, path -> bytes): what the lab writes lands there, and a test puts there
the kernel's files the code reads (/proc/PID/cmdline, a /run/netns/NAME, a /sys/class/net/LINK).
A spawned daemon gets /proc/PID/cmdline and stat, gone when it is signalled; `inodes` says which
namespace a process is in (/proc/PID/ns/net -> the inode of /run/netns/NAME; one started by
`ip netns exec NAME` is in NAME)."""
from __future__ import annotations

import errno
import io
import itertools
import signal
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

from lab.errors import LabError
from lab.host import Completed


@dataclass
class Call:
    kind: str                      # run | spawn | sysctl | link_up | uts | drop_uts | announce | write | rename
                                   # | remove | chown | chmod | make_dir | remove_empty | copy | kill | underlay
    argv: tuple[str, ...] = ()
    netns: Optional[str] = None
    input: object = None
    settings: dict = field(default_factory=dict)
    env: Optional[dict] = None


class Serial(Executor):
    """An executor that runs each task when it is submitted, in the caller's thread."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        done: Future = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as e:  # the caller's f.result() raises it, as a pool's would
            done.set_exception(e)
        return done


@dataclass
class FakeProcess:
    pid: int
    stdin: object = None
    stdout: object = None


class FakeHost:
    def __init__(self, answers: Optional[dict[tuple[str, ...], Completed]] = None, serial: bool = False):
        self.calls: list[Call] = []
        self.serial = serial               # run what the lab runs side by side one after another: calls in a fixed order
        self.answers = dict(answers or {})
        self._limited: list[list] = []   # [prefix, netns, Completed, calls left (None: no limit)]
        self._lock = threading.Lock()    # the lab runs programs from thread pools
        self._pids = itertools.count(40000)
        self.files: dict[str, bytes] = {}
        self.inodes: dict[str, int] = {}   # a path's inode, when a test says (else one per path)
        self._inode = itertools.count(1000)

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
        argv = tuple(str(a) for a in argv)
        self.calls.append(Call("spawn", argv))
        pid = next(self._pids)
        with self._lock:
            self.files[f"/proc/{pid}/cmdline"] = "".join(a + "\0" for a in argv).encode()
            self.files[f"/proc/{pid}/stat"] = f"{pid} ({argv[0][-15:]}) S 1".encode()
        ns = next((argv[i + 2] for i in range(len(argv) - 2) if argv[i:i + 2] == ("netns", "exec")), None)
        if ns and self.exists(f"/run/netns/{ns}"):  # `ip netns exec NS ...`: it lives in that namespace
            self.inodes[f"/proc/{pid}/ns/net"] = self.inode(f"/run/netns/{ns}")
        return FakeProcess(pid, io.StringIO() if pipes else None, io.StringIO() if pipes else None)

    def sysctl(self, netns, settings) -> None:
        self.calls.append(Call("sysctl", netns=netns, settings=dict(settings)))

    def in_netns(self, netns, fn: Callable):
        return fn()

    def link_up(self, netns, ifname) -> None:
        self.calls.append(Call("link_up", (ifname,), netns))

    def make_uts(self, path, hostname) -> None:
        self.calls.append(Call("uts", (path, hostname)))
        self.files[path] = b""  # the bind mount's file

    def drop_uts(self, path) -> None:
        self.calls.append(Call("drop_uts", (path,)))
        self.files.pop(path, None)

    def announce(self, netns, ip, dev) -> None:
        self.calls.append(Call("announce", (ip, dev), netns))

    def read(self, path) -> bytes:
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from None

    def exists(self, path) -> bool:
        under = path.rstrip("/") + "/"
        return path in self.files or any(p.startswith(under) for p in list(self.files))

    def inode(self, path) -> int:
        if path in self.inodes:
            return self.inodes[path]
        if not self.exists(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        with self._lock:
            return self.inodes.setdefault(path, next(self._inode))

    def executable(self, path) -> bool:
        return path in self.files

    def pids(self) -> list[int]:
        return sorted({int(p.split("/")[2]) for p in [*self.files, *self.inodes]
                       if p.startswith("/proc/") and p.split("/")[2].isdigit()})

    def list_dir(self, path) -> list[str]:
        under = path.rstrip("/") + "/"
        return sorted({under + p[len(under):].split("/")[0] for p in list(self.files) if p.startswith(under)})

    def write(self, path, data, mode) -> None:
        self.calls.append(Call("write", (path,), input=data, settings={"mode": oct(mode)} if mode is not None else {}))
        with self._lock:
            self.files[path] = data

    def rename(self, src, dst) -> None:
        self.calls.append(Call("rename", (src, dst)))
        with self._lock:
            self.files[dst] = self.read(src)
            del self.files[src]

    def remove(self, path) -> None:
        self.calls.append(Call("remove", (path,)))
        self._forget(path)

    def _forget(self, path) -> None:
        under = path.rstrip("/") + "/"
        with self._lock:
            for p in [p for p in [*self.files, *self.inodes] if p == path or p.startswith(under)]:
                self.files.pop(p, None)
                self.inodes.pop(p, None)

    def chown(self, path, user) -> None:
        self.calls.append(Call("chown", (path, user)))

    def chmod(self, path, mode) -> None:
        self.calls.append(Call("chmod", (path, oct(mode))))

    def make_dir(self, path, mode) -> None:
        self.calls.append(Call("make_dir", (path,), settings={"mode": oct(mode)} if mode is not None else {}))

    def remove_empty(self, path) -> bool:
        self.calls.append(Call("remove_empty", (path,)))
        return not self.exists(path)

    def copy(self, src, dst, ignore) -> None:
        self.calls.append(Call("copy", (src, dst, *ignore)))

    def kill(self, pid, sig) -> bool:
        """Every signal ends the process here (a daemon stops at SIGTERM)."""
        self.calls.append(Call("kill", (str(pid), signal.Signals(sig).name)))
        alive = f"/proc/{pid}/stat" in self.files or f"/proc/{pid}/ns/net" in self.inodes
        self._forget(f"/proc/{pid}")
        return alive

    def underlay(self, plan) -> None:
        self.calls.append(Call("underlay", input=plan))
        for m in plan.machines:
            self.files[f"/run/netns/{m.netns}"] = b""
        for name in [*(s.name for s in plan.switches), *(w.port for w in plan.wires)]:
            self.files[f"/sys/class/net/{name}"] = b""

    def listens(self, netns, ip, port, timeout) -> bool:
        """Every daemon answers at once."""
        self.calls.append(Call("listens", (ip, str(port)), netns))
        return True

    def privileged(self) -> bool:
        return True

    def pool(self, workers) -> Executor:
        return Serial() if self.serial else ThreadPoolExecutor(workers)

    # --- what tests ask ---
    def ran(self, *prefix: str) -> list[Call]:
        """The run calls whose argv starts with prefix."""
        return [c for c in self.calls if c.kind == "run" and c.argv[:len(prefix)] == prefix]
