"""`lab fault` on a real lab (lab flt: vxlan, 3 nodes, 5 pods): every kind applied changes the lab and
cleared leaves its namespaces exactly as before; `lab check` fails on exactly the pairs a fault
cuts; `lab down` with faults still active leaves nothing behind."""
from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import lab, lab_leftovers, needs_root, settled_host_snapshot

pytestmark = [pytest.mark.root, needs_root]

NAME = "flt"
TOPOLOGY = """
name: flt
cluster: {podCIDR: 10.244.0.0/16, nodeCIDRMaskSize: 24, serviceCIDR: 10.96.0.0/12, network: vxlan, cni: bridge}
underlay: {subnet: 172.18.0.0/24, switch: linux-bridge}
nodes:
  - {name: control-plane, role: control-plane}
  - {name: worker1}
  - {name: worker2}
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 3
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers: [{name: web, image: netexec, ports: [{containerPort: 8080}]}]
  - apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
  - apiVersion: v1
    kind: Pod
    metadata: {name: solo, labels: {app: solo}}
    spec:
      nodeName: worker1
      containers: [{name: app, image: netexec, ports: [{containerPort: 8080}]}]
"""
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/bridge/bridge-nf-call-iptables")


def _out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


def snapshot() -> dict:
    """What a fault may change in the lab's namespaces: routes, links (MTU, state, master, hairpin),
    permanent neighbours, qdiscs, nft and iptables rules (without counters), the faults' sysctls.
    The namespaces are read side by side: each test takes three snapshots of ~70 processes."""
    names = sorted(l.split()[0] for l in _out("ip", "netns", "list").splitlines() if l.startswith(f"{NAME}-"))
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(names, pool.map(_namespace, names)))


def _namespace(ns: str) -> dict:
    links = [(l["ifname"], l["mtu"], l["flags"], l.get("master")) for l in json.loads(_out("ip", "-n", ns, "-j", "link"))]
    ports = [(p["ifname"], p.get("hairpin")) for p in json.loads(_out("bridge", "-n", ns, "-d", "-j", "link") or "[]")]
    nft = re.sub(r"counter packets \d+ bytes \d+", "", _out("ip", "netns", "exec", ns, "nft", "list", "ruleset"))
    ipt = [re.sub(r"\[\d+:\d+\]", "", l) for l in _out("ip", "netns", "exec", ns, "iptables-save").splitlines()
           if not l.startswith("#")]
    sysctls = _out("ip", "netns", "exec", ns, "cat", *(f"/proc/sys/{k}" for k in SYSCTLS))
    return {"routes": _out("ip", "-n", ns, "-4", "route", "show", "table", "all"), "links": links, "ports": ports,
            "neigh": _out("ip", "-n", ns, "neigh", "show", "nud", "permanent"),
            "qdisc": _out("tc", "-n", ns, "qdisc", "show"), "nft": nft, "iptables": ipt, "sysctl": sysctls}


def record() -> dict:
    return json.loads(Path(f"/run/k8s-netlab/{NAME}/record.json").read_text())


def active_faults() -> list[dict]:
    """`lab fault`'s section of the record: the active faults with their undo ops."""
    return record()["sections"].get("faults", {}).get("active", [])


@pytest.fixture(scope="module")
def flt(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "flt.yaml"
    path.write_text(TOPOLOGY)
    before = settled_host_snapshot()
    lab("up", str(path))
    try:
        yield before
    finally:
        lab("down", NAME, check=False)


NETWORK_KINDS = [
    "link-down node/worker1", "link-down node/worker1 dev=flannel.1", "link-down pod/solo", "link-down pod/solo side=host",
    "route-delete node/worker1 to=node/worker2", "route-blackhole node/worker1 to=node/worker2",
    "route-blackhole node/worker1 cidr=10.9.0.0/16", "route-wrong node/worker1 to=node/worker2 via=node/control-plane",
    "drop node/worker1 proto=udp port=8472", "drop pod/solo proto=tcp direction=in", "forward-drop node/worker1",
    "mtu overlay value=1300", "mtu node/worker2 value=1400", "mtu pod/solo value=1200",
    "sysctl node/worker1 name=ip_forward value=0", "ip-forward-off node/worker2", "rp-filter-strict node/worker1",
    "bridge-nf-off node/worker1", "hairpin-off pod/solo", "rate node/worker1 rate=1mbit", "rate pod/solo rate=10mbit burst=64kb",
    "loss node/worker2 percent=30",
]


@pytest.mark.parametrize("spec", NETWORK_KINDS)
def test_a_fault_changes_the_lab_and_clear_restores_it_exactly(flt, spec):
    before = snapshot()
    done = lab("--lab", NAME, "fault", "add", *spec.split())
    assert re.match(r"fault f\d+ applied: ", done.stdout)
    assert snapshot() != before
    assert [f["kind"] for f in active_faults()] == [spec.split()[0]]
    lab("--lab", NAME, "fault", "clear")
    assert active_faults() == []
    assert snapshot() == before


def test_link_flap_blocks_while_it_runs_and_leaves_the_link_up(flt):
    before = snapshot()
    t0 = time.monotonic()
    done = lab("--lab", NAME, "fault", "add", "link-flap", "node/worker2", "count=2", "period=0.2")
    assert time.monotonic() - t0 >= 0.4 and "now up" in done.stdout
    assert active_faults() == [] and snapshot() == before


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_stop_and_kill_processes_and_clear_brings_them_back(flt):
    rec = record()
    solo, agent = rec["pids"]["default/solo/app"], rec["agent"]
    lab("--lab", NAME, "fault", "add", "stop", "pod/solo")
    lab("--lab", NAME, "fault", "add", "stop", "agent")
    assert _proc_state(solo) == "T" and _proc_state(agent) == "T"
    lab("--lab", NAME, "fault", "clear")
    assert _proc_state(solo) != "T" and _proc_state(agent) != "T"
    dns_key = next(k for k in rec["pids"] if k.startswith("kube-system/kube-dns"))
    lab("--lab", NAME, "fault", "add", "kill", "pod/solo")
    lab("--lab", NAME, "fault", "add", "kill", "kube-dns")
    lab("--lab", NAME, "fault", "add", "kill", "agent")
    assert not Path(f"/proc/{agent}").exists() or _proc_state(agent) == "Z"
    lab("--lab", NAME, "fault", "clear")
    after = record()["pids"]
    assert after["default/solo/app"] != solo and after[dns_key] != rec["pids"][dns_key]
    assert record()["agent"] not in (0, agent) and _proc_state(record()["agent"]) in "RS"
    answer = lab("--lab", NAME, "exec", "node/control-plane", "--", "curl", "-s", "-m", "2", "10.244.1.2:8080/hostname")
    assert answer.stdout.strip() == "solo"


def test_what_cannot_be_applied_is_a_clear_error_and_changes_nothing(flt):
    before = snapshot()
    for spec, message in [
        ("delay node/worker1 delay=100ms", "not on this kernel: no sch_netem"),
        ("link-down node/worker9", "no node 'worker9' in lab flt; nodes: control-plane, worker1, worker2"),
        ("route-delete node/worker1 cidr=10.9.0.0/16", "has no route to 10.9.0.0/16"),
        ("drop node/worker1 proto=icmp port=1", "port= goes with proto=udp or tcp"),
        ("bgp-peer-as node/worker1 peer=node/worker2 as=1", "needs network: bgp; lab flt uses vxlan"),
        ("stop node/worker1", "has none (network: vxlan)"),
    ]:
        done = lab("--lab", NAME, "fault", "add", *spec.split(), check=False)
        if spec.startswith("delay") and done.returncode == 0:  # a kernel with sch_netem: nothing to refuse
            lab("--lab", NAME, "fault", "clear")
            continue
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, (spec, done.stderr)
    assert active_faults() == [] and snapshot() == before
    done = lab("--lab", NAME, "fault", "clear", "f9", check=False)
    assert done.returncode == 1 and "no fault 'f9'" in done.stderr


def _pod_pairs(results: list[dict]) -> dict[tuple[str, str], bool]:
    pairs = {}
    for r in results:
        if r["check"] == "pod-to-pod":
            src, dst = re.findall(r"\((\d+\.\d+\.\d+\.\d+)", r["subject"])
            pairs[(src, dst)] = r["passed"]
    return pairs


def test_check_fails_on_exactly_the_pairs_a_vxlan_drop_cuts(flt, tmp_path):
    lab("--lab", NAME, "fault", "add", "drop", "node/worker1", "proto=udp", "port=8472")
    lab("--lab", NAME, "fault", "list")
    try:
        done = lab("--lab", NAME, "check", "--timeout", "0.3", "--json", str(tmp_path / "c.json"), check=False)
        assert done.returncode == 1
        pairs = _pod_pairs(json.loads((tmp_path / "c.json").read_text())["results"])
    finally:
        lab("--lab", NAME, "fault", "clear")
    on_worker1 = "10.244.1."  # worker1's podCIDR
    expected = {(s, d): s.startswith(on_worker1) == d.startswith(on_worker1) for s, d in pairs}
    assert pairs == expected and not all(expected.values()) and any(expected.values())


def test_lab_down_with_active_faults_leaves_nothing(flt):
    """Last: the module's lab goes down with faults still on."""
    for spec in ("drop node/worker1 proto=udp port=8472", "mtu overlay value=1300", "stop agent", "stop pod/solo",
                 "hairpin-off pod/solo", "rate node/worker2 rate=1mbit", "ip-forward-off node/worker2"):
        lab("--lab", NAME, "fault", "add", *spec.split())
    switch = record()["state"]["switch_name"]
    lab("down", NAME)
    assert lab_leftovers(NAME, switch) == []
    after = settled_host_snapshot()  # other labs may come and go meanwhile: compare what a fault could leak to
    assert {k: after[k] for k in ("iptables", "nft", "sysctl")} == {k: flt[k] for k in ("iptables", "nft", "sysctl")}
