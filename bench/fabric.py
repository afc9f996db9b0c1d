"""network: cloud-routes figures: how long after the OVS switch is handed to the controller every
podCIDR has its flow (3 and 10 nodes), and how many flows the fabric holds. Needs OVS running
(the benchmark starts it with ovs-ctl if it is not, and stops it again).

    sudo .venv/bin/python bench/fabric.py [--rounds N]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import yaml
from common import median, table

from lab.routing import fabric_runtime
from lab.runtime import lifecycle, record

CTL = "/usr/share/openvswitch/scripts/ovs-ctl"


def topology(n: int) -> dict:
    names = ["control-plane"] + [f"worker{i}" for i in range(1, n)]
    return {"name": f"fabric{n}", "cluster": {"network": "cloud-routes"}, "underlay": {"switch": "ovs"},
            "nodes": [{"name": x} for x in names],
            "manifests": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                           "spec": {"replicas": n, "selector": {"matchLabels": {"app": "web"}},
                                    "template": {"metadata": {"labels": {"app": "web"}},
                                                 "spec": {"containers": [{"name": "w", "image": "netexec",
                                                                          "ports": [{"containerPort": 80}]}]}}}}]}


def one_round(n: int) -> tuple[float, float, int]:
    marks: dict[str, float] = {}

    def progress(name: str, seconds: float) -> None:
        if name.startswith("fabric"):
            marks["fabric"] = seconds

    doc = topology(n)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(doc, f)
        f.flush()
        t0 = time.monotonic()
        lifecycle.up(f.name, progress=progress)
        up = time.monotonic() - t0
    try:
        count = len(fabric_runtime.dump(record.load(doc["name"]).state))
    finally:
        lifecycle.teardown(record.load(doc["name"]))
    return marks["fabric"], up, count


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    started = subprocess.run(["ovs-vsctl", "--timeout=2", "show"], capture_output=True).returncode != 0
    if started:
        subprocess.run([CTL, "start", "--system-id=random"], capture_output=True, check=True)
    try:
        rows = []
        for n in (3, 10):
            runs = [one_round(n) for _ in range(a.rounds)]
            rows += [(f"{n} nodes: every podCIDR's flow in the switch, waited for after the pods are wired",
                      median([r[0] for r in runs]), ""),
                     (f"{n} nodes: lab up (in process), ready for traffic", median([r[1] for r in runs]), ""),
                     (f"{n} nodes: flows in the fabric (one per podCIDR + ARP + NORMAL)", float(runs[0][2]), "")]
    finally:
        if started:
            subprocess.run([CTL, "stop"], capture_output=True)
    print(f"network: cloud-routes, OVS userspace datapath, os-ken controller; {a.rounds} rounds, medians\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
