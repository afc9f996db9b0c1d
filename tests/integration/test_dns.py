"""Cluster DNS in a real lab: every record type answered by dnsmasq through each pod's own
resolver, every dnsPolicy, records that follow changes, the ndots cost, and nothing left after."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import TOPOLOGIES, lab, needs_root, wait_for

pytestmark = [needs_root, pytest.mark.root]


def pods() -> dict[str, dict]:
    items = json.loads(lab("get", "pods", "-A", "-o", "json", "--lab", "dns").stdout)["items"]
    return {p["metadata"]["name"]: p for p in items}


def first(prefix: str) -> str:
    return sorted(n for n in pods() if n.startswith(prefix))[0]


def run_in(pod: str, *argv: str, namespace: str = "default") -> str:
    return lab("exec", pod, "-n", namespace, "--lab", "dns", "--", *argv).stdout


def dig(pod: str, *args: str) -> list[str]:
    return run_in(pod, "dig", "+short", *args).split()


@pytest.fixture(scope="module")
def dns_lab():
    lab("up", str(TOPOLOGIES / "dns.yaml"))
    try:
        yield
    finally:
        lab("down", "dns", check=False)
    assert not list(Path("/etc/netns").glob("dns-*")), "lab down left /etc/netns entries"


def test_the_harness_passes(dns_lab):
    out = lab("check", "--lab", "dns").stdout
    assert "PASSED" in out and "dns " in out and "dns-http" in out


def test_every_record_type(dns_lab):
    client = first("client-")
    all_pods = pods()
    backends = sorted(p["status"]["podIP"] for n, p in all_pods.items() if n.startswith("backend-"))
    svc = {s["metadata"]["name"]: s for s in json.loads(lab("get", "svc", "-A", "-o", "json", "--lab", "dns").stdout)["items"]}
    assert svc["kube-dns"]["spec"]["clusterIP"] == "10.96.0.10"
    assert dig(client, "+search", "backend") == [svc["backend"]["spec"]["clusterIP"]]          # short name
    assert dig(client, "+search", "cart.shop") == [svc["cart"]["spec"]["clusterIP"]]           # name.namespace
    assert sorted(dig(client, "backend-headless.default.svc.cluster.local")) == backends     # headless
    assert dig(client, "SRV", "_http._tcp.backend.default.svc.cluster.local") == \
        ["0", "100", "80", "backend.default.svc.cluster.local."]                              # SRV
    db = all_pods["db-0"]["status"]["podIP"]
    assert dig(client, "db-0.db.default.svc.cluster.local") == [db]                          # hostname.subdomain
    pod_record = f"{db.replace('.', '-')}.default.pod.cluster.local"
    assert dig(client, pod_record) == [db]                                                    # pod A record
    assert dig(client, "-x", db) == ["db-0.db.default.svc.cluster.local."]  # PTR: the endpoint's own name
    backend_ip = svc["backend"]["spec"]["clusterIP"]
    assert dig(client, "-x", backend_ip) == ["backend.default.svc.cluster.local."]  # PTR of a ClusterIP
    assert dig(client, "api.default.svc.cluster.local")[0] == "backend.default.svc.cluster.local."  # CNAME
    status = run_in(client, "dig", "nope.default.svc.cluster.local")
    assert "status: NXDOMAIN" in status
    assert dig(client, "+tcp", "backend.default.svc.cluster.local") == [svc["backend"]["spec"]["clusterIP"]]
    assert run_in(client, "curl", "-s", "-m", "2", "backend/hostname").startswith("backend-")  # curl by name
    assert "172.18.0.5" in run_in(client, "getent", "hosts", "internet")                       # via upstream


def test_dns_policies(dns_lab):
    client = first("client-")
    assert run_in(client, "cat", "/etc/resolv.conf") == (
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")
    assert run_in("cart", "cat", "/etc/resolv.conf", namespace="shop").splitlines()[1].startswith("search shop.svc")
    custom = run_in("custom-dns", "cat", "/etc/resolv.conf")
    assert custom == "nameserver 10.96.0.10\nsearch shop.svc.cluster.local\noptions ndots:1\n"
    assert run_in("custom-dns", "getent", "hosts", "cart").split()[0] == \
        json.loads(lab("get", "svc", "-n", "shop", "-o", "json", "--lab", "dns").stdout)["items"][0]["spec"]["clusterIP"]
    # a hostNetwork pod with ClusterFirstWithHostNet: its own name for its node's namespace,
    # and with it its own resolv.conf; the node itself keeps the upstream resolver
    agent = run_in("node-agent", "cat", "/etc/resolv.conf")
    assert agent.startswith("nameserver 10.96.0.10\nsearch default.svc.cluster.local")
    assert run_in("node-agent", "getent", "hosts", "backend").split()[1] == "backend.default.svc.cluster.local"
    assert run_in("node-agent", "ip", "-o", "addr", "show", "eth0").split()[3].startswith("172.18.0.4/")
    dnspod = first("kube-dns-")
    assert run_in(dnspod, "cat", "/etc/resolv.conf", namespace="kube-system") == "nameserver 172.18.0.5\n"  # Default
    assert lab("exec", "node/worker1", "--lab", "dns", "--", "getent", "hosts", "internet").stdout.split()[0] == "172.18.0.5"


def test_the_ndots_cost_is_visible(dns_lab):
    client = first("client-")
    short = lab("dns", "queries", client, "internet", "--lab", "dns").stdout
    fqdn = lab("dns", "queries", client, "internet.", "--lab", "dns").stdout
    assert "8 queries reached kube-dns" in short and "internet.default.svc.cluster.local" in short
    assert "2 queries reached kube-dns" in fqdn


def test_records_follow_services_and_endpoints(dns_lab, tmp_path):
    client = first("client-")
    record = json.loads(Path("/run/k8s-netlab/dns/record.json").read_text())
    victim = next(k for k in record["pids"] if k.startswith("default/backend-"))
    gone_ip = pods()[victim.split("/")[1]]["status"]["podIP"]
    subprocess.run(["kill", str(record["pids"][victim])], check=True)

    def gone() -> bool:
        try:
            return gone_ip not in dig(client, "backend-headless.default.svc.cluster.local")
        except AssertionError:  # dnsmasq restarting for the new SRV records: a moment without DNS
            return False
    assert wait_for(gone, timeout=10)
    bigger = tmp_path / "dns.yaml"
    bigger.write_text((TOPOLOGIES / "dns.yaml").read_text().replace(
        "  - apiVersion: v1              # a CNAME to a name the cluster DNS knows",
        "  - {apiVersion: v1, kind: Service, metadata: {name: extra}, spec: {selector: {app: client},"
        " ports: [{name: web, port: 8080}]}}\n"
        "  - apiVersion: v1              # a CNAME to a name the cluster DNS knows"))
    lab("apply", str(bigger))
    assert dig(client, "+search", "extra")  # a new Service resolves
    assert dig(client, "SRV", "_web._tcp.extra.default.svc.cluster.local")  # and its SRV (dnsmasq restarted)


def test_resolv_confs_live_under_etc_netns(dns_lab):
    """ip netns exec bind-mounts /etc/netns/<netns>/resolv.conf; the fixture checks they go."""
    assert {p.name for p in Path("/etc/netns").glob("dns-*")} >= {"dns-worker1", "dns-default-custom-dns"}


def test_node_local_dns_cache(tmp_path):
    """NodeLocal DNSCache: pods ask 169.254.20.10 on their node, which caches and asks kube-dns."""
    topo = tmp_path / "nldns.yaml"
    topo.write_text((TOPOLOGIES / "dns.yaml").read_text().replace("name: dns", "name: nldns").replace(
        "dns: {enabled: true, domain: cluster.local}", "dns: {enabled: true, domain: cluster.local, nodeLocalCache: true}"))
    lab("up", str(topo))
    try:
        items = json.loads(lab("get", "pods", "-o", "json", "--lab", "nldns").stdout)["items"]
        client = next(p for p in items if p["metadata"]["name"].startswith("client-"))
        name, node = client["metadata"]["name"], client["spec"]["nodeName"]
        out = lab("exec", name, "--lab", "nldns", "--", "cat", "/etc/resolv.conf").stdout
        assert out.startswith("nameserver 169.254.20.10\n")
        assert lab("exec", name, "--lab", "nldns", "--", "getent", "hosts", "backend").stdout
        cache_log = Path(f"/run/k8s-netlab/nldns/dns/node-cache-{node}.log").read_text()
        assert "backend.default.svc.cluster.local" in cache_log  # the node's cache saw the query
        assert "PASSED" in lab("check", "--lab", "nldns").stdout
    finally:
        lab("down", "nldns")
