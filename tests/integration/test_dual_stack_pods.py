"""Dual-stack and IPv6-only pods on real labs (issue 23, the pod side): every pod gets a v4 and a v6
address from the CNI (status.podIPs in order), each pod network routes both families, lab check
probes each family, a NetworkPolicy allowing only 0.0.0.0/0 lets IPv4 in and keeps IPv6 out, and a
v6 route taken away fails the v6 rows only. Labs are named dsp* (no other test file uses them)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import TOPOLOGIES, lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

NAME = "dspods"
GUARDED = [  # a pod a policy allows only IPv4 sources to reach
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "guarded", "labels": {"app": "guarded"}},
     "spec": {"nodeName": "worker2", "containers": [{"name": "c", "image": "netexec",
                                                       "ports": [{"containerPort": 8080}]}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "only-v4"},
     "spec": {"podSelector": {"matchLabels": {"app": "guarded"}},
              "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}},
]


def copy(name: str, source: str, tmp: Path, **cluster) -> tuple[Path, dict]:
    doc = yaml.safe_load((TOPOLOGIES / source).read_text())
    doc["name"] = name
    doc["cluster"].update(cluster)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, doc


@pytest.fixture(scope="module")
def dual(tmp_path_factory):
    path, doc = copy(NAME, "dual-stack.yaml", tmp_path_factory.mktemp("dsp"))
    doc["manifests"] += GUARDED
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    lab("up", str(path))
    try:
        yield json.loads(lab("get", "pods", "--lab", NAME, "-o", "json").stdout)["items"]
    finally:
        lab("down", NAME, check=False)


def netns_of(pod: dict) -> str:
    return f"{NAME}-default-{pod['metadata']['name']}"


def eth0(netns: str, dev: str = "eth0") -> list[str]:
    out = subprocess.run(["ip", "-n", netns, "-j", "addr", "show", "dev", dev], capture_output=True, text=True,
                         check=True).stdout
    return [a["local"] for link in json.loads(out) for a in link["addr_info"] if a.get("scope") == "global"]


def curl(netns: str, ip: str, port: int = 8080) -> subprocess.CompletedProcess:
    host = f"[{ip}]" if ":" in ip else ip
    return subprocess.run(["ip", "netns", "exec", netns, "curl", "-s", "-m", "2", f"http://{host}:{port}/clientip"],
                          capture_output=True, text=True)


def check_rows(name: str, tmp: Path) -> tuple[int, list[dict]]:
    out = tmp / "check.json"
    proc = lab("check", "--lab", name, "--json", str(out), "--timeout", "0.5", check=False)
    return proc.returncode, json.loads(out.read_text())["results"]


def test_every_pod_has_both_addresses_on_eth0_in_the_order_of_status_pod_ips(dual):
    for pod in dual:
        ips = [x["ip"] for x in pod["status"]["podIPs"]]
        assert pod["status"]["podIP"] == ips[0] and ":" not in ips[0] and ":" in ips[1], pod["metadata"]["name"]
        assert sorted(eth0(netns_of(pod))) == sorted(ips)


def test_ipv6_crosses_nodes_without_nat_and_the_policy_is_per_family(dual):
    by_name = {p["metadata"]["name"]: p for p in dual}
    client, guarded = by_name["client"], by_name["guarded"]
    v4, v6 = (x["ip"] for x in guarded["status"]["podIPs"])
    c4, c6 = (x["ip"] for x in client["status"]["podIPs"])
    backend = next(p for p in dual if p["spec"]["nodeName"] != "worker1" and p["metadata"]["name"].startswith("backend"))
    seen = curl(netns_of(client), backend["status"]["podIPs"][1]["ip"])
    assert seen.returncode == 0 and seen.stdout.startswith(f"[{c6}]:"), seen
    allowed = curl(netns_of(client), v4)
    assert allowed.returncode == 0 and allowed.stdout.startswith(f"{c4}:"), allowed
    denied = curl(netns_of(client), v6)
    assert denied.returncode == 28, denied  # curl's timeout: the IPv6 SYN was dropped, not refused


def test_lab_check_probes_each_family_and_expects_the_policys_per_family_verdict(dual, tmp_path):
    code, rows = check_rows(NAME, tmp_path)
    failed = [r for r in rows if not r["passed"]]
    assert code == 0 and not failed, failed[:3]
    p2p = [r for r in rows if r["check"] == "pod-to-pod"]
    assert any("fd00:10:244:" in r["subject"] for r in p2p) and any("10.244." in r["subject"] for r in p2p)
    to_guarded = [r for r in p2p if "default/guarded" in r["subject"].split("->")[1]]
    assert to_guarded and all(("denied by NetworkPolicy" in r["subject"]) == ("[fd00" in r["subject"])
                              for r in to_guarded)
    assert any(r["check"] == "node-to-pod" and "[fd00:10:244:" in r["subject"] for r in rows)
    # the topology's own check and egress have a row per family; IPv6 egress is masqueraded to the node
    for check, v6 in (("checks", "([fd00:10:244:"), ("egress", "([fd00:172:18::")):
        assert {v6 in r["subject"] for r in rows if r["check"] == check} == {True, False}, check


def test_the_ipv6_truth_table_matches_the_policies(dual):
    proc = lab("netpol", "matrix", "--lab", NAME, "--family", "6", "--ports", "8080", "--protocols", "TCP",
               check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(IPv6)" in proc.stdout and "observed = expected" in proc.stdout
    grid = proc.stdout.split("8080/TCP:\n")[1].splitlines()
    guarded = grid[0].split().index("default/guarded")
    rows = [line.split() for line in grid[1:] if line.startswith("default/")]
    assert rows and all(row[1 + guarded] == "X" for row in rows if row[0] != "default/guarded")


def test_a_missing_ipv6_route_fails_the_ipv6_rows_only(dual, tmp_path):
    node, cidr, via = f"{NAME}-worker1", "fd00:10:244:2::/64", "fd00:10:244:2::"
    subprocess.run(["ip", "-n", node, "-6", "route", "del", cidr], check=True)
    try:
        code, rows = check_rows(NAME, tmp_path)
    finally:
        subprocess.run(["ip", "-n", node, "-6", "route", "replace", cidr, "via", via, "dev", "flannel-v6.1", "onlink"],
                       check=True)
    failed = [r for r in rows if not r["passed"]]
    assert code == 1 and any(r["check"] == "pod-to-pod" for r in failed)
    # only IPv6 rows fail: pod to pod and node to pod over the route, and the IPv6 ClusterIPs' rows
    # whose backend sits behind it; every IPv4 row passes
    assert all("fd00:" in r["subject"] + str(r.get("target", "")) for r in failed), failed
    pairs = [r for r in failed if r["check"] in ("pod-to-pod", "node-to-pod")]
    assert all("10.244." not in r["subject"].split("->")[1].split("(")[1] for r in pairs)


@pytest.mark.parametrize("name, source, cluster", [
    ("dspds", "dual-stack.yaml", {}),
    ("dsp6", "ipv6-only.yaml", {}),
    ("dsp6vx", "ipv6-only.yaml", {"network": "vxlan"}),
    ("dspbgp", "dual-stack.yaml", {"network": "bgp"}),
    ("dspptp", "dual-stack.yaml", {"network": "host-gw", "cni": "ptp"}),
    ("dsp6first", "dual-stack.yaml", {"podCIDR": "fd00:10:244::/56,10.244.0.0/16",
                                      "serviceCIDR": "fd00:10:96::/112,10.96.0.0/12"}),
])
def test_lab_run_passes_in_every_ipv6_capable_pod_network(name, source, cluster, tmp_path):
    path, _ = copy(name, source, tmp_path, **cluster)
    proc = lab("run", str(path), "--json", str(tmp_path / "run.json"), check=False, timeout=180)
    rows = json.loads((tmp_path / "run.json").read_text())["results"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert any(r["check"] == "pod-to-pod" and "fd00:10:244:" in r["subject"] for r in rows)


def test_a_node_stopped_and_started_keeps_its_ipv6_address_and_routes(dual):
    """eth0 going down would take its IPv6 addresses with it (keep_addr_on_down is on in the lab's
    namespaces) and the default and pod routes through it (lab node start puts them back)."""
    by_name = {p["metadata"]["name"]: p for p in dual}
    client = by_name["client"]
    backend = next(p for p in dual if p["spec"]["nodeName"] != client["spec"]["nodeName"]
                   and p["metadata"]["name"].startswith("backend"))
    node = backend["spec"]["nodeName"]
    nodes = json.loads(lab("get", "nodes", "--lab", NAME, "-o", "json").stdout)["items"]
    ip6 = next(a["address"] for n in nodes if n["metadata"]["name"] == node
               for a in n["status"]["addresses"] if a["type"] == "InternalIP" and ":" in a["address"])
    lab("node", "stop", node, "--lab", NAME)
    lab("node", "start", node, "--lab", NAME)
    assert ip6 in eth0(f"{NAME}-{node}")
    c6 = client["status"]["podIPs"][1]["ip"]
    seen = curl(netns_of(client), backend["status"]["podIPs"][1]["ip"])
    assert seen.returncode == 0 and seen.stdout.startswith(f"[{c6}]:"), seen


def test_no_ipv6_address_of_the_lab_is_tentative(dual):
    """DAD would hold them ~2 s: the first cross-node IPv6 packets waited for eth0's link-local."""
    for machine in ("control-plane", "worker1", "worker2", "internet"):
        out = subprocess.run(["ip", "-n", f"{NAME}-{machine}", "-6", "addr"], capture_output=True, text=True,
                             check=True).stdout
        assert "tentative" not in out and "fe80::" in out, (machine, out)
