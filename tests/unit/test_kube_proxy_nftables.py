"""kube-proxy's nftables mode (lab.kube_proxy.nftables), pure: goldens plus the rules they must obey.

The goldens tests/golden/nftables-<case>.nft hold the `nft -f` scripts render() writes: the shipped
topologies/services.yaml on worker1 and on control-plane (every pod ready except the `warming`
ones), small cases built from dicts (session affinity, externalTrafficPolicy Local with and without
a local endpoint, UDP, no endpoints, internalTrafficPolicy Local), ip-masq-agent's table, and one
partial sync (render_update) of services.yaml. To regenerate them after an intended change:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_kube_proxy_nftables.py

then review `git diff tests/golden` by eye. tests/integration/test_nft_syntax.py loads the same
scripts into a real kernel; tests/unit/test_kube_proxy_packets.py traces packets through them.
"""
from __future__ import annotations

import re
from dataclasses import replace
from ipaddress import IPv4Network

import pytest

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.controlplane.state import (
    ClusterState, EndpointPortState, EndpointSliceState, EndpointState, ServicePortState, ServiceState,
)
from lab.kube_proxy import nftables
from lab.kube_proxy.model import port_endpoints
from lab.topology.model import Topology
from tests.unit.golden import check_golden, shipped_state


# --- builders ---

def services_yaml() -> tuple[ClusterState, tuple[EndpointSliceState, ...]]:
    """topologies/services.yaml with every pod ready except the never-ready `warming` ones."""
    state = shipped_state("services")
    ready = {p.key: p.owner != "Deployment/warming" for p in state.pods}
    return state, endpoint_slices(state, ready)


def web_pod(name: str, node: str, app: str = "web") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "netexec", "ports": [
                {"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]}}


def service(name: str, ports: list[dict], app: str = "web", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": ports, **spec}}


def small(*manifests: dict) -> tuple[ClusterState, tuple[EndpointSliceState, ...]]:
    """Three nodes, the given manifests, every pod ready."""
    doc = {"name": "kp", "cluster": {"proxy": "nftables", "dns": {"enabled": False}},
           "nodes": [{"name": "control-plane", "role": "control-plane"}, {"name": "worker1"}, {"name": "worker2"}],
           "manifests": list(manifests)}
    state = plan(Topology.model_validate(doc))
    return state, endpoint_slices(state, {})


SMALL = {
    "affinity": lambda: small(
        web_pod("web-1", "worker1"), web_pod("web-2", "worker2"),
        service("sticky", [{"port": 80, "targetPort": "http"}], clusterIP="10.96.0.50",
                sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})),
    "etp-local": lambda: small(
        web_pod("web-1", "worker1"),
        service("local", [{"port": 80, "targetPort": 8080, "nodePort": 30090}], clusterIP="10.96.0.51",
                type="NodePort", externalTrafficPolicy="Local")),
    "udp": lambda: small(
        web_pod("web-1", "worker1"), web_pod("web-2", "worker2"),
        service("dns", [{"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}], clusterIP="10.96.0.10")),
    "no-endpoints": lambda: small(
        web_pod("web-1", "worker1"),
        service("nobody", [{"port": 80}], app="nobody", clusterIP="10.96.0.52"),
        service("nobody-np", [{"port": 80, "nodePort": 30091}], app="nobody", clusterIP="10.96.0.53", type="NodePort")),
    "itp-local": lambda: small(
        web_pod("web-1", "worker1"),
        service("node-local", [{"port": 80, "targetPort": 8080}], clusterIP="10.96.0.54", internalTrafficPolicy="Local")),
}


def big_state(n: int = 1000) -> tuple[ClusterState, tuple[EndpointSliceState, ...]]:
    """services.yaml's three nodes with n ClusterIP Services of 3 endpoints, one on each node."""
    base = shipped_state("services")
    first = IPv4Network(base.service_cidr).network_address + 0x1000
    services, slices = [], []
    for i in range(n):
        name = f"svc-{i:04d}"
        services.append(ServiceState("default", name, "ClusterIP", str(first + i),
                                     (ServicePortState("http", "TCP", 80, "8080"),), selector=(("app", name),)))
        eps = tuple(EndpointState(str(IPv4Network(node.pod_cidr).network_address + 2 + i % 250), node.name,
                                  f"default/{name}-{node.name}") for node in base.nodes)
        slices.append(EndpointSliceState("default", f"{name}-abcde", name, (EndpointPortState("http", "TCP", 8080),), eps))
    return replace(base, pods=(), services=tuple(services)), tuple(slices)


def one_more(state: ClusterState, slices, name: str = "added", ip: str = "10.96.0.200"):
    """state + a Service `name` with 3 endpoints."""
    svc = ServiceState("default", name, "ClusterIP", ip, (ServicePortState("http", "TCP", 80, "8080"),),
                       selector=(("app", name),))
    eps = tuple(EndpointState(f"10.244.{k}.250", node.name, f"default/{name}-{k}") for k, node in enumerate(state.nodes))
    sl = EndpointSliceState("default", f"{name}-abcde", name, (EndpointPortState("http", "TCP", 8080),), eps)
    return replace(state, services=state.services + (svc,)), tuple(slices) + (sl,)


def changed_services_yaml():
    """services.yaml, then: Service `added` created, sticky loses endpoint 10.244.2.2, node-local deleted."""
    state, slices = services_yaml()
    new_state = replace(state, services=tuple(s for s in state.services if s.name != "node-local"))
    new_slices = tuple(
        replace(s, endpoints=tuple(e for e in s.endpoints if e.address != "10.244.2.2")) if s.service == "sticky" else s
        for s in slices if s.service != "node-local")
    new_state, new_slices = one_more(new_state, new_slices)
    return (state, slices), (new_state, new_slices)


# --- reading a render() script back ---

def blocks(script: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (set|map|chain, body lines) for everything declared in the table."""
    out, current = {}, None
    for line in script.splitlines():
        m = re.match(r"^\t(set|map|chain) (\S+) \{$", line)
        if m:
            current = m.group(2)
            out[current] = (m.group(1), [])
        elif line == "\t}":
            current = None
        elif current is not None:
            out[current][1].append(line.strip())
    return out


def elements(script: str, name: str) -> list[str]:
    body = blocks(script)[name][1]
    if "elements = {" not in body:
        return []
    start = body.index("elements = {")
    return [l.rstrip(",") for l in body[start + 1:body.index("}", start)]]


def element_map(script: str, name: str) -> dict[str, str]:
    """key -> verdict of a verdict map (comments dropped)."""
    out = {}
    for e in elements(script, name):
        key, _, value = e.partition(" : ")
        out[re.sub(r' comment ".*"', "", key)] = value
    return out


def chains(script: str) -> dict[str, list[str]]:
    return {n: body for n, (kind, body) in blocks(script).items() if kind == "chain"}


# --- goldens ---

@pytest.mark.parametrize("node", ["worker1", "control-plane"])
def test_services_golden(node):
    state, slices = services_yaml()
    check_golden(f"nftables-services-{node}.nft", nftables.render(state, node, slices))


@pytest.mark.parametrize("case,node", [
    ("affinity", "worker1"), ("etp-local", "worker1"), ("etp-local", "worker2"), ("udp", "worker1"),
    ("no-endpoints", "worker1"), ("itp-local", "worker1"), ("itp-local", "worker2"),
])
def test_small_golden(case, node):
    state, slices = SMALL[case]()
    name = case if case in ("affinity", "udp", "no-endpoints") else f"{case}-{node}"
    check_golden(f"nftables-{name}.nft", nftables.render(state, node, slices))


def test_masq_agent_golden():
    state, _ = services_yaml()
    check_golden("nftables-masq-agent.nft", nftables.masq_agent_rules(state))


def test_update_golden():
    (old, old_slices), (new, new_slices) = changed_services_yaml()
    check_golden("nftables-update-services-worker1.nft", nftables.render_update(old, new, "worker1", old_slices, new_slices))


# --- structure ---

@pytest.mark.parametrize("node", ["control-plane", "worker1", "worker2"])
def test_every_clusterip_port_is_dispatched_or_rejected(node):
    state, slices = services_yaml()
    script = nftables.render(state, node, slices)
    service_ips, no_endpoints = element_map(script, "service-ips"), element_map(script, "no-endpoint-services")
    cluster_ips = set(elements(script, "cluster-ips"))
    for svc in state.services:
        if svc.cluster_ip is None:
            assert f"default/{svc.name}/" not in script
            continue
        assert svc.cluster_ip in cluster_ips
        for sp in svc.ports:
            key = f"{svc.cluster_ip} . {sp.protocol.lower()} . {sp.port}"
            ready = [e for e in port_endpoints(svc, sp, slices) if e.ready]
            if not ready:
                assert key not in service_ips and no_endpoints[key] == "goto reject-chain", key
            elif svc.internal_traffic_policy == "Local" and not any(e.node == node for e in ready):
                assert key not in service_ips and no_endpoints[key] == "drop", key
            else:
                assert service_ips[key].startswith("goto "), key
                assert key not in no_endpoints


def test_headless_and_unready_services():
    state, slices = services_yaml()
    script = nftables.render(state, "worker1", slices)
    assert "backend-headless" not in script
    assert element_map(script, "no-endpoint-services") == {"10.101.140.116 . tcp . 80": "goto reject-chain"}
    assert "default/warming/" not in script                          # no chains: rejected in the filter chains
    assert "default/warming-published/tcp/__10.244.0.4/8080" in script  # published before ready
    assert chains(script)["reject-chain"] == ['comment "helper for @no-endpoint-services / @no-endpoint-nodeports"',
                                              "reject"]


@pytest.mark.parametrize("node", ["control-plane", "worker1", "worker2"])
def test_numgen_mod_equals_endpoints(node):
    state, slices = services_yaml()
    script = nftables.render(state, node, slices)
    seen = 0
    for name, rules in chains(script).items():
        if not name.startswith(("service-", "local-")) or "/" not in name:
            continue
        spread = [r for r in rules if r.startswith("numgen")]
        assert len(spread) == 1, name
        mod = int(re.match(r"numgen random mod (\d+) vmap", spread[0]).group(1))
        targets = re.findall(r"(\d+) : goto (endpoint-\S+?)(?:,| \})", spread[0])
        assert [int(i) for i, _ in targets] == list(range(mod))
        assert all(t in chains(script) for _, t in targets)
        ns, svc_name, proto, port_name = re.match(r"^(?:service|local)-\w{8}-([^/]+)/([^/]+)/(\w+)/(.*)$", name).groups()
        svc = state.service(ns, svc_name)
        sp = next(p for p in svc.ports if p.protocol.lower() == proto and p.name == port_name)
        eps = [e for e in port_endpoints(svc, sp, slices) if e.ready]
        if name.startswith("local-"):
            eps = tuple(e for e in eps if e.node == node)
        assert mod == len(eps) > 0, name
        seen += 1
    assert seen >= 8


def test_service_chain_masquerades_off_cluster_sources_and_endpoints_hairpin():
    state, slices = services_yaml()
    rules = chains(nftables.render(state, "worker1", slices))
    svc = next(r for n, r in rules.items() if n.startswith("service-") and n.endswith("default/backend/tcp/http"))
    assert svc[0] == "ip daddr 10.96.0.100 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    ep = next(r for n, r in rules.items() if n.endswith("default/backend/udp/dns__10.244.1.2/5353"))
    assert ep == ["ip saddr 10.244.1.2 jump mark-for-masquerade", "meta l4proto udp dnat to 10.244.1.2:5353"]
    assert rules["masquerading"] == ["mark and 0x4000 == 0 return", "mark set mark xor 0x4000", "masquerade fully-random"]
    assert rules["mark-for-masquerade"] == ["mark set mark or 0x4000"]
    assert rules["nat-output"][0] == "type nat hook output priority -100; policy accept;"  # not `dstnat`


def test_chain_names_follow_kube_proxy():
    # the examples in kube-proxy's servicePortChainNameBase / servicePortEndpointChainNameBase
    assert nftables.hash_and_truncate("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert nftables.hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80") == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    long = nftables.hash_and_truncate("x" * 300)
    assert len(long) == 240 and long.endswith("...")


def test_affinity_sets_carry_the_timeout():
    state, slices = SMALL["affinity"]()
    script = nftables.render(state, "worker1", slices)
    sets = {n: body for n, (kind, body) in blocks(script).items() if n.startswith("affinity-")}
    assert len(sets) == 2
    for body in sets.values():
        assert body == ["type ipv4_addr", "flags dynamic,timeout", "timeout 60s"]
    svc_chain = next(r for n, r in chains(script).items() if n.startswith("service-") and "/" in n)
    # affinity first, then the spread; each endpoint chain remembers the client
    assert [r.split(" goto ")[0] for r in svc_chain[1:3]] == [f"ip saddr @{n}" for n in sets]
    assert svc_chain[3].startswith("numgen random mod 2 vmap")
    for n in sets:
        ep = chains(script)["endpoint-" + n[len("affinity-"):]]
        assert ep[1] == f"update @{n} {{ ip saddr }}"


def test_etp_local_keeps_the_client_and_drops_without_local_endpoints():
    state, slices = SMALL["etp-local"]()
    with_local = nftables.render(state, "worker1", slices)
    ext = next(r for n, r in chains(with_local).items() if n.startswith("external-"))
    assert "jump mark-for-masquerade" not in ext                       # no SNAT for outside clients
    assert ext[0].startswith("ip saddr 10.244.0.0/16 goto service-")   # pods short-circuit to all endpoints
    assert ext[-1].startswith("goto local-")
    assert element_map(with_local, "no-endpoint-nodeports") == {}

    without = nftables.render(state, "worker2", slices)
    ext = next(r for n, r in chains(without).items() if n.startswith("external-"))
    assert not any(r.startswith("goto local-") for r in ext)
    assert not any(n.startswith("local-") for n in chains(without))
    assert element_map(without, "no-endpoint-nodeports") == {"tcp . 30090": "drop"}
    assert element_map(without, "service-nodeports")["tcp . 30090"].startswith("goto external-")
    assert element_map(without, "service-ips")["10.96.0.51 . tcp . 80"].startswith("goto service-")


def test_etp_cluster_masquerades():
    state, slices = services_yaml()
    ext = next(r for n, r in chains(nftables.render(state, "worker1", slices)).items()
               if n.startswith("external-") and "backend-nodeport" in n)
    assert ext[0] == "jump mark-for-masquerade" and ext[1].startswith("goto service-")


def test_nodeports_answer_on_the_node_address():
    state, slices = services_yaml()
    for node in state.nodes:
        script = nftables.render(state, node.name, slices)
        assert elements(script, "nodeport-ips") == [node.ip]
        assert set(element_map(script, "service-nodeports")) == {"tcp . 30080", "tcp . 30081"}


def test_udp():
    state, slices = SMALL["udp"]()
    script = nftables.render(state, "worker1", slices)
    assert set(element_map(script, "service-ips")) == {"10.96.0.10 . udp . 53"}
    assert "udp dport 53" in script and "meta l4proto udp dnat to" in script and " tcp " not in script


def test_no_endpoints_reject():
    state, slices = SMALL["no-endpoints"]()
    script = nftables.render(state, "worker1", slices)
    assert element_map(script, "service-ips") == {} and element_map(script, "service-nodeports") == {}
    assert element_map(script, "no-endpoint-services") == {"10.96.0.52 . tcp . 80": "goto reject-chain",
                                                          "10.96.0.53 . tcp . 80": "goto reject-chain"}
    assert element_map(script, "no-endpoint-nodeports") == {"tcp . 30091": "goto reject-chain"}
    assert 'comment "default/nobody"' in script
    assert not [n for n in chains(script) if "/" in n]


def test_itp_local():
    state, slices = SMALL["itp-local"]()
    here = nftables.render(state, "worker1", slices)
    assert element_map(here, "service-ips")["10.96.0.54 . tcp . 80"].startswith("goto local-")
    assert not [n for n in chains(here) if n.startswith("service-") and "/" in n]
    away = nftables.render(state, "worker2", slices)
    assert element_map(away, "no-endpoint-services") == {"10.96.0.54 . tcp . 80": "drop"}
    assert not [n for n in chains(away) if "/" in n]


def test_render_is_deterministic():
    state, slices = services_yaml()
    first = nftables.render(state, "worker1", slices)
    shuffled = replace(state, services=tuple(reversed(state.services)))
    assert nftables.render(state, "worker1", slices) == first
    assert nftables.render(shuffled, "worker1", tuple(reversed(slices))) == first
    assert nftables.render(state, state.node("worker1"), slices) == first


def test_render_replaces_the_table_in_one_script():
    state, slices = services_yaml()
    lines = nftables.render(state, "worker1", slices).splitlines()
    body = [l for l in lines if not l.startswith("#")]
    assert body[:3] == ["add table ip kube-proxy", "delete table ip kube-proxy", "table ip kube-proxy {"]
    assert body[-1] == "}"


# --- partial sync ---

def test_update_without_changes_is_empty():
    state, slices = services_yaml()
    assert nftables.render_update(state, state, "worker1", slices, slices) == ""


def test_update_touches_only_what_changed():
    (old, old_slices), (new, new_slices) = changed_services_yaml()
    script = nftables.render_update(old, new, "worker1", old_slices, new_slices)
    lines = [l for l in script.splitlines() if not l.startswith("#")]
    assert not any("table" in l.split(" ip kube-proxy")[0] for l in lines)   # never add/delete the table
    touched = {m for l in lines for m in re.findall(r"default/([a-z-]+)/", l)}
    assert touched == {"added", "sticky", "node-local"}
    # the endpoint that left loses its chain and affinity set; the others keep their sets
    assert "delete set ip kube-proxy affinity-H3W2JPS2-default/sticky/tcp/__10.244.2.2/8080" in lines
    assert not any(l.startswith("delete set") and "10.244.1.2" in l for l in lines)
    assert "delete element ip kube-proxy service-ips { 10.99.241.197 . tcp . 80 }" in lines
    assert any(l.startswith("add element ip kube-proxy service-ips { 10.96.0.200 . tcp . 80 : goto service-") for l in lines)
    # references go before what they refer to is deleted, and after it is created
    index = {l: i for i, l in enumerate(lines)}
    stale = "endpoint-H3W2JPS2-default/sticky/tcp/__10.244.2.2/8080"
    assert index["flush chain ip kube-proxy service-EDE2N7RF-default/sticky/tcp/"] < index[f"delete chain ip kube-proxy {stale}"]
    created = next(i for l, i in index.items() if l.startswith("add chain ip kube-proxy service-") and "added" in l)
    used = next(i for l, i in index.items() if l.startswith("add element ip kube-proxy service-ips"))
    assert created < used


def test_update_affinity_timeout_recreates_the_sets():
    state, slices = SMALL["affinity"]()
    longer = replace(state, services=tuple(replace(s, affinity_timeout=120) for s in state.services))
    lines = nftables.render_update(state, longer, "worker1", slices, slices).splitlines()
    assert sum(l.startswith("delete set") for l in lines) == 2
    assert sum(l.startswith("add set") and "timeout 120s" in l for l in lines) == 2
    # the rules that use the sets are flushed first and written again after
    first_delete = next(i for i, l in enumerate(lines) if l.startswith("delete set"))
    assert all(i < first_delete for i, l in enumerate(lines) if l.startswith("flush chain"))


def test_update_adding_one_service_to_1000_is_small():
    state, slices = big_state(1000)
    new_state, new_slices = one_more(state, slices)
    script = nftables.render_update(state, new_state, "worker1", slices, new_slices)
    lines = script.splitlines()
    assert len(lines) < 40, script
    assert not re.search(r"svc-\d{4}", script)
    assert "default/added/" in script
    # ... while the full render is proportional to the whole cluster
    assert len(nftables.render(new_state, "worker1", new_slices).splitlines()) > 1000 * 10


def test_update_removing_one_service_of_1000_is_small():
    state, slices = big_state(1000)
    gone = replace(state, services=state.services[1:])
    script = nftables.render_update(state, gone, "worker2", slices, slices[1:])
    assert len(script.splitlines()) < 40, script
    assert set(re.findall(r"svc-\d{4}", script)) == {"svc-0000"}


# --- ip-masq-agent ---

def test_masq_agent():
    state, _ = services_yaml()
    script = nftables.masq_agent_rules(state)
    assert "table ip ip-masq-agent {" in script and "kube-proxy" not in script
    assert "elements = { 10.96.0.0/12, 10.244.0.0/16 }" in script
    assert "ip saddr 10.244.0.0/16 ip daddr != @non-masquerade-cidrs fib daddr type != local masquerade" in script
    assert "type nat hook postrouting priority 110; policy accept;" in script
