"""The trace's captures as one pcap file (pure): tcpdump writes one classic pcap per namespace
(`-i any`: all of one link type); they are merged in time order into one file a user opens in
Wireshark. mergecap is not installed here, and the format is simple enough to merge in Python."""
from __future__ import annotations

import struct
from typing import Iterable, NamedTuple

from lab.errors import LabError

MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),      # microseconds
          b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}             # nanoseconds
HEADER, RECORD = 24, 16


class Packet(NamedTuple):
    nanos: int        # the capture time, in nanoseconds (to order packets of files of either precision)
    order: int        # file, then position: equal times keep their order
    header: bytes     # the record header as written (same byte order and precision as the output's)
    data: bytes


def _packets(data: bytes, index: int, endian: str, unit: int) -> Iterable[Packet]:
    at = HEADER
    while at < len(data):
        if at + RECORD > len(data):
            raise LabError(f"capture {index + 1}: a packet header cut short at byte {at}")
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[at:at + RECORD])
        if at + RECORD + caplen > len(data):
            raise LabError(f"capture {index + 1}: a packet cut short at byte {at}")
        yield Packet(sec * 1_000_000_000 + frac * unit, index * 1_000_000 + at, data[at:at + RECORD],
                     data[at + RECORD:at + RECORD + caplen])
        at += RECORD + caplen


def count(data: bytes) -> int:
    """The number of packets in one pcap file."""
    endian, unit = _check(data, 0)
    return sum(1 for _ in _packets(data, 0, endian, unit))


def _check(data: bytes, index: int) -> tuple[str, int]:
    if len(data) < HEADER or data[:4] not in MAGICS:
        raise LabError(f"capture {index + 1} is not a pcap file (no pcap header)")
    return MAGICS[data[:4]]


def merge(files: Iterable[bytes]) -> bytes:
    """One pcap of every packet of `files`, in time order. The files must agree on byte order,
    precision and link type (they do: tcpdump -i any on one machine); empty input writes nothing."""
    files = list(files)
    if not files:
        return b""
    first = files[0]
    kind = _check(first, 0)
    packets = []
    for i, data in enumerate(files):
        if _check(data, i) != kind or data[:4] != first[:4]:
            raise LabError(f"capture {i + 1} differs in byte order or time precision from the first")
        if data[20:24] != first[20:24]:
            raise LabError(f"capture {i + 1} has another link type than the first: they cannot be merged")
        packets += _packets(data, i, *kind)
    snaplen = max(struct.unpack(kind[0] + "I", d[16:20])[0] for d in files)
    head = first[:16] + struct.pack(kind[0] + "I", snaplen) + first[20:24]
    return head + b"".join(p.header + p.data for p in sorted(packets))
