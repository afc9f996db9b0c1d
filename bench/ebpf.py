"""Service programming on one node for `proxy: ebpf` beside kube-proxy's two modes, same run: N
ClusterIP Services x 3 endpoints (N = 1000 and 10,000) written in full, then one endpoint change.
iptables and nftables into throw-away namespaces (as bench/kube_proxy.py); ebpf into the maps of
sock_lb.o loaded into a scratch bpffs (not attached to anything), with one `bpftool batch`.

    sudo .venv/bin/python bench/ebpf.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from common import median, table
from kube_proxy import run_in, services, state_with

from lab.controlplane.state import EndpointSliceState
from lab.host import ip_batch
from lab.kube_proxy import ebpf, ebpf_sync, iptables, nftables
from lab.kube_proxy.model import service_ports


def changed(slices: list[EndpointSliceState]) -> list[EndpointSliceState]:
    """The first Service loses its last endpoint."""
    first = slices[0]
    return [EndpointSliceState(first.namespace, first.name, first.service, first.ports, first.endpoints[:-1])] + slices[1:]


def bpftool_batch(lines: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(["bpftool", "batch", "file", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bpftool batch failed: {done.stderr[-500:]}")
    return time.perf_counter() - t0


def one_round(n: int, ns: list[str], obj: str) -> list[float]:
    svcs, slices = services(n)
    state = state_with(svcs)
    node = state.nodes[1]
    after = changed(slices)
    only = {f"default/{svcs[0].name}"}
    out = []
    ip_batch([f"netns add {x}" for x in ns])
    try:
        run_in(ns[0], ["iptables-restore", "--noflush"], iptables.base_rules())
        t0 = time.perf_counter()
        text = iptables.render(state, node, slices)
        out.append(time.perf_counter() - t0 + run_in(ns[0], ["iptables-restore", "--noflush"], text))
        t0 = time.perf_counter()
        text = iptables.render_update(state, state, node, slices, after, only)
        out.append(time.perf_counter() - t0 + run_in(ns[0], ["iptables-restore", "--noflush"], text))
        t0 = time.perf_counter()
        out.append(time.perf_counter() - t0 + run_in(ns[1], ["nft", "-f", "-"], nftables.render(state, node, slices)))
        t0 = time.perf_counter()
        text = nftables.render_update(state, state, node, slices, after, only=only)
        out.append(time.perf_counter() - t0 + run_in(ns[1], ["nft", "-f", "-"], text))
    finally:
        ip_batch([f"netns delete {x}" for x in ns], force=True)
    with tempfile.TemporaryDirectory(prefix="k8s-netlab-bench-") as fs:
        subprocess.run(["mount", "-t", "bpf", "bpf", fs], check=True)
        try:
            subprocess.run(["bpftool", "prog", "loadall", obj, f"{fs}/progs", "pinmaps", f"{fs}/maps"], check=True)
            maps = ebpf.map_paths(fs)
            t0 = time.perf_counter()
            full = ebpf.entries(service_ports(state, node.name, slices))
            out.append(time.perf_counter() - t0 + bpftool_batch(ebpf.batch({}, full, maps)))
            t0 = time.perf_counter()
            old = ebpf.entries(service_ports(state, node.name, slices, only))
            new = ebpf.entries(service_ports(state, node.name, after, only))
            lines = ebpf.batch(old, new, maps)
            out.append(time.perf_counter() - t0 + bpftool_batch(lines))
        finally:
            subprocess.run(["umount", fs], check=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    obj = str(ebpf_sync.build())
    ns = [f"ebb{os.getpid()}-{i}" for i in range(2)]
    print(f"one node, N ClusterIP Services x 3 endpoints, {a.rounds} rounds, medians\n", flush=True)
    for n in (1000, 10000):
        runs = [one_round(n, ns, obj) for _ in range(a.rounds)]
        ipt_full, ipt_one, nft_full, nft_one, bpf_full, bpf_one = (median(list(c)) for c in zip(*runs))
        rows = [(f"{n} Services: iptables, render + iptables-restore", ipt_full, ""),
                 (f"{n} Services: nftables, render + nft -f", nft_full, ""),
                 (f"{n} Services: ebpf, map entries + one bpftool batch", bpf_full, ""),
                 (f"{n} Services, one endpoint change: iptables partial sync", ipt_one, ""),
                 (f"{n} Services, one endpoint change: nftables transaction", nft_one, ""),
                 (f"{n} Services, one endpoint change: ebpf map updates", bpf_one, "")]
        print(table(rows) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
