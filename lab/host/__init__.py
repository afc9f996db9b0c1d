"""The effect seam: every program the lab runs, every daemon it starts, every sysctl it writes goes
through the Host here (kube-proxy's utiliptables.Interface and iptablestest.NewFake are the
model). The real Host runs argument lists with their exit status checked; lab.host.fake records
the calls instead, so orchestration (sync, apply, agent, teardown) is unit-tested without root.

Code below the CLI calls the module functions (`host.run`, `host.spawn`, ...), which go to the
current Host; tests swap it with `using(FakeHost())`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Protocol, Sequence, TypeVar, Union

from lab.errors import LabError
from lab.host import netns as namespaces
from lab.host.netns import in_netns

T = TypeVar("T")
R = TypeVar("R")
NETNS_DIR = "/run/netns"
Input = Union[str, bytes, None]


def netns_path(name: str) -> str:
    return f"{NETNS_DIR}/{name}"


@dataclass(frozen=True)
class Completed:
    """How a program ended: its exit code (None: killed at its timeout) and its output."""

    code: Optional[int]
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0


class Process(Protocol):
    """A started daemon: its PID, and its pipes when asked for."""

    pid: int
    stdin: object
    stdout: object


class Host(Protocol):
    def run(self, argv: Sequence[str], *, netns: Optional[str] = None, input: Input = None,
            env: Optional[Mapping[str, str]] = None, timeout: float = 60, check: bool = True) -> Completed:
        """Run a program to its end (from inside `netns` if given: a thread enters it, the child is
        born there). check: a non-zero exit, a timeout or a missing program raises LabError."""

    def spawn(self, argv: Sequence[str], *, log: Optional[Path] = None, env: Optional[Mapping[str, str]] = None,
              pipes: bool = False, fresh_log: bool = False) -> Process:
        """Start a daemon in its own session (a Ctrl-C of `lab` does not reach it), its output
        appended to `log` (or replacing it: fresh_log); with pipes, stdin and stdout are text
        pipes to the caller."""

    def sysctl(self, netns: str, settings: Mapping[str, str]) -> None:
        """Write net.* sysctls of one namespace."""

    def in_netns(self, netns: str, fn: Callable[[], T]) -> T:
        """Run fn in a thread inside netns (sockets and netlink it opens belong there)."""

    def link_up(self, netns: str, ifname: str) -> None:
        """Set a link of one namespace up (a pod's lo): no process needed."""

    def make_uts(self, path: str, hostname: str) -> None:
        """A UTS namespace with this hostname, kept by a bind mount on path."""

    def drop_uts(self, path: str) -> None:
        """Unmount and remove what make_uts made (no error if it is gone)."""

    def announce(self, netns: str, ip: str, dev: str) -> None:
        """Gratuitous ARP for `ip` from `dev` of `netns`: neighbour caches on the segment follow."""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class RealHost:
    def run(self, argv, *, netns=None, input=None, env=None, timeout=60, check=True) -> Completed:
        argv = [str(a) for a in argv]
        binary = isinstance(input, bytes)

        def go() -> Completed:
            # A session of its own: at a timeout the whole group goes (a shell's children too,
            # which would otherwise hold the pipes open and the wait forever).
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=not binary,
                                        start_new_session=True, env=dict(env) if env is not None else None)
            except FileNotFoundError:
                if check:
                    raise LabError(f"{argv[0]} is not installed; run `sudo make demo` or scripts/install.sh") from None
                return Completed(127, "", f"{argv[0]}: not installed")
            try:
                out, err = proc.communicate(input, timeout=timeout)
                code: Optional[int] = proc.returncode
            except BaseException as e:  # the timeout, or a Ctrl-C: nothing of it may live on
                _kill_group(proc.pid)
                out, err = proc.communicate()
                if not isinstance(e, subprocess.TimeoutExpired):
                    raise
                if check:
                    raise LabError(f"{' '.join(argv)} did not finish within {timeout:g}s") from None
                code = None
            if binary:
                out, err = out.decode(errors="replace"), err.decode(errors="replace")
            return Completed(code, out, err)

        done = in_netns(netns, go) if netns else go()
        if check and not done.ok:
            where = f" in {netns}" if netns else ""
            raise LabError(f"{' '.join(argv)}{where} failed (exit {done.code}): "
                           f"{done.stderr.strip() or done.stdout.strip()}")
        return done

    def spawn(self, argv, *, log=None, env=None, pipes=False, fresh_log=False) -> Process:
        if pipes:
            return subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, env=dict(env) if env is not None else None)
        out = open(log, "wb" if fresh_log else "ab") if log else subprocess.DEVNULL
        try:
            return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=dict(env) if env is not None else None)
        except FileNotFoundError:
            raise LabError(f"{argv[0]} is not installed; run `sudo make demo` or scripts/install.sh") from None
        finally:
            if log:
                out.close()

    def sysctl(self, netns, settings) -> None:
        """/proc/sys/net answers for the namespace of the thread that opens it: no process needed."""
        def write() -> None:
            for key, value in settings.items():
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(value)

        try:
            in_netns(netns, write)
        except OSError as e:
            raise LabError(f"cannot set {', '.join(settings)} in {netns}: {e.strerror or e}") from None

    def in_netns(self, netns, fn):
        return in_netns(netns, fn)

    def link_up(self, netns, ifname):
        try:
            in_netns(netns, lambda: namespaces.link_up(ifname))
        except OSError as e:
            raise LabError(f"cannot set {ifname} up in {netns}: {e.strerror or e}") from None

    def make_uts(self, path, hostname):
        namespaces.make_uts(path, hostname)

    def drop_uts(self, path):
        namespaces.drop_uts(path)

    def announce(self, netns, ip, dev):
        try:
            in_netns(netns, lambda: namespaces.gratuitous_arp(ip, dev))
        except OSError as e:
            raise LabError(f"cannot announce {ip} from {dev} in {netns}: {e.strerror or e}") from None


_current: list[Host] = [RealHost()]
_swap = threading.Lock()


def current() -> Host:
    return _current[-1]


@contextmanager
def using(h: Host) -> Iterator[Host]:
    """Every effect goes to `h` inside the block (tests: a FakeHost)."""
    with _swap:
        _current.append(h)
    try:
        yield h
    finally:
        with _swap:
            _current.remove(h)


def run(argv: Sequence[str], *, netns: Optional[str] = None, input: Input = None,
        env: Optional[Mapping[str, str]] = None, timeout: float = 60, check: bool = True) -> Completed:
    return current().run(argv, netns=netns, input=input, env=env, timeout=timeout, check=check)


def output(argv: Sequence[str], **kw) -> str:
    """stdout of a program that must succeed."""
    return run(argv, **kw).stdout


def spawn(argv: Sequence[str], *, log: Optional[Path] = None, env: Optional[Mapping[str, str]] = None,
          pipes: bool = False, fresh_log: bool = False) -> Process:
    return current().spawn(argv, log=log, env=env, pipes=pipes, fresh_log=fresh_log)


def finish(proc: Process, timeout: float) -> Optional[int]:
    """Wait for a process started by spawn; at the timeout kill its whole session (it was started
    in one) and return None."""
    try:
        return proc.wait(timeout)  # type: ignore[attr-defined]
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()  # type: ignore[attr-defined]
        return None


def first_child(pid: int, timeout: float) -> Optional[int]:
    """The first child of a process (unshare --fork's: the new namespaces' first process), waited
    for up to the timeout; None if it has none by then (or is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                found = f.read().split()
        except OSError:
            return None
        if found:
            return int(found[0])
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


def live_processes(uid: int) -> list[int]:
    """The PIDs of a user's processes that still run (a zombie has ended: PID 1 reaps lazily here)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if state not in ("Z", "X"):
            out.append(int(name))
    return out


def sysctl(netns: str, settings: Mapping[str, str]) -> None:
    current().sysctl(netns, settings)


def in_ns(netns: str, fn: Callable[[], T]) -> T:
    return current().in_netns(netns, fn)


def link_up(netns: str, ifname: str) -> None:
    current().link_up(netns, ifname)


def announce(netns: str, ip: str, dev: str = "eth0") -> None:
    current().announce(netns, ip, dev)


def make_uts(path: Path, hostname: str) -> None:
    current().make_uts(str(path), hostname)


def drop_uts(path: Path) -> None:
    current().drop_uts(str(path))


def on_each(items: Sequence[T], fn: Callable[[T], R]) -> tuple[list[R], Optional[Exception]]:
    """fn on every item in parallel (one node each): the results of those that succeeded, and the
    first error. A caller records what every other node now holds before it raises: a rollback
    must know each chain a node was given."""
    if not items:
        return [], None
    with ThreadPoolExecutor(len(items)) as pool:
        futures = [pool.submit(fn, item) for item in items]
    done: list[R] = []
    errors: list[Exception] = []
    for f in futures:
        try:
            done.append(f.result())
        except Exception as e:  # the first is raised by the caller, once the others are recorded
            errors.append(e)
    return done, (errors[0] if errors else None)


def ip_batch(lines: Sequence[str], netns: Optional[str] = None, force: bool = False) -> None:
    """Many `ip` commands, one process (namespaces are created from the root, never with -n).
    force: go on past failing lines (teardown); the failure is still raised once all have run."""
    if lines:
        argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
        run(argv, input="\n".join(lines) + "\n")


def restore(netns: str, argv: Sequence[str], text: str, what: str) -> None:
    """Load a rule set in one transaction (iptables-restore, nft -f -) inside a node's namespace;
    `what` names it in the error."""
    done = run(argv, netns=netns, input=text, check=False)
    if not done.ok:
        raise LabError(f"{what} was refused ({' '.join(argv)} in {netns}): {done.stderr.strip()}")


def listens(netns: str, ip: str, port: int, timeout: float) -> bool:
    """Whether something in `netns`'s reach accepts TCP connections on ip:port within the timeout
    (a daemon just started or restarted: its gap ends before we do)."""
    def connects() -> bool:
        try:
            socket.create_connection((ip, port), timeout=0.2).close()
            return True
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while not in_ns(netns, connects):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def exists(netns: str) -> bool:
    return os.path.exists(netns_path(netns))
