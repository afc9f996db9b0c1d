"""network: bgp figures: how long after FRR starts every node has a route to every podCIDR (3 and
10 nodes, full mesh and route reflector), and, once BFD is up everywhere, how long a stopped
node's podCIDR takes to vanish from every other node, and to come back.

    sudo .venv/bin/python bench/bgp.py [--rounds N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

import yaml
from common import median, own_lab_in_process, table

from lab.routing import frr
from lab.host import record
from lab.runtime import nodes


def topology(n: int, reflector: bool) -> dict:
    names = ["control-plane"] + [f"worker{i}" for i in range(1, n)]
    return {
        "name": f"bgp{n}{'rr' if reflector else 'mesh'}",
        "cluster": {"network": "bgp", "cni": "ptp",
                    **({"bgp": {"routeReflectors": ["control-plane"]}} if reflector else {})},
        "nodes": [{"name": x} for x in names],
        "manifests": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                       "spec": {"replicas": n, "selector": {"matchLabels": {"app": "web"}},
                                "template": {"metadata": {"labels": {"app": "web"}},
                                             "spec": {"containers": [{"name": "w", "image": "netexec",
                                                                      "ports": [{"containerPort": 80}]}]}}}}],
    }


def one_round(n: int, reflector: bool) -> tuple[float, float, float]:
    doc = topology(n, reflector)
    marks: dict[str, float] = {}

    def progress(name: str, seconds: float) -> None:
        if name.startswith("pod network"):
            marks["frr started"] = time.monotonic()
        if name.startswith("BGP converged"):
            marks["converged"] = time.monotonic()

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(doc, f)
        f.flush()
        with own_lab_in_process(f.name, progress) as lab:  # torn down (this lab only) on the way out
            state = lab.state
            rec = record.load(state.lab)
            deadline = time.monotonic() + 20
            while not frr.bfd_all_up(rec.state, rec) and time.monotonic() < deadline:
                time.sleep(0.1)  # steady state: BFD comes up a second or two after BGP
            withdraw = nodes.set_state(state.lab, "worker1", up=False)
            relearn = nodes.set_state(state.lab, "worker1", up=True)
    return marks["converged"] - marks["frr started"], withdraw, relearn


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    rows = []
    for n in (3, 10):
        for reflector in (False, True):
            runs = [one_round(n, reflector) for _ in range(a.rounds)]
            shape = "route reflector" if reflector else "full mesh"
            rows += [(f"{n} nodes, {shape}: all podCIDRs in every kernel after FRR starts", median([r[0] for r in runs]),
                      "< 2.3 s (spike)"),
                     (f"{n} nodes, {shape}: a stopped node's podCIDR gone everywhere", median([r[1] for r in runs]), ""),
                     (f"{n} nodes, {shape}: back everywhere after it starts", median([r[2] for r in runs]), "")]
    print(f"network: bgp, cni: ptp, FRR with timers 1/3 s and BFD 100 ms x 3; {a.rounds} rounds, medians\n")
    print(table(rows))
    ok = all(r[1] < 2.3 for r in rows if "after FRR starts" in r[0])
    print("\nall figures within target" if ok else "\nSOME FIGURES MISS THEIR TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
