"""Planning a topology into a ClusterState: address plan, scheduling, names, determinism, MTU.

Pure: builds Topology objects from dicts / the shipped YAML files and calls lab.controlplane.plan.plan.
"""
from __future__ import annotations

import copy
import json
import re
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from lab.controlplane import naming
from lab.controlplane.plan import plan
from lab.controlplane.scheduler import schedule
from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.topology.model import Topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
SAFE = "bcdfghjklmnpqrstvwxz2456789"


# --- builders ---

def shipped(name: str) -> dict:
    return yaml.safe_load((TOPOLOGIES / f"{name}.yaml").read_text())


def topo(doc: dict) -> Topology:
    return Topology.model_validate(doc)


def pod(name: str, node: str | None = None, namespace: str | None = None, host_network: bool = False,
        containers: list | None = None, labels: dict | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {}), **({"labels": labels} if labels else {})}
    spec = {"containers": containers or [{"name": "web", "image": "netexec", "ports": [{"containerPort": 8080}]}]}
    if node:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def deployment(name: str, replicas: int, port: int = 8080, node: str | None = None, namespace: str | None = None,
               image: str = "netexec") -> dict:
    spec = {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": port}]}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }


def cluster(nodes=("n1", "n2"), manifests=(), hosts=(), name="t", **sections) -> dict:
    """A topology of exactly these pods: cluster DNS (on by default) is off unless `cluster` says otherwise."""
    sections["cluster"] = {"dns": {"enabled": False}, **sections.get("cluster", {})}
    return {"name": name, "nodes": [{"name": n} for n in nodes], "hosts": [{"name": h} for h in hosts],
            "manifests": list(manifests), **sections}


@pytest.fixture(scope="module")
def vxlan() -> ClusterState:
    return plan(topo(shipped("vxlan")))


def by_name(state: ClusterState) -> dict:
    return {p.name: p for p in state.pods}


# --- podCIDRs and underlay ---

def test_node_pod_cidrs_in_node_order(vxlan):
    assert [(n.name, n.pod_cidr, n.gateway) for n in vxlan.nodes] == [
        ("control-plane", "10.244.0.0/24", "10.244.0.1"),
        ("worker1", "10.244.1.0/24", "10.244.1.1"),
        ("worker2", "10.244.2.0/24", "10.244.2.1"),
    ]
    assert vxlan.pod_cidr == "10.244.0.0/16" and vxlan.node_mask == 24


def test_node_pod_cidrs_with_mask_26():
    s = plan(topo(cluster(nodes=("a", "b", "c"), cluster={"nodeCIDRMaskSize": 26},
                          manifests=[pod("p", "b"), pod("q", "c")])))
    assert [n.pod_cidr for n in s.nodes] == ["10.244.0.0/26", "10.244.0.64/26", "10.244.0.128/26"]
    assert [n.gateway for n in s.nodes] == ["10.244.0.1", "10.244.0.65", "10.244.0.129"]
    assert by_name(s)["p"].ip == "10.244.0.66"
    assert by_name(s)["q"].ip == "10.244.0.130"


def test_node_pod_cidrs_from_a_custom_cluster_cidr():
    s = plan(topo(cluster(nodes=("a", "b"), cluster={"podCIDR": "192.168.0.0/20", "nodeCIDRMaskSize": 23})))
    assert [n.pod_cidr for n in s.nodes] == ["192.168.0.0/23", "192.168.2.0/23"]
    assert [n.gateway for n in s.nodes] == ["192.168.0.1", "192.168.2.1"]


def test_every_pod_ip_lies_in_its_nodes_pod_cidr(vxlan):
    for p in vxlan.pods:
        if not p.host_network:
            assert IPv4Address(p.ip) in IPv4Network(vxlan.node(p.node).pod_cidr), p


def test_underlay_nodes_from_dot_2_then_hosts(vxlan):
    assert [n.ip for n in vxlan.nodes] == ["172.18.0.2", "172.18.0.3", "172.18.0.4"]
    assert [(h.name, h.ip, h.netns) for h in vxlan.hosts] == [("internet", "172.18.0.5", "vxlan-internet")]
    assert vxlan.underlay_subnet == "172.18.0.0/24"


def test_underlay_custom_subnet_hosts_after_nodes():
    s = plan(topo(cluster(nodes=("a", "b"), hosts=("h1", "h2"), underlay={"subnet": "192.168.50.0/24"})))
    assert [n.ip for n in s.nodes] == ["192.168.50.2", "192.168.50.3"]
    assert [h.ip for h in s.hosts] == ["192.168.50.4", "192.168.50.5"]


def test_underlay_too_small_raises_laberror():
    # a /29 has .2 ... .6 for machines: five of them
    assert len(plan(topo(cluster(nodes=("a", "b", "c"), hosts=("h", "i"), underlay={"subnet": "10.0.0.0/29"}))).hosts) == 2
    with pytest.raises(LabError, match="room for 5 machines, 6 needed"):
        plan(topo(cluster(nodes=("a", "b", "c"), hosts=("h", "i", "j"), underlay={"subnet": "10.0.0.0/29"})))


def test_too_many_nodes_for_the_cluster_cidr_raises_laberror():
    with pytest.raises(LabError, match="room for 4 /26 node subnets, 5 needed"):
        plan(topo(cluster(nodes=("a", "b", "c", "d", "e"), cluster={"podCIDR": "10.1.0.0/24", "nodeCIDRMaskSize": 26})))


# --- pod IPs ---

def test_pod_ips_from_dot_2_in_manifest_order_per_node():
    s = plan(topo(cluster(nodes=("a", "b"), manifests=[
        pod("p1", "a"), pod("p2", "b"), pod("p3", "a"), pod("p4", "b"), pod("p5", "a")])))
    ips = {p.name: (p.node, p.ip) for p in s.pods}
    assert ips == {
        "p1": ("a", "10.244.0.2"), "p3": ("a", "10.244.0.3"), "p5": ("a", "10.244.0.4"),
        "p2": ("b", "10.244.1.2"), "p4": ("b", "10.244.1.3"),
    }
    # the gateway (.1) is never handed to a pod
    assert all(not p.ip.endswith(".1") for p in s.pods)


def test_vxlan_pod_placement_and_ips(vxlan):
    got = [(p.name.split("-")[0], p.node, p.ip) for p in vxlan.pods]
    assert got == [
        ("backend", "control-plane", "10.244.0.2"),
        ("backend", "control-plane", "10.244.0.3"),
        ("backend", "worker1", "10.244.1.2"),
        ("frontend", "worker2", "10.244.2.2"),
        ("frontend", "control-plane", "10.244.0.4"),
        ("sidecar", "worker2", "10.244.2.3"),
        ("node", "worker1", "172.18.0.3"),
        ("kube", "control-plane", "10.244.0.5"),    # the kube-dns add-on (cluster DNS is on by default), last
    ]
    assert len({p.ip for p in vxlan.pods}) == len(vxlan.pods)


def test_hostnetwork_pod_gets_node_ip_and_netns(vxlan):
    agent = by_name(vxlan)["node-agent"]
    worker1 = vxlan.node("worker1")
    assert agent.host_network is True
    assert agent.ip == worker1.ip == "172.18.0.3"
    assert agent.netns == worker1.netns == "vxlan-worker1"


def test_hostnetwork_pod_does_not_consume_a_pod_ip():
    s = plan(topo(cluster(nodes=("a",), manifests=[pod("agent", "a", host_network=True), pod("web", "a"),
                                                    pod("agent2", "a", host_network=True), pod("web2", "a")])))
    pods = by_name(s)
    assert pods["agent"].ip == pods["agent2"].ip == "172.18.0.2"
    assert pods["web"].ip == "10.244.0.2"
    assert pods["web2"].ip == "10.244.0.3"


# --- scheduling ---

@pytest.mark.parametrize("nodes, wanted, placed", [
    pytest.param(["a", "b", "c"], [None] * 5, ["a", "b", "c", "a", "b"], id="round-robin-on-empty-nodes"),
    pytest.param(["a", "b"], ["b", "b", None, None, None], ["b", "b", "a", "a", "a"], id="pins-count-before-spreading"),
    pytest.param(["a", "b", "c"], [None, "a", None], ["b", "a", "c"], id="later-pin-already-counted"),
    pytest.param(["a", "b"], ["a", "a", "a"], ["a", "a", "a"], id="pins-always-win"),
    pytest.param(["x", "y", "z"], ["z", None, None, None], ["z", "x", "y", "x"], id="ties-in-node-order-not-name-order"),
    pytest.param(["c", "b", "a"], [None, None, None, None], ["c", "b", "a", "c"], id="node-order-is-list-order"),
    pytest.param(["a"], [], [], id="no-pods"),
])
def test_schedule(nodes, wanted, placed):
    assert schedule(nodes, wanted) == placed


def test_schedule_counts_hostnetwork_pods_as_load():
    s = plan(topo(cluster(nodes=("a", "b"), manifests=[pod("agent", "a", host_network=True), pod("free")])))
    assert by_name(s)["free"].node == "b"


# --- Deployment pod names ---

def _names(state: ClusterState, deploy: str) -> list[str]:
    return [p.name for p in state.pods if p.owner == f"Deployment/{deploy}"]


def test_deployment_pod_names_shape_and_label(vxlan):
    for deploy, replicas in (("backend", 3), ("frontend", 2)):
        names = _names(vxlan, deploy)
        assert len(names) == replicas
        rx = re.compile(rf"^{deploy}-([{SAFE}]+)-([{SAFE}]{{5}})$")
        hashes = set()
        for n in names:
            m = rx.match(n)
            assert m, n
            hashes.add(m.group(1))
        assert len(hashes) == 1  # one ReplicaSet
        (h,) = hashes
        for p in (p for p in vxlan.pods if p.owner == f"Deployment/{deploy}"):
            assert p.label_dict() == {"app": deploy, "pod-template-hash": h}
            assert p.netns == f"vxlan-default-{p.name}"


def test_deployment_pod_names_deterministic_across_plans():
    a, b = plan(topo(shipped("vxlan"))), plan(topo(shipped("vxlan")))
    assert [p.name for p in a.pods] == [p.name for p in b.pods]


def test_deployment_pod_names_pinned_for_the_shipped_vxlan_topology(vxlan):
    """The names users see in `lab get pods`: changing them is a visible change, make it on purpose.
    (The hash covers the template's non-default fields, so a new optional field leaves it alone.)"""
    assert _names(vxlan, "backend") == ["backend-6547bd88cf-tr6qc", "backend-6547bd88cf-p52mc", "backend-6547bd88cf-t9hfl"]
    assert _names(vxlan, "frontend") == ["frontend-584ff58f57-5jhf4", "frontend-584ff58f57-7hpjh"]


def test_different_templates_give_different_hashes():
    s1 = plan(topo(cluster(manifests=[deployment("web", 2, port=8080)])))
    s2 = plan(topo(cluster(manifests=[deployment("web", 2, port=8081)])))
    s3 = plan(topo(cluster(manifests=[deployment("web", 2, image="pause")])))
    h = [{p.label_dict()["pod-template-hash"] for p in s.pods} for s in (s1, s2, s3)]
    assert all(len(x) == 1 for x in h)
    assert len(set.union(*h)) == 3
    assert not set(_names(s1, "web")) & set(_names(s2, "web"))


def test_replica_count_is_not_part_of_the_template_hash_and_scaling_keeps_names():
    s2 = plan(topo(cluster(manifests=[deployment("web", 2)])))
    s5 = plan(topo(cluster(manifests=[deployment("web", 5)])))
    assert _names(s5, "web")[:2] == _names(s2, "web")


def test_deployment_pod_names_unique_within_a_deployment():
    s = plan(topo(cluster(nodes=("a", "b", "c", "d"), manifests=[deployment("web", 300)])))
    names = _names(s, "web")
    assert len(names) == 300 and len(set(names)) == 300
    assert len({p.netns for p in s.pods}) == 300


def test_same_deployment_in_two_namespaces():
    s = plan(topo(cluster(manifests=[deployment("web", 2, namespace="a"), deployment("web", 2, namespace="b")])))
    a = [p for p in s.pods if p.namespace == "a"]
    b = [p for p in s.pods if p.namespace == "b"]
    assert len(a) == len(b) == 2
    # same template: same hash; the suffixes differ because the namespace is part of them
    assert {p.label_dict()["pod-template-hash"] for p in a + b} == {a[0].label_dict()["pod-template-hash"]}
    assert not {p.name for p in a} & {p.name for p in b}
    assert {p.netns for p in a}.isdisjoint({p.netns for p in b})


def test_deployment_with_zero_replicas_has_no_pods():
    s = plan(topo(cluster(manifests=[deployment("web", 0), pod("solo")])))
    assert [p.name for p in s.pods] == ["solo"]


# --- determinism and the JSON record ---

RICH = cluster(
    name="rich", nodes=("cp", "w1"), hosts=("internet",),
    cluster={"network": "host-gw", "cni": "ptp", "mtu": 1400, "nodeCIDRMaskSize": 25},
    underlay={"subnet": "10.9.0.0/24", "mtu": 9000, "switch": "ovs"},
    manifests=[
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
        deployment("api", 2, namespace="team-a"),
        pod("tool", "w1", containers=[{"name": "sh", "image": "busybox", "command": ["sh", "-c"], "args": ["sleep 1"],
                                       "env": [{"name": "A", "value": "1"}, {"name": "B"}],
                                       "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"}]}]),
        pod("agent", "cp", host_network=True, labels={"tier": "infra", "app": "agent"}),
    ],
    checks=[{"from": "team-a/deploy/api", "to": "pod/tool:53", "protocol": "UDP", "expect": "deny"},
            {"name": "named", "from": "host/internet", "to": "team-a/deploy/api", "expect": "allow"}],
)
RICH["nodes"][0].update(role="control-plane", labels={"zone": "z1", "disk": "ssd"})


def test_plan_is_deterministic():
    assert plan(topo(RICH), source="x.yaml") == plan(topo(copy.deepcopy(RICH)), source="x.yaml")
    assert plan(topo(shipped("vxlan"))) == plan(topo(shipped("vxlan")))


@pytest.mark.parametrize("doc", [pytest.param(RICH, id="rich"), pytest.param(shipped("vxlan"), id="vxlan"),
                                 pytest.param(shipped("host-gw"), id="host-gw")])
def test_json_round_trip(doc):
    s = plan(topo(doc), source="/tmp/some.yaml")
    back = ClusterState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    assert back.to_dict() == s.to_dict()


def test_rich_plan_values():
    s = plan(topo(RICH), source="x.yaml")
    assert (s.network, s.cni, s.mtu, s.underlay_mtu, s.switch, s.source) == ("host-gw", "ptp", 1400, 9000, "ovs", "x.yaml")
    assert s.namespaces == ("default", "kube-system", "team-a")
    assert s.node("cp").labels == (("disk", "ssd"), ("zone", "z1"))
    assert s.node("cp").role == "control-plane" and s.node("w1").role == "worker"
    tool = by_name(s)["tool"]
    (c,) = tool.containers
    assert c.argv == ("sh", "-c", "sleep 1")  # command + args for a program image
    assert c.env == (("A", "1"), ("B", ""))
    assert [(x.port, x.protocol, x.name) for x in c.ports] == [(53, "UDP", "dns")]
    assert by_name(s)["agent"].labels == (("app", "agent"), ("tier", "infra"))
    assert [(c.name, c.src, c.dst, c.protocol, c.expect) for c in s.checks] == [
        ("team-a/deploy/api -> pod/tool:53 (UDP) deny", "team-a/deploy/api", "pod/tool:53", "UDP", "deny"),
        ("named", "host/internet", "team-a/deploy/api", "TCP", "allow"),
    ]


def test_netexec_argv_is_args_only():
    s = plan(topo(cluster(manifests=[pod("n", containers=[
        {"name": "a", "image": "netexec", "command": ["ignored"], "args": ["--udp-port", "9"]}])])))
    assert s.pods[0].containers[0].argv == ("--udp-port", "9")


def test_namespaces_are_deduplicated():
    s = plan(topo(cluster(manifests=[
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
    ])))
    assert s.namespaces == ("default", "kube-system", "b", "a")


# --- capacity ---

def test_too_many_pods_for_a_node_names_the_node():
    doc = cluster(nodes=("small", "tiny"), cluster={"nodeCIDRMaskSize": 30},
                  manifests=[pod("a", "tiny"), pod("b", "small")])
    assert [p.ip for p in plan(topo(doc)).pods] == ["10.244.0.6", "10.244.0.2"]  # a /30 holds one pod
    doc["manifests"].append(pod("c", "tiny"))
    with pytest.raises(LabError, match=r"node tiny has 2 pods but its podCIDR 10\.244\.0\.4/30 holds 1"):
        plan(topo(doc))


def test_pod_capacity_of_a_26():
    # 64 addresses: network, gateway and broadcast leave 61 for pods
    ok = plan(topo(cluster(nodes=("only",), cluster={"nodeCIDRMaskSize": 26}, manifests=[deployment("web", 61)])))
    assert max(IPv4Address(p.ip) for p in ok.pods) == IPv4Address("10.244.0.62")
    with pytest.raises(LabError, match="node only has 62 pods"):
        plan(topo(cluster(nodes=("only",), cluster={"nodeCIDRMaskSize": 26}, manifests=[deployment("web", 62)])))


# --- network namespaces ---

def test_netns_names(vxlan):
    assert [n.netns for n in vxlan.nodes] == ["vxlan-control-plane", "vxlan-worker1", "vxlan-worker2"]
    assert by_name(vxlan)["sidecar-demo"].netns == "vxlan-default-sidecar-demo"
    s = plan(topo(cluster(name="lab1", manifests=[pod("web", namespace="team-a")])))
    assert s.pods[0].netns == "lab1-team-a-web"
    assert naming.node_netns("lab1", "n1") == s.nodes[0].netns == "lab1-n1"


def test_node_and_pod_netns_collision_raises():
    doc = cluster(name="lab", nodes=("default-web",), manifests=[pod("web")])
    with pytest.raises(LabError, match=r"pod default/web and node default-web would share .* lab-default-web"):
        plan(topo(doc))


def test_host_and_pod_netns_collision_raises():
    with pytest.raises(LabError, match="lab-default-web"):
        plan(topo(cluster(name="lab", nodes=("n",), hosts=("default-web",), manifests=[pod("web")])))


def test_two_pods_netns_collision_raises():
    doc = cluster(name="lab", manifests=[pod("c", namespace="a-b"), pod("b-c", namespace="a")])
    with pytest.raises(LabError, match=r"pod a/b-c and pod a-b/c would share .* lab-a-b-c"):
        plan(topo(doc))


def test_hostnetwork_pod_sharing_its_nodes_netns_is_not_a_collision():
    s = plan(topo(cluster(name="lab", nodes=("default-web",), manifests=[pod("web", host_network=True)])))
    assert s.pods[0].netns == "lab-default-web"


def test_netns_name_longer_than_name_max_is_rejected_at_plan_time():
    long_pod = "p" * 200  # a valid pod name (DNS subdomain, <= 253)
    doc = cluster(name="l" * 24, manifests=[pod(long_pod, namespace="n" * 63)])
    assert len(naming.pod_netns("l" * 24, "n" * 63, long_pod)) > 255
    with pytest.raises(LabError):
        plan(topo(doc))


# --- MTU ---

@pytest.mark.parametrize("network, underlay_mtu, explicit, want", [
    ("vxlan", 1500, None, 1450),
    ("vxlan", 9000, None, 8950),
    ("host-gw", 1500, None, 1500),
    ("host-gw", 9000, None, 9000),
    ("vxlan", 1500, 1400, 1400),
    ("host-gw", 1500, 1280, 1280),
    ("vxlan", 9000, 9000, 9000),  # explicit wins, even when it is unwise
])
def test_pod_mtu(network, underlay_mtu, explicit, want):
    spec = {"network": network, **({"mtu": explicit} if explicit else {})}
    t = topo(cluster(cluster=spec, underlay={"mtu": underlay_mtu}))
    s = plan(t)
    assert t.pod_mtu() == s.mtu == want
    assert s.underlay_mtu == underlay_mtu


def test_shipped_mtus(vxlan):
    assert vxlan.mtu == 1450
    assert plan(topo(shipped("host-gw"))).mtu == 1500


def test_switch_name_in_state(vxlan):
    assert vxlan.switch_name == naming.switch_name("vxlan")
    assert vxlan.switch == "linux-bridge"


# --- the other workload controllers ---

def workload(kind: str, name: str, replicas: int | None = 2, **spec) -> dict:
    template = {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": 80}]}]}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
            "spec": {**({"replicas": replicas} if replicas is not None else {}),
                     "selector": {"matchLabels": {"app": name}}, "template": template, **spec}}


def three_nodes(*manifests) -> ClusterState:
    return plan(topo({"name": "wl", "cluster": {"dns": {"enabled": False}},
                      "nodes": [{"name": n} for n in ("a", "b", "c")], "manifests": list(manifests)}))


def test_a_statefulset_names_its_pods_by_ordinal_each_with_its_hostname():
    s = three_nodes(workload("StatefulSet", "db", 3, serviceName="db"))
    pods = [p for p in s.pods if p.owner == "StatefulSet/db"]
    assert [p.name for p in pods] == ["db-0", "db-1", "db-2"]
    assert [(p.hostname, p.subdomain) for p in pods] == [(f"db-{i}", "db") for i in range(3)]
    assert [dict(p.labels)["statefulset.kubernetes.io/pod-name"] for p in pods] == ["db-0", "db-1", "db-2"]
    assert [dict(p.labels)["apps.kubernetes.io/pod-index"] for p in pods] == ["0", "1", "2"]
    assert sorted(p.node for p in pods) == ["a", "b", "c"]  # spread like any pods


def test_a_daemonset_puts_one_pod_on_every_node():
    s = three_nodes(workload("DaemonSet", "agent", None))
    pods = [p for p in s.pods if p.owner == "DaemonSet/agent"]
    assert sorted(p.node for p in pods) == ["a", "b", "c"]
    assert all(re.fullmatch(rf"agent-[{SAFE}]{{5}}", p.name) for p in pods)
    assert len({p.name for p in pods}) == 3


def test_a_replicaset_names_its_pods_with_a_suffix_and_keeps_them_on_replanning():
    s = three_nodes(workload("ReplicaSet", "web", 2))
    pods = [p for p in s.pods if p.owner == "ReplicaSet/web"]
    assert len(pods) == 2 and all(re.fullmatch(rf"web-[{SAFE}]{{5}}", p.name) for p in pods)
    again = three_nodes(workload("ReplicaSet", "web", 3))
    assert {p.name for p in pods} < {p.name for p in again.pods if p.owner == "ReplicaSet/web"}


# --- hostPorts: the scheduler's NodePorts filter ---

def web_with_host_port(replicas: int, port: int = 8080) -> dict:
    return workload("Deployment", "web", replicas) | {"spec": {
        **workload("Deployment", "web", replicas)["spec"],
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "c", "image": "netexec", "ports": [{"containerPort": 80, "hostPort": port}]}]}}}}


def test_pods_asking_for_one_hostport_go_to_different_nodes():
    s = three_nodes(pod("pinned", "a", containers=[{"name": "c", "image": "netexec",
                                                    "ports": [{"containerPort": 80, "hostPort": 8080}]}]),
                    web_with_host_port(2))
    web = [p for p in s.pods if p.owner == "Deployment/web"]
    assert sorted(p.node for p in web) == ["b", "c"]  # "a" has 8080 taken; the least-loaded rule alone would pick it
    assert {(x.port, x.host_port) for p in web for c in p.containers for x in c.ports} == {(80, 8080)}


def test_more_replicas_than_nodes_with_a_free_hostport_cannot_be_scheduled():
    with pytest.raises(LabError, match=r"cannot be scheduled: 0/3 nodes are available: 3 node\(s\) didn't have free "
                                       r"ports for the requested pod ports \(hostPort 8080/TCP\)"):
        three_nodes(web_with_host_port(4))


def test_other_ports_protocols_and_addresses_do_not_clash():
    from lab.topology.hostports import clash
    assert clash((8080, "TCP", ""), (8080, "TCP", "172.18.0.2"))
    assert not clash((8080, "TCP", ""), (8080, "UDP", ""))
    assert not clash((8080, "TCP", "172.18.0.2"), (8080, "TCP", "172.18.0.3"))
    assert schedule(["a"], [None, None], [frozenset({(80, "TCP", "")}), frozenset({(80, "UDP", "")})]) == ["a", "a"]


# --- a private cluster behind a NAT gateway ---

def test_the_nat_gateway_takes_the_first_addresses_and_public_hosts_the_public_segment():
    s = plan(topo({"name": "n", "underlay": {"subnet": "10.0.1.0/24"}, "public": {"subnet": "203.0.113.0/24"},
                   "nodes": [{"name": "a"}, {"name": "b"}],
                   "hosts": [{"name": "internet", "network": "public"}, {"name": "client"},
                             {"name": "nat", "natGateway": True}]}))
    hosts = {h.name: h for h in s.hosts}
    assert [h.name for h in s.hosts] == ["internet", "client", "nat"]  # as written
    assert (hosts["nat"].ip, hosts["nat"].public_ip) == ("10.0.1.1", "203.0.113.1")  # the nodes' default route
    assert (hosts["internet"].ip, hosts["internet"].network) == ("203.0.113.2", "public")
    assert hosts["client"].ip == "10.0.1.4" and [n.ip for n in s.nodes] == ["10.0.1.2", "10.0.1.3"]
    assert s.nat_gateway() == hosts["nat"] and [h.name for h in s.underlay_hosts()] == ["client", "nat"]
    assert s.public_subnet == "203.0.113.0/24"
    assert ClusterState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
