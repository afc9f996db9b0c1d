"""kube-proxy rule programming on one node: 1000 Services x 3 endpoints, then one more Service,
in both modes, beside the baseline the issue names (the same iptables rules as single
`iptables` calls), all in the same run, in throw-away namespaces.

    sudo .venv/bin/python bench/kube_proxy.py [--baseline-services N]
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from ipaddress import IPv4Network

from common import median, table

from lab.controlplane.state import (
    ClusterState, EndpointPortState, EndpointSliceState, EndpointState, ServicePortState, ServiceState,
)
from lab.kube_proxy import chains, iptables, nftables
from lab.host import ip_batch
from lab.host.netns import in_netns

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.unit.golden import shipped_state  # noqa: E402  (the shipped services.yaml, planned)


def services(n: int, first: int = 0) -> tuple[list[ServiceState], list[EndpointSliceState]]:
    """n ClusterIP Services, 3 endpoints each, one on each of services.yaml's nodes."""
    base = shipped_state("services")
    start = IPv4Network(base.service_cidr).network_address + 0x1000
    svcs, slices = [], []
    for i in range(first, first + n):
        name = f"svc-{i:04d}"
        svcs.append(ServiceState("default", name, "ClusterIP", str(start + i), (ServicePortState("http", "TCP", 80, "8080"),),
                                 selector=(("app", name),)))
        eps = tuple(EndpointState(str(IPv4Network(node.pod_cidr).network_address + 2 + i % 250), node.name,
                                  f"default/{name}-{node.name}") for node in base.nodes)
        slices.append(EndpointSliceState("default", f"{name}-abcde", name, (EndpointPortState("http", "TCP", 8080),), eps))
    return svcs, slices


def state_with(svcs) -> ClusterState:
    return replace(shipped_state("services"), pods=(), services=tuple(svcs))


def run_in(netns: str, argv: list[str], text: str = "") -> float:
    t0 = time.perf_counter()
    proc = in_netns(netns, lambda: subprocess.run(argv, input=text, capture_output=True, text=True))
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr[:500]}")
    return time.perf_counter() - t0


def as_single_calls(text: str) -> list[list[str]]:
    """The same rules as one `iptables` call each: -N for each chain, -A for each rule."""
    calls, tbl = [], "filter"
    for line in text.splitlines():
        if line.startswith("*"):
            tbl = line[1:]
        elif line.startswith(":KUBE") or line.startswith(":IP-MASQ"):
            calls.append(["iptables", "-t", tbl, "-N", line[1:].split()[0]])
        elif line.startswith("-A "):
            calls.append(["iptables", "-t", tbl, *shlex.split(line)])
    return calls


def one_round(ns: list[str]) -> list[float]:
    """Fresh namespaces, cold caches: (iptables full, iptables +1, nft full, nft +1) seconds."""
    chains._hash16.cache_clear()
    nftables.hash_and_truncate.cache_clear()
    ip_batch([f"netns add {n}" for n in ns])
    try:
        svcs, slices = services(1000)
        big, node = state_with(svcs), state_with(svcs).nodes[1]
        extra_svcs, extra_slices = services(1, first=1000)
        bigger = state_with(svcs + extra_svcs)
        run_in(ns[0], ["iptables-restore", "--noflush"], iptables.base_rules())
        t0 = time.perf_counter()
        full = iptables.render(big, node, slices)
        ipt_full = time.perf_counter() - t0 + run_in(ns[0], ["iptables-restore", "--noflush"], full)
        t0 = time.perf_counter()
        part = iptables.render_update(big, bigger, node, slices, slices + extra_slices, {"default/svc-1000"})
        ipt_one = time.perf_counter() - t0 + run_in(ns[0], ["iptables-restore", "--noflush"], part)
        t0 = time.perf_counter()
        nft_text = nftables.render(big, node, slices)
        nft_full = time.perf_counter() - t0 + run_in(ns[1], ["nft", "-f", "-"], nft_text)
        t0 = time.perf_counter()
        upd = nftables.render_update(big, bigger, node, slices, slices + extra_slices, only={"default/svc-1000"})
        nft_one = time.perf_counter() - t0 + run_in(ns[1], ["nft", "-f", "-"], upd)
        return [ipt_full, ipt_one, nft_full, nft_one]
    finally:
        ip_batch([f"netns delete {n}" for n in ns], force=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline-services", type=int, default=1000,
                    help="Services in the single-call baseline (it is slow; the others always use 1000)")
    a = ap.parse_args()
    ns = [f"kpb{os.getpid()}-{i}" for i in range(3)]
    runs = [one_round(ns[:2]) for _ in range(a.rounds)]
    ipt_full, ipt_one, nft_full, nft_one = (median(list(col)) for col in zip(*runs))
    svcs, slices = services(a.baseline_services)
    state = state_with(svcs)
    text = iptables.render(state, state.nodes[1], slices)
    calls = as_single_calls(text)
    ip_batch([f"netns add {ns[2]}"])
    try:
        t0 = time.perf_counter()
        in_netns(ns[2], lambda: [subprocess.run(c, check=True, capture_output=True) for c in calls])
        base_s = time.perf_counter() - t0
    finally:
        ip_batch([f"netns delete {ns[2]}"], force=True)
    rules = sum(line.startswith("-A ") for line in text.splitlines())
    print(f"one node, 1000 ClusterIP Services x 3 endpoints, {a.rounds} rounds in fresh namespaces, medians\n")
    print(table([
        ("iptables: render + one iptables-restore (11009 rules)", ipt_full, "<= 0.5 s"),
        ("iptables: one more Service (partial sync)", ipt_one, "<= 0.05 s"),
        ("nftables: render + one nft -f (18106 lines)", nft_full, "<= 0.5 s"),
        ("nftables: one more Service (incremental transaction)", nft_one, "<= 0.05 s"),
        (f"baseline: {a.baseline_services} Services' rules ({rules}) as {len(calls)} single iptables calls", base_s, ""),
    ]))
    ok = ipt_full <= 0.5 and ipt_one <= 0.05 and nft_full <= 0.5 and nft_one <= 0.05
    print("\nall figures within target" if ok else "\nSOME FIGURES MISS THEIR TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
