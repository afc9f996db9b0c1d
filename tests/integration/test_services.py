"""Services in a real lab, in both kube-proxy modes: the rules read like a real node's, every
Service behaviour the harness knows holds, and the lab follows readiness and `lab apply`."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import TOPOLOGIES, lab, needs_root, wait_for

pytestmark = [needs_root, pytest.mark.root]


def services_topology(tmp_path: Path, mode: str, **edits: str) -> Path:
    text = (TOPOLOGIES / "services.yaml").read_text().replace("proxy: iptables", f"proxy: {mode}")
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "services.yaml"
    path.write_text(text)
    return path


def node_rules(mode: str, node: str = "services-worker1") -> str:
    """The node's NAT rules, without iptables-save's timestamps and counters."""
    argv = ["iptables-save", "-t", "nat"] if mode == "iptables" else ["nft", "list", "ruleset"]
    out = subprocess.run(["ip", "netns", "exec", node, *argv], capture_output=True, text=True, check=True).stdout
    return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#"))


def results(tmp_path: Path, check=True) -> list[dict]:
    out = tmp_path / "r.json"
    proc = lab("check", "--lab", "services", "--json", str(out), check=False)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:]
    return json.loads(out.read_text())["results"]


def slices() -> dict[str, list[dict]]:
    items = json.loads(lab("get", "endpointslices", "-o", "json", "--lab", "services").stdout)["items"]
    out: dict[str, list[dict]] = {}
    for s in items:
        out.setdefault(s["metadata"]["labels"]["kubernetes.io/service-name"], []).extend(s["endpoints"])
    return out


@pytest.fixture(params=["iptables", "nftables"])
def services_lab(request, tmp_path):
    path = services_topology(tmp_path, request.param)
    lab("up", str(path))
    try:
        yield request.param, path
    finally:
        lab("down", "services", check=False)


def test_every_service_behaviour_holds(services_lab, tmp_path):
    mode, _ = services_lab
    got = results(tmp_path)
    checks = {r["check"] for r in got}
    assert {"service", "service-spread", "session-affinity", "no-endpoints", "nodeport", "egress",
            "clusterip-virtual", "checks"} <= checks
    # the rules read like a real node's
    rules = node_rules(mode)
    if mode == "iptables":
        assert re.search(r"-A KUBE-SERVICES -d 10\.96\.0\.100/32 -p tcp -m comment --comment \"default/backend:http "
                         r"cluster IP\" -m tcp --dport 80 -j KUBE-SVC-[A-Z2-7]{16}", rules)
        assert "--mode random --probability" in rules and "-m recent" in rules
    else:
        assert "10.96.0.100 . tcp . 80" in rules and "numgen random mod 3" in rules
    # kubectl-style views
    svc = lab("get", "svc", "--lab", "services").stdout
    assert re.search(r"backend\s+ClusterIP\s+10\.96\.0\.100\s+<none>\s+80/TCP,53/UDP", svc)
    assert re.search(r"backend-nodeport\s+NodePort\s+\S+\s+<none>\s+80:30080/TCP", svc)
    assert re.search(r"backend-headless\s+ClusterIP\s+None", svc)
    eps = slices()
    assert sum(e["conditions"]["ready"] for e in eps["backend"]) == 3
    assert not any(e["conditions"]["ready"] for e in eps["warming"])
    assert all(e["conditions"]["ready"] and not e["conditions"]["serving"] for e in eps["warming-published"])


def test_egress_needs_the_masquerade_rule(services_lab, tmp_path):
    mode, _ = services_lab
    for node in ("control-plane", "worker1", "worker2"):
        argv = (["iptables", "-t", "nat", "-F", "IP-MASQ-AGENT"] if mode == "iptables"
                else ["nft", "flush", "table", "ip", "ip-masq-agent"])
        subprocess.run(["ip", "netns", "exec", f"services-{node}", *argv], check=True)
    egress = [r for r in results(tmp_path, check=False) if r["check"] == "egress"]
    assert egress and not any(r["passed"] for r in egress)
    assert all("no reply" in r["observed"] for r in egress)  # the internet host has no route back


def test_an_endpoint_whose_container_dies_leaves_its_services(services_lab, tmp_path):
    record = json.loads(Path("/run/k8s-netlab/services/record.json").read_text())
    victim = next(k for k in record["pids"] if k.startswith("default/backend-"))
    subprocess.run(["kill", str(record["pids"][victim])], check=True)
    pod = victim.rsplit("/", 1)[0]
    assert wait_for(lambda: sum(e["conditions"]["ready"] for e in slices()["backend"]) == 2, timeout=10), \
        "the dead backend stayed in the EndpointSlice"
    got = results(tmp_path, check=False)
    spread = [r for r in got if r["check"] == "service-spread" and r["subject"].startswith("default/backend:http")]
    assert spread and spread[0]["passed"] and pod.split("/")[1] not in spread[0]["observed"]


def test_apply_scales_and_resyncs_incrementally(services_lab, tmp_path):
    mode, path = services_lab
    before = {p["metadata"]["name"]: p["status"]["podIP"]
              for p in json.loads(lab("get", "pods", "-o", "json", "--lab", "services").stdout)["items"]}
    rules_before = node_rules(mode)
    out = lab("apply", str(path)).stderr
    assert "0 pods created, 0 pods deleted, 0 Services re-synced" in out  # a resync with no change
    assert node_rules(mode) == rules_before

    bigger = services_topology(tmp_path, mode, **{"replicas: 3\n      selector: {matchLabels: {app: backend}}":
                                                   "replicas: 5\n      selector: {matchLabels: {app: backend}}"})
    out = lab("apply", str(bigger)).stderr
    assert "2 pods created" in out
    after = {p["metadata"]["name"]: p["status"]["podIP"]
             for p in json.loads(lab("get", "pods", "-o", "json", "--lab", "services").stdout)["items"]}
    assert {k: after[k] for k in before} == before  # running pods kept their addresses
    assert sum(e["conditions"]["ready"] for e in slices()["backend"]) == 5
    results(tmp_path)  # everything still holds, spread over 5

    smaller = services_topology(tmp_path, mode, **{"replicas: 3\n      selector: {matchLabels: {app: backend}}":
                                                    "replicas: 1\n      selector: {matchLabels: {app: backend}}"})
    assert "4 pods deleted" in lab("apply", str(smaller)).stderr
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert sum(f"services-default-{n}" in netns for n in after if n.startswith("backend-")) == 1
    results(tmp_path)
