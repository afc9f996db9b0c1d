"""The trace's pcap (pure): merging tcpdump's per-namespace files in time order, and which kept
trace directories are pruned."""
from __future__ import annotations

import struct

import pytest

from lab.errors import LabError
from lab.trace import pcap, saved

SLL2 = 276


def capture(*packets: tuple[int, int, bytes], linktype: int = SLL2, nanos: bool = False, snaplen: int = 262144) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    head = struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    return head + b"".join(struct.pack("<IIII", s, f, len(d), len(d)) + d for s, f, d in packets)


def test_merge_orders_packets_of_all_files_by_time():
    a = capture((10, 500, b"a1"), (12, 0, b"a2"))
    b = capture((10, 100, b"b1"), (11, 999_999, b"b2"), (12, 0, b"b3"))
    merged = pcap.merge([a, b])
    assert merged[:24] == a[:24]
    bodies, at = [], 24
    while at < len(merged):
        _, _, n, _ = struct.unpack("<IIII", merged[at:at + 16])
        bodies.append(merged[at + 16:at + 16 + n])
        at += 16 + n
    assert bodies == [b"b1", b"a1", b"b2", b"a2", b"b3"]    # equal times: the first file's first
    assert pcap.count(merged) == 5


def test_merge_of_one_file_is_that_file_and_of_none_is_empty():
    a = capture((1, 2, b"x"))
    assert pcap.merge([a]) == a
    assert pcap.merge([]) == b""
    assert pcap.count(capture()) == 0


def test_merge_refuses_what_is_not_one_kind_of_pcap():
    with pytest.raises(LabError, match="capture 2 is not a pcap"):
        pcap.merge([capture(), b"listening on any"])
    with pytest.raises(LabError, match="another link type"):
        pcap.merge([capture(), capture(linktype=1)])
    with pytest.raises(LabError, match="time precision"):
        pcap.merge([capture(), capture(nanos=True)])
    with pytest.raises(LabError, match="cut short"):
        pcap.merge([capture((1, 2, b"abcd"))[:-1]])


def test_merge_keeps_the_largest_snaplen():
    merged = pcap.merge([capture(snaplen=100), capture(snaplen=65535)])
    assert struct.unpack("<I", merged[16:20])[0] == 65535


def test_trace_ids_sort_by_time_and_only_ours_are_pruned():
    ids = [saved.new_id(t, f"{t:016x}") for t in (3, 1, 2)]
    assert all(saved.ID.fullmatch(i) for i in ids)
    assert saved.stale([*ids, "notes.txt", "../x"], keep=2) == [saved.new_id(1, f"{1:016x}")]
    assert saved.stale(ids, keep=3) == []
    assert saved.stale(ids, keep=0) == sorted(ids)
