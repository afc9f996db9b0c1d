"""How long after the pods are up cluster DNS answers for every Service (30-pod topology, DNS on).

The clock starts when `lab up` reports its pods phase done (every container started, servers
ready) and stops when a pod's query to kube-dns's ClusterIP has answered every Service's name;
queries are sent from inside a pod's namespace, every few milliseconds, while `lab up` goes on.

    sudo .venv/bin/python bench/dns_ready.py [--rounds N]
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import median, own_lab_in_process, table

import raw_baseline

from lab.controlplane.plan import plan
from lab.dns.records import dns_ip
from lab.host.netns import in_netns
from lab.topology.load import load_topology

TOPOLOGY = str(Path(__file__).resolve().parent / "topology-30-dns.yaml")


def query(server: str, name: str, timeout: float = 0.05) -> bool:
    """One A query over UDP; True for an answer with at least one record."""
    qid = random.randrange(65536)
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    packet += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(packet, (server, 53))
            reply = s.recv(2048)
        except OSError:
            return False
    rid, flags, _, answers = struct.unpack("!HHHH", reply[:8])
    return rid == qid and flags & 0xF == 0 and answers > 0


def one_round() -> tuple[float, float]:
    state = plan(load_topology(TOPOLOGY))
    names = [f"{s.name}.{s.namespace}.svc.{state.dns_domain}" for s in state.services]
    client = next(p for p in state.pods if p.namespace == "default")
    marks: dict[str, float] = {}
    stop = threading.Event()  # set when `lab up` has returned or failed: the watcher never outlives it

    def watch() -> None:
        while "pods" not in marks:
            if stop.is_set():
                return
            time.sleep(0.001)
        pending = set(names)
        while pending and time.monotonic() - marks["pods"] < 10:
            pending = {n for n in pending if not in_netns(client.netns, lambda n=n: query(dns_ip(state), n))}
        marks["dns"] = time.monotonic()

    def progress(name: str, _: float) -> None:
        if name.startswith("pods"):
            marks["pods"] = time.monotonic()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with own_lab_in_process(TOPOLOGY, progress) as lab:  # torn down (this lab only) on the way out
            up = lab.up_seconds
            stop.set()
            watcher.join()
    finally:
        stop.set()
        watcher.join()
    if "dns" not in marks:
        raise SystemExit("the pods phase of lab up was never reported: no DNS figure")
    return marks["dns"] - marks["pods"], up


def by_hand() -> tuple[float, float]:
    """The floor (bench/raw_baseline.py) of the same topology, and how long after its pods phase
    (dnsmasq answering) a pod's query to the ClusterIP answers every Service: its rule restores and
    the same queries."""
    state = plan(load_topology(TOPOLOGY))
    names = [f"{s.name}.{s.namespace}.svc.{state.dns_domain}" for s in state.services]
    client = raw_baseline.names(state)[1][next(p for p in state.pods if p.namespace == "default").key]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            seconds = raw_baseline.floor(state, Path(tmp))
            t0 = time.monotonic()
            pending = set(names)
            while pending and time.monotonic() - t0 < 10:
                pending = {n for n in pending if not in_netns(client, lambda n=n: query(dns_ip(state), n))}
            if pending:
                raise SystemExit(f"raw baseline: no answer for {sorted(pending)}")
            return seconds["everything"], seconds["rule restores"] + time.monotonic() - t0
        finally:
            raw_baseline.cleanup(state, Path(tmp))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    runs, floors, load = [], [], []
    for _ in range(a.rounds):
        load.append(os.getloadavg()[0])
        floors.append(by_hand())
        runs.append(one_round())
    ready, up = median([r[0] for r in runs]), median([r[1] for r in runs])
    print(f"3 nodes, 30 pods, 3 Services + kube-dns, {a.rounds} rounds, medians; load average 1 min at each "
          f"round's start: {', '.join(f'{x:.1f}' for x in load)} (2 cores)\n")
    print(table([("raw baseline: everything lab up does, by hand (the floor)", median([f[0] for f in floors]), ""),
                 ("raw baseline: the floor's DNS answering for every Service, after its pods are up",
                  median([f[1] for f in floors]), ""),
                 ("lab up (in process), ready for traffic", up, ""),
                 ("DNS answering for every Service, after the pods are up", ready, "<= 0.3 s")]))
    print("\nall figures within target" if ready <= 0.3 else "\nSOME FIGURES MISS THEIR TARGET")
    return 0 if ready <= 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())
