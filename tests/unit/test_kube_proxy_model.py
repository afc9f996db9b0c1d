"""lab.kube_proxy.model: the endpoints of a Service port and CategorizeEndpoints, table-driven,
after kube-proxy's pkg/proxy/topology_test.go (without topology hints). Both renderers take these
decisions as they are; test_kube_proxy_packets.py checks that the rules carry them out."""
from __future__ import annotations

import pytest

from lab.controlplane.state import (
    EndpointPortState, EndpointSliceState, EndpointState, ServicePortState, ServiceState,
)
from lab.kube_proxy.model import Endpoint, categorize, port_endpoints, service_port_name, service_ports
from tests.unit.test_kube_proxy_packets import STATE, slices_of

NODE = "n1"
CONDITIONS = {   # (ready, serving, terminating)
    "ready": (True, True, False),
    "unready": (False, False, False),
    "terminating": (False, True, True),        # serving, terminating: the fallback
    "stopping": (False, False, True),          # terminating, no longer serving: never used
}


def svc(itp: str = "Cluster", etp: str = "Cluster", node_port: int = 0) -> tuple[ServiceState, ServicePortState]:
    port = ServicePortState("http", "TCP", 80, "8080", node_port=node_port or None)
    return ServiceState("default", "web", "NodePort" if node_port else "ClusterIP", "10.96.0.50", (port,),
                        external_traffic_policy=etp, internal_traffic_policy=itp), port


def eps(*specs: str) -> tuple[Endpoint, ...]:
    """"n1:ready" -> an endpoint 10.0.<i>.1:8080 on node n1, ready."""
    out = []
    for i, spec in enumerate(specs):
        node, condition = spec.split(":")
        out.append(Endpoint(f"10.0.{i}.1", 8080, node, *CONDITIONS[condition]))
    return tuple(out)


def ips(endpoints) -> list[str]:
    return [e.ip for e in endpoints]


# (what, service, endpoints, cluster, local, reachable, has_endpoints); endpoints by index
CATEGORIZE = [
    ("Cluster: every ready endpoint", svc(), ("n1:ready", "n2:ready", "n2:unready"), [0, 1], [], [0, 1], True),
    ("Cluster: ready ones win over terminating ones", svc(), ("n1:terminating", "n2:ready"), [1], [], [1], True),
    ("Cluster: none ready, the serving-terminating ones", svc(), ("n1:terminating", "n2:stopping", "n2:unready"),
     [0], [], [0], True),
    ("Cluster: none ready or serving: nothing, anywhere", svc(), ("n1:stopping", "n2:unready"), [], [], [], False),
    ("Cluster: no endpoints at all", svc(), (), [], [], [], False),
    ("iTP Local: this node's ready ones only; no Cluster endpoints at all", svc(itp="Local"),
     ("n1:ready", "n2:ready"), [], [0], [0], True),
    ("iTP Local: none here, some elsewhere: endpoints exist (so drop, not reject)", svc(itp="Local"),
     ("n2:ready",), [], [], [], True),
    ("iTP Local: this node's terminating one when nothing here is ready", svc(itp="Local"),
     ("n1:terminating", "n2:ready"), [], [0], [0], True),
    ("iTP Local: a terminating one elsewhere still counts as an endpoint", svc(itp="Local"),
     ("n2:terminating",), [], [], [], True),
    ("eTP Local NodePort: Cluster endpoints too (short-circuits), local ones for outside clients",
     svc(etp="Local", node_port=30090), ("n1:ready", "n2:ready"), [0, 1], [0], [0, 1], True),
    ("eTP Local: local terminating, remote ready: both reachable, each for its own policy",
     svc(etp="Local", node_port=30090), ("n1:terminating", "n2:ready"), [1], [0], [0, 1], True),
    ("eTP Local on a ClusterIP Service has no meaning: no Local endpoints", svc(etp="Local"),
     ("n1:ready", "n2:ready"), [0, 1], [], [0, 1], True),
    ("iTP Local and NodePort: Cluster endpoints for external traffic", svc(itp="Local", node_port=30090),
     ("n1:ready", "n2:ready"), [0, 1], [0], [0, 1], True),
]


@pytest.mark.parametrize("what,service,specs,cluster,local,reachable,has", CATEGORIZE, ids=[c[0] for c in CATEGORIZE])
def test_categorize(what, service, specs, cluster, local, reachable, has):
    endpoints = eps(*specs)
    p = categorize(*service, endpoints, NODE)
    pick = lambda idx: [endpoints[i].ip for i in idx]   # noqa: E731
    assert (ips(p.cluster), ips(p.local), ips(p.reachable), p.has_endpoints) == \
        (pick(cluster), pick(local), pick(reachable), has)


# (what, service, endpoints, has_internal, has_external, uses_external_chain, no_endpoints_verdict);
# as in kube-proxy, has_external is computed for every port and only asked for NodePorts
VERDICTS = [
    ("ClusterIP with endpoints", svc(), ("n2:ready",), True, True, False, "drop"),
    ("ClusterIP without endpoints: reject", svc(), (), False, False, False, "reject"),
    ("iTP Local, none here: drop", svc(itp="Local"), ("n2:ready",), False, True, False, "drop"),
    ("eTP Local, none here: ClusterIP works, NodePort drops, external chain still there for pods",
     svc(etp="Local", node_port=30090), ("n2:ready",), True, False, True, "drop"),
    ("eTP Local, one here", svc(etp="Local", node_port=30090), ("n1:ready",), True, True, True, "drop"),
    ("NodePort without endpoints: no external chain, reject", svc(node_port=30090), (), False, False, False, "reject"),
]


@pytest.mark.parametrize("what,service,specs,internal,external,chain,verdict", VERDICTS, ids=[v[0] for v in VERDICTS])
def test_where_traffic_goes(what, service, specs, internal, external, chain, verdict):
    p = categorize(*service, eps(*specs), NODE)
    assert (p.has_internal, p.has_external, p.uses_external_chain, p.no_endpoints_verdict) == \
        (internal, external, chain, verdict)


def slice_(name: str, ports: dict[str, int], *endpoints: tuple[str, bool], service: str = "web") -> EndpointSliceState:
    return EndpointSliceState("default", name, service, tuple(EndpointPortState(n, "TCP", p) for n, p in ports.items()),
                              tuple(EndpointState(ip, NODE, f"default/{ip}", ready=ready) for ip, ready in endpoints))


def test_port_endpoints_follow_the_slices():
    service, port = svc()
    slices = [
        slice_("web-b", {"http": 9090}, ("10.0.0.9", True), ("10.0.0.10", False)),   # named port differs per pod
        slice_("web-a", {"http": 8080}, ("10.0.0.9", True)),
        slice_("web-c", {"other": 8080}, ("10.0.0.7", True)),                         # another port of the Service
        slice_("api-a", {"http": 8080}, ("10.0.0.8", True), service="api"),           # another Service
    ]
    got = port_endpoints(service, port, slices)
    # every condition kept (categorize decides); each ip:port once; sorted as kube-proxy sorts: by "ip:port"
    assert [(str(e), e.ready) for e in got] == [("10.0.0.10:9090", False), ("10.0.0.9:8080", True),
                                                ("10.0.0.9:9090", True)]


def test_service_port_name():
    backend, sticky = STATE.service("default", "backend"), STATE.service("default", "sticky")
    assert [service_port_name(backend, p) for p in backend.ports] == ["default/backend:http", "default/backend:dns"]
    assert service_port_name(sticky, sticky.ports[0]) == "default/sticky"


def test_service_ports_skip_headless_and_follow_only():
    names = [p.spn for p in service_ports(STATE, "worker1", slices_of(STATE))]
    services = [n.split(":")[0] for n in names]
    assert "default/backend-headless" not in services and services == sorted(services)
    assert names[:2] == ["default/backend:http", "default/backend:dns"]     # ports in spec order
    only = service_ports(STATE, "worker1", slices_of(STATE), only={"default/sticky"})
    assert [p.spn for p in only] == ["default/sticky"]


@pytest.mark.parametrize("label", ["service.kubernetes.io/service-proxy-name", "service.kubernetes.io/headless"])
def test_services_with_a_skip_label_get_no_rules_in_either_mode(label):
    """kube-proxy watches Services through a label selector that leaves these out (any value)."""
    from lab.controlplane.plan import plan
    from lab.kube_proxy import iptables, nftables
    from lab.topology.model import Topology

    def topo(labels: dict) -> Topology:
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "skipped", "labels": labels},
                   "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}
        return Topology.model_validate({"name": "t", "cluster": {"dns": {"enabled": False}},
                                        "nodes": [{"name": "a"}], "manifests": [service]})

    skipped, plain = plan(topo({label: "other-proxy"})), plan(topo({"app": "x"}))
    assert not skipped.services[0].proxied and plain.services[0].proxied
    ip = skipped.services[0].cluster_ip
    assert service_ports(skipped, "a", []) == [] and len(service_ports(plain, "a", [])) == 1
    for render in (lambda s: iptables.render(s, "a", []), lambda s: nftables.render(s, s.nodes[0], [])):
        assert ip not in render(skipped) and ip in render(plain)
