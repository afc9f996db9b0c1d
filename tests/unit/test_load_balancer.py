"""type: LoadBalancer without a load-balancer implementation: a NodePort Service (a nodePort per
port, kube-proxy's NodePort rules in both modes, the `nodeport` checks) with EXTERNAL-IP <pending>
and an empty status.loadBalancer, as on a cluster without one."""
from __future__ import annotations

import copy

import pytest
import yaml

from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.errors import TopologyError
from lab.kube_proxy import iptables, nftables
from lab.probe import services as checks
from lab.topology.load import check_topology, load_topology_text
from lab.views import service_object, service_rows
from tests.unit.test_services_plan import TOPOLOGIES, planned, svc, with_services


def services_doc(**changes) -> dict:
    """topologies/services.yaml with backend-nodeport and backend-local changed."""
    doc = yaml.safe_load((TOPOLOGIES / "services.yaml").read_text())
    for m in doc["manifests"]:
        if m["kind"] == "Service" and m["metadata"]["name"] in ("backend-nodeport", "backend-local"):
            m["spec"].update(changes)
    return doc


NODE_PORT = planned(services_doc())
LOAD_BALANCER = planned(services_doc(type="LoadBalancer"))


def ready(state):
    return {p.key: not p.name.startswith("warming") for p in state.pods}


def test_a_load_balancer_gets_its_node_ports():
    for name, port in (("backend-nodeport", 30080), ("backend-local", 30081)):
        s = LOAD_BALANCER.service("default", name)
        assert s.type == "LoadBalancer" and s.ports[0].node_port == port
    assert LOAD_BALANCER.service("default", "backend-local").external_traffic_policy == "Local"


def test_node_ports_are_allocated_when_not_given():
    state = planned(with_services(services_doc(), svc("lb", type="LoadBalancer", ports=[
        {"name": "http", "port": 80, "targetPort": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}])))
    ports = state.service("default", "lb").ports
    assert all(30000 <= p.node_port <= 32767 for p in ports)


@pytest.mark.parametrize("renderer", [iptables, nftables], ids=["iptables", "nftables"])
def test_kube_proxy_renders_a_load_balancer_as_the_node_port_it_is(renderer):
    """Same rules, both modes, every node: kube-proxy keys NodePort rules on the nodePort, not the type."""
    for node in NODE_PORT.nodes:
        assert renderer.render(LOAD_BALANCER, node.name, endpoint_slices(LOAD_BALANCER, ready(LOAD_BALANCER))) == \
            renderer.render(NODE_PORT, node.name, endpoint_slices(NODE_PORT, ready(NODE_PORT)))


def test_lab_check_probes_a_load_balancer_on_its_node_ports():
    def nodeport_asks(state):
        return sorted((a.subject, a.probe) for a in checks.plan(state, endpoint_slices(state, ready(state)))
                      if a.check == "nodeport")
    asks = nodeport_asks(LOAD_BALANCER)
    assert asks and asks == nodeport_asks(NODE_PORT)


def test_get_svc_shows_pending_external_ip_and_json_an_empty_status():
    header, rows = service_rows(LOAD_BALANCER, 0.0, "default", wide=False)
    row = next(r for r in rows if r[0] == "backend-nodeport")
    assert dict(zip(header, row)) | {"AGE": ""} == {
        "NAME": "backend-nodeport", "TYPE": "LoadBalancer", "CLUSTER-IP": row[2], "EXTERNAL-IP": "<pending>",
        "PORT(S)": "80:30080/TCP", "AGE": "", "DATAPLANE": "kube-proxy/iptables"}
    assert next(r for r in service_rows(NODE_PORT, 0.0, "default", wide=False)[1]
                if r[0] == "backend-nodeport")[3] == "<none>"
    obj = service_object(LOAD_BALANCER.service("default", "backend-local"))
    assert obj["spec"]["type"] == "LoadBalancer" and obj["spec"]["externalTrafficPolicy"] == "Local"
    assert obj["spec"]["ports"][0]["nodePort"] == 30081
    assert obj["status"] == {"loadBalancer": {}}
    assert "status" not in service_object(NODE_PORT.service("default", "backend-nodeport"))


def test_load_balancer_fields_without_a_pool_warn_that_the_service_stays_pending(tmp_path):
    doc = with_services(services_doc(), svc("lb", type="LoadBalancer", loadBalancerIP="203.0.113.7",
                                            loadBalancerSourceRanges=["10.0.0.0/8"], allocateLoadBalancerNodePorts=False),
                        svc("other", type="LoadBalancer", loadBalancerClass="example.com/lb", loadBalancerIP="203.0.113.8"))
    path = tmp_path / "lb.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    topology, warnings = check_topology(path)
    messages = [str(w) for w in warnings]
    assert len([m for m in messages if "stays <pending>" in m]) == 1, messages  # the other class is not the lab's
    state = plan(topology)
    lb = state.service("default", "lb")
    assert lb.load_balancer_ip == "" and lb.source_ranges == () and lb.ports[0].node_port is None
    assert state.service("default", "other").ports[0].node_port


def test_headless_load_balancer_is_refused():
    doc = with_services(services_doc(), svc("lb", type="LoadBalancer", clusterIP="None"))
    with pytest.raises(TopologyError, match="cannot be of type LoadBalancer"):
        load_topology_text(yaml.safe_dump(doc))


def test_node_port_and_traffic_policy_still_need_an_external_type():
    bad = copy.deepcopy(svc("c", externalTrafficPolicy="Local", ports=[{"port": 80, "nodePort": 30555}]))
    with pytest.raises(TopologyError) as caught:
        load_topology_text(yaml.safe_dump(with_services(services_doc(), bad)))
    text = str(caught.value)
    assert "nodePort is only for types NodePort and LoadBalancer" in text
    assert "externalTrafficPolicy applies to NodePort and LoadBalancer Services only" in text
