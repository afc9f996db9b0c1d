"""network: cloud-routes figures: how long after the OVS switch is handed to the controller every
podCIDR has its flow (3 and 10 nodes), and how many flows the fabric holds. Needs OVS running
(the benchmark starts it with ovs-ctl if it is not, and stops it again unless another lab uses it
by then).

    sudo .venv/bin/python bench/fabric.py [--rounds N]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

import yaml
from common import median, own_lab_in_process, table

from lab.errors import LabError
from lab.routing import fabric_runtime
from lab.host import record

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
        with own_lab_in_process(f.name, progress) as lab:  # torn down (this lab only) on the way out
            up = lab.up_seconds
            count = len(fabric_runtime.dump(lab.state))
    return marks["fabric"], up, count


def ovs_labs() -> list[str]:
    """Other labs on this machine whose underlay is an OVS switch: OVS must keep running for them."""
    out = []
    for name in record.names():
        try:
            if record.load(name).state.switch == "ovs":
                out.append(name)
        except LabError:
            out.append(name)  # a damaged record: assume it needs OVS
    return out


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
        users = ovs_labs()
        if started and users:
            print(f"OVS left running: lab(s) {', '.join(users)} use it", file=sys.stderr)
        elif started:
            subprocess.run([CTL, "stop"], capture_output=True)
    print(f"network: cloud-routes, OVS userspace datapath, os-ken controller; {a.rounds} rounds, medians\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
