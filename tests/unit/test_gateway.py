"""Gateway API on Envoy, pure parts: the controller's decisions (attachment, references, status
conditions, the dataplane add-on), the Envoy JSON (goldens), Envoy's matching walked over that JSON
(precedence, redirects, rewrites), and the check's verdicts."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from lab.controlplane import gateway, gateway_state
from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.plan import plan
from lab.controlplane.state import ClusterState, HostState
from lab.dns import records
from lab.gateway import envoy, simulate
from lab.probe import gateway as check
from lab.topology.model import Topology
from tests.unit.golden import ROOT, check_golden

RUN = "/run/k8s-netlab/gateway/gateway/default_eg"


def doc() -> dict:
    return yaml.safe_load((ROOT / "topologies" / "gateway.yaml").read_text())


def state_of(d: dict) -> ClusterState:
    return plan(Topology.model_validate(d))


def with_route(spec: dict, name: str = "shop", namespace: str = "default", extra: tuple = ()) -> ClusterState:
    d = doc()
    d["manifests"] = [m for m in d["manifests"] if m["kind"] != "HTTPRoute"] + [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": name, "namespace": namespace}, "spec": spec}, *extra]
    return state_of(d)


def ready(state: ClusterState):
    return endpoint_slices(state, {p.key: True for p in state.pods})


def config(state: ClusterState, port: int = 80) -> dict:
    return envoy.route_config(state, state.gateways[0], port)


def cond(conds, kind: str):
    return next(c for c in conds if c.type == kind)


def test_the_shipped_topology_renders_its_golden_envoy_files():
    state = state_of(doc())
    files = envoy.render(state, ready(state), state.gateways[0], RUN)
    assert set(files) == {"envoy.json", "lds.json", "cds.json", "rds-80.json", "rds-443.json"}
    for name, text in files.items():
        json.loads(text)  # JSON, never YAML
        check_golden(f"gateway-{name}", text)


def test_each_gateway_gets_an_envoy_deployment_behind_a_load_balancer_service_with_a_pool_address():
    state = state_of(doc())
    gw = state.gateways[0]
    svc = state.service(gateway.NAMESPACE, gw.service)
    assert svc.type == "LoadBalancer" and svc.load_balancer_ip == gw.address == "172.18.0.240"
    assert gw.ports == ((80, 80), (443, 443))
    pod = gateway_state.dataplane(state, gw)
    assert pod.namespace == gateway.NAMESPACE and pod.containers[0].image == "envoy" and pod.node == "worker1"
    assert cond(gw.conditions, "Accepted").status == "True" and cond(gw.conditions, "Programmed").status == "True"
    assert gateway.NAMESPACE in state.namespaces
    assert [c.name for c in state.gateway_classes] == ["envoy"]


def test_a_long_gateway_name_gives_its_envoy_pod_a_hostname_the_kernel_takes():
    d = doc()
    long_ns = "gateway-conformance-infra"
    for m in d["manifests"]:
        if m["kind"] in ("Gateway", "HTTPRoute"):
            m["metadata"]["namespace"] = long_ns
        if m["kind"] == "Gateway":
            m["metadata"]["name"] = "same-namespace-with-https-listener"
    d["manifests"].append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": long_ns}})
    state = state_of(d)
    pod = gateway_state.dataplane(state, state.gateways[0])
    assert len(pod.name) > 64  # the Deployment's name, its template hash and the pod's suffix
    assert len(pod.uts_name) <= 63 and pod.uts_name == pod.name[:63].rstrip("-.")  # as the kubelet cuts it


def test_without_a_pool_the_gateway_is_reached_on_its_nodes_node_ports():
    d = doc()
    del d["cluster"]["loadBalancer"]
    state = state_of(d)
    gw = state.gateways[0]
    node = state.node(gateway_state.dataplane(state, gw).node)
    svc = state.service(gateway.NAMESPACE, gw.service)
    assert gw.address == node.ip and gw.ports == tuple((p.port, p.node_port) for p in svc.ports) and len(gw.ports) == 2
    assert "NodePorts" in cond(gw.conditions, "Programmed").message


def test_no_gateway_no_addon_and_another_class_is_not_served():
    d = doc()
    d["manifests"] = [m for m in d["manifests"] if m["kind"] not in ("Gateway", "HTTPRoute")]
    assert not state_of(d).gateways and gateway.NAMESPACE not in state_of(d).namespaces
    d = doc()
    for m in d["manifests"]:
        if m["kind"] == "Gateway":
            m["spec"]["gatewayClassName"] = "other"
    state = state_of(d)
    assert not state.gateways
    parent = state.http_routes[0].parents[0]
    assert cond(parent.conditions, "Accepted").reason == "NoMatchingParent"


def test_the_state_round_trips_through_json():
    state = with_route({"parentRefs": [{"name": "eg"}], "rules": [{"filters": [
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shop-v2", "port": 80}}}],
        "backendRefs": [{"name": "shop-v1", "port": 80}]}]})
    assert ClusterState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


@pytest.mark.parametrize("ref, reason", [
    ({"name": "nope", "port": 80}, "BackendNotFound"),
    ({"name": "shop-v1", "port": 81}, "BackendNotFound"),
    ({"name": "shop-v1"}, "BackendNotFound"),
    ({"name": "invoices", "namespace": "billing", "port": 8080}, "ResolvedRefs"),
    ({"name": "shop-v1", "port": 80, "kind": "ConfigMap"}, "InvalidKind"),
])
def test_backends_resolve_or_say_why(ref, reason):
    state = with_route({"parentRefs": [{"name": "eg"}], "rules": [{"backendRefs": [ref]}]})
    assert cond(state.http_routes[0].parents[0].conditions, "ResolvedRefs").reason == reason


def test_a_cross_namespace_backend_needs_a_reference_grant_and_without_one_its_requests_get_500():
    d = doc()
    d["manifests"] = [m for m in d["manifests"] if m["kind"] != "ReferenceGrant"]
    state = state_of(d)
    resolved = cond(state.http_routes[0].parents[0].conditions, "ResolvedRefs")
    assert (resolved.status, resolved.reason) == ("False", "RefNotPermitted")
    entry = simulate.route(config(state), simulate.Request("shop.example", "/billing/x"))
    assert entry["route"]["cluster"] == envoy.INVALID
    assert entry["route"]["cluster_not_found_response_code"] == "INTERNAL_SERVER_ERROR"


@pytest.mark.parametrize("listener, route_ns, parent, reason", [
    ({"allowedRoutes": {"namespaces": {"from": "Same"}}}, "billing", {"name": "eg", "namespace": "default"},
     "NotAllowedByListeners"),
    ({"allowedRoutes": {"namespaces": {"from": "All"}}}, "billing", {"name": "eg", "namespace": "default"}, "Accepted"),
    ({"allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {
        "kubernetes.io/metadata.name": "billing"}}}}}, "billing", {"name": "eg", "namespace": "default"}, "Accepted"),
    ({"hostname": "*.other.example"}, "default", {"name": "eg"}, "NoMatchingListenerHostname"),
    ({"hostname": "*.example"}, "default", {"name": "eg"}, "Accepted"),
    ({}, "default", {"name": "eg", "sectionName": "nope"}, "NoMatchingParent"),
    ({}, "default", {"name": "ghost"}, "NoMatchingParent"),
])
def test_routes_attach_by_section_namespace_and_hostname(listener, route_ns, parent, reason):
    d = doc()
    for m in d["manifests"]:
        if m["kind"] == "Gateway":
            m["spec"]["listeners"] = [{"name": "http", "protocol": "HTTP", "port": 80, **listener}]
    d["manifests"] = [m for m in d["manifests"] if m["kind"] != "HTTPRoute"] + [{
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": route_ns},
        "spec": {"parentRefs": [parent], "hostnames": ["shop.example"], "rules": [{}]}}]
    state = state_of(d)
    p = state.http_routes[0].parents[0]
    assert cond(p.conditions, "Accepted").reason == reason
    assert bool(p.listeners) == (reason == "Accepted")
    assert state.gateways[0].listeners[0].attached_routes == (1 if reason == "Accepted" else 0)


@pytest.mark.parametrize("listener, route, both", [
    ("", "a.example", "a.example"), ("*.example", "a.example", "a.example"), ("*.example", "a.b.example", "a.b.example"),
    ("a.example", "*.example", "a.example"), ("*.example", "*.a.example", "*.a.example"), ("*.example", "example", None),
    ("a.example", "b.example", None), ("*.a.example", "*.b.example", None),
])
def test_hostnames_intersect_as_the_gateway_api_says(listener, route, both):
    assert gateway_state.host_match(listener, route) == both


def test_listener_conflicts_and_protocols_give_their_conditions():
    d = doc()
    for m in d["manifests"]:
        if m["kind"] == "Gateway":
            m["spec"]["listeners"] = [{"name": "a", "protocol": "HTTP", "port": 80},
                                      {"name": "b", "protocol": "HTTP", "port": 80},
                                      {"name": "c", "protocol": "TCP", "port": 90}]
    listeners = state_of(d).gateways[0].listeners
    assert cond(listeners[0].conditions, "Conflicted").reason == "HostnameConflict"
    assert cond(listeners[2].conditions, "Accepted").reason == "UnsupportedProtocol"
    assert all(cond(ls.conditions, "Programmed").status == "False" for ls in listeners)


def shop_rules() -> ClusterState:
    return with_route({"parentRefs": [{"name": "eg"}], "hostnames": ["shop.example", "*.wild.example"], "rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [{"name": "shop-v1", "port": 80}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [{"name": "shop-v2", "port": 80}]},
        {"matches": [{"path": {"type": "Exact", "value": "/api/x"}}], "backendRefs": [{"name": "invoices",
                                                                                        "namespace": "billing", "port": 8080}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "env", "value": "canary"}]}],
         "backendRefs": [{"name": "shop-v2", "port": 80}]},
        {"matches": [{"path": {"type": "RegularExpression", "value": "/re/[0-9]+"}}],
         "backendRefs": [{"name": "shop-v2", "port": 80}]},
        {"matches": [{"method": "POST", "queryParams": [{"name": "q", "value": "1"}]}],
         "backendRefs": [{"name": "shop-v2", "port": 80}]},
    ]})


@pytest.mark.parametrize("request_, cluster", [
    (simulate.Request("shop.example", "/"), "default/shop-v1/80"),
    (simulate.Request("shop.example:80", "/api"), "default/shop-v2/80"),
    (simulate.Request("shop.example", "/api/y"), "default/shop-v2/80"),
    (simulate.Request("shop.example", "/apix"), "default/shop-v1/80"),        # a prefix is whole path elements
    (simulate.Request("shop.example", "/api/x"), "billing/invoices/8080"),     # Exact beats the longest prefix
    (simulate.Request("shop.example", "/api/x", {"env": "canary"}), "billing/invoices/8080"),
    (simulate.Request("shop.example", "/", {"env": "canary"}), "default/shop-v2/80"),  # a header match beats none
    (simulate.Request("shop.example", "/re/42"), "default/shop-v2/80"),
    (simulate.Request("shop.example", "/re/4x"), "default/shop-v1/80"),
    (simulate.Request("shop.example", "/", {}, {"q": "1"}, "POST"), "default/shop-v2/80"),
    (simulate.Request("shop.example", "/", {}, {"q": "1"}, "GET"), "default/shop-v1/80"),
    (simulate.Request("a.wild.example", "/"), "default/shop-v1/80"),
    (simulate.Request("other.example", "/"), None),
])
def test_requests_reach_the_rule_the_gateway_api_precedence_picks(request_, cluster):
    entry = simulate.route(config(shop_rules()), request_)
    assert (entry["route"]["cluster"] if entry else None) == cluster


@pytest.mark.parametrize("prefix, replace_, path, location", [
    ("/old", "/new", "/old/cart", "http://shop.example/new/cart"),
    ("/old", "/new", "/old", "http://shop.example/new"),
    ("/old", "/", "/old/cart", "http://shop.example/cart"),
    ("/", "/new", "/cart", "http://shop.example/new/cart"),
])
def test_replace_prefix_match_replaces_whole_path_elements(prefix, replace_, path, location):
    state = with_route({"parentRefs": [{"name": "eg"}], "hostnames": ["shop.example"], "rules": [{
        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
        "filters": [{"type": "RequestRedirect", "requestRedirect": {
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": replace_}, "statusCode": 301}}]}]})
    req = simulate.Request("shop.example", path)
    entry = simulate.route(config(state), req)
    assert entry["redirect"]["response_code"] == "MOVED_PERMANENTLY"
    assert simulate.redirect_location(entry, req, "http", 80) == location


def test_filters_become_envoy_route_fields():
    state = with_route({"parentRefs": [{"name": "eg"}], "rules": [{
        "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}],
                                                                        "add": [{"name": "x-b", "value": "2"}],
                                                                        "remove": ["x-c"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-d", "value": "3"}]}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "in.example",
                                                  "path": {"type": "ReplaceFullPath", "replaceFullPath": "/z"}}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shop-v2", "port": 80}}}],
        "backendRefs": [{"name": "shop-v1", "port": 80}], "timeouts": {"request": "1m30s", "backendRequest": "500ms"}}]})
    e = config(state)["virtual_hosts"][0]["routes"][0]
    assert e["request_headers_to_add"] == [
        {"header": {"key": "x-a", "value": "1"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-b", "value": "2"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}]
    assert e["request_headers_to_remove"] == ["x-c"]
    assert e["response_headers_to_add"][0]["header"] == {"key": "x-d", "value": "3"}
    r = e["route"]
    assert r["host_rewrite_literal"] == "in.example" and simulate.rewritten(r["regex_rewrite"], "/a/b") == "/z"
    assert r["request_mirror_policies"] == [{"cluster": "default/shop-v2/80"}] and r["timeout"] == "90s"
    assert r["retry_policy"] == {"num_retries": 0, "per_try_timeout": "0.5s"}  # backendRequest: the one try
    clusters = {c["name"] for c in envoy.clusters(state, ready(state), state.gateways[0])}
    assert clusters == {"default/shop-v1/80", "default/shop-v2/80"}


def test_weights_split_weight_zero_drops_and_no_backend_is_a_500():
    state = with_route({"parentRefs": [{"name": "eg"}], "rules": [
        {"matches": [{"path": {"type": "Exact", "value": "/w"}}], "backendRefs": [
            {"name": "shop-v1", "port": 80, "weight": 80}, {"name": "shop-v2", "port": 80, "weight": 20},
            {"name": "invoices", "namespace": "billing", "port": 8080, "weight": 0}]},
        {"matches": [{"path": {"type": "Exact", "value": "/none"}}]}]})
    routes = {e["match"]["path"]: e for e in config(state)["virtual_hosts"][0]["routes"]}
    assert routes["/w"]["route"]["weighted_clusters"]["clusters"] == [
        {"name": "default/shop-v1/80", "weight": 80}, {"name": "default/shop-v2/80", "weight": 20}]
    assert routes["/none"]["direct_response"] == {"status": 500}


def test_clusters_are_the_ready_endpoints_and_none_when_nothing_is_ready():
    state = state_of(doc())
    by_name = {c["name"]: c for c in envoy.clusters(state, ready(state), state.gateways[0])}
    lb = by_name["default/shop-v1/80"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    v1 = [e["endpoint"]["address"]["socket_address"] for e in lb]
    assert sorted(a["address"] for a in v1) == sorted(p.ip for p in state.pods if p.name.startswith("shop-v1"))
    assert {a["port_value"] for a in v1} == {8080}
    none = envoy.clusters(state, endpoint_slices(state, {p.key: False for p in state.pods}), state.gateways[0])
    assert all(c["load_assignment"]["endpoints"][0]["lb_endpoints"] == [] for c in none)


def test_gateway_hostnames_are_published_at_the_gateway_address():
    assert gateway_state.hosts(state_of(doc())) == {"shop.example": "172.18.0.240"}


def test_durations_become_envoy_seconds():
    assert [envoy.seconds(d) for d in ("10s", "1m", "500ms", "1h2m3s")] == ["10s", "60s", "0.5s", "3723s"]


def test_the_check_asks_every_match_from_every_outside_host_and_expects_what_the_config_says():
    state = state_of(doc())
    asks, unchecked = check.plan(state, ready(state))
    assert not unchecked and {a.client.name for a in asks} == {"internet"}
    https = [a for a in asks if a.url.startswith("https://")]
    assert len(https) == 4 and all(a.url.startswith("https://shop.example:443/") and a.tls[:2] == (
        "--resolve", "shop.example:443:172.18.0.240") for a in https)
    assert next(a for a in https if a.statuses == (301,)).location == "https://shop.example/new/probe"
    by_rule = {a.rule.split("/rule/")[1]: a for a in asks if not a.tls}
    assert by_rule["0/match/0"].headers == (("env", "canary"),) and by_rule["0/match/0"].statuses == (200,)
    assert set(by_rule["0/match/0"].backends) == {p.name for p in state.pods if p.name.startswith("shop-v2")}
    redirect = by_rule["1/match/0"]
    assert redirect.statuses == (301,) and redirect.location == "http://shop.example/new/probe"
    assert redirect.url == "http://172.18.0.240/old/probe" and redirect.host == "shop.example"
    weighted = check.weight_asks(state, ready(state), asks)
    assert len(weighted) == 1 and {c: s for c, (s, _) in weighted[0][1].items()} == {
        "default/shop-v1/80": 0.8, "default/shop-v2/80": 0.2}


def test_a_service_without_ready_endpoints_is_expected_as_envoys_503():
    state = state_of(doc())
    unready = endpoint_slices(state, {p.key: not p.name.startswith("shop-v2") for p in state.pods})
    asks, _ = check.plan(state, unready)
    canary = next(a for a in asks if a.rule.endswith("rule/0/match/0"))
    assert canary.statuses == (503,) and "no ready endpoint" in canary.why


def test_a_regular_expression_match_is_unchecked_not_passed():
    state = shop_rules()
    _, unchecked = check.plan(state, ready(state))
    assert unchecked and all(o.unchecked and not o.passed and not o.failed for o in unchecked)


def ask(**kw) -> check.Ask:
    base = dict(client=HostState("internet", "172.18.0.9", "lab-internet"), gateway="default/eg",
                rule="httproute/default/shop/rule/0/match/0", url="http://172.18.0.240/", host="shop.example",
                statuses=(200,), backends=("shop-v1-a",))
    return check.Ask(**{**base, **kw})


@pytest.mark.parametrize("a, answer, passed", [
    (ask(), check.Answer(200, "shop-v1-a", ""), True),
    (ask(), check.Answer(200, "shop-v2-b", ""), False),                      # the wrong backend
    (ask(), check.Answer(0, "", "", "Connection refused", 7), False),        # a failed curl never passes
    (ask(statuses=(301,), backends=(), location="http://x/new"), check.Answer(301, "", "http://x/new"), True),
    (ask(statuses=(301,), backends=(), location="http://x/new"), check.Answer(301, "", "http://x/old"), False),
    (ask(reply=False), check.Answer(0, "", "", "timed out", 28), True),      # a drop is silence
    (ask(reply=False), check.Answer(0, "", "", "Connection refused", 7), False),  # refused is not denied
    (ask(reply=False), check.Answer(404, "", ""), False),
])
def test_verdicts_can_fail(a, answer, passed):
    assert check.judge(a, answer).passed is passed


def test_the_weights_verdict_fails_outside_five_points(monkeypatch):
    shares = {"default/shop-v1/80": (0.8, ("v1",)), "default/shop-v2/80": (0.2, ("v2",))}

    def run_with(v1: int, v2: int, code: int = 0):
        out = "".join(["200\tv1\n"] * v1 + ["200\tv2\n"] * v2)
        monkeypatch.setattr(check, "_curl", lambda *a, **k: type("R", (), {"stdout": out, "stderr": "", "code": code})())
        return check.weights(ask(), shares)

    assert run_with(400, 100).passed and run_with(376, 124).passed
    assert not run_with(370, 130).passed and not run_with(500, 0).passed and not run_with(400, 99).passed
    assert not run_with(400, 100, code=28).passed


def test_gateway_objects_validate_with_file_and_line(tmp_path):
    from lab.errors import TopologyError
    from lab.topology.load import load_topology

    bad = doc()
    for m in bad["manifests"]:
        if m["kind"] == "HTTPRoute":
            m["spec"]["rules"][1]["backendRefs"] = [{"name": "shop-v1", "port": 80}]  # with a RequestRedirect
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(TopologyError) as e:
        load_topology(str(path))
    text = str(e.value)
    assert "a rule with a RequestRedirect takes no backendRefs" in text and f"{path}:" in text


def test_unready_dataplane_is_not_programmed_in_lab_get():
    from lab.gateway import views

    state = state_of(doc())
    gw = state.gateways[0]
    pod = gateway_state.dataplane(state, gw)
    assert cond(views.live(state, gw, {pod.key: True}).conditions, "Programmed").status == "True"
    pending = cond(views.live(state, gw, {pod.key: False}).conditions, "Programmed")
    assert (pending.status, pending.reason) == ("False", "Pending")
    obj = views.objects("gateways", state, {pod.key: True}, None)[0]
    assert obj["status"]["addresses"] == [{"type": "IPAddress", "value": "172.18.0.240"}]
    routes = views.objects("httproutes", state, {}, "default")
    assert cond_dict(routes[0]["status"]["parents"][0]["conditions"], "Accepted")["status"] == "True"


def cond_dict(conds, kind):
    return next(c for c in conds if c["type"] == kind)


def test_envoy_itself_accepts_every_generated_resource(tmp_path):
    """The real envoy (`--mode validate`) on a bootstrap holding the generated listeners (HTTP and
    HTTPS with the lab CA's certificates), routes (every match kind and filter) and clusters inline."""
    import subprocess

    from lab.gateway.runtime import envoy_binary
    from lab.ingress import tls

    d = doc()  # its Gateway has an HTTPS listener for shop.example
    d["manifests"] = [m for m in d["manifests"] if m["kind"] != "HTTPRoute"] + [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "all"}, "spec": {
            "parentRefs": [{"name": "eg"}], "hostnames": ["shop.example", "*.wild.example"], "rules": [
                {"matches": [{"path": {"type": "RegularExpression", "value": "/re/[0-9]+"},
                              "headers": [{"type": "RegularExpression", "name": "x", "value": "a.*"}],
                              "queryParams": [{"name": "q", "value": "1"}], "method": "POST"}],
                 "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "1"}],
                                                                                         "remove": ["b"]}},
                             {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "c", "value": "2"}]}},
                             {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shop-v2", "port": 80}}},
                             {"type": "URLRewrite", "urlRewrite": {"hostname": "in.example", "path": {
                                 "type": "ReplaceFullPath", "replaceFullPath": "/x"}}}],
                 "backendRefs": [{"name": "shop-v1", "port": 80, "weight": 3}, {"name": "nope", "port": 80}],
                 "timeouts": {"request": "2s", "backendRequest": "1s"}},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
                 "filters": [{"type": "RequestRedirect", "requestRedirect": {
                     "scheme": "https", "hostname": "new.example", "port": 8443, "statusCode": 308,
                     "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/up"}}],
                 "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {
                     "type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
                 "backendRefs": [{"name": "shop-v2", "port": 80}]},
                {"matches": [{"path": {"type": "Exact", "value": "/none"}}]}]}}]
    state = state_of(d)
    gw = state.gateways[0]
    (tmp_path / "certs").mkdir()
    ca, ca_key = tls.new_ca("unit")
    crt, key = tls.issue(ca, ca_key, "shop.example")
    (tmp_path / "certs" / "https.crt").write_bytes(crt)
    (tmp_path / "certs" / "https.key").write_bytes(key)
    files = {k: json.loads(v) for k, v in envoy.render(state, ready(state), gw, str(tmp_path)).items()}
    listeners = files["lds.json"]["resources"]
    assert [ls["name"] for ls in listeners] == ["listener-80", "listener-443"]
    routes = {p: files[envoy.rds_file(p)]["resources"][0] for p in (80, 443)}
    for ls in listeners:
        hcm = ls["filter_chains"][0]["filters"][0]["typed_config"]
        port = ls["address"]["socket_address"]["port_value"]
        # as RDS delivers it: cluster names are not checked (invalid-backend never exists: its 500)
        hcm["route_config"] = {**{k: v for k, v in routes[port].items() if k != "@type"}, "validate_clusters": False}
        del hcm["rds"]
    bootstrap = {"admin": files["envoy.json"]["admin"], "node": files["envoy.json"]["node"],
                 "static_resources": {"listeners": [{k: v for k, v in ls.items() if k != "@type"} for ls in listeners],
                                      "clusters": [{k: v for k, v in c.items() if k != "@type"}
                                                   for c in files["cds.json"]["resources"]]}}
    (tmp_path / "check.json").write_text(json.dumps(bootstrap))
    out = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(tmp_path / "check.json"), "--disable-hot-restart",
                          "--log-level", "error"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "listener-443" in json.dumps(bootstrap) and "server_names" in json.dumps(listeners[1])


@pytest.mark.usefixtures("run_root")
def test_the_gateway_controller_writes_envoys_files_through_the_host_and_leaves_a_lab_without_gateways_alone(fake):
    from lab.controlplane.controller import Diff
    from lab.gateway import runtime
    from lab.host.record import LabRecord
    from tests.unit.golden import shipped_state

    state = state_of(doc())
    rec = LabRecord(name=state.lab, state=state, status="running")
    rec.dir.mkdir(parents=True)
    runtime.CONTROLLER.pods_starting(state, rec, state.pods)
    d = runtime.run_dir(rec, "default", "eg")
    assert {f"{d}/envoy.json", f"{d}/lds.json", f"{d}/cds.json"} <= set(fake.files)  # by the Host, not open()
    assert rec.section("gateway") == {"gateways": ["default/eg"]}
    pod = gateway_state.dataplane(state, state.gateways[0])
    assert runtime.CONTROLLER.images["envoy"](rec, pod)[1:3] == ["-c", f"{d}/envoy.json"]
    # the Gateway is removed: its names are withdrawn, and the section says none is served
    gone = replace(state, gateways=(), http_routes=())
    runtime.CONTROLLER.sync(rec, Diff(state, {}, gone, {}))
    assert fake.files[str(rec.dir.joinpath(*records.UPSTREAM_HOSTS, "gateway"))] == b""
    assert rec.section("gateway") == {"gateways": []}
    # a lab that never had a Gateway: no file, no section
    other = shipped_state("netpol", dns={"enabled": False})
    plain = LabRecord(name=other.lab, state=other, status="running")
    before = dict(fake.files)
    runtime.CONTROLLER.pods_starting(other, plain, other.pods)
    assert runtime.CONTROLLER.sync(plain, Diff(other, {}, other, {}, first=True)) == []
    assert fake.files == before and "gateway" not in plain.sections


def test_a_listener_naming_an_unknown_route_kind_has_resolved_refs_false_invalid_route_kinds():
    d = doc()
    gw = next(m for m in d["manifests"] if m["kind"] == "Gateway")
    gw["spec"]["listeners"] = [{"name": "http", "protocol": "HTTP", "port": 80,
                                "allowedRoutes": {"kinds": [{"kind": "FooRoute"}]}},
                               {"name": "both", "protocol": "HTTP", "port": 8080,
                                "allowedRoutes": {"kinds": [{"kind": "FooRoute"}, {"kind": "HTTPRoute"}]}},
                               {"name": "plain", "protocol": "HTTP", "port": 8081}]
    state = state_of(d)
    ls = {x.name: x for x in state.gateways[0].listeners}
    assert (cond(ls["http"].conditions, "ResolvedRefs").reason, ls["http"].supported_kinds) == ("InvalidRouteKinds", ())
    assert (cond(ls["both"].conditions, "ResolvedRefs").reason, ls["both"].supported_kinds) == \
        ("InvalidRouteKinds", ("HTTPRoute",))
    assert cond(ls["plain"].conditions, "ResolvedRefs").status == "True" and ls["plain"].supported_kinds == ("HTTPRoute",)
    assert ls["http"].attached_routes == 0


def test_a_malformed_certificate_secret_is_invalid_certificate_ref_and_never_reaches_envoy():
    bad = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "malformed"},
           "stringData": {"tls.crt": "-----BEGIN CERTIFICATE-----\nMALFORMED\n-----END CERTIFICATE-----\n",
                          "tls.key": "-----BEGIN PRIVATE KEY-----\nMALFORMED\n-----END PRIVATE KEY-----\n"}}
    d = doc()
    gw = next(m for m in d["manifests"] if m["kind"] == "Gateway")
    gw["spec"]["listeners"][1]["tls"] = {"certificateRefs": [{"name": "malformed"}]}
    d["manifests"].append(bad)
    ls = next(x for x in state_of(d).gateways[0].listeners if x.name == "https")
    assert cond(ls.conditions, "ResolvedRefs").reason == "InvalidCertificateRef" and not ls.cert
    assert cond(ls.conditions, "Programmed").status == "False"
