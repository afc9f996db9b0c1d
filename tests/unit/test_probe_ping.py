"""lab.probe.ping's packets (pure): an echo request the kernel would accept, and only an echo
reply with our id counts as one (the sockets themselves: tests/integration/test_probe_engine.py)."""
from __future__ import annotations

import struct

from lab.probe.ping import _checksum, echo_reply_from, echo_request

IP_HEADER = bytes([0x45]) + bytes(19)  # a 20-byte IPv4 header, as a raw socket reads it


def test_an_echo_request_carries_its_id_and_a_valid_checksum():
    packet = echo_request(0xBEEF, 3)
    kind, code, _, ident, seq = struct.unpack("!BBHHH", packet[:8])
    assert (kind, code, ident, seq) == (8, 0, 0xBEEF, 3)
    assert _checksum(packet) == 0  # a correct checksum sums to zero


def test_only_an_echo_reply_with_our_id_is_a_reply():
    reply = IP_HEADER + struct.pack("!BBHHH", 0, 0, 0, 0xBEEF, 1)
    assert echo_reply_from(reply, 0xBEEF)
    assert not echo_reply_from(reply, 0xBEEE)  # someone else's ping
    assert not echo_reply_from(IP_HEADER + echo_request(0xBEEF, 1), 0xBEEF)  # our own request, looped back
    unreachable = IP_HEADER + struct.pack("!BBHHH", 3, 1, 0, 0, 0)
    assert not echo_reply_from(unreachable, 0)  # an ICMP error is not an answer
    assert not echo_reply_from(IP_HEADER[:10], 0) and not echo_reply_from(b"", 0)
