"""Probe source ports: consecutive checks never hand a namespace the same port while the range lasts."""
from __future__ import annotations

import threading

from lab.probe import ports


def test_blocks_follow_each_other_per_namespace(tmp_path, fake):
    fake.files.update({"/run/netns/lab-a": b"", "/run/netns/lab-b": b""})
    state = tmp_path / "ports.json"
    a1 = ports.reserve({"lab-a": 10, "lab-b": 3}, state)
    a2 = ports.reserve({"lab-a": 10}, state)
    b2 = ports.reserve({"lab-b": 5}, state)
    assert a1 == {"lab-a": ports.FIRST, "lab-b": ports.FIRST}
    assert a2 == {"lab-a": ports.FIRST + 10}
    assert b2 == {"lab-b": ports.FIRST + 3}


def test_the_range_wraps_and_stays_below_the_ephemeral_range():
    counters = {"x": ports.SPAN - 2}
    start = ports.advance(counters, {"x": 5})["x"]
    assert [ports.port_at(start, i) for i in range(5)] == [ports.LAST - 1, ports.LAST, ports.FIRST,
                                                          ports.FIRST + 1, ports.FIRST + 2]
    assert counters["x"] == 3 and ports.LAST < 32768


def test_namespaces_that_are_gone_are_forgotten(tmp_path, fake):
    fake.files["/run/netns/alive"] = b""
    state = tmp_path / "ports.json"
    ports.reserve({"alive": 4, "gone": 4}, state)
    ports.reserve({"other": 1}, state)
    assert ports.reserve({"alive": 1, "gone": 1}, state) == {"alive": ports.FIRST + 4, "gone": ports.FIRST}


def test_concurrent_reservations_never_overlap(tmp_path):
    state = tmp_path / "ports.json"
    starts: list[int] = []

    def take():
        for _ in range(20):
            starts.append(ports.reserve({"ns": 7}, state)["ns"])

    workers = [threading.Thread(target=take) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(starts) == [ports.FIRST + 7 * i for i in range(80)]


def test_a_damaged_file_starts_over(tmp_path):
    state = tmp_path / "ports.json"
    state.write_text("{not json")
    assert ports.reserve({"ns": 1}, state) == {"ns": ports.FIRST}
