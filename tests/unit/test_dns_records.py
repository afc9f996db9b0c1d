"""Cluster DNS as data (lab.dns.records) and the DNS parts of planning (lab.controlplane.plan).

Pure: plans topologies/dns.yaml (and small topologies built from dicts), computes EndpointSlices with
chosen readiness, and checks the records, dnsmasq's files and every pod's resolv.conf against the
Kubernetes DNS specification (https://github.com/kubernetes/dns/blob/master/docs/specification.md)
and what the kubelet writes. Goldens: tests/golden/dns-*.
"""
from __future__ import annotations

import re
from collections import Counter
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, PodState
from lab.dns import records as dns
from lab.topology.load import load_topology_text
from tests.unit.golden import check_golden, shipped_state

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
D = "cluster.local"
HOSTS_DIR = "/run/k8s-netlab/dns/dns/hosts"
QUERY_LOG = "/run/k8s-netlab/dns/dns/queries.log"
UPSTREAM_LOG = "/run/k8s-netlab/dns/dns/upstream.log"


# --- builders ---

def topology(*manifests, dns_on: bool = True, hosts: bool = True, domain: str = D,
             nodes=("control-plane", "worker1"), **cluster) -> dict:
    return {
        "name": "dnst",
        "cluster": {"dns": {"enabled": dns_on, "domain": domain}, **cluster},
        "nodes": [{"name": n} for n in nodes],
        **({"hosts": [{"name": "internet"}]} if hosts else {}),
        "manifests": list(manifests),
    }


def planned(doc: dict) -> ClusterState:
    """Through the loader, so the topology also passes the semantic checks (a valid file)."""
    return plan(load_topology_text(yaml.safe_dump(doc, sort_keys=False)))


def pod(name: str, labels: dict | None = None, ports=(80,), namespace: str | None = None, **spec) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {}), **({"labels": labels} if labels else {})}
    containers = [{"name": "c", "image": "netexec", "ports": [{"containerPort": p} for p in ports]}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": containers, **spec}}


def service(name: str, selector: dict | None = None, ports=None, namespace: str | None = None, **spec) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    body = {"ports": ports if ports is not None else [{"name": "http", "port": 80}], **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body}


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def the_pod(state: ClusterState, name: str, ns: str = "default") -> PodState:
    return next(p for p in state.pods if p.namespace == ns and (p.name == name or p.name.startswith(name + "-")))


def pods_named(state: ClusterState, prefix: str, ns: str = "default") -> list[PodState]:
    return [p for p in state.pods if p.namespace == ns and p.name.startswith(prefix + "-")]


def recs(state: ClusterState, ready: dict | None = None) -> dns.Records:
    return dns.records(state, endpoint_slices(state, ready or {}))


def user_srv(r: dns.Records) -> list[tuple[str, str, int]]:
    """SRV records without kube-dns's own (_dns._udp / _dns-tcp._tcp .kube-dns.kube-system)."""
    return [x for x in r.srv if ".kube-system.svc." not in x[0]]


def names_of(r: dns.Records, ip: str) -> list[str]:
    return [n for a, n in r.hosts if a == ip]


def ips_of(r: dns.Records, name: str) -> set[str]:
    return {a for a, n in r.hosts if n == name}


def hosts_lines(text: str) -> dict[str, list[str]]:
    """ip -> names, as dnsmasq reads the hosts file."""
    out = {}
    for line in text.splitlines():
        ip, *names = line.split()
        assert ip not in out, f"{ip} on two lines"
        out[ip] = names
    return out


@pytest.fixture(scope="module")
def state() -> ClusterState:
    return shipped_state("dns")


@pytest.fixture(scope="module")
def r(state) -> dns.Records:
    return recs(state)


# --- goldens ---

def test_golden_hosts_file(r):
    check_golden("dns-hosts.txt", dns.hosts_file(r))


def test_golden_dnsmasq_config(state, r):
    check_golden("dns-dnsmasq.conf", dns.dnsmasq_config(state, r, HOSTS_DIR, QUERY_LOG))


def test_golden_upstream_config(state):
    check_golden("dns-upstream.conf", dns.upstream_config(state, UPSTREAM_LOG))


def test_no_dnsmasq_of_the_lab_writes_the_machines_shared_pid_file(state, r):
    """Two dnsmasq starting at once race for /run/dnsmasq.pid (unlink, then O_EXCL): the loser
    exits. Seen as the NodeLocal DNSCache flake: one node's cache gone at random."""
    for conf in (dns.dnsmasq_config(state, r, HOSTS_DIR, QUERY_LOG), dns.upstream_config(state, UPSTREAM_LOG),
                 dns.node_cache_config(state, "/x/node-cache.log")):
        assert "\npid-file=\n" in conf


def test_golden_resolv_clusterfirst_in_default(state):
    text = dns.resolv_conf(state, pods_named(state, "client")[0])
    check_golden("dns-resolv-clusterfirst-default.conf", text)
    assert text == ("nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n"
                    "options ndots:5\n")


def test_golden_resolv_clusterfirst_in_shop(state):
    text = dns.resolv_conf(state, the_pod(state, "cart", "shop"))
    check_golden("dns-resolv-clusterfirst-shop.conf", text)
    assert text == "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"


def test_golden_resolv_dnspolicy_none(state):
    """dnsPolicy None: only what dnsConfig says, nothing of the cluster's."""
    text = dns.resolv_conf(state, the_pod(state, "custom-dns"))
    check_golden("dns-resolv-none-custom-dns.conf", text)
    assert text == "nameserver 10.96.0.10\nsearch shop.svc.cluster.local\noptions ndots:1\n"


def test_golden_resolv_dnspolicy_default():
    """dnsPolicy Default: the node's resolver (the lab's upstream on the first plain host), no
    cluster search list, no ndots."""
    s = shipped_state_with(pod("legacy", dnsPolicy="Default"))
    text = dns.resolv_conf(s, the_pod(s, "legacy"))
    check_golden("dns-resolv-default-policy.conf", text)
    assert text == f"nameserver {s.hosts[0].ip}\n" == "nameserver 172.18.0.5\n"


def test_golden_resolv_hostnetwork_clusterfirst():
    """A hostNetwork pod with ClusterFirst falls back to Default (Kubernetes: only
    ClusterFirstWithHostNet gives it cluster DNS): the node's own resolv.conf."""
    s = shipped_state("vxlan", dns={"enabled": True})
    agent = the_pod(s, "node-agent")
    assert agent.host_network and agent.dns_policy == "ClusterFirst"
    text = dns.resolv_conf(s, agent)
    check_golden("dns-resolv-hostnetwork.conf", text)
    assert text == f"nameserver {dns.upstream(s)}\n" == "nameserver 172.18.0.5\n"


def test_golden_resolv_custom_cluster_domain():
    s = shipped_state("dns", dns={"enabled": True, "domain": "lab.internal"})
    assert s.dns_domain == "lab.internal"
    text = dns.resolv_conf(s, pods_named(s, "client")[0])
    check_golden("dns-resolv-custom-domain.conf", text)
    assert text == "nameserver 10.96.0.10\nsearch default.svc.lab.internal svc.lab.internal lab.internal\noptions ndots:5\n"


def shipped_state_with(*extra) -> ClusterState:
    """topologies/dns.yaml with more manifests, through the loader."""
    doc = yaml.safe_load((TOPOLOGIES / "dns.yaml").read_text())
    doc["manifests"] += list(extra)
    return planned(doc)


# --- dns_ip, pod_a_name, upstream ---

def test_dns_ip_is_the_tenth_address_of_the_service_cidr(state):
    assert dns.dns_ip(state) == "10.96.0.10"
    s = shipped_state("dns", serviceCIDR="10.100.0.0/16")
    assert dns.dns_ip(s) == "10.100.0.10"
    assert s.service("kube-system", "kube-dns").cluster_ip == "10.100.0.10"
    assert dns.resolv_conf(s, pods_named(s, "client")[0]).startswith("nameserver 10.100.0.10\n")


def test_pod_a_name_is_the_dashed_ip_in_the_pods_namespace(state):
    cart = the_pod(state, "cart", "shop")
    assert dns.pod_a_name(cart, D) == f"{cart.ip.replace('.', '-')}.shop.pod.cluster.local"
    assert dns.pod_a_name(cart, "lab.internal").endswith(".shop.pod.lab.internal")


def test_upstream_is_the_first_plain_host_only_with_cluster_dns(state):
    assert dns.upstream(state) == state.hosts[0].ip == "172.18.0.5"
    assert dns.upstream(shipped_state("vxlan", dns={"enabled": False})) is None  # has a host, no cluster DNS
    assert dns.upstream(planned(topology(pod("a"), hosts=False))) is None  # cluster DNS, no host


def test_upstream_config_names_every_underlay_machine(state):
    text = dns.upstream_config(state, UPSTREAM_LOG)
    records = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("host-record=")]
    assert records == [f"{m.name},{m.ip}" for m in [*state.nodes, *state.hosts]]
    assert f"log-facility={UPSTREAM_LOG}" in text.splitlines()
    assert "no-resolv" in text.splitlines()  # it is the end of the line: nothing to forward to


# --- A records of Services ---

def test_every_clusterip_service_has_an_a_record_at_its_clusterip(state, r):
    with_ip = [s for s in state.services if s.cluster_ip]
    assert {s.name for s in with_ip} == {"backend", "cart", "kube-dns"}
    for s in with_ip:
        fqdn = f"{s.name}.{s.namespace}.svc.{D}"
        assert ips_of(r, fqdn) == {s.cluster_ip}, fqdn


def test_kube_dns_itself_is_in_the_records(state, r):
    assert ips_of(r, "kube-dns.kube-system.svc.cluster.local") == {"10.96.0.10"}


def test_clusterip_services_without_endpoints_still_have_their_a_record():
    s = planned(topology(service("lonely", selector={"app": "nobody"})))
    assert ips_of(recs(s), "lonely.default.svc.cluster.local") == {s.service("default", "lonely").cluster_ip}


def test_nodeport_services_have_their_clusterip_a_record():
    s = planned(topology(pod("w", labels={"app": "w"}),
                         service("np", selector={"app": "w"}, type="NodePort")))
    assert ips_of(recs(s), "np.default.svc.cluster.local") == {s.service("default", "np").cluster_ip}


# --- headless Services ---

def test_headless_service_has_one_a_record_per_ready_endpoint(state, r):
    backends = {p.ip for p in pods_named(state, "backend")}
    assert len(backends) == 2
    assert ips_of(r, "backend-headless.default.svc.cluster.local") == backends
    assert ips_of(r, "db.default.svc.cluster.local") == {the_pod(state, "db-0").ip}


def test_an_unready_endpoint_leaves_the_headless_records(state):
    gone, kept = pods_named(state, "backend")
    r = recs(state, {gone.key: False})
    assert ips_of(r, "backend-headless.default.svc.cluster.local") == {kept.ip}
    assert f"{gone.ip.replace('.', '-')}.backend-headless.default.svc.cluster.local" not in {n for _, n in r.hosts}
    # the ClusterIP Service keeps its record, and the pod keeps its pod record
    assert ips_of(r, "backend.default.svc.cluster.local") == {state.service("default", "backend").cluster_ip}
    assert names_of(r, gone.ip) == [dns.pod_a_name(gone, D)]
    # and its SRV record goes too
    targets = [t for n, t, _ in r.srv if n == "_http._tcp.backend-headless.default.svc.cluster.local"]
    assert targets == [f"{kept.ip.replace('.', '-')}.backend-headless.default.svc.cluster.local"]


def test_no_ready_endpoint_no_headless_records(state):
    db = the_pod(state, "db-0")
    r = recs(state, {db.key: False})
    assert ips_of(r, "db.default.svc.cluster.local") == set()
    assert ips_of(r, "db-0.db.default.svc.cluster.local") == set()
    assert not [x for x in r.srv if x[0].endswith(".db.default.svc.cluster.local")]


def test_publish_not_ready_addresses_keeps_unready_endpoints():
    s = planned(topology(pod("p", labels={"app": "p"}),
                         service("h", selector={"app": "p"}, clusterIP="None", publishNotReadyAddresses=True)))
    p = the_pod(s, "p")
    assert ips_of(recs(s, {p.key: False}), "h.default.svc.cluster.local") == {p.ip}


def test_endpoint_name_is_the_hostname_when_the_subdomain_names_the_service(state, r):
    db = the_pod(state, "db-0")
    assert (db.hostname, db.subdomain) == ("db-0", "db")
    assert ips_of(r, "db-0.db.default.svc.cluster.local") == {db.ip}
    assert f"{db.ip.replace('.', '-')}.db.default.svc.cluster.local" not in {n for _, n in r.hosts}


def test_endpoint_name_is_the_dashed_ip_otherwise(state, r):
    for b in pods_named(state, "backend"):
        assert ips_of(r, f"{b.ip.replace('.', '-')}.backend-headless.default.svc.cluster.local") == {b.ip}


@pytest.mark.parametrize("spec", [
    {"hostname": "web-0", "subdomain": "other"},   # subdomain names another Service
    {"subdomain": "h"},                             # no hostname: nothing to name it by
    {"hostname": "web-0"},                          # no subdomain
], ids=["other-subdomain", "no-hostname", "no-subdomain"])
def test_hostname_only_counts_when_the_subdomain_names_this_service(spec):
    s = planned(topology(pod("p", labels={"app": "p"}, **spec),
                         service("h", selector={"app": "p"}, clusterIP="None"),
                         service("other", selector={"app": "nobody"}, clusterIP="None")))
    p = the_pod(s, "p")
    names = {n for _, n in recs(s).hosts}
    assert f"{p.ip.replace('.', '-')}.h.default.svc.cluster.local" in names
    assert "web-0.h.default.svc.cluster.local" not in names
    assert not any(n.startswith("web-0.") for n in names)


def test_a_pod_behind_two_headless_services_is_named_under_each():
    s = planned(topology(pod("web-0", labels={"app": "w"}, hostname="web-0", subdomain="a"),
                         service("a", selector={"app": "w"}, clusterIP="None"),
                         service("b", selector={"app": "w"}, clusterIP="None")))
    p = the_pod(s, "web-0")
    r = recs(s)
    assert ips_of(r, "web-0.a.default.svc.cluster.local") == {p.ip}
    assert ips_of(r, f"{p.ip.replace('.', '-')}.b.default.svc.cluster.local") == {p.ip}
    assert ips_of(r, "a.default.svc.cluster.local") == ips_of(r, "b.default.svc.cluster.local") == {p.ip}


def test_headless_service_without_selector_has_no_records():
    s = planned(topology(service("manual", clusterIP="None")))
    assert not [n for _, n in recs(s).hosts if "manual" in n]


# --- SRV ---

def test_srv_for_named_ports_of_a_clusterip_service_target_the_service_at_the_service_port():
    s = planned(topology(pod("p", labels={"app": "p"}, ports=(8080,)),
                         service("web", selector={"app": "p"},
                                 ports=[{"name": "http", "port": 80, "targetPort": 8080},
                                        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8053}])))
    r = recs(s)
    fqdn = "web.default.svc.cluster.local"
    assert sorted(user_srv(r)) == sorted([(f"_dns._udp.{fqdn}", fqdn, 53), (f"_http._tcp.{fqdn}", fqdn, 80)])


def test_srv_for_a_headless_service_one_per_endpoint_at_the_endpoint_port():
    s = planned(topology(pod("a", labels={"app": "p"}, ports=(8080,)), pod("b", labels={"app": "p"}, ports=(8080,)),
                         service("h", selector={"app": "p"}, clusterIP="None",
                                 ports=[{"name": "http", "port": 80, "targetPort": 8080}])))
    r = recs(s)
    want = {("_http._tcp.h.default.svc.cluster.local", f"{p.ip.replace('.', '-')}.h.default.svc.cluster.local", 8080)
            for p in s.pods if p.namespace == "default"}
    assert set(user_srv(r)) == want and len(user_srv(r)) == 2


def test_no_srv_for_an_unnamed_port():
    s = planned(topology(pod("p", labels={"app": "p"}),
                         service("u", selector={"app": "p"}, ports=[{"port": 80}]),
                         service("uh", selector={"app": "p"}, ports=[{"port": 80}], clusterIP="None")))
    assert user_srv(recs(s)) == []


def test_srv_records_of_dns_yaml(state, r):
    backend_ips = [p.ip for p in pods_named(state, "backend")]
    assert set(r.srv) == {
        ("_http._tcp.backend.default.svc.cluster.local", "backend.default.svc.cluster.local", 80),
        ("_http._tcp.cart.shop.svc.cluster.local", "cart.shop.svc.cluster.local", 80),
        ("_pg._tcp.db.default.svc.cluster.local", "db-0.db.default.svc.cluster.local", 5432),
        ("_dns._udp.kube-dns.kube-system.svc.cluster.local", "kube-dns.kube-system.svc.cluster.local", 53),
        ("_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local", "kube-dns.kube-system.svc.cluster.local", 53),
        *(("_http._tcp.backend-headless.default.svc.cluster.local",
           f"{ip.replace('.', '-')}.backend-headless.default.svc.cluster.local", 80) for ip in backend_ips),
    }


# --- pod records ---

def test_every_pod_with_its_own_namespace_has_a_pod_record(state, r):
    for p in (p for p in state.pods if not p.host_network):
        assert ips_of(r, dns.pod_a_name(p, D)) == {p.ip}, p.key
    assert ips_of(r, dns.pod_a_name(the_pod(state, "cart", "shop"), D)) == {the_pod(state, "cart", "shop").ip}


def test_hostnetwork_pods_have_no_pod_record():
    s = shipped_state("vxlan", dns={"enabled": True})
    agent = the_pod(s, "node-agent")
    names = {n for _, n in recs(s).hosts}
    assert dns.pod_a_name(agent, D) not in names
    assert not any(".pod." in n and n.startswith(agent.ip.replace(".", "-")) for n in names)
    assert agent.ip not in {a for a, _ in recs(s).hosts}
    assert sum(".pod.cluster.local" in n for n in names) == sum(not p.host_network for p in s.pods)


# --- ExternalName ---

def test_externalname_is_a_cname(state, r):
    assert r.cname == (("api.default.svc.cluster.local", "backend.default.svc.cluster.local"),)
    assert not [n for _, n in r.hosts if n.startswith("api.")]
    assert not [x for x in r.srv if "api.default" in x[0]]


def test_externalname_in_the_plan(state):
    api = state.service("default", "api")
    assert (api.type, api.cluster_ip, api.external_name, api.selector, api.ports) == \
        ("ExternalName", None, "backend.default.svc.cluster.local", None, ())
    assert not [sl for sl in endpoint_slices(state, {}) if sl.service == "api"]


def test_an_externalname_takes_no_clusterip_from_the_others():
    with_ext = planned(topology(pod("p", labels={"app": "p"}), service("web", selector={"app": "p"}),
                                service("ext", type="ExternalName", externalName="example.com", ports=[])))
    without = planned(topology(pod("p", labels={"app": "p"}), service("web", selector={"app": "p"})))
    assert with_ext.service("default", "web").cluster_ip == without.service("default", "web").cluster_ip


# --- no duplicates, PTR order ---

def test_no_duplicate_records(state, r):
    assert len(set(r.hosts)) == len(r.hosts)
    assert len(set(r.srv)) == len(r.srv)
    assert len(set(r.cname)) == len(r.cname)
    for line_names in hosts_lines(dns.hosts_file(r)).values():
        assert len(set(line_names)) == len(line_names)


def test_hosts_file_has_one_line_per_address_in_address_order(r):
    lines = hosts_lines(dns.hosts_file(r))
    assert list(lines) == sorted(lines, key=IPv4Address)
    assert set(lines) == {a for a, _ in r.hosts}
    assert sum(len(v) for v in lines.values()) == len(r.hosts)


def test_ptr_of_a_clusterip_is_the_service(state, r):
    lines = hosts_lines(dns.hosts_file(r))
    for s in state.services:
        if s.cluster_ip:
            assert lines[s.cluster_ip] == [f"{s.name}.{s.namespace}.svc.{D}"]


def test_ptr_of_a_plain_pod_is_its_pod_record(state, r):
    lines = hosts_lines(dns.hosts_file(r))
    for p in pods_named(state, "client") + [the_pod(state, "cart", "shop"), the_pod(state, "custom-dns")]:
        assert lines[p.ip] == [dns.pod_a_name(p, D)], p.key


def test_ptr_of_a_headless_endpoint_is_its_own_name_not_the_shared_service_name(state, r):
    """The spec: a ready headless endpoint's PTR is <hostname>.<service>.<ns>.svc.<zone>. dnsmasq
    answers PTR with the first name of the address, so that name must come first; the Service's
    name (shared by every endpoint) must not."""
    lines = hosts_lines(dns.hosts_file(r))
    db = the_pod(state, "db-0")
    assert lines[db.ip][0] == "db-0.db.default.svc.cluster.local"
    for b in pods_named(state, "backend"):
        assert lines[b.ip][0] == f"{b.ip.replace('.', '-')}.backend-headless.default.svc.cluster.local"
        assert set(lines[b.ip]) == {lines[b.ip][0], dns.pod_a_name(b, D), "backend-headless.default.svc.cluster.local"}
    for ip, names in lines.items():
        assert names[0] not in ("backend-headless.default.svc.cluster.local", "db.default.svc.cluster.local"), ip


def test_ptr_of_an_endpoint_that_turns_unready_falls_back_to_its_pod_record(state):
    db = the_pod(state, "db-0")
    lines = hosts_lines(dns.hosts_file(recs(state, {db.key: False})))
    assert lines[db.ip] == [dns.pod_a_name(db, D)]


def test_records_follow_the_custom_domain():
    s = shipped_state("dns", dns={"enabled": True, "domain": "lab.internal"})
    r = recs(s)
    names = [n for _, n in r.hosts] + [x[0] for x in r.srv] + [x[1] for x in r.srv] + [c[0] for c in r.cname]
    assert names and all(n.endswith(".lab.internal") for n in names), [n for n in names if not n.endswith(".lab.internal")]
    assert ips_of(r, "backend.default.svc.lab.internal") == {s.service("default", "backend").cluster_ip}
    assert "local=/lab.internal/" in dns.dnsmasq_config(s, r, HOSTS_DIR, QUERY_LOG).splitlines()


# --- dnsmasq_config ---

def conf_lines(state, r) -> list[str]:
    return dns.dnsmasq_config(state, r, HOSTS_DIR, QUERY_LOG).splitlines()


def test_dnsmasq_config_is_authoritative_for_the_cluster_domain(state, r):
    lines = conf_lines(state, r)
    assert "local=/cluster.local/" in lines
    assert f"hostsdir={HOSTS_DIR}" in lines
    assert f"log-facility={QUERY_LOG}" in lines
    assert "log-queries=extra" in lines   # lab dns queries reads "query[A] NAME from IP"
    assert "port=53" in lines and "no-resolv" in lines and "no-hosts" in lines


def test_dnsmasq_forwards_to_the_first_host(state, r):
    assert [x for x in conf_lines(state, r) if x.startswith("server=")] == ["server=172.18.0.5"]


def test_dnsmasq_forwards_nowhere_without_hosts():
    s = planned(topology(pod("a"), hosts=False))
    assert not [x for x in conf_lines(s, recs(s)) if x.startswith("server=")]


def test_dnsmasq_forwards_to_the_first_of_several_hosts():
    doc = topology(pod("a"))
    doc["hosts"] = [{"name": "internet"}, {"name": "other"}]
    s = planned(doc)
    assert [x for x in conf_lines(s, recs(s)) if x.startswith("server=")] == [f"server={s.hosts[0].ip}"]


def test_one_srv_host_line_per_srv_record(state, r):
    lines = [x for x in conf_lines(state, r) if x.startswith("srv-host=")]
    assert lines == [f"srv-host={n},{t},{p},0,100" for n, t, p in r.srv]
    assert len(lines) == len(r.srv) == 7


def test_cname_lines(state, r):
    assert [x for x in conf_lines(state, r) if x.startswith("cname=")] == \
        ["cname=api.default.svc.cluster.local,backend.default.svc.cluster.local"]


# --- resolv_conf (the kubelet's) ---

def test_every_clusterfirst_pod_gets_its_namespace_first(state):
    for p in state.pods:
        if p.dns_policy == "ClusterFirst" and not p.host_network:
            text = dns.resolv_conf(state, p)
            assert text.splitlines()[1] == f"search {p.namespace}.svc.{D} svc.{D} {D}", p.key


def test_kube_dns_pod_uses_the_nodes_resolver(state):
    """kube-dns (like CoreDNS) runs with dnsPolicy Default: it must not ask itself."""
    kd = the_pod(state, "kube-dns", "kube-system")
    assert kd.dns_policy == "Default"
    assert dns.resolv_conf(state, kd) == "nameserver 172.18.0.5\n"


def test_default_policy_without_upstream_leaves_the_machines_resolver():
    s = planned(topology(pod("a", dnsPolicy="Default"), hosts=False))
    assert dns.resolv_conf(s, the_pod(s, "a")) is None


def test_clusterfirst_merges_dnsconfig_as_the_kubelet_does():
    """Cluster nameserver and searches first, dnsConfig's appended without duplicates; dnsConfig's
    options override the cluster's by name."""
    s = planned(topology(pod("a", dnsConfig={
        "nameservers": ["10.96.0.10", "1.1.1.1"],
        "searches": ["svc.cluster.local", "example.com"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})))
    assert dns.resolv_conf(s, the_pod(s, "a")) == (
        "nameserver 10.96.0.10\nnameserver 1.1.1.1\n"
        "search default.svc.cluster.local svc.cluster.local cluster.local example.com\n"
        "options ndots:2 edns0\n")


def test_clusterfirst_keeps_at_most_three_nameservers():
    """The kubelet (and glibc) use three nameservers: the cluster's and the first two of dnsConfig."""
    s = planned(topology(pod("a", dnsConfig={"nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9"]})))
    lines = dns.resolv_conf(s, the_pod(s, "a")).splitlines()
    assert [x for x in lines if x.startswith("nameserver")] == \
        ["nameserver 10.96.0.10", "nameserver 1.1.1.1", "nameserver 8.8.8.8"]


def test_default_policy_with_dnsconfig_appends_to_the_nodes():
    s = planned(topology(pod("a", dnsPolicy="Default", dnsConfig={"searches": ["example.com"],
                                                                  "options": [{"name": "timeout", "value": "1"}]})))
    assert dns.resolv_conf(s, the_pod(s, "a")) == \
        f"nameserver {dns.upstream(s)}\nsearch example.com\noptions timeout:1\n"


def test_node_local_cache_points_clusterfirst_pods_at_the_node():
    s = shipped_state("dns", dns={"enabled": True, "nodeLocalCache": True})
    assert s.dns_node_cache and dns.NODE_LOCAL_IP == "169.254.20.10"
    client = pods_named(s, "client")[0]
    assert dns.resolv_conf(s, client).splitlines()[0] == f"nameserver {dns.NODE_LOCAL_IP}"
    # dnsPolicy None keeps exactly what it asked for
    assert dns.resolv_conf(s, the_pod(s, "custom-dns")).splitlines()[0] == "nameserver 10.96.0.10"


def test_clusterfirst_without_cluster_dns_falls_back_to_the_node():
    s = shipped_state("vxlan", dns={"enabled": False})
    p = next(p for p in s.pods if not p.host_network)
    assert dns.resolv_conf(s, p) is None


# --- plan: the kube-dns add-on ---

def test_kube_dns_pod(state):
    kd = [p for p in state.pods if p.namespace == "kube-system"]
    assert len(kd) == 1
    p = kd[0]
    m = re.fullmatch(r"kube-dns-([0-9a-z]+)-([0-9a-z]{5})", p.name)
    assert m, p.name
    assert dict(p.labels) == {"k8s-app": "kube-dns", "pod-template-hash": m.group(1)}
    assert p.node == state.nodes[0].name == "control-plane"
    assert p.owner == "Deployment/kube-dns"
    assert not p.host_network
    assert IPv4Address(p.ip) in IPv4Network(state.node("control-plane").pod_cidr)
    (c,) = p.containers
    assert c.image == "kube-dns"
    assert {(x.port, x.protocol) for x in c.ports} == {(53, "UDP"), (53, "TCP")}
    assert c.readiness is not None and (c.readiness.kind, c.readiness.port) == ("tcp", 53)


def test_kube_dns_goes_to_the_first_node_whatever_its_name():
    s = planned(topology(pod("a"), nodes=("alpha", "beta", "gamma")))
    assert the_pod(s, "kube-dns", "kube-system").node == "alpha"


def test_kube_dns_service(state):
    svc = state.service("kube-system", "kube-dns")
    assert svc.cluster_ip == str(IPv4Network(state.service_cidr).network_address + 10) == "10.96.0.10"
    assert svc.type == "ClusterIP"
    assert [(p.name, p.port, p.protocol) for p in svc.ports] == [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]
    assert dict(svc.selector) == {"k8s-app": "kube-dns"}
    (sl,) = [sl for sl in endpoint_slices(state, {}) if sl.service == "kube-dns"]
    assert [e.pod for e in sl.endpoints] == [the_pod(state, "kube-dns", "kube-system").key]
    assert {(p.name, p.protocol, p.port) for p in sl.ports} == {("dns", "UDP", 53), ("dns-tcp", "TCP", 53)}


def test_cluster_dns_is_on_by_default():
    """A topology that says nothing about DNS gets the add-on, as every real cluster has it."""
    s = shipped_state("vxlan")
    assert s.dns_domain == "cluster.local"
    assert [p.name for p in s.pods if p.namespace == "kube-system" and p.name.startswith("kube-dns-")]
    assert [x for x in s.services if x.namespace == "kube-system" and x.name == "kube-dns"]


def test_without_dns_there_is_no_kube_dns():
    s = shipped_state("vxlan", dns={"enabled": False})
    assert s.dns_domain == ""
    assert not [p for p in s.pods if p.namespace == "kube-system" or p.name.startswith("kube-dns")]
    assert not [x for x in s.services if x.name == "kube-dns"]
    assert "kube-system" in s.namespaces  # the namespace exists in any cluster


def test_dns_domain_is_the_configured_one(state):
    assert state.dns_domain == "cluster.local"
    assert shipped_state("dns", dns={"enabled": False, "domain": "lab.internal"}).dns_domain == ""


@pytest.mark.parametrize("name", ["dns", "vxlan"])
def test_user_services_keep_their_clusterips_with_dns(name):
    on = shipped_state(name, dns={"enabled": True})
    off = shipped_state(name, dns={"enabled": False})
    assert on.pods[-1].name.startswith("kube-dns-")   # the add-on comes last
    assert [(s.key, s.cluster_ip) for s in on.services if s.namespace != "kube-system"] == \
        [(s.key, s.cluster_ip) for s in off.services]


def test_user_pods_pinned_by_nodename_keep_their_addresses_with_dns():
    """With every user pod pinned, the add-on coming last leaves every address as it was."""
    doc = lambda on: topology(pod("a", nodeName="control-plane"), pod("b", nodeName="worker1"),  # noqa: E731
                              pod("c", nodeName="control-plane"), dns_on=on)
    on, off = planned(doc(True)), planned(doc(False))
    assert [(p.key, p.node, p.ip) for p in on.pods if p.namespace != "kube-system"] == \
        [(p.key, p.node, p.ip) for p in off.pods]
    assert the_pod(on, "kube-dns", "kube-system").ip == "10.244.0.4"  # after a and c on its node


@pytest.mark.parametrize("name", ["dns", "vxlan", "services"])
def test_user_pods_keep_their_nodes_and_ips_with_dns(name):
    on = shipped_state(name, dns={"enabled": True})
    off = shipped_state(name, dns={"enabled": False})
    assert [(p.key, p.node, p.ip) for p in on.pods if p.namespace != "kube-system"] == \
        [(p.key, p.node, p.ip) for p in off.pods]


def test_the_kube_dns_address_is_never_given_to_a_user_service():
    many = [service(f"s{i}", selector={"app": "p"}) for i in range(60)]
    s = planned(topology(pod("p", labels={"app": "p"}), *many))
    ips = Counter(x.cluster_ip for x in s.services)
    assert ips["10.96.0.10"] == 1 and max(ips.values()) == 1


# --- plan: pod DNS fields ---

def test_pod_dns_fields_in_the_plan(state):
    db = the_pod(state, "db-0")
    assert (db.hostname, db.subdomain, db.dns_policy) == ("db-0", "db", "ClusterFirst")
    custom = the_pod(state, "custom-dns")
    assert custom.dns_policy == "None"
    assert custom.dns_nameservers == ("10.96.0.10",)
    assert custom.dns_searches == ("shop.svc.cluster.local",)
    assert custom.dns_options == (("ndots", "1"),)
    client = pods_named(state, "client")[0]
    assert (client.hostname, client.subdomain, client.dns_policy, client.dns_nameservers, client.dns_searches,
            client.dns_options) == ("", "", "ClusterFirst", (), (), ())


def test_pod_dns_fields_survive_the_record_on_disk(state):
    assert ClusterState.from_dict(state.to_dict()) == state


def test_an_option_without_value_is_kept_as_none():
    s = planned(topology(pod("a", dnsConfig={"options": [{"name": "edns0"}, {"name": "ndots", "value": "3"}]})))
    assert the_pod(s, "a").dns_options == (("edns0", None), ("ndots", "3"))


def statefulset(name: str, service: str, replicas: int, start: int = 0) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"serviceName": service, "replicas": replicas, "ordinals": {"start": start},
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "netexec",
                                                           "ports": [{"containerPort": 6379}]}]}}}}


def test_a_statefulsets_pods_get_their_own_names_under_its_headless_service():
    s = planned(topology(statefulset("redis", "redis", 3, start=1),
                         service("redis", selector={"app": "redis"}, clusterIP="None", ports=[{"port": 6379}])))
    pods = pods_named(s, "redis")
    assert sorted(p.name for p in pods) == ["redis-1", "redis-2", "redis-3"]
    r = recs(s)
    for p in pods:
        assert (p.hostname, p.subdomain) == (p.name, "redis")
        assert ips_of(r, f"{p.name}.redis.default.svc.cluster.local") == {p.ip}
    assert ips_of(r, "redis.default.svc.cluster.local") == {p.ip for p in pods}
