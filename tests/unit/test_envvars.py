"""The kubelet's Service environment variables (lab.controlplane.envvars), in the format of
pkg/kubelet/envvars (FromServices, makeLinkVariables), and how plan() and env_for use them."""
from __future__ import annotations

import yaml

from lab.controlplane import envvars
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, ServicePortState, ServiceState
from lab.node.containers import env_for
from lab.topology.load import load_topology_text


def svc(name, ip, *ports, namespace="default", type="ClusterIP"):
    return ServiceState(namespace=namespace, name=name, type=type, cluster_ip=ip,
                        ports=tuple(ServicePortState(n, proto, port, str(port)) for n, proto, port in ports))


def test_one_unnamed_port():
    assert envvars.from_services([svc("foo-bar", "1.2.3.4", ("", "TCP", 8083))]) == [
        ("FOO_BAR_SERVICE_HOST", "1.2.3.4"),
        ("FOO_BAR_SERVICE_PORT", "8083"),
        ("FOO_BAR_PORT", "tcp://1.2.3.4:8083"),
        ("FOO_BAR_PORT_8083_TCP", "tcp://1.2.3.4:8083"),
        ("FOO_BAR_PORT_8083_TCP_PROTO", "tcp"),
        ("FOO_BAR_PORT_8083_TCP_PORT", "8083"),
        ("FOO_BAR_PORT_8083_TCP_ADDR", "1.2.3.4"),
    ]


def test_named_ports_and_udp():
    got = envvars.from_services([svc("kube-dns", "10.0.0.10", ("dns", "UDP", 53), ("dns-tcp", "TCP", 53))])
    assert got == [
        ("KUBE_DNS_SERVICE_HOST", "10.0.0.10"),
        ("KUBE_DNS_SERVICE_PORT", "53"),
        ("KUBE_DNS_SERVICE_PORT_DNS", "53"),
        ("KUBE_DNS_SERVICE_PORT_DNS_TCP", "53"),
        ("KUBE_DNS_PORT", "udp://10.0.0.10:53"),
        ("KUBE_DNS_PORT_53_UDP", "udp://10.0.0.10:53"),
        ("KUBE_DNS_PORT_53_UDP_PROTO", "udp"),
        ("KUBE_DNS_PORT_53_UDP_PORT", "53"),
        ("KUBE_DNS_PORT_53_UDP_ADDR", "10.0.0.10"),
        ("KUBE_DNS_PORT_53_TCP", "tcp://10.0.0.10:53"),
        ("KUBE_DNS_PORT_53_TCP_PROTO", "tcp"),
        ("KUBE_DNS_PORT_53_TCP_PORT", "53"),
        ("KUBE_DNS_PORT_53_TCP_ADDR", "10.0.0.10"),
    ]


def test_headless_and_external_name_services_give_nothing():
    assert envvars.from_services([svc("h", None, ("", "TCP", 80)), svc("e", None, type="ExternalName")]) == []


def test_only_the_pods_namespace_unless_links_are_off():
    services = [svc("a", "10.96.0.2", ("", "TCP", 80)), svc("b", "10.96.0.3", ("", "TCP", 81), namespace="other")]
    names = [k for k, _ in envvars.for_pod("default", services)]
    assert "A_SERVICE_HOST" in names and not any(n.startswith("B_") for n in names)
    assert envvars.for_pod("default", services, enable_service_links=False) == ()


def test_the_master_service_is_given_even_without_links():
    services = [svc("kubernetes", "10.96.0.1", ("https", "TCP", 443)), svc("a", "10.96.0.2", ("", "TCP", 80))]
    env = dict(envvars.for_pod("other", services, enable_service_links=False))
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert "A_SERVICE_HOST" not in env


TOPOLOGY = """
name: envs
nodes: [{name: n1}]
manifests:
  - {apiVersion: v1, kind: Namespace, metadata: {name: other}}
  - {apiVersion: v1, kind: Pod, metadata: {name: client},
     spec: {containers: [{name: c, image: pause, env: [{name: BACKEND_SERVICE_PORT, value: mine}]}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: unlinked},
     spec: {enableServiceLinks: false, containers: [{name: c, image: pause}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: elsewhere, namespace: other}, spec: {containers: [{name: c, image: pause}]}}
  - {apiVersion: v1, kind: Service, metadata: {name: backend},
     spec: {clusterIP: 10.96.0.50, selector: {app: b}, ports: [{name: http, port: 80, targetPort: 8080}]}}
  - {apiVersion: v1, kind: Service, metadata: {name: headless},
     spec: {clusterIP: None, selector: {app: b}, ports: [{port: 80}]}}
"""


def planned(text: str, previous: ClusterState | None = None) -> ClusterState:
    return plan(load_topology_text(text), previous=previous)


def test_plan_gives_each_pod_its_namespaces_services_and_the_container_env_wins():
    state = planned(TOPOLOGY)
    client = next(p for p in state.pods if p.name == "client")
    env = env_for(client, client.containers[0])
    assert env["BACKEND_SERVICE_HOST"] == "10.96.0.50" and env["BACKEND_SERVICE_PORT_HTTP"] == "80"
    assert env["BACKEND_PORT_80_TCP"] == "tcp://10.96.0.50:80"
    assert env["BACKEND_SERVICE_PORT"] == "mine"  # the container's own env wins
    assert not any(k.startswith("HEADLESS_") for k in env)
    assert client.containers[0].env == (("BACKEND_SERVICE_PORT", "mine"),)  # the manifest's env stays apart
    assert next(p for p in state.pods if p.name == "unlinked").service_env == ()
    assert next(p for p in state.pods if p.name == "elsewhere").service_env == ()


def test_state_round_trips_the_service_env():
    state = planned(TOPOLOGY)
    assert ClusterState.from_dict(yaml.safe_load(yaml.safe_dump(state.to_dict()))) == state


def test_a_service_created_later_reaches_new_pods_only():
    """As the kubelet: variables are set when a container starts, so a running pod keeps its own."""
    first = planned(TOPOLOGY)
    later = TOPOLOGY + """  - {apiVersion: v1, kind: Service, metadata: {name: late},
     spec: {selector: {app: b}, ports: [{port: 90}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: newcomer}, spec: {containers: [{name: c, image: pause}]}}
"""
    second = planned(later, previous=first)
    client = {p.name: p for p in second.pods}["client"]
    assert client == {p.name: p for p in first.pods}["client"]
    assert "LATE_SERVICE_HOST" in dict({p.name: p for p in second.pods}["newcomer"].service_env)


def test_a_host_network_pod_answers_with_its_nodes_name():
    """It shares the node's UTS namespace: agnhost's /hostname (and $HOSTNAME) is the node's name."""
    from lab.node.containers import netexec_args

    text = """\
name: wdhost
cluster: {dns: {enabled: false}}
nodes: [{name: n1}]
manifests:
- {apiVersion: v1, kind: Pod, metadata: {name: agent},
   spec: {hostNetwork: true, containers: [{name: c, image: netexec, ports: [{containerPort: 9000}]}]}}
- {apiVersion: v1, kind: Pod, metadata: {name: web},
   spec: {containers: [{name: c, image: netexec, ports: [{containerPort: 80}]}]}}
"""
    state = plan(load_topology_text(text, "h.yaml"))
    agent, web = (next(p for p in state.pods if p.name == n) for n in ("agent", "web"))
    assert netexec_args(agent, agent.containers[0])[:2] == ["--hostname", "n1"]
    assert env_for(agent, agent.containers[0])["HOSTNAME"] == "n1"
    assert netexec_args(web, web.containers[0])[:2] == ["--hostname", "web"]
