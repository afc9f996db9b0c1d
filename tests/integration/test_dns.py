"""Cluster DNS in a real lab: every record type answered by dnsmasq through each pod's own
resolver, every dnsPolicy, records that follow changes, the ndots cost, and nothing left after."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from lab.probe import dns as probe
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


# --- the harness never lies (issue 9) ---

SUMMARY = re.compile(r"^(PASSED|FAILED \(\d+ of \d+\))$", re.M)


def dns_topology(tmp_path: Path, name: str, extra: str = "") -> Path:
    """topologies/dns.yaml as lab `name`, with more manifests appended."""
    text = (TOPOLOGIES / "dns.yaml").read_text().replace("name: dns\n", f"name: {name}\n", 1)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text + extra)
    return path


def kube_dns_ready(name: str) -> None:
    """`lab up` returns before the agent's first readiness probe of kube-dns: until then the cluster
    DNS Service has no endpoint and every lookup fails, truthfully. These tests are about later."""
    def ready() -> bool:
        items = json.loads(lab("get", "pods", "-n", "kube-system", "-o", "json", "--lab", name).stdout)["items"]
        return bool(items) and all(c["ready"] for p in items for c in p["status"]["containerStatuses"])
    assert wait_for(ready, timeout=20, step=0.2), f"kube-dns of {name} never became ready"


def check(name: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """`lab check` as a user runs it: it must end with its summary line, never a traceback."""
    out = tmp_path / "r.json"
    proc = lab("check", "--lab", name, "--json", str(out), check=False, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert SUMMARY.search(proc.stdout), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert proc.returncode == (0 if all(r["passed"] or r["unchecked"] for r in results) else 1)
    return proc, results


DENY_SHOP_EGRESS = """  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: default-deny-egress, namespace: shop}
    spec: {podSelector: {}, policyTypes: [Egress]}
"""


def test_dns_denied_by_policy_is_expected_to_fail(tmp_path, clean_after):
    """default-deny-egress in shop: cart's lookups time out. That once ended `lab check` in a
    TimeoutExpired traceback; now cart's row expects silence, says why, and passes."""
    clean_after.append("dnsdeny")
    lab("up", str(dns_topology(tmp_path, "dnsdeny", DENY_SHOP_EGRESS)))
    kube_dns_ready("dnsdeny")
    proc, results = check("dnsdeny", tmp_path)
    rows = [r for r in results if r["check"] in ("dns", "dns-http")]
    cart = [r for r in rows if r["source"] == "dnsdeny-shop-cart"]
    assert cart and all("denied by NetworkPolicy" in r["subject"] and r["passed"] for r in cart), cart
    assert all("no reply" in r["observed"] for r in cart)
    failed = [r for r in rows if not r["passed"]]
    assert not failed, failed[:5]
    # the other pods still resolve cart's Service: the policy is cart's egress, not its ingress
    assert any(r["passed"] and "cart.shop.svc.cluster.local ->" in r["subject"] for r in rows)
    others = [r for r in results if not r["passed"]]
    assert proc.returncode == 0, others[:5]


def test_a_dead_dns_server_fails_the_dns_rows(tmp_path, clean_after):
    """Kill kube-dns's dnsmasq: nothing answers, so no dns row may pass, the NXDOMAIN one least of all
    (it used to: an empty answer looked like NXDOMAIN)."""
    clean_after.append("dnskill")
    lab("up", str(dns_topology(tmp_path, "dnskill")))
    kube_dns_ready("dnskill")
    record = json.loads(Path("/run/k8s-netlab/dnskill/record.json").read_text())
    (pid,) = [v for k, v in record["pids"].items() if k.startswith("kube-system/kube-dns-")]
    subprocess.run(["kill", str(pid)], check=True)
    proc, results = check("dnskill", tmp_path)
    assert proc.returncode == 1
    rows = [r for r in results if r["check"] == "dns"]
    assert rows and not [r for r in rows if r["passed"]], [r for r in rows if r["passed"]][:5]
    (nx,) = [r for r in rows if r["subject"].endswith("-> NXDOMAIN")]
    assert nx["expected"] == "NXDOMAIN" and "no answer from the pod's resolver" in nx["observed"]
    assert not [r for r in results if r["check"] == "dns-http" and r["passed"]]


def test_a_tool_that_cannot_run_is_a_failure_with_its_reason(dns_lab):
    """The probe's own failures (no such tool, no such namespace, a timeout) never pass."""
    client = next(p for p in json.loads(lab("get", "pods", "-o", "json", "--lab", "dns").stdout)["items"]
                  if p["metadata"]["name"].startswith("client-"))["metadata"]["name"]
    netns = f"dns-default-{client}"
    nx = probe.Question("dns", "s", None, ("no-such-dig", "-q", "x.cluster.local"), frozenset(), probe.NXDOMAIN)
    out, error = probe._run_in(netns, probe._ONE_SCRIPT, nx.argv, timeout=5, tool="no-such-dig")
    assert probe.judge(nx, probe.parse_replies(out, 1, error)[0]) == (False, False, "cannot run no-such-dig: not installed")
    silent = probe.Question("dns", "s", None, ("dig", "-q", "x."), frozenset(), probe.NO_REPLY)
    out, error = probe._run_in("dns-no-such-pod", probe._ONE_SCRIPT, silent.argv, timeout=5, tool="dig")
    ok, _, seen = probe.judge(silent, probe.parse_replies(out, 1, error)[0])
    assert not ok and seen.startswith("cannot run ip netns exec dns-no-such-pod")
    out, error = probe._run_in(netns, probe._BATCH_SCRIPT, ["ahostsv4", "a", "ahostsv6", "b"], timeout=0.01,
                               tool="getent")
    assert error == "getent timed out after 0.01s" or out.count("rc=") == 2
    # names (and databases: the script takes pairs) are arguments: shell syntax in one is a (strange)
    # name, never a command
    marker = Path("/tmp/k8s-netlab-dns-injection")
    out, _ = probe._run_in(netns, probe._BATCH_SCRIPT, ["ahostsv4", f"$(touch {marker})", f"$(touch {marker})", "x"],
                           timeout=5, tool="getent")
    replies = probe.parse_replies(out, 2)
    assert not marker.exists() and replies[0].rc == 2 and replies[1].rc == 1   # 1: getent's unknown database


def test_node_local_cache_keeps_dns_under_egress_deny(tmp_path, clean_after):
    """With NodeLocal DNSCache a pod asks its own node, and pod-to-node traffic is outside policy:
    cart resolves despite default-deny-egress, so its rows are ordinary ones, and they pass."""
    clean_after.append("nldeny")
    path = dns_topology(tmp_path, "nldeny", DENY_SHOP_EGRESS)
    path.write_text(path.read_text().replace("dns: {enabled: true, domain: cluster.local}",
                                             "dns: {enabled: true, domain: cluster.local, nodeLocalCache: true}"))
    lab("up", str(path))
    kube_dns_ready("nldeny")
    _, results = check("nldeny", tmp_path)
    rows = [r for r in results if r["check"] == "dns"]
    cart = [r for r in rows if r["source"] == "nldeny-shop-cart"]
    assert len(cart) > 1 and not [r for r in cart if "denied" in r["subject"]]
    assert not [r for r in rows if not r["passed"]], [r for r in rows if not r["passed"]][:5]
