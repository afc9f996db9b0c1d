"""The effect seam: every program the lab runs, every daemon it starts, every sysctl it writes, every
file it writes or kernel file it reads (/proc, /sys, /run/netns), every signal it sends and the
Mininet underlay it builds go through the Host here (kube-proxy's utiliptables.Interface and iptablestest.NewFake are the
model). The real Host runs argument lists with their exit status checked; lab.host.fake records
the calls instead, so orchestration (sync, apply, agent, teardown) is unit-tested without root.

Code below the CLI calls the module functions (`host.run`, `host.spawn`, ...), which go to the
current Host; tests swap it with `using(FakeHost())`.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
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

    def read(self, path: str) -> bytes:
        """A file's bytes: the kernel's (/proc, /sys) or one the lab wrote. OSError if unreadable."""

    def exists(self, path: str) -> bool:
        """Whether a path exists (a namespace's /run/netns file, a link's /sys/class/net entry)."""

    def inode(self, path: str) -> int:
        """The inode a path names (a namespace's identity); OSError if it is gone."""

    def executable(self, path: str) -> bool:
        """Whether a program is there to run (a CNI plugin)."""

    def pids(self) -> list[int]:
        """Every process on the machine (/proc)."""

    def list_dir(self, path: str) -> list[str]:
        """The paths in a folder, sorted; none if it is not there."""

    def write(self, path: str, data: bytes, mode: Optional[int]) -> None:
        """Create or replace a file (its folders made as needed); mode: its permissions."""

    def rename(self, src: str, dst: str) -> None:
        """Move a file over another in one step: a reader sees the old file or the new one."""

    def remove(self, path: str) -> None:
        """A file, or a folder with all it holds; no error if it is gone."""

    def chown(self, path: str, user: str) -> None:
        """Give a file or folder (not recursively) to a user and its group."""

    def chmod(self, path: str, mode: int) -> None:
        """Set a file's or folder's permissions."""

    def make_dir(self, path: str, mode: Optional[int]) -> None:
        """A folder (and its parents); mode: its permissions, whatever the umask."""

    def remove_empty(self, path: str) -> bool:
        """An empty folder; False if it holds something or is gone."""

    def copy(self, src: str, dst: str, ignore: Sequence[str]) -> None:
        """A file, or a folder with its contents (links copied as links), but names matching a
        pattern in `ignore`."""

    def kill(self, pid: int, sig: int) -> bool:
        """Send a signal; False if there is no such process."""

    def underlay(self, plan: "UnderlayPlan") -> None:
        """Build the switches, machines and links (Mininet) and name each machine's namespace."""

    def listens(self, netns: str, ip: str, port: int, timeout: float) -> bool:
        """Whether something in `netns`'s reach accepts TCP connections on ip:port within the
        timeout (a daemon just started or restarted: its gap ends before we do)."""

    def privileged(self) -> bool:
        """Whether the lab may build (root)."""

    def pool(self, workers: int) -> Executor:
        """Where effects run side by side (one per node, per pod)."""


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


    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def exists(self, path):
        return os.path.exists(path)

    def inode(self, path):
        return os.stat(path).st_ino

    def executable(self, path):
        return os.access(path, os.X_OK)

    def pids(self):
        return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]

    def list_dir(self, path):
        return sorted(e.path for e in os.scandir(path)) if os.path.isdir(path) else []

    def write(self, path, data, mode):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(path, mode)  # an existing file keeps its mode at O_CREAT; the umask trims a new one

    def rename(self, src, dst):
        os.replace(src, dst)

    def remove(self, path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def chown(self, path, user):
        shutil.chown(path, user, user)

    def chmod(self, path, mode):
        os.chmod(path, mode)

    def make_dir(self, path, mode):
        os.makedirs(path, exist_ok=True)
        if mode is not None:
            os.chmod(path, mode)

    def remove_empty(self, path):
        try:
            os.rmdir(path)
            return True
        except OSError:
            return False

    def copy(self, src, dst, ignore):
        if os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(*ignore))
        else:
            shutil.copyfile(src, dst)

    def kill(self, pid, sig):
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    def underlay(self, plan):
        from lab.host.mininet import build
        build(plan, ip_batch)

    def listens(self, netns, ip, port, timeout):
        def connects() -> bool:
            try:
                socket.create_connection((ip, port), timeout=0.2).close()
                return True
            except OSError:
                return False

        deadline = time.monotonic() + timeout
        while not in_netns(netns, connects):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def privileged(self):
        return os.geteuid() == 0

    def pool(self, workers):
        return ThreadPoolExecutor(workers)


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


def fd_targets(pid: int) -> list[str]:
    """What a process's open descriptors point at ("socket:[INODE]", a path); OSError if it is gone."""
    return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]


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
    with current().pool(len(items)) as workers:
        futures = [workers.submit(fn, item) for item in items]
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
    return current().listens(netns, ip, port, timeout)


def privileged() -> bool:
    return current().privileged()


def pool(workers: int) -> Executor:
    return current().pool(workers)


def exists(netns: str) -> bool:
    return current().exists(netns_path(netns))


def read_bytes(path: Union[str, Path]) -> bytes:
    return current().read(str(path))


def read_text(path: Union[str, Path]) -> str:
    return current().read(str(path)).decode()


def path_exists(path: Union[str, Path]) -> bool:
    return current().exists(str(path))


def inode(path: Union[str, Path]) -> int:
    return current().inode(str(path))


def executable(path: Union[str, Path]) -> bool:
    return current().executable(str(path))


def pids() -> list[int]:
    return current().pids()


def list_dir(path: Union[str, Path]) -> list[str]:
    return current().list_dir(str(path))


def write_file(path: Union[str, Path], data: Union[str, bytes], mode: Optional[int] = None) -> None:
    current().write(str(path), data.encode() if isinstance(data, str) else data, mode)


def replace_file(path: Union[str, Path], data: Union[str, bytes], tmp: Union[str, Path, None] = None) -> None:
    """Write a file whole, then rename it over `path`: a reader (dnsmasq, nginx) never sees half of
    it. tmp: where it is written first (default path + ".tmp"; outside a watched folder), with the
    writer's process and thread appended."""
    # the writer's own temporary name: two writers at once (two `lab exercise grade`s) never rename
    # each other's half-written file, or one that is already gone
    tmp = f"{tmp or f'{path}.tmp'}.{os.getpid()}.{threading.get_ident()}"
    write_file(tmp, data)
    current().rename(tmp, str(path))


def remove(path: Union[str, Path]) -> None:
    current().remove(str(path))


def chown(path: Union[str, Path], user: str) -> None:
    current().chown(str(path), user)


def chmod(path: Union[str, Path], mode: int) -> None:
    current().chmod(str(path), mode)


def make_dir(path: Union[str, Path], mode: Optional[int] = None) -> None:
    current().make_dir(str(path), mode)


def remove_empty(path: Union[str, Path]) -> bool:
    return current().remove_empty(str(path))


def copy(src: Union[str, Path], dst: Union[str, Path], ignore: Sequence[str] = ()) -> None:
    current().copy(str(src), str(dst), tuple(ignore))


def kill(pid: int, sig: int) -> bool:
    return current().kill(pid, sig)


def cmdline(pid: int) -> Optional[list[bytes]]:
    """A process's argv (/proc/PID/cmdline), None if it is gone."""
    try:
        return read_bytes(f"/proc/{pid}/cmdline").split(b"\0")
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie has ended)."""
    try:
        return read_bytes(f"/proc/{pid}/stat").decode().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass(frozen=True)
class Switch:
    name: str
    dpid: str
    kind: str                        # linux-bridge | ovs (userspace datapath, standalone)


@dataclass(frozen=True)
class Machine:
    netns: str                       # the name its namespace gets in /run/netns
    ip: str                          # address/prefix of its first interface


@dataclass(frozen=True)
class Wire:
    machine: str
    switch: str
    ifname: str                      # in the machine
    port: str                        # the switch's end, in the root namespace
    mac: str


@dataclass(frozen=True)
class UnderlayPlan:
    """What Mininet builds: pure data, so a fake Host can record it."""

    switches: tuple[Switch, ...]
    machines: tuple[Machine, ...]
    wires: tuple[Wire, ...]


def build_underlay(plan: UnderlayPlan) -> None:
    current().underlay(plan)
