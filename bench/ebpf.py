"""Service programming on one node for `proxy: ebpf` beside kube-proxy's two modes, same run: N
ClusterIP Services x 3 endpoints (N = 1000 and 10,000) written in full, then one endpoint change.
iptables and nftables into throw-away namespaces (`ebb<pid>-0`, `ebb<pid>-1`, as bench/kube_proxy.py);
ebpf into the maps of sock_lb.o loaded into a scratch bpffs (not attached to anything), with one
`bpftool batch`. Each restore is capped (--cap seconds): a mode that does not finish in time is
reported as capped, not left out silently. SIGINT and SIGTERM remove the namespaces and the scratch
bpffs before exiting.

    sudo .venv/bin/python bench/ebpf.py [--rounds 3] [--cap 300] [--sizes 1000,10000]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

from common import median, table
from kube_proxy import services, state_with

from lab.controlplane.state import EndpointSliceState
from lab.host import ip_batch
from lab.host.netns import in_netns
from lab.kube_proxy import ebpf, ebpf_sync, iptables, nftables
from lab.kube_proxy.model import service_ports


class Capped(Exception):
    """A restore that did not finish within the cap."""


def changed(slices: list[EndpointSliceState]) -> list[EndpointSliceState]:
    """The first Service loses its last endpoint."""
    first = slices[0]
    return [EndpointSliceState(first.namespace, first.name, first.service, first.ports, first.endpoints[:-1])] + slices[1:]


def timed(argv: list[str], text: str, cap: float, netns: Optional[str] = None) -> float:
    """Seconds `argv` took to read `text` (in netns), Capped past `cap` seconds."""
    def go():
        return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=cap)
    t0 = time.perf_counter()
    try:
        done = in_netns(netns, go) if netns else go()
    except subprocess.TimeoutExpired:
        raise Capped(f"{argv[0]} took more than {cap:.0f} s") from None
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr[-500:]}")
    return time.perf_counter() - t0


def rendered(render: Callable[[], str]) -> tuple[str, float]:
    t0 = time.perf_counter()
    text = render()
    return text, time.perf_counter() - t0


def iptables_round(state, node, slices, after, only, netns: str, cap: float) -> tuple[float, float]:
    timed(["iptables-restore", "--noflush"], iptables.base_rules(), cap, netns)
    text, t = rendered(lambda: iptables.render(state, node, slices))
    full = t + timed(["iptables-restore", "--noflush"], text, cap, netns)
    text, t = rendered(lambda: iptables.render_update(state, state, node, slices, after, only))
    return full, t + timed(["iptables-restore", "--noflush"], text, cap, netns)


def nftables_round(state, node, slices, after, only, netns: str, cap: float) -> tuple[float, float]:
    text, t = rendered(lambda: nftables.render(state, node, slices))
    full = t + timed(["nft", "-f", "-"], text, cap, netns)
    text, t = rendered(lambda: nftables.render_update(state, state, node, slices, after, only=only))
    return full, t + timed(["nft", "-f", "-"], text, cap, netns)


def ebpf_round(state, node, slices, after, only, fs: str, obj: str, cap: float) -> tuple[float, float, int]:
    subprocess.run(["bpftool", "prog", "loadall", obj, f"{fs}/progs", "pinmaps", f"{fs}/maps"], check=True)
    maps = ebpf.map_paths(fs)
    lines, t = rendered(lambda: ebpf.batch({}, ebpf.entries(service_ports(state, node.name, slices), node.ip), maps))
    full = t + timed(["bpftool", "batch", "file", "-"], "\n".join(lines) + "\n", cap)

    def change() -> list[str]:
        old = ebpf.entries(service_ports(state, node.name, slices, only), node.ip)
        return ebpf.batch(old, ebpf.entries(service_ports(state, node.name, after, only), node.ip), maps)
    lines, t = rendered(change)
    return full, t + timed(["bpftool", "batch", "file", "-"], "\n".join(lines) + "\n", cap), len(lines)


class Scratch:
    """The bench's namespaces and bpffs: made per round, removed after it and on SIGINT/SIGTERM."""

    def __init__(self) -> None:
        self.ns = [f"ebb{os.getpid()}-{i}" for i in range(2)]
        self.fs = ""

    def make(self) -> None:
        ip_batch([f"netns add {x}" for x in self.ns])
        self.fs = tempfile.mkdtemp(prefix="k8s-netlab-bench-")
        subprocess.run(["mount", "-t", "bpf", "bpf", self.fs], check=True)

    def remove(self) -> None:
        ip_batch([f"netns delete {x}" for x in self.ns if os.path.exists(f"/run/netns/{x}")], force=True)
        if self.fs:
            subprocess.run(["umount", self.fs], check=False)
            os.rmdir(self.fs)
            self.fs = ""


def one_round(n: int, scratch: Scratch, obj: str, cap: float) -> dict[str, object]:
    svcs, slices = services(n)
    state = state_with(svcs)
    node = state.nodes[1]
    after, only = changed(slices), {f"default/{svcs[0].name}"}
    out: dict[str, object] = {}
    scratch.make()
    try:
        for mode, run in (("iptables", lambda: iptables_round(state, node, slices, after, only, scratch.ns[0], cap)),
                          ("nftables", lambda: nftables_round(state, node, slices, after, only, scratch.ns[1], cap)),
                          ("ebpf", lambda: ebpf_round(state, node, slices, after, only, scratch.fs, obj, cap))):
            try:
                out[mode] = run()
            except Capped as e:
                out[mode] = str(e)
    finally:
        scratch.remove()
    return out


def rows(n: int, runs: list[dict[str, object]]) -> list[tuple]:
    def fig(mode: str, i: int) -> Optional[float]:
        got = [r[mode][i] for r in runs if isinstance(r[mode], tuple)]
        return median(got) if len(got) == len(runs) else None

    def note(mode: str) -> str:
        capped = next((r[mode] for r in runs if isinstance(r[mode], str)), "")
        return f"capped: {capped}" if capped else ""
    lines = next((r["ebpf"][2] for r in runs if isinstance(r["ebpf"], tuple)), 0)
    return [(f"{n} Services: iptables, render + iptables-restore", fig("iptables", 0), note("iptables")),
            (f"{n} Services: nftables, render + nft -f", fig("nftables", 0), note("nftables")),
            (f"{n} Services: ebpf, map entries + one bpftool batch", fig("ebpf", 0), note("ebpf")),
            (f"{n} Services, one endpoint change: iptables partial sync", fig("iptables", 1), ""),
            (f"{n} Services, one endpoint change: nftables transaction", fig("nftables", 1), ""),
            (f"{n} Services, one endpoint change: ebpf map updates", fig("ebpf", 1), f"{lines} map lines")]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cap", type=float, default=300, help="seconds one restore may take before it is reported capped")
    ap.add_argument("--sizes", default="1000,10000")
    a = ap.parse_args()
    scratch = Scratch()

    def stop(signum, _frame):  # unwind through the finally that removes the scratch namespaces and bpffs
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    obj = str(ebpf_sync.build())
    print(f"one node, N ClusterIP Services x 3 endpoints, {a.rounds} rounds, medians, cap {a.cap:.0f} s per restore\n",
          flush=True)
    try:
        for n in (int(x) for x in a.sizes.split(",")):
            runs = [one_round(n, scratch, obj, a.cap) for _ in range(a.rounds)]
            print(table(rows(n, runs)) + "\n", flush=True)
    finally:
        scratch.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
