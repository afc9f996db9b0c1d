"""lab.probe.services, the pure parts: which Service probes are planned (plan) and how their results
are judged (judge), on the shipped topologies/services.yaml. Results are built by hand;
clusterip_virtual (which enters namespaces) is left to the integration tests."""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import replace

import pytest

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan as plan_topology
from lab.controlplane.state import HOST_PORT, ClusterState
from lab.probe.engine import Probe, ProbeResult
from lab.probe.asks import Ask, external_endpoints, internal_endpoints, node_local_endpoints, per_node
from lab.probe.services import CHECKS, SAMPLES, judge, node_addresses, plan
from lab.topology.model import Topology
from tests.unit.golden import shipped_state

TIMEOUT = "timeout after 1.0s (connecting)"
NO_DNS = {"enabled": False}   # services.yaml's own Services and pods, not the kube-dns add-on (on by default)
REFUSED = "connection refused"


# --- fixtures and builders ---

def not_warming(state: ClusterState) -> dict[str, bool]:
    return {p.key: not p.name.startswith("warming-") for p in state.pods}


@pytest.fixture(scope="module")
def state() -> ClusterState:
    return shipped_state("services", dns=NO_DNS)


@pytest.fixture(scope="module")
def slices(state):
    return endpoint_slices(state, not_warming(state))


@pytest.fixture(scope="module")
def asks(state, slices) -> list[Ask]:
    return plan(state, slices)


def pods(state, prefix):
    return [p for p in state.pods if p.name.startswith(prefix)]


def names(state, prefix) -> frozenset:
    return frozenset(p.name for p in pods(state, prefix))


def on_node(state, prefix, node):
    return next(p for p in pods(state, prefix) if p.node == node)


def reply(a: Ask, server: str | None, source: str | None) -> ProbeResult:
    return ProbeResult(a.probe, True, source, None, 0.01, server)


def no_reply(a: Ask, error: str = TIMEOUT) -> ProbeResult:
    return ProbeResult(a.probe, False, None, error, 1.0)


def good_results(state: ClusterState, asks: list[Ask]) -> list[ProbeResult]:
    """What a correct cluster answers: grouped Service probes round-robin over their servers
    (a perfectly fair spread), affinity pinned to one endpoint, the promised sources, rejects."""
    turn: dict[tuple, itertools.cycle] = {}
    out = []
    gateway, node_ip = state.nodes[0].gateway, state.nodes[-1].ip
    for a in asks:
        if not a.reply:
            out.append(no_reply(a, REFUSED if a.check == "no-endpoints" else TIMEOUT))
            continue
        servers = sorted(a.servers)
        if a.check == "session-affinity":
            server = servers[0]
        elif a.group:
            server = next(turn.setdefault((a.group, a.servers), itertools.cycle(servers)))
        else:
            server = servers[0]
        if a.source == "node":
            source = gateway
        elif a.source:
            source = a.source
        else:
            source = node_ip
        out.append(reply(a, server, source))
    return out


def by_check(outcomes) -> dict[str, list]:
    out = defaultdict(list)
    for o in outcomes:
        out[o.check].append(o)
    return out


# --- the endpoints the probes expect: lab.kube_proxy.model's, as the rules program them ---

def internal(state, slices, name, port=0, node="worker1"):
    svc = state.service("default", name)
    return internal_endpoints(per_node(state, svc, svc.ports[port], slices)[node])


def test_the_endpoints_of_a_named_port(state, slices):
    backend = {p.key: p.ip for p in pods(state, "backend-")}
    assert internal(state, slices, "backend", 0) == {k: (ip, 8080) for k, ip in backend.items()}
    assert internal(state, slices, "backend", 1) == {k: (ip, 5353) for k, ip in backend.items()}


def test_internal_traffic_policy_local_keeps_the_nodes_own(state, slices):
    svc = state.service("default", "node-local")
    assert svc.internal_traffic_policy == "Local"
    for n in state.nodes:
        here = {p.key: (p.ip, 8080) for p in pods(state, "backend-") if p.node == n.name}
        assert internal(state, slices, "node-local", node=n.name) == here


def test_unready_endpoints_are_skipped_but_published_ones_kept(state, slices):
    assert internal(state, slices, "warming") == {}
    assert set(internal(state, slices, "warming-published")) == {p.key for p in pods(state, "warming-")}


def test_node_ports_follow_the_external_traffic_policy(state, slices):
    svc = state.service("default", "backend-local")
    assert svc.external_traffic_policy == "Local"
    sps = per_node(state, svc, svc.ports[0], slices)
    everyone = {p.key for p in pods(state, "backend-")}
    for n in state.nodes:
        mine = {p.key for p in pods(state, "backend-") if p.node == n.name}
        assert set(external_endpoints(sps[n.name])) == mine     # from outside: this node's only
        assert set(node_local_endpoints(sps[n.name])) == everyone  # from the node itself: any


def terminating(slices, service: str):
    """The Service's endpoints all on their way out: not ready, still serving."""
    return [replace(s, endpoints=tuple(replace(e, ready=False, serving=True, terminating=True) for e in s.endpoints))
            if s.service == service else s for s in slices]


def test_serving_terminating_endpoints_take_over_when_none_is_ready(state, slices):
    """kube-proxy's fallback (lab.kube_proxy.model): the probes expect the rules to use them, and
    plan no no-endpoints reject."""
    gone = terminating(slices, "backend")
    assert internal(state, gone, "backend") == internal(state, slices, "backend")
    about = [a for a in plan(state, gone) if "default/backend:http (" in a.subject]
    assert about and all(a.check == "service" and a.reply for a in about)
    assert {a.group for a in about if a.client} == {f"default/backend:http from node {n.name}" for n in state.nodes}


# --- plan() on services.yaml ---

def test_checks_are_described():
    assert set(CHECKS) == {"clusterip-virtual", "service", "service-spread", "session-affinity", "no-endpoints",
                           "nodeport", "loadbalancer", "egress"}


def test_plan_is_deterministic(state, slices, asks):
    assert plan(state, slices) == asks


def test_no_asks_for_the_headless_service(state, asks):
    assert state.service("default", "backend-headless").cluster_ip is None
    assert not any("backend-headless" in a.subject for a in asks)
    assert not any(a.probe.port == 8080 and a.probe.dst_ip.startswith("10.9") for a in asks)


def test_warming_gets_one_no_endpoints_ask_without_reply(state, asks):
    warming = state.service("default", "warming")
    got = [a for a in asks if a.probe.dst_ip == warming.cluster_ip]
    assert len(got) == 1
    (a,) = got
    assert (a.check, a.reply, a.probe.port, a.probe.protocol) == ("no-endpoints", False, 80, "TCP")
    assert a.probe.src_netns == next(p for p in state.pods if not p.host_network).netns
    assert [x for x in asks if x.check == "no-endpoints"] == [a]


def test_no_endpoints_ask_only_for_tcp_ports(state):
    """Every backend unready: backend:http gets a no-endpoints ask, backend:dns (UDP) none."""
    ready = {p.key: not p.name.startswith(("backend-", "warming-")) for p in state.pods}
    asks = plan(state, endpoint_slices(state, ready))
    backend_ip = state.service("default", "backend").cluster_ip
    got = [a for a in asks if a.probe.dst_ip == backend_ip]
    assert [(a.check, a.probe.port, a.probe.protocol, a.reply) for a in got] == [("no-endpoints", 80, "TCP", False)]
    assert not any(a.check == "nodeport" for a in asks)  # no endpoints: no NodePort promises either


def test_published_not_ready_endpoints_are_served(state, asks):
    ip = state.service("default", "warming-published").cluster_ip
    got = [a for a in asks if a.probe.dst_ip == ip]
    assert got and all(a.check == "service" and a.servers == names(state, "warming-") for a in got)


def test_service_asks_from_every_pod_client(state, asks):
    ip = state.service("default", "backend").cluster_ip
    http = [a for a in asks if a.probe.dst_ip == ip and a.probe.protocol == "TCP" and a.client]
    clients = [p for p in state.pods if not p.host_network]
    assert {a.client for a in http} == {p.key for p in clients}
    per_client = Counter(a.client for a in http)
    on_node = Counter(p.node for p in clients)
    pod = {p.key: p for p in state.pods}
    assert all(n == -(-SAMPLES * 3 // on_node[pod[k].node]) for k, n in per_client.items())
    assert Counter(pod[a.client].node for a in http) == {n.name: SAMPLES * 3 for n in state.nodes}  # per node
    for a in http:
        assert a.check == "service" and a.group == f"default/backend:http from node {pod[a.client].node}"
        assert a.servers == names(state, "backend-")
        assert a.source == pod[a.client].ip
        assert a.probe == Probe(pod[a.client].netns, ip, 80, "TCP")


def test_service_asks_for_the_udp_port(state, asks):
    ip = state.service("default", "backend").cluster_ip
    dns = [a for a in asks if a.probe.dst_ip == ip and a.probe.protocol == "UDP"]
    assert dns and all(a.probe.port == 53 for a in dns)
    assert {a.group for a in dns if a.client} == {f"default/backend:dns from node {n.name}" for n in state.nodes}


def test_nodes_ask_every_clusterip_accepting_any_source(state, asks):
    ip = state.service("default", "backend").cluster_ip
    from_nodes = [a for a in asks if a.probe.dst_ip == ip and not a.client]
    assert sorted(a.probe.src_netns for a in from_nodes) == sorted([n.netns for n in state.nodes] * 2)
    assert all(a.source == "" and a.group == "" and a.servers == names(state, "backend-") for a in from_nodes)


def test_affinity_asks_are_grouped_per_client(state, asks):
    ip = state.service("default", "sticky").cluster_ip
    sticky = [a for a in asks if a.probe.dst_ip == ip and a.client]
    assert all(a.check == "session-affinity" for a in sticky)
    groups = defaultdict(set)
    for a in sticky:
        groups[a.group].add(a.client)
    assert all(len(v) == 1 for v in groups.values())
    assert set(groups) == {f"default/sticky|{p.key}" for p in state.pods if not p.host_network}
    assert min(Counter(a.group for a in sticky).values()) >= 4


@pytest.fixture(scope="module")
def no_worker2_backend(state):
    """The backend on worker2 unready (as are the warming pods)."""
    w2 = on_node(state, "backend-", "worker2")
    ready = {**not_warming(state), w2.key: False}
    return plan(state, endpoint_slices(state, ready))


def test_internal_traffic_policy_local_asks_only_local_endpoints(state, no_worker2_backend):
    ip = state.service("default", "node-local").cluster_ip
    got = [a for a in no_worker2_backend if a.probe.dst_ip == ip]
    pod = {p.key: p for p in state.pods}
    from_pods = [a for a in got if a.client]
    assert {pod[a.client].node for a in from_pods} == {"control-plane", "worker1"}
    for a in from_pods:
        assert a.servers == {on_node(state, "backend-", pod[a.client].node).name}
    from_nodes = {a.probe.src_netns: a.servers for a in got if not a.client}
    assert from_nodes == {state.node(n).netns: {on_node(state, "backend-", n).name}
                          for n in ("control-plane", "worker1")}


def test_client_on_a_node_without_local_backend_gets_no_node_local_ask(state, no_worker2_backend):
    client = on_node(state, "client-", "worker2")
    ip = state.service("default", "node-local").cluster_ip
    assert not [a for a in no_worker2_backend if a.probe.dst_ip == ip and a.client == client.key]
    # ... but it still asks the Cluster-policy Services, which may answer from anywhere
    backend_ip = state.service("default", "backend").cluster_ip
    assert [a for a in no_worker2_backend if a.probe.dst_ip == backend_ip and a.client == client.key]


def test_internal_traffic_policy_local_with_every_node_served(state, asks):
    ip = state.service("default", "node-local").cluster_ip
    pod = {p.key: p for p in state.pods}
    for a in (a for a in asks if a.probe.dst_ip == ip and a.client):
        assert a.servers == {on_node(state, "backend-", pod[a.client].node).name}


def nodeport_from_hosts(asks, port):
    return [a for a in asks if a.check == "nodeport" and a.probe.port == port and a.probe.src_netns.endswith("-internet")]


def test_nodeport_cluster_from_a_host_expects_snat_to_the_node(state, asks):
    got = nodeport_from_hosts(asks, 30080)
    assert sorted(a.probe.dst_ip for a in got) == sorted(n.ip for n in state.nodes)
    host = state.hosts[0]
    for a in got:
        assert (a.source, a.reply, a.servers) == ("node", True, names(state, "backend-"))
        assert a.probe == Probe(host.netns, a.probe.dst_ip, 30080, "TCP")


def test_nodeport_local_from_a_host_keeps_the_client_ip(state, asks):
    host = state.hosts[0]
    got = {a.probe.dst_ip: a for a in nodeport_from_hosts(asks, 30081)}
    assert set(got) == {n.ip for n in state.nodes}
    for n in state.nodes:
        a = got[n.ip]
        assert (a.source, a.reply, a.servers) == (host.ip, True, {on_node(state, "backend-", n.name).name})


def test_nodeport_local_replies_only_on_nodes_with_a_local_endpoint(state, no_worker2_backend):
    got = {a.probe.dst_ip: a for a in nodeport_from_hosts(no_worker2_backend, 30081)}
    assert got[state.node("worker2").ip].reply is False
    assert got[state.node("worker2").ip].servers == frozenset()
    assert got[state.node("worker1").ip].reply is True
    cluster = nodeport_from_hosts(no_worker2_backend, 30080)
    assert all(a.reply and len(a.servers) == 2 for a in cluster)


def test_nodeport_from_the_node_itself_includes_localhost_in_iptables_mode(state, asks):
    for port in (30080, 30081):
        node_ip = {n.netns: n.ip for n in state.nodes}
        own = [a for a in asks if a.check == "nodeport" and a.probe.port == port
               and a.probe.dst_ip in (node_ip.get(a.probe.src_netns), "127.0.0.1")]
        assert sorted((a.probe.src_netns, a.probe.dst_ip) for a in own) == sorted(
            [(n.netns, n.ip) for n in state.nodes] + [(n.netns, "127.0.0.1") for n in state.nodes])
        assert all(a.source == "" and a.servers == names(state, "backend-") for a in own)


def test_nftables_mode_has_no_localhost_nodeport_asks():
    st = shipped_state("services", proxy="nftables", dns=NO_DNS)
    asks = plan(st, endpoint_slices(st, not_warming(st)))
    nodeport = [a for a in asks if a.check == "nodeport"]
    assert nodeport and not any(a.probe.dst_ip == "127.0.0.1" for a in nodeport)
    n = len(st.nodes)  # per NodePort: hosts and the other nodes to every node, each node to itself
    assert len(nodeport) == 2 * (n * len(st.hosts) + n * (n - 1) + n)


def test_iptables_mode_has_localhost_nodeport_asks(asks, state):
    local = [a for a in asks if a.check == "nodeport" and a.probe.dst_ip == "127.0.0.1"]
    assert len(local) == 2 * len(state.nodes)


def test_egress_asks_expect_the_clients_node_ip(state, asks):
    egress = [a for a in asks if a.check == "egress"]
    clients = [p for p in state.pods if not p.host_network]
    host = state.hosts[0]
    assert len(egress) == len(clients) * len(state.hosts)
    by_netns = {p.netns: p for p in clients}
    for a in egress:
        client = by_netns[a.probe.src_netns]
        assert a.probe == Probe(client.netns, host.ip, HOST_PORT, "TCP")
        assert a.source == state.node(client.node).ip
        assert a.servers == {host.name}


def test_hostnetwork_pods_are_no_clients():
    st = plan_topology(Topology.model_validate({"name": "hn", "cluster": {"dns": NO_DNS},
                                                "nodes": [{"name": "n1"}], "hosts": [{"name": "h"}],
                                                "manifests": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent", "labels": {"app": "x"}},
         "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": 8080}]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "x"}},
         "spec": {"containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": 8080}]}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
         "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]}}]}))
    asks = plan(st, endpoint_slices(st))
    assert {a.client for a in asks if a.client} == {"default/web"}
    assert {a.probe.src_netns for a in asks if a.check == "egress"} == {st.pods[1].netns}
    assert next(a for a in asks if a.client).servers == {"n1", "web"}  # a hostNetwork pod answers as its node


# --- node_addresses ---

def test_node_addresses(state):
    got = node_addresses(state)
    for n in state.nodes:
        assert got[n.ip] == got[n.gateway] == got[n.pod_cidr.split("/")[0]] == n.name
    assert len(got) == 3 * len(state.nodes)
    assert not any(p.ip in got for p in state.pods if not p.host_network)


# --- judge(): everything right ---

def test_judge_all_good_passes(state, asks):
    outcomes = judge(state, asks, good_results(state, asks))
    failed = [o for o in outcomes if not o.passed]
    assert failed == []
    checks = by_check(outcomes)
    assert set(checks) == {"service", "service-spread", "session-affinity", "no-endpoints", "nodeport", "egress"}
    assert len(checks["session-affinity"]) == len([p for p in state.pods if not p.host_network])
    spreads = {o.subject for o in checks["service-spread"]}
    assert spreads == {f"default/{s} from node {node.name} over {n} endpoints" for node in state.nodes for s, n in [
        ("backend:http", 3), ("backend:dns", 3), ("backend-nodeport", 3), ("backend-local", 3), ("node-local", 1),
        ("warming-published", 2), ("loner", 1)]}
    assert len(checks["no-endpoints"]) == 1 and len(checks["egress"]) == len([p for p in state.pods if not p.host_network])


def test_judge_grouped_asks_are_summarised(state, asks):
    outcomes = judge(state, asks, good_results(state, asks))
    summary = [o for o in outcomes if o.check == "service" and o.subject.startswith("default/backend:http from node")]
    assert [o.subject for o in summary] == [f"default/backend:http from node {n.name}: 72 of 72 connections from pods"
                                            for n in state.nodes]
    assert all(o.node == n.name and o.attempts == 1 for o, n in zip(summary, state.nodes))
    assert summary[0].target == f"{state.service('default', 'backend').cluster_ip}:80/TCP"


# --- judge(): single probes ---

def one(asks, pred) -> Ask:
    return next(a for a in asks if pred(a))


def judged(state, a: Ask, r: ProbeResult):
    (o,) = judge(state, [a], [r])
    return o


def test_reply_from_a_pod_not_among_the_servers_fails(state, asks):
    a = one(asks, lambda a: a.check == "service" and not a.group)  # a node -> ClusterIP probe
    o = judged(state, a, reply(a, "client-848bfc4477-rcj55", ""))
    assert not o.passed
    assert "answered by client-848bfc4477-rcj55, not one of" in o.observed
    assert o.source == a.probe.src_netns and o.target == f"{a.probe.dst_ip}:{a.probe.port}/{a.probe.protocol}"


def test_no_reply_fails_with_the_error(state, asks):
    a = one(asks, lambda a: a.check == "service" and not a.group)
    o = judged(state, a, no_reply(a))
    assert not o.passed and o.observed == f"no reply at any of 1 try: {TIMEOUT}"


def test_egress_wrong_source_fails(state, asks):
    a = one(asks, lambda a: a.check == "egress")
    pod_ip = next(p.ip for p in state.pods if p.netns == a.probe.src_netns)
    o = judged(state, a, reply(a, "internet", pod_ip))
    assert not o.passed and f"source seen {pod_ip}, expected {a.source}" in o.observed
    assert judged(state, a, reply(a, "internet", a.source)).passed


def test_no_endpoints_passes_only_when_refused(state, asks):
    a = one(asks, lambda a: a.check == "no-endpoints")
    assert judged(state, a, no_reply(a, REFUSED)).passed
    o = judged(state, a, no_reply(a, TIMEOUT))
    assert not o.passed and o.expected == "rejected at once (refused)"
    assert not judged(state, a, reply(a, "warming-5f688f689b-7gftv", "10.244.0.2")).passed


def test_nodeport_cluster_accepts_any_node_address_as_source(state, asks):
    a = one(asks, lambda a: a.check == "nodeport" and a.source == "node")
    for n in state.nodes:
        for addr in (n.ip, n.gateway, n.pod_cidr.split("/")[0]):  # eth0, cni0, flannel.1
            assert judged(state, a, reply(a, sorted(a.servers)[0], addr)).passed, addr


def test_nodeport_cluster_fails_on_a_pod_ip_or_the_clients_own_ip(state, asks):
    a = one(asks, lambda a: a.check == "nodeport" and a.source == "node")
    pod_ip = pods(state, "client-")[0].ip
    o = judged(state, a, reply(a, sorted(a.servers)[0], pod_ip))
    assert not o.passed and f"source seen {pod_ip}, not an address of a node" in o.observed
    assert not judged(state, a, reply(a, sorted(a.servers)[0], state.hosts[0].ip)).passed  # no SNAT at all


def test_nodeport_local_expects_the_hosts_ip(state, asks):
    a = one(asks, lambda a: a.check == "nodeport" and a.source == state.hosts[0].ip)
    server = next(iter(a.servers))
    assert judged(state, a, reply(a, server, state.hosts[0].ip)).passed
    o = judged(state, a, reply(a, server, state.node("worker1").ip))
    assert not o.passed and "expected " + state.hosts[0].ip in o.observed
    other = sorted(names(state, "backend-") - a.servers)[0]
    assert not judged(state, a, reply(a, other, state.hosts[0].ip)).passed  # a remote endpoint: not Local


def test_nodeport_local_without_local_endpoint_expects_no_reply(state, no_worker2_backend):
    a = one(no_worker2_backend, lambda a: a.check == "nodeport" and not a.reply)
    assert judged(state, a, no_reply(a)).passed
    o = judged(state, a, reply(a, "backend-6955fbddc-fk5k5", "172.18.0.4"))
    assert not o.passed and o.expected == "no reply at any try (denied)"


# --- judge(): groups (service, spread, affinity) ---

HTTP = "default/backend:http from node worker1"  # one node's row: 3 clients, 72 connections


def group_asks(asks, group) -> list[Ask]:
    return [a for a in asks if a.group == group]


def judge_group(state, asks, servers_of) -> list:
    """Every ask of the group answered by servers_of(i, ask), seeing the client's own IP."""
    return judge(state, asks, [reply(a, servers_of(i, a), a.source) for i, a in enumerate(asks)])


def test_a_wrong_source_in_a_group_fails(state, asks):
    g = group_asks(asks, HTTP)
    server = next(p.name for p in pods(state, "backend-") if f"default/{p.name}" != g[0].client)
    results = [reply(a, sorted(a.servers)[i % 3], a.source) for i, a in enumerate(g)]
    results[0] = reply(g[0], server, state.node("worker1").gateway)  # SNATed: not the client's IP
    outcomes = judge(state, g, results)
    failed = [o for o in outcomes if not o.passed]
    assert [o.subject for o in failed if o.check == "service"][0] == g[0].subject
    assert f"source seen {state.node('worker1').gateway}" in failed[0].observed
    summary = next(o for o in outcomes if o.subject.startswith(HTTP + ":"))
    assert not summary.passed and summary.observed == f"{len(g) - 1} answered"


def test_a_hairpin_reply_may_show_any_source(state, asks):
    """A client that reaches itself through the Service is masqueraded (hairpin): any source is fine."""
    g = group_asks(asks, HTTP)
    own = next(a for a in g if a.client.split("/")[1] in a.servers)
    me = own.client.split("/")[1]
    results = [reply(a, sorted(a.servers)[i % 3], a.source) for i, a in enumerate(g)]
    i = g.index(own)
    results[i] = reply(own, me, state.node(next(p.node for p in state.pods if p.key == own.client)).gateway)
    assert all(o.passed for o in judge(state, g, results))


def test_a_reply_from_a_pod_not_among_the_servers_fails_in_a_group(state, asks):
    g = group_asks(asks, HTTP)
    results = [reply(a, sorted(a.servers)[i % 3], a.source) for i, a in enumerate(g)]
    results[1] = reply(g[1], "warming-5f688f689b-7gftv", g[1].source)
    outcomes = judge(state, g, results)
    failed = [o for o in outcomes if not o.passed and o.check == "service"]
    assert failed[0].subject == g[1].subject and "answered by warming-5f688f689b-7gftv, not one of" in failed[0].observed


def test_spread_fair_passes(state, asks):
    g = group_asks(asks, HTTP)
    spread = next(o for o in judge_group(state, g, lambda i, a: sorted(a.servers)[i % 3])
                  if o.check == "service-spread")
    assert spread.passed
    assert spread.expected.startswith(f"every endpoint about 24 of {len(g)} (")


def test_spread_hitting_two_of_three_endpoints_fails_never_hit(state, asks):
    g = group_asks(asks, HTTP)
    two = sorted(names(state, "backend-"))[:2]
    spread = next(o for o in judge_group(state, g, lambda i, a: two[i % 2]) if o.check == "service-spread")
    assert not spread.passed
    missing = sorted(names(state, "backend-"))[2]
    assert f"never hit: {missing}" in spread.observed


def test_spread_very_skewed_fails_implausible(state, asks):
    g = group_asks(asks, HTTP)
    s = sorted(names(state, "backend-"))
    spread = next(o for o in judge_group(state, g, lambda i, a: s[0] if i % 12 < 10 else s[1 + i % 2])
                  if o.check == "service-spread")
    assert not spread.passed and "implausible" in spread.observed


def test_spread_mildly_uneven_passes(state, asks):
    g = group_asks(asks, HTTP)  # 72 connections: 30/22/20 is well within chance
    s = sorted(names(state, "backend-"))
    pick = [s[0]] * 30 + [s[1]] * 22 + [s[2]] * 20
    spread = next(o for o in judge_group(state, g, lambda i, a: pick[i]) if o.check == "service-spread")
    assert spread.passed, spread.observed


def test_affinity_one_endpoint_per_client_passes(state, asks):
    client = pods(state, "client-")[0]
    g = group_asks(asks, f"default/sticky|{client.key}")
    (o,) = judge_group(state, g, lambda i, a: sorted(a.servers)[1])
    assert o.check == "session-affinity" and o.passed
    assert o.observed == f"{sorted(names(state, 'backend-'))[1]}={len(g)}"


def test_affinity_client_hitting_two_endpoints_fails(state, asks):
    client = pods(state, "client-")[0]
    g = group_asks(asks, f"default/sticky|{client.key}")
    (o,) = judge_group(state, g, lambda i, a: sorted(a.servers)[i % 2])
    assert not o.passed and o.expected == "every connection to one endpoint"


def test_affinity_with_a_failed_connection_fails(state, asks):
    client = pods(state, "client-")[0]
    g = group_asks(asks, f"default/sticky|{client.key}")
    results = [reply(a, sorted(a.servers)[0], a.source) for a in g]
    results[-1] = no_reply(g[-1])
    (o,) = judge(state, g, results)
    assert not o.passed and "1 failed: no reply" in o.observed


def test_affinity_groups_are_judged_separately(state, asks):
    sticky = [a for a in asks if a.check == "session-affinity"]
    pin = {}
    results = []
    for a in sticky:  # each client pinned to a different endpoint, in turn
        server = pin.setdefault(a.client, sorted(a.servers)[len(pin) % 3])
        results.append(reply(a, server, a.source))
    outcomes = judge(state, sticky, results)
    assert len(outcomes) == len({a.client for a in sticky}) and all(o.passed for o in outcomes)


# --- judge(): internalTrafficPolicy Local and the spread ---

def uneven_local_state() -> ClusterState:
    """iTP Local, one backend per node, ten pods on node a and one on node b."""
    def pod(name, node, app=None):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **({"labels": {"app": app}} if app else {})},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": 8080}]}]}}
    return plan_topology(Topology.model_validate({"name": "itp", "cluster": {"dns": NO_DNS},
                                                  "nodes": [{"name": "a"}, {"name": "b"}], "manifests": [
        pod("be-a", "a", "be"), pod("be-b", "b", "be"), *(pod(f"cl-{i}", "a") for i in range(9)),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "loc"},
         "spec": {"internalTrafficPolicy": "Local", "selector": {"app": "be"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]}))


def test_internal_traffic_policy_local_asks_with_uneven_clients():
    st = uneven_local_state()
    asks = plan(st, endpoint_slices(st))
    pods_ = {p.key: p for p in st.pods}
    grouped = [a for a in asks if a.group]
    assert all(a.servers == {"be-" + pods_[a.client].node} for a in grouped)
    assert Counter(pods_[a.client].node for a in grouped) == {"a": 30, "b": 24}  # SAMPLES per endpoint, per node


def test_internal_traffic_policy_local_groups_per_node():
    st = uneven_local_state()
    asks = plan(st, endpoint_slices(st))
    pods_ = {p.key: p for p in st.pods}
    assert all(a.group == f"default/loc from node {pods_[a.client].node}" for a in asks if a.client)
    outcomes = judge(st, asks, good_results(st, asks))
    assert sorted(o.subject for o in outcomes if o.check == "service-spread") == [
        "default/loc from node a over 1 endpoints", "default/loc from node b over 1 endpoints"]


def test_internal_traffic_policy_local_skew_within_a_node_still_fails():
    """Two endpoints on node a: its clients must still spread over both."""
    st = uneven_local_state()
    from dataclasses import replace
    be_a2 = replace(next(p for p in st.pods if p.name == "cl-0"), labels=(("app", "be"),))
    st = replace(st, pods=tuple(be_a2 if p.name == "cl-0" else p for p in st.pods))
    asks = plan(st, endpoint_slices(st))
    results = [reply(a, "be-a" if "be-a" in a.servers else sorted(a.servers)[0], a.source or st.nodes[0].ip)
               for a in asks]
    spread = {o.subject: o for o in judge(st, asks, results) if o.check == "service-spread"}
    bad = spread["default/loc from node a over 2 endpoints"]
    assert not bad.passed and "never hit: cl-0" in bad.observed
    assert spread["default/loc from node b over 1 endpoints"].passed


def test_internal_traffic_policy_local_correct_answers_pass_the_spread():
    """Each client may only reach its own node's endpoints, so the spread is judged per node: a
    cluster that answers every probe right passes even with clients spread unevenly (50 vs 5)."""
    st = uneven_local_state()
    asks = plan(st, endpoint_slices(st))
    outcomes = judge(st, asks, good_results(st, asks))
    assert [o.observed for o in outcomes if not o.passed] == []


# --- judge(): hairpin is recognised by pod name only ---

def same_name_state() -> ClusterState:
    """Two pods named web, in default (behind Service s) and in team-a (a client only)."""
    def web(ns, labels):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": ns, "labels": labels},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": 8080}]}]}}
    return plan_topology(Topology.model_validate({"name": "hp", "nodes": [{"name": "n1"}], "manifests": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
        web("default", {"app": "web"}), web("team-a", {"app": "other"}),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}]}))


def test_a_real_hairpin_accepts_any_source():
    st = same_name_state()
    asks = [a for a in plan(st, endpoint_slices(st)) if a.client == "default/web"]
    outcomes = judge(st, asks, [reply(a, "web", st.nodes[0].gateway) for a in asks])
    assert all(o.passed for o in outcomes)


def test_a_same_named_pod_in_another_namespace_is_no_hairpin():
    st = same_name_state()
    asks = [a for a in plan(st, endpoint_slices(st)) if a.client == "team-a/web"]
    assert asks and all(a.servers == {"web"} for a in asks)
    outcomes = judge(st, asks, [reply(a, "web", st.nodes[0].gateway) for a in asks])  # SNATed
    assert not all(o.passed for o in outcomes)


def test_dual_stack_egress_has_a_row_per_family_seen_as_the_nodes_address_of_it():
    st = shipped_state("dual-stack")
    asks = [a for a in plan(st, endpoint_slices(st)) if a.check == "egress"]
    clients = [p for p in st.pods if not p.host_network]
    host = st.hosts[0]
    assert len(asks) == 2 * len(clients)
    by_dst = {f: [a for a in asks if a.probe.dst_ip == host.address_of(f)] for f in (4, 6)}
    assert len(by_dst[4]) == len(by_dst[6]) == len(clients)
    by_netns = {p.netns: p for p in clients}
    for f, rows in by_dst.items():
        assert all(a.source == st.node(by_netns[a.probe.src_netns].node).address_of(f) for a in rows)
    a6 = by_dst[6][0]
    client = by_netns[a6.probe.src_netns]
    assert a6.subject == f"{client.key} ({client.ip_of(6)}) -> host/{host.name} ([{host.ip6}]:{HOST_PORT}), seen as {a6.source}"
    # an IPv6 reply seen from the pod's own address: ip-masq-agent's IPv6 rule did not masquerade
    o = judged(st, a6, reply(a6, host.name, client.ip_of(6)))
    assert not o.passed and f"expected {a6.source}" in o.observed
    assert judged(st, a6, reply(a6, host.name, a6.source)).passed
