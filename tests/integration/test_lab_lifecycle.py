"""A lab's whole life on the real machine: up, check, down, and every way it can be cut short."""
from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from lab.controlplane.naming import switch_name
from tests.integration.conftest import (
    ROOT, TOPOLOGIES, host_changes, host_snapshot, lab, lab_leftovers, needs_root, settled_host_snapshot, wait_for,
)

pytestmark = [needs_root, pytest.mark.root]


def record(name: str) -> dict:
    return json.loads(Path(f"/run/k8s-netlab/{name}/record.json").read_text())


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def assert_gone(name: str, pids: list[int] = ()) -> None:
    left = wait_for(lambda: not lab_leftovers(name, switch_name(name)))
    assert left, f"lab {name} left behind: {lab_leftovers(name, switch_name(name))}"
    assert not [p for p in pids if alive(p)], "pod processes survived"


@pytest.mark.parametrize("topology", ["vxlan", "host-gw"])
def test_up_check_down_leaves_the_host_as_it_was(topology, tmp_path):
    before = settled_host_snapshot()
    lab("up", str(TOPOLOGIES / f"{topology}.yaml"))
    try:
        pods = json.loads(lab("get", "pods", "-o", "json", "--lab", topology).stdout)["items"]
        assert len(pods) == 7 and all(p["status"]["phase"] == "Running" for p in pods)
        assert {p["spec"]["nodeName"] for p in pods} == {"control-plane", "worker1", "worker2"}
        # every pod is a named namespace plain tools can use, with the IP the model says
        for p in pods:
            if not p["spec"]["hostNetwork"]:
                out = subprocess.run(["ip", "-n", f"{topology}-default-{p['metadata']['name']}", "-j", "addr", "show", "eth0"],
                                     capture_output=True, text=True, check=True).stdout
                assert json.loads(out)[0]["addr_info"][0]["local"] == p["status"]["podIP"]
        junit = tmp_path / "out.xml"
        result = lab("check", "--lab", topology, "--junit", str(junit), "--json", str(tmp_path / "out.json"))
        assert "PASSED" in result.stdout
        suites = ET.parse(junit).getroot()
        assert suites.get("failures") == "0" and int(suites.get("tests")) > 80
        # cluster DNS is on by default: its kube-dns Service adds clusterip-virtual rows, and dns rows
        # (no dns-http: the topology has no HTTP Service to curl by name)
        assert {s.get("name").split(".", 1)[1] for s in suites} == {
            "pod-to-pod", "node-to-pod", "pod-ip", "hostnetwork-to-pod", "localhost", "egress", "checks",
            "clusterip-virtual", "dns"}
        system = json.loads(lab("get", "pods", "-o", "json", "-n", "kube-system", "--lab", topology).stdout)["items"]
        assert [p["metadata"]["name"].startswith("kube-dns-") for p in system] == [True]
        pids = list(record(topology)["pids"].values())
        assert pids and all(alive(p) for p in pids)
    finally:
        lab("down", topology)
    assert_gone(topology, pids)
    # at once: `lab down` returns only when the kernel has freed the lab's links too
    assert host_snapshot() == before, f"the host's routes/links/rules/sysctls changed: {host_changes(before)}"


def test_a_removed_route_fails_exactly_the_affected_pairs(tmp_path, clean_after):
    clean_after.append("host-gw")
    # pod-to-pod routing only: without the kube-dns add-on, whose ClusterIP and dns rows the model below does not route
    doc = yaml.safe_load((TOPOLOGIES / "host-gw.yaml").read_text())
    doc["cluster"]["dns"] = {"enabled": False}
    (tmp_path / "host-gw.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    lab("up", str(tmp_path / "host-gw.yaml"))
    state = record("host-gw")["state"]
    nodes = {n["name"]: n for n in state["nodes"]}
    # worker1 forgets where worker2's pods live: its replies to them and its requests both die
    subprocess.run(["ip", "-n", "host-gw-worker1", "route", "del", nodes["worker2"]["pod_cidr"]], check=True)
    result = lab("check", "--lab", "host-gw", "--json", str(tmp_path / "r.json"), check=False)
    assert result.returncode == 1 and "FAILED" in result.stdout
    results = json.loads((tmp_path / "r.json").read_text())["results"]

    w2_cidr = ipaddress.ip_network(nodes["worker2"]["pod_cidr"])
    node_of_ip = {p["ip"]: p["node"] for p in state["pods"]}
    node_of_netns = {p["netns"]: p["node"] for p in state["pods"]}
    node_of_netns.update({n["netns"]: n["name"] for n in state["nodes"]})
    ip_of_netns = {p["netns"]: p["ip"] for p in state["pods"]}
    ip_of_netns.update({n["netns"]: n["ip"] for n in state["nodes"]})

    pod_ips = {p["ip"] for p in state["pods"] if not p["host_network"]}

    def affected(o: dict) -> bool:
        """worker1 is needed to route towards worker2's pods: for requests it forwards there, and
        for its replies to worker2's pods. Node-sourced traffic uses underlay addresses, and pod
        traffic to a node address leaves with the node's address (egress NAT)."""
        if o["check"] in ("pod-ip", "localhost", "egress"):
            return False
        dst = o["target"].split(":")[0]
        src_node, src_ip = node_of_netns[o["source"]], ip_of_netns[o["source"]]
        request = src_node == "worker1" and ipaddress.ip_address(dst) in w2_cidr
        reply = dst in pod_ips and node_of_ip[dst] == "worker1" and ipaddress.ip_address(src_ip) in w2_cidr
        return request or reply

    failed = {o["subject"] for o in results if not o["passed"]}
    expected = {o["subject"] for o in results if affected(o) and not o["expected"].startswith("no reply")}
    assert failed == expected
    assert any("node/worker1" in s for s in failed) and any("hostNetwork" in s for s in failed)


def test_two_labs_side_by_side(clean_after):
    clean_after += ["vxlan", "host-gw"]
    lab("up", str(TOPOLOGIES / "vxlan.yaml"))
    lab("up", str(TOPOLOGIES / "host-gw.yaml"))
    listing = lab("list").stdout
    assert "vxlan" in listing and "host-gw" in listing
    assert "PASSED" in lab("check", "--lab", "vxlan").stdout
    assert "PASSED" in lab("check", "--lab", "host-gw").stdout
    # without --lab, a command must ask which one
    assert "say which one" in lab("get", "pods", check=False).stderr
    lab("down", "vxlan")
    assert_gone("vxlan")
    assert "PASSED" in lab("check", "--lab", "host-gw").stdout  # the other lab is untouched
    lab("down", "host-gw")
    assert_gone("host-gw")


def _start_up(topology: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lab", "up", str(topology)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_claims(name: str, count: int) -> None:
    def claimed():
        try:
            return len(record(name)["netns"]) >= count
        except (OSError, ValueError):
            return False
    assert wait_for(claimed, timeout=10, step=0.005), f"lab up never claimed {count} namespaces"


@pytest.mark.parametrize("point", ["underlay", "pods"])
def test_sigkill_during_up_then_clean_leaves_nothing(point):
    topology = ROOT / "bench" / "topology-30.yaml"
    before = settled_host_snapshot()
    proc = _start_up(topology)
    _wait_claims("bench30", 3 if point == "underlay" else 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        assert Path("/run/k8s-netlab/bench30").exists()
        # a running-lab command refuses politely; clean removes the wreck
        assert "crashed" in lab("up", str(topology), check=False).stderr
        assert "bench30" in lab("clean").stdout
    finally:
        lab("clean", check=False)
    assert_gone("bench30")
    assert wait_for(lambda: host_snapshot() == before), host_changes(before)


def test_ctrl_c_during_up_rolls_back():
    topology = ROOT / "bench" / "topology-30.yaml"
    proc = _start_up(topology)
    _wait_claims("bench30", 20)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "interrupted" in err and "removed" in err
    assert_gone("bench30")


def test_failed_up_rolls_back(tmp_path):
    bad = tmp_path / "clash.yaml"
    bad.write_text("""
name: clash
nodes: [{name: n1}]
manifests:
  - {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {nodeName: n1, hostNetwork: true,
     containers: [{name: c, image: netexec, ports: [{containerPort: 7000}]}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: b}, spec: {nodeName: n1, hostNetwork: true,
     containers: [{name: c, image: netexec, ports: [{containerPort: 7000}]}]}}
""")
    result = lab("up", str(bad), check=False)
    assert result.returncode == 1
    # a and b race for the port; the loser is named
    assert re.search(r"default/[ab]/c exited \(code 1\)", result.stderr) and "7000" in result.stderr
    assert "already in use" in result.stderr and "removed" in result.stderr
    assert "Traceback" not in result.stderr
    assert_gone("clash")


def test_invalid_topology_builds_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncluster: {network: flannel}\nnodes: [{name: n1}, {name: n1}]\n")
    result = lab("up", str(bad), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "flannel" in result.stderr and f"{bad}:2" in result.stderr
    assert not Path("/run/k8s-netlab/bad").exists()


def test_exec_and_logs(clean_after):
    clean_after.append("vxlan")
    lab("up", str(TOPOLOGIES / "vxlan.yaml"))
    state = record("vxlan")["state"]
    backend = next(p for p in state["pods"] if p["name"].startswith("backend-"))
    frontend = next(p for p in state["pods"] if p["name"].startswith("frontend-") and p["node"] != backend["node"])
    out = lab("exec", "-l", "vxlan", frontend["name"], "--", "curl", "-s", "-m", "2", f"http://{backend['ip']}:8080/clientip").stdout
    assert out.split(":")[0] == frontend["ip"]  # cross node, no NAT
    # pods sit at underlay MTU - 50: a full-size packet with DF set crosses the VXLAN overlay
    lab("exec", "-l", "vxlan", frontend["name"], "--", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", backend["ip"])
    assert lab("exec", "-l", "vxlan", frontend["name"], "--", "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1423",
               backend["ip"], check=False).returncode != 0
    assert "127.0.0.1" in lab("exec", "-l", "vxlan", "sidecar-demo", "-c", "proxy", "--", "curl", "-s", "-m", "2",
                              "http://127.0.0.1:8080/clientip").stdout
    assert state["nodes"][1]["pod_cidr"] in lab("exec", "-l", "vxlan", "node/control-plane", "--", "ip", "route").stdout
    assert "not found" in lab("exec", "-l", "vxlan", "nope", "--", "true", check=False).stderr
    wide = lab("get", "-l", "vxlan", "pods", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "NODE" in wide[0]
    assert "control-plane" in lab("get", "-l", "vxlan", "nodes").stdout
    lab("logs", "-l", "vxlan", backend["name"])  # exists and reads


def test_ovs_underlay(clean_after, tmp_path):
    ctl = "/usr/share/openvswitch/scripts/ovs-ctl"
    if not os.path.exists(ctl):
        pytest.skip("Open vSwitch is not installed")
    started = subprocess.run(["ovs-vsctl", "--timeout=2", "show"], capture_output=True).returncode != 0
    if started:
        subprocess.run([ctl, "start", "--system-id=random"], capture_output=True, check=True)
    try:
        topo = tmp_path / "ovs.yaml"
        topo.write_text((TOPOLOGIES / "vxlan.yaml").read_text().replace("name: vxlan", "name: ovs")
                        .replace("switch: linux-bridge", "switch: ovs"))
        clean_after.append("ovs")
        result = lab("run", str(topo))
        assert "PASSED" in result.stdout
        assert switch_name("ovs") not in subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout
    finally:
        if started:
            subprocess.run([ctl, "stop"], capture_output=True)


@pytest.mark.parametrize("network", ["vxlan", "host-gw"])
def test_ptp_cni_routed_pods(network, tmp_path, clean_after):
    """Calico's L3 model: no bridge, a /32 route per pod towards its host-side veth."""
    name = f"ptp-{network}"
    topo = tmp_path / f"{name}.yaml"
    topo.write_text((TOPOLOGIES / "vxlan.yaml").read_text().replace("name: vxlan", f"name: {name}")
                    .replace("cni: bridge", "cni: ptp").replace("network: vxlan", f"network: {network}"))
    clean_after.append(name)
    lab("up", str(topo))
    routes = subprocess.run(["ip", "-n", f"{name}-worker2", "-j", "route"], capture_output=True, text=True,
                            check=True).stdout
    pod_ips = [p["ip"] for p in record(name)["state"]["pods"] if p["node"] == "worker2" and not p["host_network"]]
    assert {r["dst"] for r in json.loads(routes)} >= set(pod_ips)  # /32 host routes, no cni0
    assert "cni0" not in subprocess.run(["ip", "-n", f"{name}-worker2", "link"], capture_output=True, text=True).stdout
    assert "PASSED" in lab("check", "--lab", name).stdout
