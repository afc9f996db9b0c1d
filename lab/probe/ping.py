"""ICMP echoes sent early and judged late: `lab check` asks every ClusterIP for a ping reply it
must not get. The echoes leave before the probe batch and are watched while it runs; once its round
trips say how long a reply could take on this machine (`wait`), the silence is judged `wait` after
the echo left, as a `ping -W wait` started then would have been, without idling after the batch.

One raw socket in the sender's namespace (the lab's namespaces allow no ping sockets), made by a
worker thread that entered it (lab.host.netns): a socket stays in the namespace it was made in.
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
PAYLOAD = b"k8s-netlab check"


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2)))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    """An ICMP echo request with its checksum (pure)."""
    head = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return head[:2] + struct.pack("!H", _checksum(head + PAYLOAD)) + head[4:] + PAYLOAD


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
        self.sock: socket.socket | None = None
        self.sent = time.monotonic()
        try:
            self.sock = in_netns(netns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
            self.sock.setblocking(False)
            for seq, target in enumerate(self.targets, 1):
                self.sock.sendto(echo_request(self.ident, seq), (target, 0))
        except (NetnsError, OSError) as e:
            self.error = str(e) if isinstance(e, NetnsError) else f"cannot send an echo request: {e.strerror}"
            self.close()

    def answered(self, wait: float) -> set[str]:
        """The targets whose echo reply came before `wait` seconds after the echoes left (an
        echo from another sender with our random id would be a reply from that address too: a
        ClusterIP that answers any ping fails alike)."""
        heard: set[str] = set()
        if self.sock is None:
            return heard
        try:
            deadline = self.sent + wait
            while len(heard) < len(self.targets) and time.monotonic() < deadline:
                ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                packet, (addr, _) = self.sock.recvfrom(65536)
                if addr in self.targets and echo_reply_from(packet, self.ident):
                    heard.add(addr)
        finally:
            self.close()
        return heard

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
