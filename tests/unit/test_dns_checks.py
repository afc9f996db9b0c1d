"""What `lab check` asks of cluster DNS (lab.probe.dns.plan) and what `lab dns queries` reads and
prints (lab.dns.queries: the log-line regex and report()).

Pure: plans topologies/dns.yaml (and small topologies built from dicts), computes EndpointSlices with
chosen readiness and inspects the planned questions; nothing is run (no run(), _ask() or lookup()).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, PodState
from lab.dns import queries
from lab.dns.records import pod_a_name
from lab.probe import dns as probe
from lab.topology.load import load_topology_text
from tests.unit.golden import shipped_state

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
D = "cluster.local"


# --- builders ---

def planned(doc: dict) -> ClusterState:
    return plan(load_topology_text(yaml.safe_dump(doc, sort_keys=False)))


def dns_yaml_with(*extra) -> ClusterState:
    """topologies/dns.yaml with more manifests, through the loader."""
    doc = yaml.safe_load((TOPOLOGIES / "dns.yaml").read_text())
    doc["manifests"] += list(extra)
    return planned(doc)


def small(*manifests) -> ClusterState:
    return planned({"name": "dnsc", "cluster": {"dns": {"enabled": True}},
                    "nodes": [{"name": "n1"}, {"name": "n2"}], "hosts": [{"name": "internet"}],
                    "manifests": list(manifests)})


def pod(name: str, labels: dict | None = None, containers: list | None = None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **({"labels": labels} if labels else {})},
            "spec": {"containers": containers or [{"name": "c", "image": "netexec", "ports": [{"containerPort": 80}]}],
                     **spec}}


def service(name: str, selector: dict, ports: list | None = None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector, "ports": ports or [{"name": "http", "port": 80}], **spec}}


def questions(state: ClusterState, ready: dict | None = None) -> list[probe.Question]:
    return probe.plan(state, endpoint_slices(state, ready or {}))


def the_pod(state: ClusterState, name: str, ns: str = "default") -> PodState:
    return next(p for p in state.pods if p.namespace == ns and (p.name == name or p.name.startswith(name + "-")))


def pods_named(state: ClusterState, prefix: str, ns: str = "default") -> list[PodState]:
    return [p for p in state.pods if p.namespace == ns and p.name.startswith(prefix + "-")]


def asked(qs, pod: PodState, check: str = "dns") -> dict[str, frozenset]:
    """name -> expected addresses, for the dns questions one pod asks."""
    out = {}
    for q in qs:
        if q.check == check and q.pod == pod:
            assert q.argv[:2] == ("getent", "ahostsv4")
            assert q.argv[2] not in out, f"{q.argv[2]} asked twice by {pod.key}"
            out[q.argv[2]] = q.expected
    return out


def http(qs) -> dict[str, frozenset]:
    return {q.argv[-1]: q.expected for q in qs if q.check == "dns-http"}


@pytest.fixture(scope="module")
def state() -> ClusterState:
    return shipped_state("dns")


@pytest.fixture(scope="module")
def qs(state) -> list[probe.Question]:
    return questions(state)


# --- no DNS, no questions ---

def test_no_questions_without_cluster_dns():
    s = shipped_state("vxlan")
    assert s.dns_domain == ""
    assert probe.plan(s, endpoint_slices(s, {})) == []


def test_checks_are_named(qs):
    assert set(probe.CHECKS) == {"dns", "dns-http"}
    assert {q.check for q in qs} == {"dns", "dns-http"}


# --- who asks ---

def test_clients_are_the_clusterfirst_pods_with_cluster_dns(state, qs):
    askers = {q.pod.key for q in qs}
    want = {p.key for p in pods_named(state, "backend") + pods_named(state, "client")} | {"default/db-0", "shop/cart"}
    assert askers == want


def test_dnspolicy_none_and_default_pods_ask_nothing(state, qs):
    assert not [q for q in qs if q.pod.name == "custom-dns"]          # dnsPolicy None
    assert not [q for q in qs if q.pod.namespace == "kube-system"]    # kube-dns itself: dnsPolicy Default
    s = dns_yaml_with(pod("legacy", dnsPolicy="Default"))
    assert not [q for q in questions(s) if q.pod.name == "legacy"]


def test_a_clusterfirst_pod_with_its_own_nameservers_asks_nothing():
    s = dns_yaml_with(pod("extra-ns", dnsConfig={"nameservers": ["1.1.1.1"]}))
    qs = questions(s)
    assert not [q for q in qs if q.pod.name == "extra-ns"]
    assert [q for q in qs if q.pod.name.startswith("client-")]  # the others still do


def test_a_clusterfirst_pod_with_only_extra_searches_still_asks():
    s = dns_yaml_with(pod("more-search", dnsConfig={"searches": ["example.com"]}))
    assert asked(questions(s), the_pod(s, "more-search"))


def test_hostnetwork_pods_ask_nothing():
    s = shipped_state("vxlan", dns={"enabled": True})
    qs = questions(s)
    assert qs and not [q for q in qs if q.pod.host_network]


# --- what each client asks about Services ---

def test_a_client_in_default_asks_short_name_ns_and_fqdn(state, qs):
    backend_ip = state.service("default", "backend").cluster_ip
    cart_ip = state.service("shop", "cart").cluster_ip
    backends = frozenset(p.ip for p in pods_named(state, "backend"))
    db = frozenset({the_pod(state, "db-0").ip})
    want = {}
    for name, ns, exp in [("backend", "default", {backend_ip}), ("backend-headless", "default", backends),
                          ("db", "default", db), ("api", "default", {backend_ip})]:
        want.update({name: exp, f"{name}.{ns}": exp, f"{name}.{ns}.svc.{D}": exp})
    want.update({"cart.shop": {cart_ip}, f"cart.shop.svc.{D}": {cart_ip}})
    want.update({"kube-dns.kube-system": {"10.96.0.10"}, f"kube-dns.kube-system.svc.{D}": {"10.96.0.10"}})
    for c in pods_named(state, "client"):
        got = {n: e for n, e in asked(qs, c).items() if ".pod." not in n and not n.startswith("does-not-exist")}
        assert got == {n: frozenset(e) for n, e in want.items()}, c.key


def test_a_client_in_shop_asks_short_names_only_of_its_own_namespace(state, qs):
    cart = the_pod(state, "cart", "shop")
    names = set(asked(qs, cart))
    assert {"cart", "cart.shop", f"cart.shop.svc.{D}"} <= names
    assert {"backend.default", f"backend.default.svc.{D}", "db.default", "api.default"} <= names
    assert not names & {"backend", "backend-headless", "db", "api", "kube-dns"}


def test_no_short_name_across_namespaces(state, qs):
    for q in qs:
        if q.check != "dns":
            continue
        name = q.argv[2]
        if "." not in name:  # a short name: only for a Service of the client's own namespace
            assert any(s.name == name and s.namespace == q.pod.namespace for s in state.services), (q.pod.key, name)


def test_question_counts(state, qs):
    counts = Counter(q.check for q in qs)
    per_default_client = 3 * 4 + 2 * 2      # backend, backend-headless, db, api: 3 names; cart, kube-dns: 2
    per_shop_client = 3 + 2 * 5             # cart: 3 names; the five others: 2
    pod_records = sum(not p.host_network for p in state.pods)
    assert pod_records == 8
    assert counts["dns"] == 5 * per_default_client + per_shop_client + pod_records + 1  # + NXDOMAIN
    assert counts["dns-http"] == 2


def test_subjects_say_who_asks_what_and_what_is_expected(state, qs):
    c = pods_named(state, "client")[0]
    ip = state.service("default", "backend").cluster_ip
    assert f"{c.key}: backend -> {ip}" in {q.subject for q in qs}


# --- headless: exactly the ready endpoints ---

def test_headless_expects_exactly_the_ready_endpoints(state, qs):
    backends = frozenset(p.ip for p in pods_named(state, "backend"))
    for q in qs:
        if q.check == "dns" and q.argv[2].split(".")[0] == "backend-headless":
            assert q.expected == backends


def test_an_unready_backend_leaves_the_headless_expectation(state):
    gone, kept = pods_named(state, "backend")
    qs = questions(state, {gone.key: False})
    headless = [q for q in qs if q.check == "dns" and q.argv[2].split(".")[0] == "backend-headless"]
    assert headless and all(q.expected == frozenset({kept.ip}) for q in headless)
    # the ClusterIP is what it was
    ip = state.service("default", "backend").cluster_ip
    assert all(q.expected == {ip} for q in qs if q.check == "dns" and q.argv[2].split(".")[0] == "backend")
    # and the curl through the Service only expects the ready one
    assert http(qs)["http://backend.default:80/hostname"] == frozenset({kept.name})


def test_a_headless_service_without_ready_endpoints_must_not_resolve(state):
    db = the_pod(state, "db-0")
    qs = questions(state, {db.key: False})
    dbq = [q for q in qs if q.check == "dns" and q.argv[2].split(".")[0] == "db"]
    assert len(dbq) == 5 * 3 + 2 and all(q.expected == frozenset() for q in dbq)
    assert any(q.subject.endswith("-> nothing") for q in dbq)


def test_all_backends_unready_no_curl_through_backend(state):
    qs = questions(state, {p.key: False for p in pods_named(state, "backend")})
    assert "http://backend.default:80/hostname" not in http(qs)
    assert "http://cart.shop:80/hostname" in http(qs)


# --- ExternalName ---

def test_externalname_expects_its_targets_clusterip(state, qs):
    ip = state.service("default", "backend").cluster_ip
    api = [q for q in qs if q.check == "dns" and q.argv[2].split(".")[0] == "api"]
    assert api and all(q.expected == {ip} for q in api)


def test_externalname_outside_the_lab_is_not_asked():
    s = dns_yaml_with({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
                       "spec": {"type": "ExternalName", "externalName": "www.example.com"}})
    assert not [q for q in questions(s) if q.argv[2].split(".")[0] == "ext"]


def test_externalname_to_a_headless_service_is_not_asked():
    s = dns_yaml_with({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dbalias"},
                       "spec": {"type": "ExternalName", "externalName": "db.default.svc.cluster.local"}})
    assert not [q for q in questions(s) if q.argv[2].split(".")[0] == "dbalias"]


# --- pod records, NXDOMAIN ---

def test_one_client_asks_every_pod_record(state, qs):
    pod_qs = [q for q in qs if q.check == "dns" and ".pod." in q.argv[2]]
    assert len({q.pod for q in pod_qs}) == 1
    assert {q.argv[2]: q.expected for q in pod_qs} == \
        {pod_a_name(p, D): frozenset({p.ip}) for p in state.pods if not p.host_network}


def test_no_pod_record_question_for_hostnetwork_pods():
    s = shipped_state("vxlan", dns={"enabled": True})
    agent = the_pod(s, "node-agent")
    assert not [q for q in questions(s) if agent.ip.replace(".", "-") in q.argv[-1]]


def test_one_nxdomain_question_expecting_nothing(qs):
    nx = [q for q in qs if q.check == "dns" and not q.expected]
    assert len(nx) == 1
    (q,) = nx
    assert q.argv == ("getent", "ahostsv4", f"does-not-exist.{q.pod.namespace}.svc.{D}")
    assert q.subject.endswith("NXDOMAIN")


def test_no_client_no_cluster_wide_questions():
    s = small(pod("alone", dnsPolicy="Default"))
    assert questions(s) == []


def test_questions_follow_a_custom_domain():
    s = shipped_state("dns", dns={"enabled": True, "domain": "lab.internal"})
    qs = questions(s)
    fqdns = [q.argv[2] for q in qs if q.check == "dns" and q.argv[2].count(".") >= 3]
    assert fqdns and all(n.endswith(".lab.internal") for n in fqdns)
    # dns.yaml's api points at backend.default.svc.cluster.local: outside lab.internal, so not asked
    assert not [q for q in qs if q.argv[2].split(".")[0] == "api"]


# --- dns-http: curl by name, only where netexec answers ---

def test_curl_only_through_tcp_ports_of_netexec_endpoints(state, qs):
    backends = frozenset(p.name for p in pods_named(state, "backend"))
    assert http(qs) == {"http://backend.default:80/hostname": backends,
                        "http://cart.shop:80/hostname": frozenset({"cart"})}
    assert all(q.argv[:4] == ("curl", "-s", "-m", "2") for q in qs if q.check == "dns-http")


def test_no_curl_to_kube_dns_nor_headless_services(qs):
    urls = " ".join(http(qs))
    assert "kube-dns" not in urls and "headless" not in urls and "db." not in urls


def test_curl_uses_the_service_port_and_checks_the_target_port():
    s = small(pod("w", labels={"app": "w"}, containers=[{"name": "c", "image": "netexec",
                                                          "ports": [{"containerPort": 8080}]}]),
              pod("client"),
              service("web", {"app": "w"}, [{"name": "http", "port": 80, "targetPort": 8080}]))
    assert http(questions(s)) == {"http://web.default:80/hostname": frozenset({"w"})}


def test_no_curl_for_a_udp_port():
    s = small(pod("u", labels={"app": "u"}, containers=[{"name": "c", "image": "netexec",
                                                          "ports": [{"containerPort": 53, "protocol": "UDP"}]}]),
              pod("client"),
              service("udp", {"app": "u"}, [{"name": "dns", "port": 53, "protocol": "UDP"}]))
    assert http(questions(s)) == {}


def test_no_curl_when_the_endpoint_is_not_netexec():
    s = small(pod("p", labels={"app": "p"}, containers=[{"name": "c", "image": "pause", "ports": [{"containerPort": 80}]}]),
              pod("client"),
              service("paused", {"app": "p"}))
    assert http(questions(s)) == {}


def test_no_curl_when_netexec_does_not_listen_on_the_target_port():
    s = small(pod("w", labels={"app": "w"}), pod("client"),
              service("wrong", {"app": "w"}, [{"name": "http", "port": 80, "targetPort": 9999}]))
    assert http(questions(s)) == {}


def test_no_curl_when_netexec_serves_the_port_over_udp_only():
    s = small(pod("w", labels={"app": "w"}, containers=[{"name": "c", "image": "netexec",
                                                          "ports": [{"containerPort": 80, "protocol": "UDP"}]}]),
              pod("client"),
              service("web", {"app": "w"}, [{"name": "http", "port": 80, "protocol": "TCP"}]))
    assert http(questions(s)) == {}


def test_no_curl_when_only_some_endpoints_run_netexec():
    s = small(pod("w", labels={"app": "mixed"}),
              pod("p", labels={"app": "mixed"}, containers=[{"name": "c", "image": "pause",
                                                               "ports": [{"containerPort": 80}]}]),
              pod("client"),
              service("mixed", {"app": "mixed"}))
    assert http(questions(s)) == {}


# --- lab dns queries: the log line and the report ---

LINE = "Nov 22 05:39:52 dnsmasq[5905]: 108 10.244.1.4/52769 query[A] cart.shop.svc.cluster.local from 10.244.1.4"


def test_query_regex_reads_a_dnsmasq_log_extra_line():
    m = queries._QUERY.search(LINE)
    assert m and m.groups() == ("A", "cart.shop.svc.cluster.local", "10.244.1.4")


@pytest.mark.parametrize("line, want", [
    ("Nov 22 05:39:52 dnsmasq[5905]: 109 10.244.1.4/52769 query[AAAA] internet.default.svc.cluster.local from 10.244.1.4",
     ("AAAA", "internet.default.svc.cluster.local", "10.244.1.4")),
    ("Nov 22 05:39:52 dnsmasq[5905]: 110 10.244.0.2/40001 query[SRV] _http._tcp.backend.default.svc.cluster.local "
     "from 10.244.0.2", ("SRV", "_http._tcp.backend.default.svc.cluster.local", "10.244.0.2")),
    ("Nov 22 05:39:52 dnsmasq[5905]: 111 10.244.0.2/40002 query[PTR] 3.0.244.10.in-addr.arpa from 10.244.0.2",
     ("PTR", "3.0.244.10.in-addr.arpa", "10.244.0.2")),
    ("Nov 22 05:39:52 dnsmasq[5905]: query[A] internet from 10.244.0.2",  # log-queries without extra
     ("A", "internet", "10.244.0.2")),
])
def test_query_regex_other_types(line, want):
    m = queries._QUERY.search(line)
    assert m and m.groups() == want


@pytest.mark.parametrize("line", [
    "Nov 22 05:39:52 dnsmasq[5905]: 108 10.244.1.4/52769 forwarded internet to 172.18.0.5",
    "Nov 22 05:39:52 dnsmasq[5905]: 108 10.244.1.4/52769 reply internet is 172.18.0.5",
    "Nov 22 05:39:52 dnsmasq[5905]: 108 10.244.1.4/52769 /run/k8s-netlab/dns/dns/hosts/records "
    "cart.shop.svc.cluster.local is 10.97.86.178",
    "Nov 22 05:39:52 dnsmasq[5905]: 108 10.244.1.4/52769 config nope.default.svc.cluster.local is NXDOMAIN",
    "Nov 22 05:39:52 dnsmasq[5905]: started, version 2.89 cachesize 150",
    "",
])
def test_query_regex_ignores_other_lines(line):
    assert queries._QUERY.search(line) is None


def test_the_query_source_is_what_lookup_filters_on():
    m = queries._QUERY.search(LINE.replace(" from 10.244.1.4", " from 10.244.1.40"))
    assert m.group(3) == "10.244.1.40" != "10.244.1.4"


def client_pod(state) -> PodState:
    return pods_named(state, "client")[0]


def test_report_lists_every_query_in_order(state):
    c = client_pod(state)
    sent = (("A", "internet.default.svc.cluster.local"), ("AAAA", "internet.default.svc.cluster.local"),
            ("A", "internet.svc.cluster.local"), ("A", "internet"))
    text = queries.report(c, queries.Lookup("internet", sent, "172.18.0.5"))
    lines = text.splitlines()
    assert lines[0] == f"lookup of 'internet' from {c.key} ({c.ip}): 172.18.0.5"
    assert lines[1] == "4 queries reached kube-dns:"
    assert lines[2:6] == [f"  {k:5} {n}" for k, n in sent]
    assert lines[2] == "  A     internet.default.svc.cluster.local"
    assert lines[3] == "  AAAA  internet.default.svc.cluster.local"


@pytest.mark.parametrize("name, hint", [
    ("internet", True),
    ("internet.example.com", True),
    ("a.b.c.d.e", True),           # 4 dots: fewer than ndots:5
    ("a.b.c.d.e.f", False),        # 5 dots: tried as written first
    ("internet.", False),          # absolute: no search list
    ("internet.example.com.", False),
])
def test_report_suggests_the_trailing_dot_only_below_ndots(state, name, hint):
    c = client_pod(state)
    text = queries.report(c, queries.Lookup(name, (), "not found"))
    assert ("fewer dots than ndots:5" in text) is hint
    if hint:
        assert text.splitlines()[-1].endswith(f"compare `lab dns queries {c.name} {name}.`)")
    else:
        assert text.splitlines()[-1] == "0 queries reached kube-dns:"


def test_report_without_queries(state):
    c = client_pod(state)
    text = queries.report(c, queries.Lookup("nope.", (), "not found"))
    assert text == f"lookup of 'nope.' from {c.key} ({c.ip}): not found\n0 queries reached kube-dns:"


def test_report_uses_the_pods_own_ndots(state):
    custom = the_pod(state, "custom-dns")
    assert dict(custom.dns_options)["ndots"] == "1"
    text = queries.report(custom, queries.Lookup("internet.example.com", (), "172.18.0.5"))
    assert "ndots:5" not in text and "search list is tried first" not in text
