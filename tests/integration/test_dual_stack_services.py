"""Dual-stack Services on real labs, in both proxy modes (labs dssvc-ipt and dssvc-nft): a
SingleStack IPv6 Service and a RequireDualStack Service answer on each of their ClusterIPs from a
pod, a PreferDualStack NodePort has rows on the nodes' IPv6 addresses, `getent ahostsv6` in a pod
resolves the dual-stack Service to its IPv6 ClusterIP, `lab check` passes with its rows of both
families; and the verdicts can fail: with one node's IPv6 Service rules gone, the IPv6 service rows
of that node fail and the IPv4 ones still pass."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab.host import record
from tests.integration.conftest import lab, needs_root

pytestmark = [needs_root, pytest.mark.root]

TOPOLOGY = """name: {name}
cluster: {{podCIDR: "10.244.0.0/16,fd00:10:244::/56", network: vxlan, proxy: {proxy}}}
nodes: [{{name: control-plane, role: control-plane}}, {{name: worker1}}]
manifests:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: server}}
    spec:
      replicas: 2
      selector: {{matchLabels: {{app: server}}}}
      template:
        metadata: {{labels: {{app: server}}}}
        spec: {{containers: [{{name: web, image: netexec, ports: [{{containerPort: 8080}}]}}]}}
  - {{apiVersion: v1, kind: Pod, metadata: {{name: client}},
     spec: {{nodeName: worker1, containers: [{{name: c, image: netexec, ports: [{{containerPort: 8080}}]}}]}}}}
  - {{apiVersion: v1, kind: Service, metadata: {{name: both}},
     spec: {{selector: {{app: server}}, ipFamilyPolicy: RequireDualStack, ports: [{{port: 80, targetPort: 8080}}]}}}}
  - {{apiVersion: v1, kind: Service, metadata: {{name: six}},
     spec: {{selector: {{app: server}}, ipFamilies: [IPv6], ports: [{{port: 80, targetPort: 8080}}]}}}}
  - {{apiVersion: v1, kind: Service, metadata: {{name: four}},
     spec: {{selector: {{app: server}}, ports: [{{port: 80, targetPort: 8080}}]}}}}
  - {{apiVersion: v1, kind: Service, metadata: {{name: np}},
     spec: {{type: NodePort, ipFamilyPolicy: PreferDualStack, selector: {{app: server}},
            ports: [{{port: 80, targetPort: 8080, nodePort: 30080}}]}}}}
"""


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def ds(request, tmp_path_factory):
    name = f"dssvc-{request.param[:3]}"
    path = tmp_path_factory.mktemp(name) / f"{name}.yaml"
    path.write_text(TOPOLOGY.format(name=name, proxy=request.param))
    lab("up", str(path))
    try:
        yield name, request.param, record.load(name).state
    finally:
        lab("down", name, check=False)


def in_pod(name: str, *argv: str) -> subprocess.CompletedProcess:
    return lab("--lab", name, "exec", "client", "--", *argv, check=False)


def check_rows(name: str, tmp_path: Path) -> tuple[int, list[dict]]:
    out = tmp_path / f"{name}.json"
    proc = lab("check", "--lab", name, "--json", str(out), check=False)
    return proc.returncode, json.loads(out.read_text())["results"]


def test_each_cluster_ip_answers_from_a_pod(ds):
    name, _, state = ds
    for svc in ("both", "six"):
        for ip in state.service("default", svc).cluster_ips:
            url = f"http://[{ip}]/hostname" if ":" in ip else f"http://{ip}/hostname"
            proc = in_pod(name, "curl", "-g", "-s", "-m", "3", url)
            assert proc.returncode == 0 and proc.stdout.startswith("server-"), (svc, ip, proc.stdout, proc.stderr)
    assert ":" in state.service("default", "six").cluster_ip
    assert len(state.service("default", "both").cluster_ips) == 2


def test_getent_ahostsv6_resolves_the_dual_stack_service_to_its_ipv6_cluster_ip(ds):
    name, _, state = ds
    v6 = state.service("default", "both").cluster_ip_of("IPv6")
    proc = in_pod(name, "getent", "ahostsv6", "both.default.svc.cluster.local")
    assert proc.returncode == 0 and {line.split()[0] for line in proc.stdout.splitlines()} == {v6}, proc.stdout
    mapped = in_pod(name, "getent", "ahostsv6", "four.default.svc.cluster.local")   # no AAAA: glibc maps the A record
    assert mapped.stdout.startswith("::ffff:10."), mapped.stdout


def test_check_passes_with_rows_of_both_families_then_fails_the_ipv6_rows_without_their_rules(ds, tmp_path):
    name, proxy, state = ds
    code, rows = check_rows(name, tmp_path)
    assert code == 0, [r for r in rows if not r["passed"]]
    targets = {r["target"].rsplit(":", 2)[0] for r in rows if r["check"] == "service"}
    assert any(":" in t for t in targets) and any("." in t for t in targets)
    assert any(r["check"] == "dns" and "(AAAA)" in r["subject"] for r in rows)
    assert any(r["check"] == "nodeport" and r["target"].startswith("fd00:172:18::") for r in rows)   # IPv6 NodePort
    # one node's IPv6 Service rules gone: its IPv6 rows fail, every IPv4 row still passes
    netns = state.node("worker1").netns
    wipe = ["ip6tables", "-t", "nat", "-F", "KUBE-SERVICES"] if proxy == "iptables" else \
        ["nft", "flush", "chain", "ip6", "kube-proxy", "services"]
    subprocess.run(["ip", "netns", "exec", netns, *wipe], check=True)
    code, rows = check_rows(name, tmp_path)
    service = [r for r in rows if r["check"] == "service"]
    failed = [r for r in service if not r["passed"]]
    assert code == 1 and failed
    on_worker1 = {netns} | {p.netns for p in state.pods if p.node == "worker1"}
    odd = [r for r in failed if not (r["target"].startswith("fd00:10:96::")
                                     and (r.get("source") in on_worker1 or r.get("node") == "worker1"))]
    assert not odd, odd[:3]
    assert all(r["passed"] for r in service if not r["target"].startswith("fd00:")), \
        [r for r in service if not r["passed"] and not r["target"].startswith("fd00:")][:3]
