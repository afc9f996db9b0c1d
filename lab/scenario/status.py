"""The `get` step: one Gateway API object as `lab get KIND NAME -o json` shows it, matched against a
JSON subset (lab.scenario.match: the wanted keys, list items in any order). How the conformance
suite's status checks (a route's Accepted False with reason NotAllowedByListeners, a listener's
attachedRoutes) become scenario steps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from lab.scenario.spec import Names, _known_keys, what

KINDS = {"gatewayclass": "gatewayclasses", "gateway": "gateways", "httproute": "httproutes"}


@dataclass(frozen=True)
class Get:
    kind: str           # gatewayclasses | gateways | httproutes
    namespace: str
    name: str
    json: Any           # the subset the object must contain


def parse(value: Any, at, names: Names) -> Optional[Get]:
    if not isinstance(value, dict):
        at.bad((), f"get is a mapping, not {what(value)}",
               "get: {httproute: default/shop, json: {status: {parents: [{conditions: [{type: Accepted}]}]}}}")
        return None
    ok = _known_keys(value, (*KINDS, "json"), "get", at)
    kinds = [k for k in KINDS if k in value]
    if len(kinds) != 1:
        at.bad((), f"get names one object: one of {', '.join(KINDS)}", "get: {gateway: default/eg, json: {...}}")
        return None
    ref = value[kinds[0]]
    if not isinstance(ref, str) or not ref or ref.count("/") > 1 or ref.startswith("/") or ref.endswith("/"):
        at.bad((kinds[0],), f"{kinds[0]} is NAME or NAMESPACE/NAME, not {what(ref)}")
        return None
    if "json" not in value:
        at.bad((), "get needs json: what the object must contain", "json: {status: {addresses: [{type: IPAddress}]}}")
        ok = False
    namespace, _, name = ref.rpartition("/")
    return Get(KINDS[kinds[0]], namespace or "default", name, value.get("json")) if ok else None


def summary(spec: Get) -> str:
    return f"get {spec.kind[:-1] if spec.kind != 'gatewayclasses' else 'gatewayclass'} " + \
        (spec.name if spec.kind == "gatewayclasses" else f"{spec.namespace}/{spec.name}")


def find(objects: list[dict], spec: Get) -> Optional[dict]:
    return next((o for o in objects if o["metadata"]["name"] == spec.name
                 and (spec.kind == "gatewayclasses" or o["metadata"].get("namespace") == spec.namespace)), None)
