"""ICMP echoes sent early and judged late: `lab check` asks every ClusterIP for a ping reply it
must not get. The echoes leave before the probe batch and are watched while it runs; once its round
trips say how long a reply could take on this machine (`wait`), the silence is judged `wait` after
the echo left, as a `ping -W wait` started then would have been, without idling after the batch.

One raw socket per family in the sender's namespace (the lab's namespaces allow no ping sockets),
made by a worker thread that entered it (lab.host.netns): a socket stays in the namespace it was
made in. IPv6 targets get ICMPv6 echoes (type 128; the kernel fills in an ICMPv6 raw socket's
checksum, and hands back the ICMPv6 message without its IPv6 header).
"""
from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Sequence

from lab.host.netns import NetnsError, in_netns

ECHO_REPLY, ECHO_REQUEST = 0, 8
ECHO6_REPLY, ECHO6_REQUEST = 129, 128
PAYLOAD = b"k8s-netlab check"


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2)))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    """An ICMP echo request with its checksum (pure)."""
    head = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return head[:2] + struct.pack("!H", _checksum(head + PAYLOAD)) + head[4:] + PAYLOAD


def echo6_request(ident: int, seq: int) -> bytes:
    """An ICMPv6 echo request; its checksum is the kernel's (pure)."""
    return struct.pack("!BBHHH", ECHO6_REQUEST, 0, 0, ident, seq) + PAYLOAD


def echo6_reply_from(message: bytes, ident: int) -> bool:
    """Whether an ICMPv6 message a raw ICMPv6 socket read is an echo reply to our id (pure)."""
    if len(message) < 6:
        return False
    kind, _, _, got = struct.unpack("!BBHH", message[:6])
    return kind == ECHO6_REPLY and got == ident


def echo_reply_from(packet: bytes, ident: int) -> bool:
    """Whether an IPv4 packet a raw ICMP socket read is an echo reply to our id (pure)."""
    at = (packet[0] & 0x0F) * 4 if packet else 0
    if len(packet) < at + 8:
        return False
    kind, _, _, got = struct.unpack("!BBHH", packet[at:at + 6])
    return kind == ECHO_REPLY and got == ident


class Echoes:
    """One echo request to each target from `netns`, sent now; `answered(wait)` says which
    replied within `wait` seconds of it, or why none could be sent."""

    def __init__(self, netns: str, targets: Sequence[str]):
        self.targets, self.error = list(targets), ""
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.socks: dict[int, socket.socket] = {}   # family -> its raw socket
        self.sent = time.monotonic()
        try:
            for seq, target in enumerate(self.targets, 1):
                six = ":" in target
                family = socket.AF_INET6 if six else socket.AF_INET
                if family not in self.socks:
                    proto = socket.IPPROTO_ICMPV6 if six else socket.IPPROTO_ICMP
                    self.socks[family] = in_netns(netns, lambda: socket.socket(family, socket.SOCK_RAW, proto))
                    self.socks[family].setblocking(False)
                request = echo6_request(self.ident, seq) if six else echo_request(self.ident, seq)
                self.socks[family].sendto(request, (target, 0))
        except (NetnsError, OSError) as e:
            self.error = str(e) if isinstance(e, NetnsError) else f"cannot send an echo request: {e.strerror}"
            self.close()

    def answered(self, wait: float) -> set[str]:
        """The targets whose echo reply came before `wait` seconds after the echoes left (an
        echo from another sender with our random id would be a reply from that address too: a
        ClusterIP that answers any ping fails alike)."""
        heard: set[str] = set()
        if not self.socks:
            return heard
        try:
            deadline = self.sent + wait
            while len(heard) < len(self.targets) and time.monotonic() < deadline:
                ready, _, _ = select.select(list(self.socks.values()), [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                for sock in ready:
                    packet, addr = sock.recvfrom(65536)
                    reply = echo6_reply_from if sock.family == socket.AF_INET6 else echo_reply_from
                    if addr[0] in self.targets and reply(packet, self.ident):
                        heard.add(addr[0])
        finally:
            self.close()
        return heard

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.socks = {}
