"""The claim of docs/ARCHITECTURE.md, "adding a kind is its unit plus its registration", tested: on
a copy of lab/, a toy pod network and a toy controller with an add-on are added exactly as the
document lists (new modules, one registration line each, the name in lab/topology/kinds.py, the
layer in pyproject.toml), and nothing else is edited. The copy then plans a topology that uses
both, and every consumer takes them from the registries: the node's kernel operations, lab trace's
next hop, lab graph's drawing and a fault target for the network; the pods and Service of the
add-on, its namespace, the program of its image and its sync in reconcile() for the controller.
No root: the plan is pure and reconcile runs against the FakeHost.
"""
from __future__ import annotations

import json
from ipaddress import ip_address, ip_network
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TOY_NETWORK = '''"""network: toy — a test's pod network: host-gw's routes under a name of its own."""
from __future__ import annotations

from lab.routing import hostgw
from lab.routing.kind import Backend, Drawing, NextHop


def next_hop(state, node, peer):
    return NextHop("eth0", peer.ip, f"{peer.pod_cidr} via {peer.ip}: toy route")


BACKEND = Backend("toy", hostgw.render, next_hop=next_hop, drawing=Drawing(eth0=lambda state, n: ("toy wire",)),
                  overlay_device="toy0")
'''

TOY_ADDON = '''"""A test's add-on: one pod of image toy and its Service, in toy-system."""
from __future__ import annotations

from lab.controlplane.addon import AddOn


def objects(topo, taken):
    from lab.topology.model import Deployment, Service

    labels = {"app": "toy"}
    return [Deployment.model_validate({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "toy", "namespace": "toy-system"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                 "spec": {"nodeName": topo.nodes[-1].name,
                          "containers": [{"name": "toy", "image": "toy", "ports": [{"containerPort": 7000}]}]}}}}),
        Service.model_validate({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "toy", "namespace": "toy-system"},
            "spec": {"selector": labels, "ports": [{"port": 7000}]}})]


ADDON = AddOn("toy", "toy", "toy-system", lambda topo: True, objects)
'''

TOY_CONTROLLER = '''"""A test's controller: runs the toy add-on, and its sync writes its section."""
from __future__ import annotations

from lab.controlplane import toy
from lab.controlplane.controller import Controller


def sync(record, diff):
    record.section("toy")["services"] = sorted(s.key for s in diff.new.services if s.namespace == "toy-system")
    return record.section("toy")["services"]


CONTROLLER = Controller("toy", addon=toy.ADDON, images={"toy": lambda record, pod: ["toy-server", pod.name]},
                        sync=sync)
'''

# What the copy runs: the toy kinds used end to end, printed as JSON.
PROBE = '''
import json, sys
from dataclasses import replace
from lab import host, routing
from lab.controlplane.plan import plan
from lab.faults.model import reads
from lab.graph.build import build
from lab.graph.mermaid import render as mermaid
from lab.host import record as records
from lab.host.fake import FakeHost
from lab.host.record import LabRecord
from lab.runtime import controllers
from lab.topology.load import load_topology_text
from lab.trace.predict import route

records.RUN_ROOT = __import__("pathlib").Path(sys.argv[1])
state = plan(load_topology_text("""
name: toylab
cluster: {network: toy, dns: {enabled: false}}
nodes: [{name: a}, {name: b}]
"""))
a, b = state.nodes
pod = next(p for p in state.pods if p.namespace == "toy-system")
rec = LabRecord(name=state.lab, state=replace(state, pods=(), services=()), status="running", pod_ready={})
rec.dir.mkdir(parents=True)
with host.using(FakeHost()):
    done = controllers.reconcile(rec, state, {p.key: True for p in state.pods}, first=True)
print(json.dumps({
    "network": state.network,
    "ops": list(routing.render(state, a).ip),
    "trace": route(state, a.name, pod.ip)[2],
    "graph": "toy wire" in mermaid(build(state)),
    "fault": sorted({r[2] for r in reads(state, "mtu", "overlay", {"value": 1400})}),
    "namespaces": list(state.namespaces),
    "addon": [pod.name, pod.containers[0].image, pod.node],
    "service": [s.cluster_ip for s in state.services if s.key == "toy-system/toy"],
    "program": controllers.programs()["toy"](rec, pod),
    "synced": list(done["toy"]),
}))
'''


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: {old!r}"
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """lab/ and pyproject.toml copied, with the toy kinds added as docs/ARCHITECTURE.md says."""
    top = tmp_path_factory.mktemp("house")
    shutil.copytree(ROOT / "lab", top / "lab", ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", top)
    lab = top / "lab"
    # a pod network: its module, its line in the registry, its name, its layer
    (lab / "routing" / "toy.py").write_text(TOY_NETWORK)
    _edit(lab / "routing" / "__init__.py", "from lab.routing import bgp, fabric, hostgw, vpc, vxlan",
          "from lab.routing import bgp, fabric, hostgw, toy, vpc, vxlan")
    _edit(lab / "routing" / "__init__.py", "vpc.BACKEND)", "vpc.BACKEND, toy.BACKEND)")
    _edit(lab / "topology" / "kinds.py", '    "host-gw": Network(),\n', '    "host-gw": Network(),\n    "toy": Network(),\n')
    _edit(top / "pyproject.toml", '"routing.bgp : ', '"routing.toy : routing.bgp : ')
    _edit(top / "pyproject.toml", '"bgp : fabric', '"toy : bgp : fabric')
    # a controller with an add-on: its pure module and its runtime, a line in each registry, its image, its layers
    (lab / "controlplane" / "toy.py").write_text(TOY_ADDON)
    (lab / "toyctl").mkdir()
    (lab / "toyctl" / "__init__.py").write_text('"""A test\'s controller."""\n')
    (lab / "toyctl" / "runtime.py").write_text(TOY_CONTROLLER)
    _edit(lab / "controlplane" / "addons.py", "from lab.controlplane import gateway, ingress, kube_dns",
          "from lab.controlplane import gateway, ingress, kube_dns, toy")
    _edit(lab / "controlplane" / "addons.py", "    gateway.ADDON,", "    gateway.ADDON,\n    toy.ADDON,")
    _edit(lab / "runtime" / "controllers.py", "from lab.policy import sync as policy",
          "from lab.policy import sync as policy\nfrom lab.toyctl import runtime as toy")
    _edit(lab / "runtime" / "controllers.py", "    cni_config.HOST_PORTS,", "    cni_config.HOST_PORTS,\n    toy.CONTROLLER,")
    _edit(lab / "topology" / "kinds.py", '"ingress-nginx", "envoy")', '"ingress-nginx", "envoy", "toy")')
    _edit(top / "pyproject.toml", '"controlplane.addon : ', '"controlplane.toy : controlplane.addon : ')
    _edit(top / "pyproject.toml", '"addon : addons', '"toy : addon : addons')
    _edit(top / "pyproject.toml", '"dns.runtime : ingress.runtime', '"toyctl : dns.runtime : ingress.runtime')
    return top


def _changed(top: Path) -> set[str]:
    """Files of the copy that differ from the tree: new or edited."""
    out = set()
    for path in (top / "lab").rglob("*.py"):
        rel = path.relative_to(top)
        if not (ROOT / rel).is_file() or (ROOT / rel).read_bytes() != path.read_bytes():
            out.add(str(rel))
    if (top / "pyproject.toml").read_bytes() != (ROOT / "pyproject.toml").read_bytes():
        out.add("pyproject.toml")
    return out


def test_a_kind_and_a_controller_are_their_units_plus_their_registrations(copy):
    assert _changed(copy) == {
        "lab/routing/toy.py", "lab/routing/__init__.py",                            # the network, its registration
        "lab/controlplane/toy.py", "lab/controlplane/addons.py",                    # the add-on, its registration
        "lab/toyctl/__init__.py", "lab/toyctl/runtime.py", "lab/runtime/controllers.py",  # the controller, its registration
        "lab/topology/kinds.py", "pyproject.toml",                                  # the names, the layers
    }
    lint = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=copy, capture_output=True, text=True,
                          env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert lint.returncode == 0, lint.stdout[-2000:]


def test_the_toys_are_used_end_to_end_in_planning(copy, tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "run")], cwd=copy, capture_output=True,
                          text=True, env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    assert seen["network"] == "toy"
    assert any(op.startswith("route replace 10.244.1.0/24 via") for op in seen["ops"]), "its kernel ops"
    assert seen["trace"].endswith("toy route"), "lab trace's next hop"
    assert seen["graph"] is True, "lab graph's drawing"
    assert seen["fault"] == ["toy0"], "its fault target: its overlay device"
    assert "toy-system" in seen["namespaces"]
    name, image, node = seen["addon"]
    assert name.startswith("toy-") and image == "toy" and node == "b", "the add-on's pod, on the node it names"
    assert len(seen["service"]) == 1 and ip_address(seen["service"][0]) in ip_network("10.96.0.0/12"), \
        "its Service, with a ClusterIP"
    assert seen["program"] == ["toy-server", name], "the program its controller registered for the image"
    assert seen["synced"] == ["toy-system/toy"], "its sync, run by reconcile()"
