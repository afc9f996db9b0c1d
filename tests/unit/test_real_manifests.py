"""Real manifests just work: what a real API server accepts validates, fields and kinds with no
network meaning are ignored with one warning per kind (file:line and all), --strict makes them
errors, and what the lab cannot do stays an error with a hint."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import TopologyError
from lab.topology.load import check_topology, load_topology, load_topology_text, reporting
from lab.topology.model import NetworkPolicy, Pod
from tests.unit.test_topology_load import expectations as header_expectations

DATA = Path(__file__).resolve().parents[1] / "data" / "topologies"
WARN = sorted((DATA / "warn").glob("*.yaml"))
ROOT = Path(__file__).resolve().parents[2]


def expectations(path: Path) -> list[tuple[str, int | None]]:
    """The file's leading `# warn: <substring>` lines, each with the `# line: N` that follows it."""
    return header_expectations(path, "warn")


@pytest.mark.parametrize("path", WARN, ids=lambda p: p.stem)
def test_warn_corpus_loads_with_each_warning_once(path: Path):
    topology, warnings = check_topology(path)
    assert topology.nodes
    assert all(w.is_warning and w.file == str(path) and w.line for w in warnings)
    messages = [w.message for w in warnings]
    assert len(messages) == len(set(messages)), "a kind of warning is printed once"
    for substring, line in expectations(path):
        found = [w for w in warnings if substring in str(w)]
        if substring.startswith("hint: "):  # a hint may be shared by several kinds of field
            assert found, substring
            continue
        assert len(found) == 1, (substring, [str(w) for w in warnings])
        if line is not None:
            assert found[0].line == line, f"{substring!r} at {found[0].line}, expected {line}"
        assert "did you mean" not in str(found[0])


@pytest.mark.parametrize("path", [p for p in WARN if expectations(p)], ids=lambda p: p.stem)
def test_strict_turns_every_warning_into_an_error(path: Path):
    with reporting(strict=True), pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert all(not d.is_warning for d in caught.value.diagnostics)
    for substring, line in expectations(path):
        if substring.startswith("hint: "):
            continue
        lines = [d.line for d in caught.value.diagnostics if substring in str(d)]
        assert lines, substring
        if line is not None:
            assert line in lines


def test_warnings_of_one_kind_are_grouped_with_every_place():
    text = """
name: grouped
nodes: [{name: node1}]
manifests:
  - {apiVersion: v1, kind: Pod, metadata: {name: a},
     spec: {containers: [{name: a, image: netexec, ports: [{containerPort: 80}], resources: {}}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: b},
     spec: {containers: [{name: b, image: netexec, ports: [{containerPort: 80}], resources: {}}]}}
  - {apiVersion: v1, kind: ServiceAccount, metadata: {name: a}}
  - {apiVersion: v1, kind: ServiceAccount, metadata: {name: b}}
"""
    found = []
    with reporting(report=found.extend):
        topology = load_topology_text(text, "app.yaml")
    assert [m.metadata.name for m in topology.manifests] == ["a", "b"], "ignored kinds are left out"
    assert len(found) == 2
    resources = next(w for w in found if "resources" in w.message)
    assert (resources.line, resources.also) == (6, (("app.yaml", 8),))
    assert "also at: app.yaml:8" in str(resources)
    accounts = next(w for w in found if "ServiceAccount" in w.message)
    assert (accounts.line, accounts.also) == (9, (("app.yaml", 10),))


def test_ignored_fields_are_not_in_the_loaded_topology():
    topology, _ = check_topology(DATA / "warn" / "container_fields.yaml")
    pod = topology.manifests[0]
    assert isinstance(pod, Pod)
    assert pod.spec.containers[0].ports[0].containerPort == 8080


def test_nulls_read_as_not_set():
    topology, warnings = check_topology(DATA / "warn" / "nulls.yaml")
    assert warnings == []
    deny, allow = [m for m in topology.manifests if isinstance(m, NetworkPolicy)]
    assert deny.spec.podSelector.matchLabels == {} and deny.spec.ingress == []
    assert len(allow.spec.ingress) == 1 and allow.spec.ingress[0].from_ == []


def test_errors_and_warnings_come_in_one_pass():
    text = """
name: onepass
nodes: [{name: node1}]
manifests:
  - {apiVersion: v1, kind: ServiceAccount, metadata: {name: a}}
  - {apiVersion: v1, kind: Pod, metadata: {name: a},
     spec: {restartPolicy: Always, containers: [{name: a, image: netexec, ports: [{containerPort: 80}], bogus: 1}]}}
"""
    with pytest.raises(TopologyError) as caught:
        load_topology_text(text, "app.yaml")
    text = str(caught.value)
    assert text.startswith("1 error in topology")
    assert "unknown field 'bogus'" in text
    assert "2 warnings" in text and "kind ServiceAccount is ignored" in text
    assert "pod spec field 'restartPolicy' is ignored" in text
    assert "did you mean 'Service'" not in text and "dnsPolicy" not in text


def test_kustomization_file_in_a_manifests_folder_is_skipped_with_a_warning(tmp_path: Path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "kustomization.yaml").write_text("resources: [web.yaml]\n")
    (tmp_path / "m" / "web.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n"
        "spec: {containers: [{name: web, image: netexec, ports: [{containerPort: 80}]}]}\n")
    (tmp_path / "lab.yaml").write_text("name: kust\nnodes: [{name: node1}]\nmanifests: m\n")
    topology, warnings = check_topology(tmp_path / "lab.yaml")
    assert [m.metadata.name for m in topology.manifests] == ["web"]
    assert [w.file for w in warnings] == [str(tmp_path / "m" / "kustomization.yaml")]
    assert "kustomize build file is ignored" in warnings[0].message


def _lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from lab.cli import main; sys.exit(main())", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_lab_validate_prints_warnings_once_and_strict_fails():
    path = str(DATA / "warn" / "pod_spec_fields.yaml")
    ok = _lab("validate", path)
    assert ok.returncode == 0, ok.stderr
    assert "valid: lab podspec" in ok.stdout
    assert ok.stderr.count("pod spec field 'serviceAccountName' is ignored") == 1
    assert "--strict makes them errors" in ok.stderr
    strict = _lab("validate", "--strict", path)
    assert strict.returncode == 1
    assert "errors in topology" in strict.stderr and "Traceback" not in strict.stderr


def test_images_that_are_not_built_in_get_a_stand_in_plan():
    from lab.controlplane.plan import plan

    topology, _ = check_topology(DATA / "warn" / "image_stand_in.yaml")
    pods = {p.name: p for p in plan(topology).pods}
    redis = [p for p in pods.values() if p.name.startswith("redis-")]
    assert len(redis) == 2
    assert all(p.containers[0].image == "netexec" and [x.port for x in p.containers[0].ports] == [6379]
               for p in redis)
    assert pods["idle"].containers[0].image == "pause" and pods["idle"].containers[0].argv == ()
    api = pods["api"].containers[0]
    assert api.image == "netexec"
    assert [(x.port, x.name) for x in api.ports] == [(8080, "http"), (9090, None)], "named targetPort: declared"
    assert (api.readiness.kind, api.readiness.port) == ("grpc", 8080), "a grpc probe is the kubelet's Health/Check"


def test_a_command_still_runs_a_host_program():
    text = """
name: hostprog
nodes: [{name: node1}]
manifests:
  - {apiVersion: v1, kind: Pod, metadata: {name: shell},
     spec: {containers: [{name: shell, image: busybox, command: [sleep, infinity]}]}}
"""
    from lab.controlplane.plan import plan

    found = []
    with reporting(report=found.extend):
        topology = load_topology_text(text, "p.yaml")
    assert found == []
    container = plan(topology).pods[0].containers[0]
    assert (container.image, container.argv) == ("busybox", ("sleep", "infinity"))


def test_stand_in_serves_service_target_ports_only_of_selected_pods():
    text = """
name: svcports
nodes: [{name: node1}]
manifests:
  - {apiVersion: v1, kind: Pod, metadata: {name: a, labels: {app: a}}, spec: {containers: [{name: a, image: nginx}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: b, labels: {app: b}}, spec: {containers: [{name: b, image: nginx}]}}
  - {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {selector: {app: a}, ports: [{port: 80, targetPort: 8080}]}}
"""
    from lab.controlplane.plan import plan

    found = []
    with reporting(report=found.extend):
        topology = load_topology_text(text, "s.yaml")
    pods = {p.name: p.containers[0] for p in plan(topology).pods}
    assert (pods["a"].image, [x.port for x in pods["a"].ports]) == ("netexec", [8080])
    assert (pods["b"].image, pods["b"].ports) == ("pause", ())
    assert sorted(w.message.split(":")[0] for w in found) == [
        "image 'nginx' is not built in",
        "image 'nginx' is not built in and has no port to serve (no containerPort, no Service selecting it)"]


@pytest.mark.parametrize("manifest", [
    "{apiVersion: v1, kind: Pod, metadata: [], spec: 5}",
    "{apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: x, volumes: 3}}",
    "{apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: [5, {name: b, image: x, ports: [1, {hostPort: 1}]}]}}",
    "{apiVersion: apps/v1, kind: Deployment, metadata: {name: a}, spec: {template: 3, strategy: 1}}",
    "{apiVersion: v1, kind: Service, metadata: {name: a}, spec: {ports: [x, {port: 80, appProtocol: http}]}}",
    "{apiVersion: v1, kind: Namespace, metadata: {name: a, annotations: 3}, spec: 1}",
    "{kind: ServiceAccount}",
    "[1, 2]",
    "null",
])
def test_odd_shapes_are_diagnostics_never_tracebacks(manifest: str):
    text = f"name: odd\nnodes: [{{name: node1}}]\nmanifests:\n  - {manifest}\n"
    try:
        load_topology_text(text, "odd.yaml")
    except TopologyError as e:
        assert all(d.file == "odd.yaml" for d in e.diagnostics)
