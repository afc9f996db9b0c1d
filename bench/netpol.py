"""NetworkPolicy figures: the x/y/z truth table (9 x 9 pods x 2 ports x 2 protocols) as a user runs
it, without policies and with a default-deny case (denied cells wait for the probe timeout), and a
policy change applied on a node that already enforces 100 policies.

    sudo .venv/bin/python bench/netpol.py [--rounds N]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace

from common import LAB, ROOT, median, table, timed

from lab.controlplane.state import PolicyPortState, PolicyState, RuleState, PeerState, SelectorState
from lab.policy import iptables as rules
from lab.runtime.execs import ip_batch
from lab.runtime.netns import in_netns

sys.path.insert(0, str(ROOT))
from tests.unit.golden import shipped_state  # noqa: E402  (the shipped netpol.yaml, planned)

TOPOLOGY = str(ROOT / "topologies" / "netpol.yaml")
DENY = str(ROOT / "topologies" / "netpol-cases" / "default-deny-ingress.yaml")


def policies(n: int, tag: str = "") -> tuple[PolicyState, ...]:
    """n policies over the x/y/z pods: each isolates one pod label in one namespace and allows
    one other namespace on one port."""
    out = []
    for i in range(n):
        ns, pod, peer = "xyz"[i % 3], "abc"[(i // 3) % 3], "xyz"[(i + 1) % 3]
        out.append(PolicyState(
            ns, f"p{i:03d}{tag}", SelectorState((("pod", pod),)), ("Ingress",),
            ingress=(RuleState((PeerState(namespace_selector=SelectorState((("ns", peer),))),),
                               (PolicyPortState("TCP", str(80 + i % 2)),)),)))
    return tuple(out)


def restore(netns: str, text: str) -> float:
    t0 = time.perf_counter()
    proc = in_netns(netns, lambda: subprocess.run(["iptables-restore", "--noflush"], input=text,
                                                  capture_output=True, text=True))
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return time.perf_counter() - t0


def change_on_a_busy_node() -> float:
    """Render and apply one node's policy rules after one of 100 policies changed."""
    base = shipped_state("netpol")
    before = replace(base, policies=policies(100))
    changed = list(before.policies)
    changed[0] = replace(changed[0], ingress=(RuleState((), (PolicyPortState("TCP", "81"),)),))
    after = replace(base, policies=tuple(changed))
    node = base.nodes[1]
    ns = f"npb{os.getpid()}"
    ip_batch([f"netns add {ns}"])
    try:
        restore(ns, rules.base_rules())
        first = rules.render(before, node)
        restore(ns, first)
        t0 = time.perf_counter()
        text = rules.render(after, node, frozenset(rules.declared_chains(first)))
        return time.perf_counter() - t0 + restore(ns, text)
    finally:
        ip_batch([f"netns delete {ns}"], force=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    subprocess.run([*LAB, "up", TOPOLOGY], check=True, capture_output=True)
    try:
        open_ = median([timed([*LAB, "netpol", "matrix", "--lab", "netpol"]) for _ in range(a.rounds)])
        subprocess.run([*LAB, "apply", "-f", DENY, "--lab", "netpol"], check=True, capture_output=True)
        denied = median([timed([*LAB, "netpol", "matrix", "--lab", "netpol"]) for _ in range(a.rounds)])
    finally:
        subprocess.run([*LAB, "down", "netpol"], capture_output=True)
    change = median([change_on_a_busy_node() for _ in range(a.rounds)])
    print(f"x/y/z layout (9 pods, 324 cells), {a.rounds} rounds, medians; lab commands as a user runs them\n")
    print(table([
        ("lab netpol matrix, no policies", open_, "<= 1 s"),
        ("lab netpol matrix, default-deny ingress in x (denied cells wait 0.5 s)", denied, "<= 1 s"),
        ("one policy changed on a node with 100 policies: render + restore", change, "<= 0.05 s"),
    ]))
    ok = open_ <= 1 and denied <= 1 and change <= 0.05
    print("\nall figures within target" if ok else "\nSOME FIGURES MISS THEIR TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
