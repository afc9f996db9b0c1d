"""What `lab check` asks of cluster DNS (lab.probe.dns.plan) and what `lab dns queries` reads and
prints (lab.dns.queries: the log-line regex and report()).

Pure: plans topologies/dns.yaml (and small topologies built from dicts), computes EndpointSlices with
chosen readiness and inspects the planned questions; judges hand-made replies (a tool that never ran
must never pass). Nothing is run: run() only for a lab without cluster DNS, where it asks nothing.
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
        if q.check == check and q.pod == pod and q.want != probe.NXDOMAIN:
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
    s = shipped_state("vxlan", dns={"enabled": False})
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
    # dig, not getent: getent's "not found" is also what a silent resolver gives
    assert q.argv[:3] == ("dig", "-q", f"does-not-exist.{q.pod.namespace}.svc.{D}")
    assert q.want == probe.NXDOMAIN and q.subject.endswith("NXDOMAIN")


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


# --- the harness never lies (issue 9): policies, judging, scale, DNS off ---

def policy(name: str, ns: str = "default", **spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


DENY_SHOP_EGRESS = policy("default-deny-egress", "shop", podSelector={}, policyTypes=["Egress"])


def by_pod(qs, pod: PodState) -> list[probe.Question]:
    return [q for q in qs if q.pod == pod]


def test_a_pod_whose_dns_egress_is_denied_asks_one_absolute_name_expecting_silence():
    """default-deny-egress in shop: cart cannot reach kube-dns, so its DNS must fail, and one bounded
    question says so (not 16 that each wait for a timeout)."""
    s = dns_yaml_with(DENY_SHOP_EGRESS)
    cart = the_pod(s, "cart", "shop")
    (q,) = by_pod(questions(s), cart)
    assert q.check == "dns" and q.want == probe.NO_REPLY and q.argv[0] == "dig"
    assert q.name == f"kube-dns.kube-system.svc.{D}." and "denied by NetworkPolicy" in q.subject
    assert q.expectation == "no answer (denied by NetworkPolicy)"
    # the other pods still ask everything, cart's Service included
    client = pods_named(s, "client")[0]
    assert asked(questions(s), client)[f"cart.shop.svc.{D}"] == {s.service("shop", "cart").cluster_ip}


def test_egress_allowed_to_port_53_keeps_dns():
    s = dns_yaml_with(policy("dns-only", "shop", podSelector={}, policyTypes=["Egress"],
                             egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}]))
    cart = the_pod(s, "cart", "shop")
    assert not probe.dns_denied(s, endpoint_slices(s, {}), cart)
    assert f"cart.shop.svc.{D}" in asked(questions(s), cart)


def test_egress_to_dns_on_tcp_only_is_denied():
    """glibc asks over UDP: TCP 53 alone does not make DNS work."""
    s = dns_yaml_with(policy("dns-tcp", "shop", podSelector={}, policyTypes=["Egress"],
                             egress=[{"ports": [{"port": 53, "protocol": "TCP"}]}]))
    assert probe.dns_denied(s, endpoint_slices(s, {}), the_pod(s, "cart", "shop"))


def test_an_ingress_policy_on_kube_dns_denies_everyone_then_no_cluster_wide_questions():
    s = dns_yaml_with(policy("lock", "kube-system", podSelector={}, policyTypes=["Ingress"]))
    qs = questions(s)
    assert qs and all(q.want in (probe.NO_REPLY, probe.NO_HTTP) for q in qs)
    assert not [q for q in qs if q.want == probe.NXDOMAIN or ".pod." in q.name]
    assert all("denied by NetworkPolicy" in q.subject for q in qs)


def test_no_ready_kube_dns_is_a_broken_dns_not_a_denial(state):
    dnspod = the_pod(state, "kube-dns", "kube-system")
    s = dns_yaml_with(DENY_SHOP_EGRESS)
    slices = endpoint_slices(s, {dnspod.key: False})
    assert not probe.dns_denied(s, slices, the_pod(s, "cart", "shop"))


def test_node_local_cache_is_the_pods_own_node_which_policies_never_filter():
    """With NodeLocal DNSCache the pod asks 169.254.20.10 on its own node: pod-to-node traffic is
    outside policy (model's node exception, FORWARD-only rules), so egress deny keeps DNS."""
    doc = yaml.safe_load((TOPOLOGIES / "dns.yaml").read_text())
    doc["cluster"]["dns"]["nodeLocalCache"] = True
    doc["manifests"].append(DENY_SHOP_EGRESS)
    s = planned(doc)
    assert not probe.dns_denied(s, endpoint_slices(s, {}), the_pod(s, "cart", "shop"))


def test_curl_expects_silence_when_the_policies_deny_every_endpoint():
    s = dns_yaml_with(policy("cart-closed", "shop", podSelector={}, policyTypes=["Ingress"]))
    (q,) = [q for q in questions(s) if q.check == "dns-http" and "cart.shop" in q.name]
    assert q.pod.namespace == "default"
    assert q.want == probe.NO_HTTP and q.expected == frozenset() and q.denied == {"cart"}
    assert "denied by NetworkPolicy" in q.subject and q.expectation == "no answer (denied by NetworkPolicy)"


def test_curl_expects_an_allowed_endpoint_when_some_are_denied():
    """Backends closed to everyone: the asking backend still reaches itself (a pod cannot block
    access to itself), not the other one; after DNAT either may be picked."""
    s = dns_yaml_with(policy("backend-closed", podSelector={"matchLabels": {"app": "backend"}}, policyTypes=["Ingress"]))
    (q,) = [q for q in questions(s) if q.check == "dns-http" and "backend.default" in q.name]
    assert q.pod.name.startswith("backend-")
    (other,) = [p.name for p in pods_named(s, "backend") if p != q.pod]
    assert q.want == probe.HTTP and q.expected == {q.pod.name} and q.denied == {other}
    assert q.subject.endswith("(1 of 2 endpoints denied by NetworkPolicy)")


def test_curl_expects_silence_when_dns_is_denied():
    """Every client's DNS denied: the name cannot resolve, so curl by name must not answer."""
    s = dns_yaml_with(*[policy("deny-egress", ns, podSelector={}, policyTypes=["Egress"]) for ns in ("default", "shop")])
    http_qs = [q for q in questions(s) if q.check == "dns-http"]
    assert http_qs and all(q.want == probe.NO_HTTP and "denied by NetworkPolicy" in q.subject for q in http_qs)


# judging: no test may pass when the probe tool itself fails

def q_of(want: str, expected=(), denied=(), argv=None) -> probe.Question:
    c = PodState("default", "c", "n1", "10.244.0.9", "lab-default-c")
    argv = argv or {probe.ADDRESSES: ("getent", "ahostsv4", "backend"), probe.NOT_FOUND: ("getent", "ahostsv4", "db"),
                    probe.NXDOMAIN: ("dig", "-q", "nope.default.svc.cluster.local"),
                    probe.NO_REPLY: ("dig", "-q", "kube-dns.kube-system.svc.cluster.local."),
                    probe.HTTP: ("curl", "-s", "-m", "2", "http://backend.default:80/hostname"),
                    probe.NO_HTTP: ("curl", "-s", "-m", "2", "http://backend.default:80/hostname")}[want]
    check = "dns-http" if argv[0] == "curl" else "dns"
    return probe.Question(check, "s", c, argv, frozenset(expected), want, frozenset(denied))


EVERY_WANT = [probe.ADDRESSES, probe.NOT_FOUND, probe.NXDOMAIN, probe.NO_REPLY, probe.HTTP, probe.NO_HTTP]


@pytest.mark.parametrize("want", EVERY_WANT)
@pytest.mark.parametrize("reply, why", [
    (probe.Reply(None, error="getent timed out after 3s"), "getent timed out after 3s"),
    (probe.Reply(None, error="cannot run ip netns exec lab-x: Cannot open network namespace"), "cannot run ip netns exec"),
    (probe.Reply(127), "not installed"),
    (probe.Reply(126), "not executable"),
])
def test_a_tool_that_did_not_run_fails_every_kind_of_question(want, reply, why):
    """Empty output from a tool that never ran must not look like 'not found' or 'no reply'."""
    ok, final, seen = probe.judge(q_of(want, {"10.96.0.1"} if want == probe.ADDRESSES else ()), reply)
    assert not ok and not final and why in seen


def test_getent_addresses():
    q = q_of(probe.ADDRESSES, {"10.96.0.1"})
    line = "10.96.0.1       STREAM backend.default.svc.cluster.local\n10.96.0.1       DGRAM"
    assert probe.judge(q, probe.Reply(0, line))[0]
    assert probe.judge(q, probe.Reply(0, "10.96.0.2       STREAM x")) == (False, False, "10.96.0.2")
    assert probe.judge(q, probe.Reply(2)) == (False, False, "not found")
    assert probe.judge(q, probe.Reply(1)) == (False, False, "getent exited 1")


def test_getent_not_found_counts_only_when_the_resolver_answered_another_name():
    q = q_of(probe.NOT_FOUND)
    assert probe.judge(q, probe.Reply(2), alive=True) == (True, False, "not found")
    ok, _, seen = probe.judge(q, probe.Reply(2), alive=False)
    assert not ok and "no reply" in seen
    assert not probe.judge(q, probe.Reply(0, "10.244.0.4      STREAM db"), alive=True)[0]


DIG_NX = ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 7570\n;; flags: qr rd ra; QUERY: 1, ANSWER: 0"
DIG_OK = ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 7570"
DIG_SILENT = ";; communications error to 10.96.0.10#53: timed out\n;; no servers could be reached"


def test_nxdomain_must_be_seen():
    q = q_of(probe.NXDOMAIN)
    assert probe.judge(q, probe.Reply(0, DIG_NX)) == (True, False, "status: NXDOMAIN")
    assert probe.judge(q, probe.Reply(0, DIG_OK)) == (False, False, "status: NOERROR")
    ok, final, seen = probe.judge(q, probe.Reply(9, DIG_SILENT))
    assert not ok and not final and "no answer from the pod's resolver" in seen and "no servers could be reached" in seen
    assert not probe.judge(q, probe.Reply(0, ""))[0]  # dig ran but said nothing: no status, no pass


def test_denied_dns_must_be_silent_and_a_reply_is_final():
    q = q_of(probe.NO_REPLY)
    assert probe.judge(q, probe.Reply(9, DIG_SILENT)) == (True, True, "no reply (dig: no servers could be reached)")
    ok, final, seen = probe.judge(q, probe.Reply(0, DIG_OK))
    assert not ok and final and "although the policies deny DNS" in seen
    assert probe.judge(q, probe.Reply(0, DIG_NX))[:2] == (False, True)  # NXDOMAIN is a reply too
    assert probe.judge(q, probe.Reply(1, "usage"))[:2] == (False, False)


def test_curl_judging():
    q = q_of(probe.HTTP, {"backend-a"}, {"backend-b"})
    assert probe.judge(q, probe.Reply(0, "backend-a")) == (True, True, "answered by backend-a")
    assert probe.judge(q, probe.Reply(0, "backend-b"))[:2] == (False, True)   # through the policy: a leak
    assert probe.judge(q, probe.Reply(0, "stranger"))[:2] == (False, False)
    ok, _, seen = probe.judge(q, probe.Reply(28))
    assert not ok and "timed out" in seen
    nq = q_of(probe.NO_HTTP)
    assert probe.judge(nq, probe.Reply(6))[:2] == (True, True)
    assert probe.judge(nq, probe.Reply(28))[:2] == (True, True)
    assert probe.judge(nq, probe.Reply(0, "backend-a"))[:2] == (False, True)
    assert probe.judge(nq, probe.Reply(3))[:2] == (False, False)                # curl's own error: not silence
    refused = probe.judge(nq, probe.Reply(7))                                   # a reset: not a deny
    assert refused[:2] == (False, True) and "refused is not denied" in refused[2]


def test_silence_through_a_partly_denied_service_is_tolerated_and_said_so():
    q = q_of(probe.HTTP, {"backend-a"}, {"backend-b"})
    excuse = probe.tolerated(q, [probe.Reply(28), probe.Reply(28), probe.Reply(28)])
    assert excuse and "tolerated" in excuse and "policies deny" in excuse
    assert probe.tolerated(q, [probe.Reply(28), probe.Reply(7), probe.Reply(28)]) is None  # a refusal is no drop
    assert probe.tolerated(q, [probe.Reply(28), probe.Reply(0, "stranger")]) is None
    assert probe.tolerated(q, [probe.Reply(28), probe.Reply(127)]) is None
    assert probe.tolerated(q_of(probe.HTTP, {"backend-a"}), [probe.Reply(28)] * 3) is None  # nothing denied


def test_parse_replies_splits_a_batch_and_names_what_was_not_asked():
    out = "10.96.0.1       STREAM a\n10.96.0.1       DGRAM\nrc=0\nrc=2\n"
    replies = probe.parse_replies(out, 4, "getent timed out after 4s")
    assert [r.rc for r in replies] == [0, 2, None, None]
    assert replies[0].out.startswith("10.96.0.1")
    assert replies[2].error == "getent timed out after 4s" and "not reached" in replies[3].error
    assert [r.error for r in probe.parse_replies("", 2, "")] == ["no result", "no result (not reached)"]


def test_names_are_arguments_never_part_of_the_script():
    assert '"$1" "$2"' in probe._BATCH_SCRIPT and '"$@"' in probe._ONE_SCRIPT
    assert "{" not in probe._BATCH_SCRIPT + probe._ONE_SCRIPT


# batching

def test_one_getent_process_per_pod_and_the_canary_only_where_needed(state, qs):
    jobs = probe._jobs(qs, range(len(qs)), "canary.", set())
    getent = [j for j in jobs if j.indices and qs[j.indices[0]].argv[0] == "getent"]
    assert len(getent) == len({q.pod.key for q in qs if q.argv[0] == "getent"})
    assert all(len(j.indices) <= probe.BATCH for j in getent) and not any(j.canary for j in getent)
    assert len(jobs) - len(getent) == sum(q.argv[0] != "getent" for q in qs)
    # a batch of only must-not-resolve names asks the canary along; a silent pod asks only the canary
    nf = [i for i, q in enumerate(qs) if q.argv[0] == "getent"][:1]
    only = [probe.Question("dns", "s", qs[nf[0]].pod, qs[nf[0]].argv, frozenset(), probe.NOT_FOUND)]
    assert probe._jobs(only, [0], "canary.", set())[0].canary == "canary."
    (silent,) = probe._jobs(only, [0], "canary.", {only[0].pod.key})
    assert silent.indices == () and silent.canary == "canary."


def big_state(replicas: int) -> ClusterState:
    doc = yaml.safe_load((TOPOLOGIES / "dns.yaml").read_text())
    doc["manifests"][1]["spec"]["replicas"] = replicas   # backend
    return planned(doc)


def test_up_to_the_threshold_every_pod_asks():
    s = big_state(probe.SAMPLE_ABOVE - 8)
    assert len(s.pods) <= probe.SAMPLE_ABOVE
    askers = {q.pod.key for q in questions(s)}
    assert askers == {p.key for p in probe._clients(s)}


def test_beyond_the_threshold_a_covering_sample_asks_every_service_name():
    s = big_state(150)
    assert len(s.pods) > probe.SAMPLE_ABOVE
    qs = questions(s)
    clients = probe._clients(s)
    askers = sorted({q.pod.key for q in qs if q.want == probe.ADDRESSES and ".pod." not in q.name})
    groups = {(c.namespace, c.node) for c in clients}
    assert len(askers) == len(groups)                  # one per (namespace, node) that has clients
    for ns, node in groups:                             # the first by key
        assert min(c.key for c in clients if (c.namespace, c.node) == (ns, node)) in askers
    small_qs = questions(dns_yaml_with())
    for key in askers:                                  # each asks what a pod of its namespace asks in dns.yaml
        pod = next(p for p in s.pods if p.key == key)
        like = next(q.pod for q in small_qs if q.pod.namespace == pod.namespace and q.want == probe.ADDRESSES)
        assert {n for n in asked(qs, pod) if ".pod." not in n} == {n for n in asked(small_qs, like) if ".pod." not in n}
    pod_qs = [q for q in qs if ".pod." in q.name]
    assert len({q.pod for q in pod_qs}) == 1 and len(pod_qs) == sum(not p.host_network for p in s.pods)
    assert questions(s) == qs                           # deterministic


def test_the_sample_covers_both_policy_verdicts():
    """Pods of one namespace and node that the policies treat differently are both asked."""
    deny = policy("deny-some", podSelector={"matchLabels": {"app": "client"}}, policyTypes=["Egress"])
    doc = yaml.safe_load((TOPOLOGIES / "dns.yaml").read_text())
    doc["manifests"][1]["spec"]["replicas"] = 150
    doc["manifests"].append(deny)
    s = planned(doc)
    qs = questions(s)
    denied = {q.pod.key for q in qs if q.want == probe.NO_REPLY}
    assert denied and all(k.startswith("default/client-") for k in denied)
    assert {q.pod.key for q in qs if q.want == probe.ADDRESSES} - denied


# cluster DNS off

def test_services_and_clusterfirst_pods_without_cluster_dns_fail_one_row():
    s = planned({"name": "nodns", "cluster": {"dns": {"enabled": False}}, "nodes": [{"name": "n1"}, {"name": "n2"}],
                 "manifests": [pod("w", labels={"app": "w"}), pod("c"), pod("legacy", dnsPolicy="Default"),
                               service("web", {"app": "w"})]})
    (o,) = probe.run(s, endpoint_slices(s, {}))      # nothing runs: the verdict is known
    users = 2
    assert o.check == "dns" and not o.passed and o.subject == "cluster DNS is off"
    assert o.expected == "Service names resolve from pods with dnsPolicy ClusterFirst"
    assert o.observed.startswith(f"{users} pods use dnsPolicy ClusterFirst but the lab has no cluster DNS")
    assert "set cluster.dns.enabled: true" in o.observed


def test_no_services_no_dns_row():
    s = shipped_state("vxlan", dns={"enabled": False})
    assert probe.dns_off(s) is None and probe.run(s, endpoint_slices(s, {})) == []


def test_no_dns_row_when_no_pod_wants_cluster_dns():
    doc = {"name": "nodns", "cluster": {"dns": {"enabled": False}}, "nodes": [{"name": "n1"}],
           "manifests": [pod("w", labels={"app": "w"}, dnsPolicy="Default"), service("web", {"app": "w"})]}
    s = planned(doc)
    assert s.services and probe.dns_off(s) is None


def test_the_shipped_services_lab_says_its_pods_need_no_cluster_dns():
    """services.yaml with cluster DNS turned off has Services; its pods say dnsPolicy: Default, so no row."""
    s = shipped_state("services", dns={"enabled": False})
    assert s.dns_domain == "" and s.services and probe.dns_off(s) is None
