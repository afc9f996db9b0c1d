"""Entering named network namespaces from worker threads, never the main thread.

setns(2) moves only the calling thread, and what a thread creates (a socket, a child process)
belongs to the namespace the thread is in at that moment. So code that needs a namespace runs in
a fresh thread (`in_netns`) that enters it and exits: nothing ever needs restoring.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import TypeVar

from lab.errors import LabError

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
MNT_DETACH = 2
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(LabError):
    """A named network namespace is missing or unusable."""


def open_netns(name: str) -> int:
    """An fd for /run/netns/<name>, opened from any thread; the caller closes it."""
    if not name or "/" in name or name in (".", ".."):
        raise NetnsError(f"invalid network namespace name {name!r}")
    path = f"{NETNS_DIR}/{name}"
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(f"network namespace {name!r} does not exist (no {path}; see `ip netns list`)") from None
    except OSError as e:
        raise NetnsError(f"cannot open network namespace {name!r} ({path}): {e.strerror}") from None


def enter(fd: int, name: str) -> None:
    """Move the calling thread (only it) into the namespace behind fd."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        hint = " (not a network namespace: stale /run/netns entry?)" if err == errno.EINVAL else ""
        raise NetnsError(f"cannot enter network namespace {name!r}: {os.strerror(err)}{hint}")


def in_worker(fn: Callable[[], T]) -> T:
    """Run fn in a thread of its own, which may setns freely and dies with its namespace."""
    outcome: list = []

    def body() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as e:  # re-raised in the caller's thread
            outcome.append((False, e))

    worker = threading.Thread(target=body, name="netns-worker", daemon=True)
    worker.start()
    worker.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread that has entered network namespace `name` (children it spawns
    are born there too)."""
    fd = open_netns(name)

    def body() -> T:
        try:
            enter(fd, name)
        finally:
            os.close(fd)
        return fn()

    return in_worker(body)


MS_BIND = 4096
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def link_up(ifname: str) -> None:
    """Set a link of the calling thread's namespace up, as `ip link set IF up` does, by ioctl: the
    loopback CNI plugin does only this for a pod's lo, at the price of a process (~10 ms)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH", ifname.encode(), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, req)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", ifname.encode(), flags | IFF_UP))


def alias(existing: str, new: str) -> None:
    """A second name for a namespace, as `ip netns attach` makes one: a bind mount of its file.
    `ip netns exec <new>` then bind-mounts /etc/netns/<new>/ files — a hostNetwork pod gets its
    own resolv.conf in its node's network namespace."""
    path = f"{NETNS_DIR}/{new}"
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise NetnsError(f"network namespace name {new!r} is taken") from None
    if _libc.mount(f"{NETNS_DIR}/{existing}".encode(), path.encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        os.unlink(path)
        raise NetnsError(f"cannot name {existing!r} also {new!r}: {os.strerror(err)}")


def make_uts(path: str, hostname: str) -> None:
    """A UTS namespace whose hostname is `hostname`, kept alive by a bind mount on `path` (as
    `ip netns` keeps network namespaces): a pod's containers join it, so `hostname` prints the
    pod's name as in Kubernetes. unshare(2) of CLONE_NEWUTS moves only the calling thread: a
    worker thread makes it and ends, no process is needed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o444))
    name = hostname.encode()

    def body() -> None:
        for what, call in (("unshare", lambda: _libc.unshare(CLONE_NEWUTS)),
                           ("sethostname", lambda: _libc.sethostname(name, len(name))),
                           ("mount", lambda: _libc.mount(b"/proc/thread-self/ns/uts", path.encode(), None, MS_BIND, None))):
            if call() != 0:
                raise LabError(f"cannot give {path} the hostname {hostname!r}: {what}: {os.strerror(ctypes.get_errno())}")

    in_worker(body)


def drop_uts(path: str) -> None:
    """Let go of a UTS namespace made by make_uts (it ends with its last process)."""
    _libc.umount2(path.encode(), MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def gratuitous_arp(ip: str, dev: str) -> None:
    """An ARP request and an ARP reply for `ip` from this namespace's `dev`, both broadcast, sender
    and target the address itself: every host on the segment that knows `ip` updates its cache."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
        s.bind((dev, 0))
        mac = s.getsockname()[4]
        addr = IPv4Address(ip).packed
        for op in (1, 2):
            arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, mac, addr, b"\xff" * 6 if op == 2 else bytes(6), addr)
            s.send(b"\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp)
