"""cgroup v2 directories the lab makes (`cluster.proxy: ebpf`: one per node) and moving processes
into them. File operations only; no process is started."""
from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional

from lab.errors import LabError


def cgroup2_mount(mounts: str) -> Optional[str]:
    """The first cgroup v2 mount point in /proc/self/mounts text, or None."""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return fields[1]
    return None


def placed(argv: list[str], cgroup: str) -> list[str]:
    """argv run as a member of `cgroup`: the shell writes its own PID into cgroup.procs, then execs
    argv (which may be `ip netns exec`: its remount of /sys hides the cgroup mount, so the move
    comes first)."""
    return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', f"{cgroup}/cgroup.procs", *argv]


def mount_point() -> Optional[str]:
    """Where cgroup v2 is mounted here (in this mount namespace), or None."""
    with open("/proc/self/mounts") as f:
        return cgroup2_mount(f.read())


def own(root: str) -> str:
    """This process's cgroup v2 directory."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return root.rstrip("/") + line[3:].strip().rstrip("/")
    raise LabError("this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")


def make(path: str) -> None:
    try:
        os.mkdir(path)
    except FileExistsError:
        raise LabError(f"cgroup {path} already exists and is not this lab's: `lab clean`, or remove it "
                       "(rmdir, once no process is in it)") from None
    except OSError as e:
        raise LabError(f"cannot create cgroup {path}: {e.strerror}") from None


def place(path: str, pids: Iterable[int]) -> None:
    """Move processes into the cgroup; one that ended meanwhile is no error."""
    for pid in pids:
        try:
            with open(f"{path}/cgroup.procs", "w") as f:
                f.write(str(pid))
        except ProcessLookupError:
            continue
        except OSError as e:
            if e.errno == errno.ESRCH:
                continue
            raise LabError(f"cannot move process {pid} into cgroup {path}: {e.strerror}") from None


def members(path: str) -> list[int]:
    try:
        with open(f"{path}/cgroup.procs") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def remove(path: str, timeout: float = 3.0) -> Optional[str]:
    """rmdir the cgroup, waiting for its last processes to end; None or what kept it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return None
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                return f"cgroup {path} not removed: {e.strerror} (processes {members(path)[:5]})"
            time.sleep(0.05)


@contextmanager
def joined() -> Iterator[Callable[[Optional[str]], None]]:
    """Within: join(path) moves this whole process into that cgroup (None: back to its own). A
    socket belongs to the cgroup its creator was in when it was made, and the socket-LB programs
    of that cgroup see its connect(). After: the process is back where it was."""
    root = mount_point()
    if not root:
        raise LabError("cgroup v2 is not mounted here: sockets cannot be made in a node's cgroup")
    home = own(root)
    here = [home]

    def join(path: Optional[str]) -> None:
        path = path or home
        if path != here[0]:
            place(path, [os.getpid()])
            here[0] = path
    try:
        yield join
    finally:
        join(None)
