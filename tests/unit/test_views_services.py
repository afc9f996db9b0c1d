"""lab.views for Services: `lab get svc` / `lab get endpointslices` columns and objects, and the READY
column of pods with readiness. Pure: planned ClusterStates, hand-made EndpointSlices, a frozen clock."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from lab import views
from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import EndpointPortState, EndpointSliceState, EndpointState, container_key
from tests.unit.golden import shipped_state

NOW = 1_000_000.0
CREATED = NOW - 330  # AGE 5m30s


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(views, "time", SimpleNamespace(time=lambda: NOW))


@pytest.fixture(scope="module")
def state():
    return shipped_state("services")


@pytest.fixture(scope="module")
def slices(state):
    return endpoint_slices(state, {p.key: not p.name.startswith("warming-") for p in state.pods})


def rows_by_name(header, rows) -> dict[str, dict[str, str]]:
    return {r[header.index("NAME")]: dict(zip(header, r)) for r in rows}


def ep(address, ready=True, serving=None, node="n1", pod="default/p"):
    return EndpointState(address=address, node=node, pod=pod, ready=ready, serving=ready if serving is None else serving)


HTTP_PORT = (EndpointPortState("", "TCP", 8080),)


def slice_(name, endpoints=(), ports=HTTP_PORT, namespace="default", service="s"):
    return EndpointSliceState(namespace=namespace, name=name, service=service, ports=tuple(ports), endpoints=tuple(endpoints))


# --- service_rows ---

def test_service_columns_like_kubectl(state):
    header, rows = views.service_rows(state, CREATED, "default", wide=False)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "DATAPLANE"]
    got = rows_by_name(header, rows)
    assert got["backend"] == {"NAME": "backend", "TYPE": "ClusterIP", "CLUSTER-IP": "10.96.0.100",
                              "EXTERNAL-IP": "<none>", "PORT(S)": "80/TCP,53/UDP", "AGE": "5m30s",
                              "DATAPLANE": "kube-proxy/iptables"}
    assert got["backend-nodeport"]["TYPE"] == "NodePort"
    assert got["backend-nodeport"]["PORT(S)"] == "80:30080/TCP"
    assert got["backend-local"]["PORT(S)"] == "80:30081/TCP"
    assert got["backend-headless"]["CLUSTER-IP"] == "None"
    assert got["backend-headless"]["PORT(S)"] == "8080/TCP"
    assert got["sticky"]["CLUSTER-IP"] == state.service("default", "sticky").cluster_ip


def test_the_dataplane_column_names_what_serves_each_service(state):
    ebpf_state = shipped_state("ebpf")
    got = rows_by_name(*views.service_rows(ebpf_state, CREATED, "default", wide=False))
    assert got["backend"]["DATAPLANE"] == "ebpf/socket-lb"
    assert got["backend-nodeport"]["DATAPLANE"] == "ebpf/socket-lb+tc"
    assert got["backend-headless"]["DATAPLANE"] == "none/headless"
    assert rows_by_name(*views.service_rows(state, CREATED, "default", wide=False))["backend-nodeport"]["DATAPLANE"] \
        == "kube-proxy/iptables"


def test_describe_svc_sets_each_nodes_map_entries_beside_the_model_and_finds_a_stale_backend():
    from lab.kube_proxy import ebpf, model
    st = shipped_state("ebpf")
    sl = endpoint_slices(st, {p.key: not p.name.startswith("warming") for p in st.pods})
    svc = st.service("default", "backend-nodeport")
    live = {n.name: ebpf.entries(model.service_ports(st, n.name, sl), n.ip) for n in st.nodes}
    text = views.describe_service(svc, st, sl, live)
    assert "Dataplane:" in text and "the tc program" in text and "NodePort:" in text
    table = text.split("Map entries")[1]
    assert "lb_services" in table and "lb_external" in table and "stale" not in table
    # a backend the model no longer chooses, left in slot 0 of worker1's ClusterIP entry
    key = ebpf.svc_key(svc.cluster_ip, 80, "tcp")
    sid = int.from_bytes(live["worker1"][("lb_services", key)][:4], "little")
    live["worker1"][("lb_backends", ebpf.be_key(sid, 0))] = ebpf.be_val(model.Endpoint("10.244.9.9", 8080, "worker1"))
    rows = ebpf.map_rows(st, svc, sl, live)
    bad = [r for r in rows if r[-1] != "ok"]
    assert len(bad) == 1 and bad[0][:3] == ["worker1", f"{svc.cluster_ip}:80", "lb_services"]
    assert bad[0][-1] == "stale: 10.244.9.9:8080"
    assert "Map entries" not in views.describe_service(svc, shipped_state("services"), sl)


def test_services_are_sorted_by_name(state):
    header, rows = views.service_rows(state, CREATED, "default", wide=False)
    assert [r[0] for r in rows] == sorted(s.name for s in state.services if s.namespace == "default")


def test_service_rows_of_another_namespace_are_its_own(state):
    """kube-system holds only the kube-dns add-on's Service (cluster DNS is on by default)."""
    header, rows = views.service_rows(state, CREATED, "kube-system", wide=False)
    assert rows == [["kube-dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "5m30s", "kube-proxy/iptables"]]
    assert views.service_rows(state, CREATED, "team-a", wide=False)[1] == []


def test_all_namespaces_adds_the_namespace_column(state):
    header, rows = views.service_rows(state, CREATED, None, wide=False)
    assert header[:2] == ["NAMESPACE", "NAME"]
    assert {r[0] for r in rows} == {"default", "kube-system"} and len(rows) == len(state.services)
    assert [r[:2] for r in rows][-1] == ["kube-system", "kube-dns"]     # sorted by namespace, then name


def test_wide_adds_the_selector(state):
    header, rows = views.service_rows(state, CREATED, "default", wide=True)
    assert header[-1] == "SELECTOR"
    got = rows_by_name(header, rows)
    assert got["backend"]["SELECTOR"] == "app=backend"
    assert got["warming"]["SELECTOR"] == "app=warming"


def test_wide_selector_of_several_labels_and_of_none(state):
    from dataclasses import replace

    multi = replace(state.services[0], name="multi", selector=(("app", "backend"), ("tier", "web")))
    none = replace(state.services[0], name="external", selector=None)
    st = replace(state, services=(multi, none))
    header, rows = views.service_rows(st, CREATED, "default", wide=True)
    got = rows_by_name(header, rows)
    assert got["multi"]["SELECTOR"] == "app=backend,tier=web"
    assert got["external"]["SELECTOR"] == "<none>"


def test_service_table_renders(state):
    text = views.render_table(*views.service_rows(state, CREATED, "default", wide=False))
    first, *lines = text.splitlines()
    assert first.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "DATAPLANE"]
    assert any(line.split() == ["backend", "ClusterIP", "10.96.0.100", "<none>", "80/TCP,53/UDP", "5m30s", "kube-proxy/iptables"]
               for line in lines)


# --- endpointslice_rows ---

def test_endpointslice_columns(state, slices):
    header, rows = views.endpointslice_rows(slices, CREATED, "default")
    assert header == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    got = rows_by_name(header, rows)
    backend = next(s for s in slices if s.service == "backend")
    ips = [e.address for e in backend.endpoints]
    assert got[backend.name] == {"NAME": backend.name, "ADDRESSTYPE": "IPv4", "PORTS": "8080,5353",
                                 "ENDPOINTS": ",".join(ips), "AGE": "5m30s"}


def test_endpoints_column_lists_every_address_ready_or_not(state, slices):
    """As kubectl's formatDiscoveryEndpoints: readiness is in -o yaml, not in the column."""
    header, rows = views.endpointslice_rows(slices, CREATED, "default")
    got = rows_by_name(header, rows)
    warming = next(s for s in slices if s.service == "warming")
    assert got[warming.name]["ENDPOINTS"] == ",".join(e.address for e in warming.endpoints)
    assert not any(e.ready for e in warming.endpoints)


def test_endpoints_column_shows_three_then_more():
    sl = slice_("s-abcde", [ep(f"10.244.0.{i}") for i in range(2, 8)] + [ep("10.244.0.99", ready=False)])
    _, rows = views.endpointslice_rows([sl], CREATED, "default")
    assert rows[0][3] == "10.244.0.2,10.244.0.3,10.244.0.4 + 4 more..."


def test_endpoints_column_with_exactly_three_and_four():
    three = slice_("a", [ep(f"10.0.0.{i}") for i in range(3)])
    four = slice_("b", [ep(f"10.0.0.{i}") for i in range(4)])
    _, rows = views.endpointslice_rows([three, four], CREATED, "default")
    assert [r[3] for r in rows] == ["10.0.0.0,10.0.0.1,10.0.0.2", "10.0.0.0,10.0.0.1,10.0.0.2 + 1 more..."]


def test_empty_slice_shows_unset_ports_and_endpoints():
    _, rows = views.endpointslice_rows([slice_("lonely-abcde", ports=())], CREATED, "default")
    assert rows[0][1:4] == ["IPv4", "<unset>", "<unset>"]


def test_endpointslice_rows_filter_and_sort_by_namespace():
    s = [slice_("z", namespace="default"), slice_("a", namespace="team-a"), slice_("b", namespace="default")]
    header, rows = views.endpointslice_rows(s, CREATED, None)
    assert header[0] == "NAMESPACE"
    assert [(r[0], r[1]) for r in rows] == [("default", "b"), ("default", "z"), ("team-a", "a")]
    _, rows = views.endpointslice_rows(s, CREATED, "team-a")
    assert [r[0] for r in rows] == ["a"]


# --- service_object ---

def test_service_object_shape(state):
    obj = views.service_object(state.service("default", "backend"))
    assert obj["apiVersion"] == "v1" and obj["kind"] == "Service"
    assert obj["metadata"] == {"name": "backend", "namespace": "default"}
    spec = obj["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["clusterIP"] == "10.96.0.100" and spec["clusterIPs"] == ["10.96.0.100"]
    assert spec["ports"] == [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"},
                             {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns"}]
    assert spec["selector"] == {"app": "backend"}
    assert spec["sessionAffinity"] == "None" and spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec and "sessionAffinityConfig" not in spec
    assert "publishNotReadyAddresses" not in spec
    json.dumps(obj)


def test_service_object_nodeport_and_numeric_target_port(state):
    spec = views.service_object(state.service("default", "backend-local"))["spec"]
    assert spec["type"] == "NodePort" and spec["externalTrafficPolicy"] == "Local"
    assert spec["ports"] == [{"protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30081}]


def test_service_object_headless_affinity_and_published(state):
    assert views.service_object(state.service("default", "backend-headless"))["spec"]["clusterIP"] == "None"
    assert views.service_object(state.service("default", "backend-headless"))["spec"]["clusterIPs"] == ["None"]
    sticky = views.service_object(state.service("default", "sticky"))["spec"]
    assert sticky["sessionAffinity"] == "ClientIP"
    assert sticky["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 600}}
    assert views.service_object(state.service("default", "warming-published"))["spec"]["publishNotReadyAddresses"] is True
    assert views.service_object(state.service("default", "node-local"))["spec"]["internalTrafficPolicy"] == "Local"


def test_service_object_without_selector_has_no_selector(state):
    from dataclasses import replace

    spec = views.service_object(replace(state.services[0], selector=None))["spec"]
    assert "selector" not in spec


# --- endpointslice_object ---

def test_endpointslice_object_shape(state, slices):
    published = next(s for s in slices if s.service == "warming-published")
    obj = views.endpointslice_object(published)
    assert obj["apiVersion"] == "discovery.k8s.io/v1" and obj["kind"] == "EndpointSlice"
    assert obj["addressType"] == "IPv4"
    assert obj["metadata"] == {"name": published.name, "namespace": "default",
                               "labels": {"kubernetes.io/service-name": "warming-published"}}
    assert obj["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]
    pods = {p.key: p for p in state.pods}
    assert len(obj["endpoints"]) == 2
    for e, src in zip(obj["endpoints"], published.endpoints):
        p = pods[src.pod]
        assert e == {"addresses": [p.ip], "nodeName": p.node,
                     "targetRef": {"kind": "Pod", "namespace": "default", "name": p.name},
                     "conditions": {"ready": True, "serving": False, "terminating": False}}
    json.dumps(obj)


def test_endpointslice_object_named_ports(slices):
    backend = next(s for s in slices if s.service == "backend")
    assert views.endpointslice_object(backend)["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8080}, {"name": "dns", "protocol": "UDP", "port": 5353}]


def test_empty_endpointslice_object():
    obj = views.endpointslice_object(slice_("lonely-abcde", ports=(), service="lonely"))
    assert obj["ports"] == [] and obj["endpoints"] == []


# --- pod_status with readiness ---

def test_pod_status_counts_alive_and_ready(state):
    backend = next(p for p in state.pods if p.name.startswith("backend-"))
    key = f"{backend.key}/web"
    assert views.pod_status(backend, lambda k: True, {key: True}) == ("1/1", "Running")
    assert views.pod_status(backend, lambda k: True, {key: False}) == ("0/1", "Running")
    assert views.pod_status(backend, lambda k: False, {key: True}) == ("0/1", "Error")
    assert views.pod_status(backend, lambda k: True, {}) == ("1/1", "Running")  # no verdict: ready while it runs


def test_pod_status_multi_container():
    from lab.controlplane.plan import plan
    from lab.topology.model import Topology

    st = plan(Topology.model_validate({"name": "v", "nodes": [{"name": "n"}], "manifests": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two"}, "spec": {"containers": [
            {"name": "a", "image": "netexec", "ports": [{"containerPort": 8080}],
             "readinessProbe": {"tcpSocket": {"port": 8080}}},
            {"name": "b", "image": "pause"}]}}]}))
    p = st.pods[0]
    assert views.pod_status(p, lambda k: True, {"default/two/a": False}) == ("1/2", "Running")
    assert views.pod_status(p, lambda k: True, {"default/two/a": True}) == ("2/2", "Running")
    assert views.pod_status(p, lambda k: k != "default/two/b", {"default/two/a": True}) == ("1/2", "Error")
    assert views.pod_status(p, lambda k: k != "default/two/a", {"default/two/a": True}) == ("1/2", "Error")


def test_pod_rows_use_the_ready_map(state):
    warming = [p for p in state.pods if p.name.startswith("warming-")]
    ready = {f"{p.key}/web": False for p in warming}
    header, rows = views.pod_rows(state, lambda k: True, CREATED, "default", False, ready)
    got = rows_by_name(header, rows)
    assert {n: r["READY"] for n, r in got.items() if r["READY"] != "1/1"} == {p.name: "0/1" for p in warming}
    assert all(r["STATUS"] == "Running" for r in got.values())


def test_pod_object_ready_follows_the_probes(state):
    """-o json agrees with the READY column: a running container that fails its probe is not ready."""
    pod = next(p for p in state.pods if p.name.startswith("warming-"))
    key = container_key(pod, pod.containers[0])
    obj = views.pod_object(pod, state, lambda k: True, {key: False})
    assert obj["status"]["containerStatuses"] == [{"name": pod.containers[0].name, "started": True, "ready": False}]
    assert obj["status"]["phase"] == "Running"
