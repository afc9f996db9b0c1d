"""The Gateway API conformance behaviours (scenarios/gateway-conformance/) on a real lab, as CI runs
them: one `lab scenario run --shared` call, every scenario on one lab (gwconf), reset between them.
A last scenario on the same lab asks for what is false (a 20-point weight error, the wrong backend,
namespace, header, condition, mirror, a 504 that cannot come) with `expect: fail`: each verdict of
the http and get steps is shown able to fail on the live Envoy, not only in unit tests."""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.controlplane.naming import switch_name
from tests.integration.conftest import ROOT, lab, lab_leftovers, needs_root

pytestmark = [needs_root, pytest.mark.root]

CORPUS = sorted((ROOT / "scenarios" / "gateway-conformance").glob("*.yaml"))
TOPOLOGY = ROOT / "scenarios" / "topologies" / "gateway-conformance.yaml"
NAME = "gwconf"
G = "{from: host/client, to: gateway/gateway-conformance-infra/same-namespace"
S = "from: host/client, to: gateway/gateway-conformance-infra/standard"

FALSE = f"""
name: verdicts-can-fail
topology: {TOPOLOGY}
steps:
  - apply:
      - apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {{name: checks, namespace: gateway-conformance-infra}}
        spec:
          parentRefs: [{{name: same-namespace}}]
          rules:
            - backendRefs: [{{name: infra-backend-v1, port: 8080, weight: 70}},
                            {{name: infra-backend-v2, port: 8080, weight: 30}}]
            - matches: [{{path: {{type: PathPrefix, value: /one}}}}]
              filters:
                - {{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: X-Set, value: gateway}}]}}}}
                - type: RequestMirror
                  requestMirror: {{backendRef: {{name: infra-backend-v2, port: 8080}}}}
              backendRefs: [{{name: infra-backend-v1, port: 8080}}]
  - {{wait: 5, http: {G}, path: /one, expect: {{backend: infra-backend-v1, headers: {{X-Set: gateway}},
                      mirroredTo: [gateway-conformance-infra/infra-backend-v2]}}}}}}
  - {{expect: fail, http: {G}, path: /, requests: 1000, expect: {{weights: {{infra-backend-v1: 90, infra-backend-v2: 10}}}}}}}}
  - {{expect: fail, http: {G}, path: /, requests: 1000, expect: {{weights: {{infra-backend-v1: 70, infra-backend-v3: 30}}}}}}}}
  - {{expect: fail, http: {G}, path: /one, expect: {{backend: infra-backend-v2}}}}}}
  - {{expect: fail, http: {G}, path: /one, expect: {{namespace: gateway-conformance-app-backend}}}}}}
  - {{expect: fail, http: {G}, path: /one, expect: {{headers: {{X-Set: client}}}}}}}}
  - {{expect: fail, http: {G}, path: /one, expect: {{absentHeaders: [X-Set]}}}}}}
  - {{expect: fail, http: {G}, path: /one, expect: {{mirroredTo: [gateway-conformance-infra/infra-backend-v3]}}}}}}
  - {{expect: fail, http: {G}, path: /one, expect: {{status: 404}}}}}}
  - {{expect: fail, http: {G}, path: "/one?delay=1s", expect: {{status: 504}}}}}}
  - {{expect: fail, get: {{httproute: gateway-conformance-infra/checks, json: {{status: {{parents: [{{conditions: [
      {{type: ResolvedRefs, status: "False"}}]}}]}}}}}}}}
"""


# issue 25's "done when": a standard Gateway (class envoy, HTTP on 80) and an HTTPRoute applied as
# `lab apply -f` applies them (the apply step is that code), asked from an outside host
STANDARD = f"""
name: standard-gateway-applied
topology: {TOPOLOGY}
steps:
  - apply:
      - apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {{name: standard, namespace: gateway-conformance-infra}}
        spec:
          gatewayClassName: envoy
          listeners: [{{name: http, protocol: HTTP, port: 80}}]
      - apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {{name: canary, namespace: gateway-conformance-infra}}
        spec:
          parentRefs: [{{name: standard}}]
          rules:
            - matches: [{{headers: [{{name: env, value: canary}}]}}]
              backendRefs: [{{name: infra-backend-v2, port: 8080}}]
            - matches: [{{path: {{type: PathPrefix, value: /old}}}}]
              filters: [{{type: RequestRedirect, requestRedirect: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}},
                                                                  statusCode: 301}}}}]
            - backendRefs: [{{name: infra-backend-v1, port: 8080, weight: 80}},
                            {{name: infra-backend-v2, port: 8080, weight: 20}}]
  - get: {{gateway: gateway-conformance-infra/standard, json: {{status: {{addresses: [{{type: IPAddress}}],
      conditions: [{{type: Accepted, status: "True"}}, {{type: Programmed, status: "True"}}]}}}}}}
    wait: 10
  - get: {{httproute: gateway-conformance-infra/canary, json: {{status: {{parents: [{{conditions: [
      {{type: Accepted, status: "True"}}]}}]}}}}}}
  - {{wait: 10, http: {{{S}, host: example.com, path: /old/cart,
                      expect: {{status: 301, location: "http://example.com/new/cart"}}}}}}
  - http: {{{S}, headers: {{env: canary}}, requests: 200, expect: {{weights: {{infra-backend-v2: 1, infra-backend-v1: 0}}}}}}
  - http: {{{S}, requests: 1000, expect: {{weights: {{infra-backend-v1: 80, infra-backend-v2: 20}}}}}}
"""


def test_the_conformance_scenarios_pass_on_one_shared_lab_and_their_verdicts_can_fail(tmp_path: Path):
    negative = tmp_path / "verdicts-can-fail.yaml"
    negative.write_text(FALSE)
    standard = tmp_path / "standard-gateway-applied.yaml"
    standard.write_text(STANDARD)
    junit = tmp_path / "conformance.xml"
    t0 = time.perf_counter()
    done = lab("scenario", "run", "--shared", *map(str, CORPUS), str(negative), str(standard), "--junit", str(junit),
               check=False, timeout=300)
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    suites = ET.parse(junit).getroot().findall("testsuite")
    mine = ["verdicts-can-fail", "standard-gateway-applied"]
    assert sorted(s.get("name") for s in suites) == sorted([p.stem for p in CORPUS] + mine)
    for suite in suites:
        cases = suite.findall("testcase")
        assert cases and not any(c.find("failure") is not None or c.find("skipped") is not None for c in cases), \
            suite.get("name")
    total = len(CORPUS) + 2
    assert f"{total} of {total} scenarios passed" in done.stdout
    print(f"{len(CORPUS)} conformance scenarios, the failing-verdict one and the standard Gateway on one lab: {seconds:.1f}s "
          f"(lab up, every step, resets, lab down)")
    assert lab_leftovers(NAME, switch_name(NAME)) == []
