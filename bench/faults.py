"""Time to apply and to clear each fault kind (lab.runtime.faults.add/clear, in process, as `lab
scenario` calls them), beside the same raw command run directly in the same run. Target: <= 50 ms
each. The lab is the benchmark's own (fltbench: vxlan, 3 nodes, 5 pods).

    sudo .venv/bin/python bench/faults.py [--rounds N]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import LAB, OwnLab, median, table, timed

from lab.host import record
from lab.runtime import faults

TOPOLOGY = """name: fltbench
cluster: {podCIDR: 10.244.0.0/16, nodeCIDRMaskSize: 24, serviceCIDR: 10.96.0.0/12, network: vxlan, cni: bridge}
underlay: {subnet: 172.18.0.0/24, switch: linux-bridge}
nodes: [{name: control-plane, role: control-plane}, {name: worker1}, {name: worker2}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 3
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]}
  - apiVersion: v1
    kind: Pod
    metadata: {name: solo, labels: {app: solo}}
    spec: {nodeName: worker1, containers: [{name: app, image: netexec, ports: [{containerPort: 8080}]}]}
"""
W1 = "fltbench-worker1"
# kind, target, params, the raw command that applies the same change, the raw command that undoes it
CASES = [
    ("link-down", "node/worker1", {}, ["ip", "-n", W1, "link", "set", "eth0", "down"],
     ["ip", "-n", W1, "link", "set", "eth0", "up"]),
    ("route-blackhole", "node/worker1", {"to": "node/worker2"},
     ["ip", "-n", W1, "route", "replace", "blackhole", "10.244.2.0/24"],
     ["ip", "-n", W1, "route", "replace", "10.244.2.0/24", "via", "10.244.2.0", "dev", "flannel.1", "onlink"]),
    ("drop", "node/worker1", {"proto": "udp", "port": "8472"},
     ["ip", "netns", "exec", W1, "nft", "add table inet raw_bench; add chain inet raw_bench c "
      "{ type filter hook prerouting priority -300; }; add rule inet raw_bench c udp dport 8472 drop"],
     ["ip", "netns", "exec", W1, "nft", "delete", "table", "inet", "raw_bench"]),
    ("forward-drop", "node/worker1", {}, ["ip", "netns", "exec", W1, "iptables", "-P", "FORWARD", "DROP"],
     ["ip", "netns", "exec", W1, "iptables", "-P", "FORWARD", "ACCEPT"]),
    ("mtu", "overlay", {"value": "1300"}, ["ip", "-n", W1, "link", "set", "flannel.1", "mtu", "1300"],
     ["ip", "-n", W1, "link", "set", "flannel.1", "mtu", "1450"]),
    ("ip-forward-off", "node/worker1", {}, ["ip", "netns", "exec", W1, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
     ["ip", "netns", "exec", W1, "sysctl", "-qw", "net.ipv4.ip_forward=1"]),
    ("hairpin-off", "pod/solo", {}, None, None),
    ("rate", "node/worker1", {"rate": "1mbit"}, ["tc", "-n", W1, "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate",
                                                 "1mbit", "burst", "32kb", "latency", "50ms"],
     ["tc", "-n", W1, "qdisc", "del", "dev", "eth0", "root"]),
    ("loss", "node/worker1", {"percent": "10"}, None, None),
    ("stop", "pod/solo", {}, None, None),
    ("stop", "agent", {}, None, None),
    ("kill", "pod/solo", {}, None, None),
]


def clock(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def raw(argv) -> float:
    return clock(lambda: subprocess.run(argv, check=True, capture_output=True))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fltbench.yaml"
        path.write_text(TOPOLOGY)
        with OwnLab(str(path)) as lab:
            rows = measure(lab.name, a.rounds)
    print(f"{a.rounds} rounds, medians; the fault API in process (validate, read, record, apply / undo, forget), "
          f"raw = the same kernel change as one command\n")
    print(table(rows))
    return 0 if all(len(r) < 4 or r[3] for r in rows) else 1


def measure(name: str, rounds: int) -> list[tuple]:
    rows = []
    for kind, target, params, apply_raw, undo_raw in CASES:
        adds, clears, raws, unraws = [], [], [], []
        for _ in range(rounds):
            adds.append(clock(lambda: faults.add(name, kind, target, params)))
            clears.append(clock(lambda: faults.clear(name)))
            if apply_raw:
                raws.append(raw(apply_raw))
                unraws.append(raw(undo_raw))
        label = f"{kind} {target}"
        rows.append((f"{label}: add", median(adds), "<= 0.050 s", median(adds) <= 0.05))
        rows.append((f"{label}: clear", median(clears), "<= 0.050 s", median(clears) <= 0.05))
        if raws:
            rows.append((f"{label}: raw apply, raw undo", median(raws), f"raw undo {median(unraws):.3f} s"))
    cli = [timed([*LAB, "fault", "add", "link-down", "node/worker1", "--lab", name]) +
           timed([*LAB, "fault", "clear", "--lab", name]) for _ in range(rounds)]
    rows.append(("lab fault add + lab fault clear (CLI, link-down; Python start-up included)", median(cli), "-"))
    assert record.load(name).faults == []
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
