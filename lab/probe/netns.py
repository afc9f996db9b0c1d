"""Reading interface addresses from inside named namespaces without forking `ip` per question:
a worker thread enters each namespace (lab.host.netns) and asks rtnetlink directly."""
from __future__ import annotations

import os
import socket
import struct
from collections.abc import Sequence

from lab.host.netns import enter, in_worker, open_netns

# rtnetlink, just enough for an RTM_GETADDR dump (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h)
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTATTR = struct.Struct("=HH")  # len, type


def _align(n: int) -> int:
    return (n + 3) & ~3


SCOPE_UNIVERSE = 0  # a global address: not link-local (253) nor host (254, ::1)


def _ipv4_addresses(ifindex: int | None, ipv6: bool = False) -> list[str]:
    """IPv4 addresses on ifindex (None: on any interface), and with ipv6 its global IPv6 ones too,
    via a netlink socket of the current thread's namespace."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        body = IFADDRMSG.pack(socket.AF_UNSPEC if ipv6 else socket.AF_INET, 0, 0, 0, 0)
        nl.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        found: list[str] = []
        while True:
            data = nl.recv(65536)
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, kind, _, _, _ = NLMSGHDR.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + NLMSGHDR.size)[0]
                    raise OSError(code, f"RTM_GETADDR: {os.strerror(code)}")
                if kind == RTM_NEWADDR:
                    found += _parse_addr(data[offset + NLMSGHDR.size: offset + length], ifindex, ipv6)
                offset += _align(length)


def _parse_addr(msg: bytes, ifindex: int | None, ipv6: bool = False) -> list[str]:
    """The local IPv4 address of one RTM_NEWADDR message (or a global IPv6 one, with ipv6), if it
    is on ifindex (or any, for None)."""
    family, _, _, scope, index = IFADDRMSG.unpack_from(msg)
    wanted = family == socket.AF_INET or (ipv6 and family == socket.AF_INET6 and scope == SCOPE_UNIVERSE)
    if not wanted or (ifindex is not None and index != ifindex):
        return []
    attrs: dict[int, bytes] = {}
    offset = IFADDRMSG.size
    while offset + RTATTR.size <= len(msg):
        length, kind = RTATTR.unpack_from(msg, offset)
        if length < RTATTR.size:
            break
        attrs[kind] = msg[offset + RTATTR.size: offset + length]
        offset += _align(length)
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)  # IFA_ADDRESS is the peer on point-to-point links
    if raw and len(raw) == 16 and family == socket.AF_INET6:
        return [socket.inet_ntop(socket.AF_INET6, raw)]
    return [socket.inet_ntoa(raw)] if raw and len(raw) == 4 else []


def interface_addresses(netns: str, ifname: str, ipv6: bool = False) -> list[str]:
    """IPv4 addresses on ifname as seen from inside netns (no prefix length), primary first; with
    ipv6, its global IPv6 addresses after them.

    A missing interface gives [] (a pod without eth0 is a finding, not a crash); a missing
    namespace raises NetnsError.
    """
    return interface_addresses_many([(netns, ifname)], ipv6)[(netns, ifname)]


def interface_addresses_many(pairs: Sequence[tuple[str, str]], ipv6: bool = False) -> dict[tuple[str, str], list[str]]:
    """interface_addresses for many (netns, ifname) pairs in one worker thread: no process per pair.
    ifname "*" means every interface of that namespace."""
    groups: dict[str, set[str]] = {}
    for netns, ifname in pairs:
        groups.setdefault(netns, set()).add(ifname)
    fds: dict[str, int] = {}
    try:
        for netns in groups:
            fds[netns] = open_netns(netns)

        def work() -> dict[tuple[str, str], list[str]]:
            result: dict[tuple[str, str], list[str]] = {}
            for netns, ifnames in groups.items():  # one setns per namespace
                enter(fds[netns], netns)
                for ifname in ifnames:
                    if ifname == "*":
                        result[(netns, ifname)] = _ipv4_addresses(None, ipv6)
                        continue
                    try:
                        index = socket.if_nametoindex(ifname)  # glibc's ioctl socket: this thread's netns
                    except OSError:
                        index = 0  # no such interface
                    result[(netns, ifname)] = _ipv4_addresses(index, ipv6) if index else []
            return result

        return in_worker(work)
    finally:
        for fd in fds.values():
            os.close(fd)
