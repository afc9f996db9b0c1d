"""Gateway API on a real lab (gwt: topologies/gateway.yaml renamed): from the internet host, at the
Gateway's pool address, a header match always reaches its backend, 80/20 weights split 500 requests
within 5 points, a RequestRedirect answers 301 with the prefix replaced, a cross-namespace backend
answers through its ReferenceGrant, the HTTPS listener serves a certificate of the lab's CA;
`lab get` shows status.addresses and Accepted; `lab check`'s
gateway rows pass; `lab apply -f` changes routes live (the same Envoy process); and the rows fail
when the Envoy is gone."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

import pytest
import yaml

from tests.integration.conftest import ROOT, lab, needs_root, wait_for

pytestmark = [needs_root, pytest.mark.root]

NAME = "gwt"
ADDRESS = "172.18.0.240"
ENVOY_CONFIG = f"/run/k8s-netlab/{NAME}/gateway/default_eg/envoy.json"


@pytest.fixture(scope="module")
def gwt(tmp_path_factory):
    doc = yaml.safe_load((ROOT / "topologies" / "gateway.yaml").read_text())
    doc["name"] = NAME
    path = tmp_path_factory.mktemp("gwt") / "gwt.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    lab("up", str(path))
    try:
        yield path.parent
    finally:
        lab("down", NAME, check=False)


def curl(*args: str, host: str = "shop.example") -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", f"{NAME}-internet", "curl", "-sS", "-m", "3", "-H", f"Host: {host}",
                           *args], capture_output=True, text=True)


def served_by(*args: str, host: str = "shop.example") -> str:
    out = curl("-o", "/dev/null", "-w", "%{http_code} %header{x-netexec-hostname}", *args, host=host)
    assert out.returncode == 0, out.stderr
    return out.stdout


def envoy_pid() -> int:
    out = subprocess.run(["pgrep", "-f", ENVOY_CONFIG], capture_output=True, text=True).stdout.split()
    assert len(out) == 1, out
    return int(out[0])


def test_a_header_match_always_reaches_its_backend(gwt):
    answers = {served_by("-H", "env: canary", f"http://{ADDRESS}/") for _ in range(20)}
    assert all(a.startswith("200 shop-v2-") for a in answers), answers


def test_80_20_weights_split_500_requests_within_5_points(gwt):
    args = [x for _ in range(500) for x in (f"http://{ADDRESS}/", "-o", "/dev/null")]
    out = curl("-w", "%{http_code} %header{x-netexec-hostname}\n", *args)
    assert out.returncode == 0, out.stderr
    seen = Counter(line.split()[1].rsplit("-", 2)[0] for line in out.stdout.splitlines() if line.startswith("200 "))
    assert sum(seen.values()) == 500, out.stdout[-300:]
    assert abs(seen["shop-v1"] / 500 - 0.8) <= 0.05, seen
    print(f"weights 80/20 over 500 requests: {dict(seen)}")


def test_a_request_redirect_answers_301_with_the_prefix_replaced(gwt):
    out = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"http://{ADDRESS}/old/cart")
    assert out.stdout == "301 http://shop.example/new/cart"


def test_a_cross_namespace_backend_answers_through_its_reference_grant_and_no_route_is_404(gwt):
    assert served_by(f"http://{ADDRESS}/billing/x").startswith("200 invoices-")
    assert served_by(f"http://{ADDRESS}/", host="nobody.example").startswith("404")
    by_name = subprocess.run(["ip", "netns", "exec", f"{NAME}-internet", "curl", "-sS", "-m", "3", "-H", "env: canary",
                              "http://shop.example/"], capture_output=True, text=True)  # the lab's outside resolver
    assert by_name.stdout.startswith("shop-v2-"), by_name.stderr


def test_the_https_listener_serves_the_labs_certificate_by_name(gwt):
    out = subprocess.run(["ip", "netns", "exec", f"{NAME}-internet", "curl", "-sS", "-m", "3", "--cacert",
                          f"/run/k8s-netlab/{NAME}/ca.crt", "-H", "env: canary", "https://shop.example/"],
                         capture_output=True, text=True)  # verified with the lab's CA: SNI picked the listener
    assert out.returncode == 0 and out.stdout.startswith("shop-v2-"), out.stderr


def test_lab_get_shows_addresses_and_conditions(gwt):
    gws = json.loads(lab("get", "gateways", "--lab", NAME, "-o", "json").stdout)["items"]
    assert gws[0]["status"]["addresses"] == [{"type": "IPAddress", "value": ADDRESS}]
    assert {c["type"]: c["status"] for c in gws[0]["status"]["conditions"]} == {"Accepted": "True", "Programmed": "True"}
    routes = json.loads(lab("get", "httproutes", "--lab", NAME, "-o", "json").stdout)["items"]
    conds = {c["type"]: c["status"] for c in routes[0]["status"]["parents"][0]["conditions"]}
    assert conds == {"Accepted": "True", "ResolvedRefs": "True"}
    assert "envoy" in lab("get", "gatewayclasses", "--lab", NAME).stdout


def test_lab_check_has_passing_gateway_rows(gwt):
    out = lab("check", "--lab", NAME)
    rows = {line.split()[0]: line.split()[1:3] for line in out.stdout.splitlines() if line.startswith("gateway")}
    assert rows == {"gateway": ["8", "0"], "gateway-weights": ["1", "0"]}, out.stdout  # 4 matches, HTTP and HTTPS


def test_lab_trace_goes_through_the_gateway_to_its_envoy_and_names_the_route_and_backend(gwt):
    out = lab("trace", "--lab", NAME, "host/internet", "gateway/eg", "-H", "env: canary", "-o", "json", check=False)
    doc = json.loads(out.stdout)
    rows = {r["step"]: r for r in doc["rows"]}
    proxy = next(h for h in doc["predicted"] if h["kind"] == "proxy")
    assert "route httproute/default/shop/rule/0/match/0 → cluster default/shop-v2/80" in proxy["what"]
    dnat = next(h for h in doc["predicted"] if h["kind"] == "dnat")
    deliver = next(h for h in doc["predicted"] if h["kind"] == "deliver")
    assert "envoy-default-eg" in deliver["component"]
    # the probe's own leg is observed: the LoadBalancer DNAT to the Envoy pod, and Envoy's answer (a
    # proxy does not say whom it saw as the client: the delivery row is unseen, never a difference)
    reply = doc["predicted"][-1]
    assert rows[str(dnat["step"])]["mark"] == rows[str(reply["step"])]["mark"] == "=", doc["rows"]
    assert rows[str(deliver["step"])]["mark"] in ("=", "?"), doc["rows"]
    assert out.returncode == 0 and doc["verdict"].endswith("every observed step matches the prediction"), doc["rows"]


def test_lab_apply_changes_routes_live_without_restarting_envoy(gwt):
    pid = envoy_pid()
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "shop"}, "spec": {
        "parentRefs": [{"name": "eg"}], "hostnames": ["shop.example"], "rules": [
            {"matches": [{"path": {"type": "Exact", "value": "/only-v1"}}],
             "filters": [{"type": "ResponseHeaderModifier",
                          "responseHeaderModifier": {"set": [{"name": "x-route", "value": "live"}]}}],
             "backendRefs": [{"name": "shop-v1", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/billing"}}],
             "backendRefs": [{"name": "invoices", "namespace": "billing", "port": 8080}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/rewrite"}}],
             "filters": [{"type": "URLRewrite", "urlRewrite": {
                 "hostname": "in.example", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/inside"}}},
                 {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                     "set": [{"name": "x-from", "value": "gateway"}], "add": [{"name": "x-add", "value": "2"}],
                     "remove": ["x-drop"]}}],
             "backendRefs": [{"name": "shop-v1", "port": 80}]}]}}
    f = gwt / "route.yaml"
    f.write_text(yaml.safe_dump(route))
    t0 = time.perf_counter()
    lab("apply", "--lab", NAME, "-f", str(f))
    applied = time.perf_counter() - t0  # the baseline: the CLI itself (Python start-up, topology load, plan)
    assert wait_for(lambda: served_by(f"http://{ADDRESS}/only-v1").startswith("200 shop-v1-"), timeout=2)
    print(f"lab apply -f {applied:.2f}s; the new route answered {time.perf_counter() - t0:.2f}s after it started")
    assert "x-route: live" in curl("-D", "-", "-o", "/dev/null", f"http://{ADDRESS}/only-v1").stdout
    assert served_by(f"http://{ADDRESS}/").startswith("404")  # the old catch-all rule is gone
    echo = json.loads(curl("-H", "X-Netexec-Echo: request", "-H", "x-from: client", "-H", "x-add: 1", "-H", "x-drop: 1",
                           f"http://{ADDRESS}/rewrite/a?b=c").stdout)  # what the backend received
    assert (echo["path"], echo["host"]) == ("/inside/a?b=c", "in.example")
    headers = {k.lower(): v for k, v in echo["headers"].items()}
    assert headers["x-from"] == ["gateway"] and "x-drop" not in headers
    assert sorted(v for vs in (headers["x-add"],) for v in ",".join(vs).split(",")) == ["1", "2"]
    lab("delete", "--lab", NAME, "-f", str(ROOT / "tests" / "data" / "gateway" / "grant.yaml"))
    assert wait_for(lambda: served_by(f"http://{ADDRESS}/billing/x").startswith("500"), timeout=2)  # RefNotPermitted
    routes = json.loads(lab("get", "httproutes", "--lab", NAME, "-o", "json").stdout)["items"]
    resolved = next(c for c in routes[0]["status"]["parents"][0]["conditions"] if c["type"] == "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "RefNotPermitted")
    assert envoy_pid() == pid


def programmed() -> str:
    gw = json.loads(lab("get", "gateways", "--lab", NAME, "-o", "json").stdout)["items"][0]
    return next(c["status"] for c in gw["status"]["conditions"] if c["type"] == "Programmed")


def test_the_gateway_rows_fail_when_envoy_is_gone(gwt):
    os.kill(envoy_pid(), signal.SIGKILL)
    assert wait_for(lambda: programmed() == "False", timeout=10)  # its pod found not ready: settled
    out = lab("check", "--lab", NAME, check=False)
    assert out.returncode != 0
    row = next(line for line in out.stdout.splitlines() if line.startswith("gateway "))
    assert row.split()[2] != "0", out.stdout
