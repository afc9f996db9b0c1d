"""Ingress without root: which Ingresses the add-on serves, the state they become, nginx.conf
(goldens), location order and Prefix semantics, TLS Secrets, the add-on itself, the check's plan."""
from __future__ import annotations

import base64
from dataclasses import replace

import yaml

from lab.controlplane import ingress
from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, IngressPathState
from lab.dns import records
from lab.ingress import nginx
from lab.probe import ingress as check
from lab.topology.model import Topology
from tests.unit.golden import ROOT, check_golden

RUN = "/run/k8s-netlab/ingress/ingress"


def shipped() -> Topology:
    return Topology.model_validate(yaml.safe_load((ROOT / "topologies" / "ingress.yaml").read_text()))


def with_manifests(*extra: dict, drop: tuple[str, ...] = ()) -> Topology:
    doc = yaml.safe_load((ROOT / "topologies" / "ingress.yaml").read_text())
    doc["manifests"] = [m for m in doc["manifests"] if m["kind"] not in drop] + list(extra)
    return Topology.model_validate(doc)


def ingress_obj(name: str, spec: dict, **meta) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, **meta}, "spec": spec}


def backend(service: str = "shop", port: int = 80) -> dict:
    return {"service": {"name": service, "port": {"number": port}}}


def test_the_shipped_topology_renders_its_golden_config():
    state = plan(shipped())
    check_golden("ingress-shipped.conf", nginx.render(state, endpoint_slices(state, {}), RUN))


def test_without_ready_endpoints_a_backend_answers_503_and_has_no_upstream():
    state = plan(shipped())
    unready = {p.key: False for p in state.pods if p.name.startswith("api-")}
    check_golden("ingress-no-endpoints.conf", nginx.render(state, endpoint_slices(state, unready), RUN))


def test_upstreams_are_the_ready_endpoints_pod_ip_and_target_port_not_the_cluster_ip():
    state = plan(shipped())
    conf = nginx.render(state, endpoint_slices(state, {}), RUN)
    api = [p.ip for p in state.pods if p.name.startswith("api-")]
    assert all(f"server {ip}:9000;" in conf for ip in api)
    assert state.service("default", "api").cluster_ip not in conf


def test_prefix_is_the_path_and_its_subtree_exact_is_the_path_and_longest_come_first():
    state = replace(plan(shipped()), ingresses=(replace(plan(shipped()).ingresses[0], paths=(
        IngressPathState("h.example", "/", "Prefix", "shop", "80"),
        IngressPathState("h.example", "/a/", "Prefix", "shop", "80"),  # the trailing slash is no element
        IngressPathState("h.example", "/abc", "Exact", "shop", "80"),
        IngressPathState("h.example", "/ab", "Prefix", "shop", "80"),
        IngressPathState("h.example", "/ab", "Exact", "api", "8080"),  # an Exact path wins over the same Prefix
    ), default_backend=None, tls=()),))
    conf = nginx.render(state, endpoint_slices(state, {}), RUN)
    locations = [line.split("{")[0].split("location ")[1].strip() for line in conf.splitlines() if "location " in line
                 and "h.example" not in line and "return 404" not in line][-6:]
    assert locations == ["= /abc", "= /ab", "/ab/", "= /a", "/a/", "/"]
    assert "location = /ab { proxy_pass http://default-api-8080; }" in conf


def test_rules_without_host_and_the_default_backend_go_to_the_default_server_else_404():
    topo = with_manifests(ingress_obj("bare", {"rules": [{"http": {"paths": [
        {"path": "/bare", "pathType": "ImplementationSpecific", "backend": backend()}]}}]}), drop=("Ingress",))
    state = plan(topo)
    conf = nginx.render(state, endpoint_slices(state, {}), RUN)
    default = conf.split("server {  # default server")[1].split("    }")[0]
    assert "location = /bare" in default and "location /bare/" in default and "location / { return 404; }" in default


def test_classes_decide_which_ingresses_are_served():
    other = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {
        "name": "traefik", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "traefik.io/ingress-controller"}}
    rule = {"rules": [{"host": "x.example", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]}}]}
    topo = with_manifests(other, ingress_obj("classless", rule), ingress_obj("ours", {**rule, "ingressClassName": "nginx"}),
                          ingress_obj("theirs", {**rule, "ingressClassName": "traefik"}), drop=("Ingress", "IngressClass"))
    # the default class (traefik's) is set on the classless one, as the admission plugin does
    assert [i.name for i in plan(topo).ingresses] == ["ours"]
    topo = with_manifests(ingress_obj("classless", rule), drop=("Ingress", "IngressClass"))
    assert [i.name for i in plan(topo).ingresses] == ["classless"]  # --watch-ingress-without-class


def test_a_tls_secret_is_read_from_data_or_string_data_else_the_lab_issues_it():
    pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-tls"}, "type": "kubernetes.io/tls",
              "data": {"tls.crt": base64.b64encode(pem.encode()).decode()}, "stringData": {"tls.key": "KEY"}}
    state = plan(with_manifests(secret))
    tls = state.ingresses[0].tls[0]
    assert (tls.secret, tls.cert, tls.key) == ("shop-tls", pem, "KEY")
    assert nginx.certificate_hosts(state) == {nginx.DEFAULT_CERT: None, "shop.example": (pem, "KEY")}
    assert nginx.certificate_hosts(plan(shipped()))["shop.example"] is None  # no Secret: the lab's CA issues it


def test_the_addon_is_a_deployment_with_host_ports_and_a_nodeport_service_only_with_ingresses():
    state = plan(shipped())
    pod = ingress.controller(state)
    assert pod.namespace == "ingress-nginx" and pod.node == "control-plane" and "ingress-nginx" in state.namespaces
    assert [(p.port, p.host_port) for p in pod.containers[0].ports] == [(80, 80), (443, 443)]
    svc = state.service("ingress-nginx", "ingress-nginx-controller")
    assert (svc.type, [p.node_port for p in svc.ports]) == ("NodePort", [30080, 30443])
    bare = plan(with_manifests(drop=("Ingress", "IngressClass")))
    assert ingress.controller(bare) is None and not bare.ingresses and "ingress-nginx" not in bare.namespaces


def test_a_taken_node_port_is_left_to_allocation():
    taken = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"type": "NodePort", "selector": {"app": "shop"}, "ports": [{"port": 80, "nodePort": 30080}]}}
    svc = plan(with_manifests(taken)).service("ingress-nginx", "ingress-nginx-controller")
    assert svc.ports[0].node_port not in (None, 30080) and svc.ports[1].node_port == 30443


def test_the_outside_resolver_watches_a_hosts_dir_and_ingress_hosts_point_at_the_controllers_node():
    state = plan(shipped())
    assert "hostsdir=/d\n" in records.upstream_config(state, "/log", "/d")
    assert ingress.hosts(state) == ["api.example", "shop.example"]
    assert ingress.entry(state) == state.node("control-plane").ip


def test_the_state_round_trips_through_json():
    state = plan(shipped())
    assert ClusterState.from_dict(state.to_dict()) == state


def test_the_check_asks_every_rule_over_http_and_tls_hosts_over_https_too():
    state = plan(shipped())
    urls = sorted(a.url for a in check.plan(state, endpoint_slices(state, {})))
    entry = ingress.entry(state)
    assert urls == sorted(["http://shop.example/", "https://shop.example/", "http://shop.example/api",
                           "https://shop.example/api", "http://api.example/v1", "http://api.example/healthz",
                           f"http://{entry}/"])
    redirect = [a for a in check.plan(state, endpoint_slices(state, {})) if a.url == "http://shop.example/"][0]
    assert redirect.redirect and all(b.startswith("shop-") for b in redirect.backends)


def test_the_checks_verdicts_never_pass_a_failed_curl():
    state = plan(shipped())
    ask = [a for a in check.plan(state, endpoint_slices(state, {})) if a.url == "http://api.example/v1"][0]
    good = check.Answer(200, ask.backends[0], ask.client.ip, 0)
    assert check.judge(ask, good).passed
    assert not check.judge(ask, check.Answer(0, "", "", 0, "curl: (6) Could not resolve host")).passed
    assert not check.judge(ask, replace(good, server="shop-x")).passed  # the wrong Service
    assert not check.judge(ask, replace(good, forwarded="10.244.0.1")).passed  # the client hidden
    assert not check.judge(replace(ask, backends=()), good).passed  # no endpoint: 503 expected
    assert check.judge(replace(ask, backends=()), check.Answer(503, "", "", 0)).passed


def test_a_denied_rule_passes_on_silence_only():
    """A NetworkPolicy drop makes curl time out; nginx's 502 (the backend refused) or a curl that
    could not resolve the name are answers or errors, not a deny."""
    state = plan(shipped())
    ask = replace([a for a in check.plan(state, endpoint_slices(state, {})) if a.url == "http://api.example/v1"][0],
                  reply=False)
    assert check.judge(ask, check.Answer(0, "", "", 0, "curl: (28) Operation timed out", 28)).passed
    bad_gateway = check.judge(ask, check.Answer(502, "", "", 0))
    assert not bad_gateway.passed and "refused is not denied" in bad_gateway.observed
    assert not check.judge(ask, check.Answer(0, "", "", 0, "curl: (6) Could not resolve host", 6)).passed
    assert not check.judge(ask, check.Answer(200, ask.backends[0], ask.client.ip, 0)).passed
