"""The EndpointSlice controller (lab.controlplane.endpoints): selection, named targetPorts, one slice
per port mapping, readiness conditions. Pure: planned ClusterStates and a readiness map."""
from __future__ import annotations

import re

import pytest

from lab.controlplane.endpoints import endpoint_slices, initial_readiness, selects, slices_for, target_port
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, EndpointPortState
from lab.topology.model import Topology
from tests.unit.golden import shipped_state


# --- builders ---

def pod(name, labels=None, ports=None, namespace=None, node="n1", probe=None, host_network=False, containers=None):
    meta = {"name": name, "labels": labels if labels is not None else {"app": "web"},
            **({"namespace": namespace} if namespace else {})}
    if containers is None:
        c = {"name": "c", "image": "netexec", "ports": ports if ports is not None else [{"containerPort": 8080}]}
        if probe:
            c["readinessProbe"] = probe
        containers = [c]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "hostNetwork": host_network, "containers": containers}}


def service(name, ports=None, selector="default", namespace=None, **spec):
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    sel = {"app": "web"} if selector == "default" else selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {**({"selector": sel} if sel is not None else {}),
                     "ports": ports or [{"port": 80, "targetPort": 8080}], **spec}}


def state_of(*manifests, namespaces=()) -> ClusterState:
    ns = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in namespaces]
    return plan(Topology.model_validate({"name": "ep", "cluster": {"dns": {"enabled": False}},
                                         "nodes": [{"name": "n1"}, {"name": "n2"}],
                                         "manifests": [*ns, *manifests]}))


def slices_of(state: ClusterState, name: str, ready=None, namespace="default"):
    return slices_for(state.service(namespace, name), state, ready or {})


def addresses(sl) -> list[str]:
    return [e.address for e in sl.endpoints]


def ip(state: ClusterState, name: str, namespace="default") -> str:
    return next(p.ip for p in state.pods if p.name == name and p.namespace == namespace)


HTTP = [{"name": "http", "containerPort": 8080}]


# --- selection ---

def test_selector_matches_a_subset_of_the_labels():
    st = state_of(pod("a", labels={"app": "web", "tier": "front"}), pod("b", labels={"app": "db"}),
                  pod("c", labels={"tier": "front"}), service("s", selector={"app": "web"}),
                  service("both", selector={"app": "web", "tier": "front"}))
    s = st.service("default", "s")
    assert [p.name for p in st.pods if selects(s, p)] == ["a"]
    both = st.service("default", "both")
    assert [p.name for p in st.pods if selects(both, p)] == ["a"]


def test_pods_in_another_namespace_are_not_selected():
    st = state_of(pod("here"), pod("there", namespace="team-a"), service("s"), namespaces=["team-a"])
    (sl,) = slices_of(st, "s")
    assert [e.pod for e in sl.endpoints] == ["default/here"]


def test_a_service_in_a_namespace_selects_its_own_pods():
    st = state_of(pod("here"), pod("there", namespace="team-a"), service("s", namespace="team-a"),
                  namespaces=["team-a"])
    (sl,) = slices_of(st, "s", namespace="team-a")
    assert sl.namespace == "team-a"
    assert [e.pod for e in sl.endpoints] == ["team-a/there"]


def test_a_service_without_selector_gets_no_slice():
    st = state_of(pod("a"), service("external", selector=None))
    assert st.service("default", "external").selector is None
    assert not any(selects(st.service("default", "external"), p) for p in st.pods)
    assert endpoint_slices(st) == ()


def test_a_service_with_a_selector_and_no_pods_gets_one_empty_slice():
    st = state_of(pod("a", labels={"app": "other"}), service("lonely"))
    (sl,) = endpoint_slices(st)
    assert sl.service == "lonely" and sl.namespace == "default"
    assert sl.ports == () and sl.endpoints == ()


def test_hostnetwork_pods_are_endpoints_at_their_node_ip():
    st = state_of(pod("agent", host_network=True, node="n2"), service("s"))
    (sl,) = slices_of(st, "s")
    assert addresses(sl) == [st.node("n2").ip]
    assert sl.endpoints[0].node == "n2"


# --- target ports ---

def test_numeric_target_port_is_used_as_is_even_if_no_container_declares_it():
    st = state_of(pod("a", ports=[]), service("s", ports=[{"port": 80, "targetPort": 9999}]))
    (sl,) = slices_of(st, "s")
    assert sl.ports == (EndpointPortState("", "TCP", 9999),)
    assert target_port(st.pods[0], "9999", "TCP") == 9999


def test_target_port_defaults_to_the_service_port():
    st = state_of(pod("a"), service("s", ports=[{"port": 8080}]))
    (sl,) = slices_of(st, "s")
    assert sl.ports == (EndpointPortState("", "TCP", 8080),)


def test_named_target_port_resolves_in_the_pods_containers():
    st = state_of(pod("a", containers=[
        {"name": "one", "image": "pause"},
        {"name": "two", "image": "netexec", "ports": [{"name": "web", "containerPort": 8081},
                                                      {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]))
    p = st.pods[0]
    assert target_port(p, "web", "TCP") == 8081
    assert target_port(p, "dns", "UDP") == 5353
    assert target_port(p, "dns", "TCP") is None  # the name must match with the Service port's protocol
    assert target_port(p, "nope", "TCP") is None


def test_named_target_ports_resolve_per_pod_into_one_slice_per_mapping():
    st = state_of(pod("a", ports=[{"name": "http", "containerPort": 8080}]),
                  pod("b", ports=[{"name": "http", "containerPort": 9090}]),
                  pod("c", ports=[{"name": "http", "containerPort": 8080}]),
                  service("s", ports=[{"name": "web", "port": 80, "targetPort": "http"}]))
    got = {sl.ports: [e.pod for e in sl.endpoints] for sl in slices_of(st, "s")}
    assert got == {
        (EndpointPortState("web", "TCP", 8080),): ["default/a", "default/c"],
        (EndpointPortState("web", "TCP", 9090),): ["default/b"],
    }


def test_pods_without_the_named_port_are_left_out():
    st = state_of(pod("a", ports=HTTP), pod("b", ports=[{"name": "other", "containerPort": 8080}]),
                  pod("c", ports=[]), service("s", ports=[{"port": 80, "targetPort": "http"}]))
    (sl,) = slices_of(st, "s")
    assert [e.pod for e in sl.endpoints] == ["default/a"]


def test_only_pods_without_the_named_port_give_one_empty_slice():
    st = state_of(pod("a", ports=[]), service("s", ports=[{"port": 80, "targetPort": "http"}]))
    (sl,) = slices_of(st, "s")
    assert sl.endpoints == () and sl.ports == ()


def test_a_pod_with_some_of_the_named_ports_serves_those():
    st = state_of(pod("full", ports=[{"name": "http", "containerPort": 8080},
                                     {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]),
                  pod("half", ports=HTTP),
                  service("s", ports=[{"name": "http", "port": 80, "targetPort": "http"},
                                      {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]))
    got = {sl.ports: [e.pod for e in sl.endpoints] for sl in slices_of(st, "s")}
    assert got == {
        (EndpointPortState("http", "TCP", 8080), EndpointPortState("dns", "UDP", 5353)): ["default/full"],
        (EndpointPortState("http", "TCP", 8080),): ["default/half"],
    }


# --- readiness ---

def test_readiness_conditions():
    st = state_of(pod("up"), pod("down"), service("s"), service("published", publishNotReadyAddresses=True))
    ready = {"default/up": True, "default/down": False}
    (sl,) = slices_of(st, "s", ready)
    assert [(e.pod, e.ready, e.serving, e.terminating) for e in sl.endpoints] == [
        ("default/up", True, True, False), ("default/down", False, False, False)]
    (pub,) = slices_of(st, "published", ready)
    assert [(e.pod, e.ready, e.serving) for e in pub.endpoints] == [
        ("default/up", True, True), ("default/down", True, False)]


def test_pods_missing_from_the_readiness_map_are_ready():
    st = state_of(pod("a"), service("s"))
    (sl,) = endpoint_slices(st)
    assert sl.endpoints[0].ready and sl.endpoints[0].serving
    (sl,) = endpoint_slices(st, {})
    assert sl.endpoints[0].ready


def test_unready_pods_stay_in_the_slice():
    st = state_of(pod("a"), pod("b"), service("s"))
    (sl,) = slices_of(st, "s", {"default/a": False, "default/b": False})
    assert addresses(sl) == [ip(st, "a"), ip(st, "b")]
    assert not any(e.ready for e in sl.endpoints)


def test_endpoints_carry_address_node_and_pod():
    st = state_of(pod("a", node="n1"), pod("b", node="n2"), service("s"))
    (sl,) = slices_of(st, "s")
    assert [(e.address, e.node, e.pod) for e in sl.endpoints] == [
        (ip(st, "a"), "n1", "default/a"), (ip(st, "b"), "n2", "default/b")]


def test_initial_readiness_marks_probed_pods_not_ready():
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    st = state_of(pod("probed", probe=probe), pod("plain"),
                  pod("mixed", containers=[{"name": "x", "image": "pause"},
                                           {"name": "y", "image": "netexec", "ports": [{"containerPort": 8080}],
                                            "readinessProbe": {"tcpSocket": {"port": 8080}}}]))
    assert initial_readiness(st) == {"default/probed": False, "default/plain": True, "default/mixed": False}


# --- slice names ---

def test_slice_names_are_deterministic_and_differ_per_mapping():
    def build():
        return state_of(pod("a", ports=[{"name": "http", "containerPort": 8080}]),
                        pod("b", ports=[{"name": "http", "containerPort": 9090}]),
                        service("s", ports=[{"port": 80, "targetPort": "http"}]))
    first, again = endpoint_slices(build()), endpoint_slices(build())
    assert [s.name for s in first] == [s.name for s in again]
    assert len({s.name for s in first}) == 2
    for s in first:
        assert re.fullmatch(r"s-[0-9a-f]{5}", s.name)


def test_slice_name_does_not_depend_on_readiness():
    st = state_of(pod("a"), service("s"))
    assert endpoint_slices(st, {"default/a": True})[0].name == endpoint_slices(st, {"default/a": False})[0].name


# --- the shipped services.yaml ---

@pytest.fixture(scope="module")
def shipped() -> ClusterState:
    return shipped_state("services", dns={"enabled": False})   # its own Services, not the kube-dns add-on


def test_services_yaml_slices(shipped):
    slices = endpoint_slices(shipped)
    assert [s.service for s in slices] == [s.name for s in shipped.services]  # one slice each
    backend = next(s for s in slices if s.service == "backend")
    assert backend.ports == (EndpointPortState("http", "TCP", 8080), EndpointPortState("dns", "UDP", 5353))
    assert sorted(e.node for e in backend.endpoints) == ["control-plane", "worker1", "worker2"]
    assert all(e.pod.startswith("default/backend-") for e in backend.endpoints)
    headless = next(s for s in slices if s.service == "backend-headless")
    assert headless.ports == (EndpointPortState("", "TCP", 8080),) and len(headless.endpoints) == 3


def test_services_yaml_with_initial_readiness(shipped):
    ready = initial_readiness(shipped)
    assert {k for k, v in ready.items() if not v} == {p.key for p in shipped.pods
                                                      if p.name.startswith(("backend-", "warming-"))}
    slices = {s.service: s for s in endpoint_slices(shipped, ready)}
    assert not any(e.ready for e in slices["warming"].endpoints)
    assert all(e.ready and not e.serving for e in slices["warming-published"].endpoints)
    assert len(slices["warming-published"].endpoints) == 2


def test_slices_by_service_groups_in_name_order():
    from lab.controlplane.endpoints import slices_by_service

    st = state_of(pod("a", ports=[{"name": "http", "containerPort": 8080}]),
                  pod("b", ports=[{"name": "http", "containerPort": 9090}]),
                  pod("c", namespace="team-a"),
                  service("s", ports=[{"port": 80, "targetPort": "http"}]), service("t"),
                  service("s", namespace="team-a"), namespaces=["team-a"])
    got = slices_by_service(endpoint_slices(st))
    assert set(got) == {("default", "s"), ("default", "t"), ("team-a", "s")}
    assert [sl.name for sl in got[("default", "s")]] == sorted(sl.name for sl in slices_of(st, "s"))
    assert len(got[("default", "s")]) == 2
    assert [e.pod for sl in got[("team-a", "s")] for e in sl.endpoints] == ["team-a/c"]
