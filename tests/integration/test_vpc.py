"""network: vpc, the AWS VPC CNI model (topologies/vpc-cni.yaml), in real namespaces: pod IPs are
addresses of the VPC (underlay) subnet, each node holds a /32 route per local pod and answers ARP
for them, a VPC host reaches a pod with no SNAT, traffic leaving the VPC is SNATed to the node (then
to the NAT gateway's public address); lab check passes, lab trace's observed walk matches the
prediction, lab graph draws it, and lab down leaves nothing."""
from __future__ import annotations

import json
from ipaddress import ip_address, ip_network

import pytest

from lab.controlplane.naming import public_switch_name, switch_name
from tests.integration.conftest import ROOT, lab, lab_leftovers, needs_root

pytestmark = [needs_root, pytest.mark.root]
NAME = "vpc"
SUBNET = ip_network("10.0.1.0/24")


def differing(doc: dict) -> list[str]:
    return [f"{r['step']} {r['component']}: {r['observed']}" for r in doc["rows"] if r["mark"] == "≠"]


def trace(*args: str) -> dict:
    return json.loads(lab("--lab", NAME, "trace", *args, "-o", "json", check=False).stdout)


def test_vpc_lab_up_check_trace_graph_down():
    lab("up", str(ROOT / "topologies" / "vpc-cni.yaml"))
    try:
        pods = json.loads(lab("--lab", NAME, "get", "pods", "-A", "-o", "json").stdout)["items"]
        ips = {p["metadata"]["name"]: (p["status"]["podIP"], p["spec"]["nodeName"]) for p in pods}
        assert ips and all(ip_address(ip) in SUBNET for ip, _ in ips.values()), ips

        # the node routes each local pod with a /32 and answers ARP for them on eth0
        routes = lab("--lab", NAME, "exec", "node/worker1", "--", "ip", "-4", "route", "show").stdout
        local = [ip for ip, node in ips.values() if node == "worker1"]
        assert local and all(f"{ip} dev " in routes for ip in local), routes
        assert "flannel" not in routes and " via 10.0.1." not in routes.replace("default via 10.0.1.1", ""), routes
        proxy = lab("--lab", NAME, "exec", "node/worker1", "--", "cat", "/proc/sys/net/ipv4/conf/eth0/proxy_arp").stdout
        assert proxy.strip() == "1"

        web, (web_ip, web_node) = next((n, v) for n, v in ips.items() if n.startswith("web-") and v[1] != "worker1")
        seen = lab("--lab", NAME, "exec", "host/bastion", "--", "curl", "-s", "-m", "2",
                   f"http://{web_ip}:8080/clientip").stdout
        assert seen.startswith("10.0.1.5:"), seen               # inside the VPC: no SNAT
        seen = lab("--lab", NAME, "exec", web, "--", "curl", "-s", "-m", "2", "http://203.0.113.2:8080/clientip").stdout
        assert seen.startswith("203.0.113.1:"), seen            # leaving it: SNAT to the node, then the gateway

        check = lab("--lab", NAME, "check").stdout
        assert "PASSED" in check and any(line.startswith("egress") for line in check.splitlines()), check

        # (not host/internet: lab trace does not model the NAT gateway's second SNAT, for any network)
        for args in ([web], ["svc/web:80"], ["host/bastion"], ["host/nat"]):
            doc = trace("client", *args)
            assert doc["observed"]["ok"] and not differing(doc), (args, doc["verdict"], differing(doc))
        doc = trace("client", web)
        route = next(r for r in doc["rows"] if r["component"] == "node worker1 routing")
        assert f"{web_ip} dev eth0" in route["observed"] and route["mark"] == "=", route
        assert not any("VXLAN" in r["predicted"] for r in doc["rows"])

        graph = lab("--lab", NAME, "graph").stdout
        assert "ENI: pods' secondary IPs" in graph and web_ip in graph
    finally:
        lab("down", NAME, check=False)
    assert lab_leftovers(NAME, switch_name(NAME)) == []
    assert lab_leftovers(NAME, public_switch_name(NAME)) == []


def test_a_node_past_its_ip_budget_is_refused_before_anything_is_built(tmp_path):
    text = (ROOT / "topologies" / "vpc-cni.yaml").read_text().replace("name: vpc\n", "name: vpcfull\n") \
        .replace("vpc: {enisPerNode: 3, ipsPerEni: 6}", "vpc: {enisPerNode: 1, ipsPerEni: 2}")
    path = tmp_path / "vpc-full.yaml"
    path.write_text(text)
    out = lab("up", str(path), check=False)
    assert out.returncode != 0
    assert "IP exhaustion risk per node: node control-plane has 3 pods" in out.stderr, out.stderr
    assert "budget is 1 ENIs x (2 IPs per ENI - 1 primary) = 1" in out.stderr
    assert "Traceback" not in out.stderr
    assert lab_leftovers("vpcfull", switch_name("vpcfull")) == []
