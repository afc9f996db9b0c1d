"""Loading topology files: the bad corpus reports what it promises, the good files load."""
from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from lab.errors import TopologyError
from lab.topology.load import load_topology, load_topology_text
from lab.topology.model import Deployment, Namespace, Pod

DATA = Path(__file__).resolve().parents[1] / "data" / "topologies"
BAD = sorted((DATA / "bad").glob("*.yaml"))
GOOD = sorted((DATA / "good").glob("*.yaml"))


def expectations(path: Path, marker: str = "expect") -> list[tuple[str, int | None]]:
    """The file's leading `# <marker>: <substring>` lines, each with the `# line: N` that follows it."""
    expected: list[tuple[str, int | None]] = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line.lstrip("# ").partition(": ")
        if key == marker:
            expected.append((value, None))
        elif key == "line":
            expected[-1] = (expected[-1][0], int(value))
    return expected


def errors_of(load) -> TopologyError:
    with pytest.raises(TopologyError) as caught:
        load()
    return caught.value


def test_bad_corpus_is_large_enough():
    assert len(BAD) >= 20
    assert all(expectations(path) for path in BAD)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_file_reports_expected_problems(path: Path):
    error = errors_of(lambda: load_topology(path))
    text = str(error)
    for substring, line in expectations(path):
        assert substring in text
        if line is not None:
            lines = [d.line for d in error.diagnostics if substring in str(d)]
            assert lines and set(lines) == {line}, f"{substring!r} reported at {lines}, expected {line}"


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_file_loads(path: Path):
    assert load_topology(path).nodes


def test_minimal_gets_defaults():
    topology = load_topology(DATA / "good" / "minimal.yaml")
    assert topology.cluster.podCIDR == (IPv4Network("10.244.0.0/16"),)
    assert topology.cluster.network == "vxlan"
    assert topology.nodes[0].role == "worker"
    assert topology.pod_mtu() == 1450


def test_full_resolves_every_section():
    topology = load_topology(DATA / "good" / "full.yaml")
    assert topology.cluster.serviceCIDR == (IPv4Network("10.100.0.0/16"),)
    assert topology.pod_mtu() == 1400
    assert topology.underlay.switch == "ovs"
    assert topology.nodes[0].labels == {"topology.kubernetes.io/zone": "zone-a"}
    assert [type(m) for m in topology.manifests] == [Namespace, Pod, Deployment]
    web = topology.manifests[2]
    assert web.spec.replicas == 3
    assert [p.protocol for p in web.spec.template.spec.containers[0].ports] == ["TCP", "UDP"]
    assert topology.checks[0].from_ == "shop/pod/client"
    assert topology.checks[1].protocol == "UDP"


def test_manifests_folder_reads_files_by_name_and_every_document():
    topology = load_topology(DATA / "good" / "folder.yaml")
    assert [(type(m), m.metadata.name) for m in topology.manifests] == [
        (Namespace, "team-a"), (Deployment, "api"), (Pod, "client")]
    assert topology.manifests[1].spec.replicas == 2


def test_missing_file():
    error = errors_of(lambda: load_topology(DATA / "no-such-file.yaml"))
    assert "file not found" in str(error)
    assert error.diagnostics[0].line is None


def test_directory_instead_of_file():
    error = errors_of(lambda: load_topology(DATA / "good"))
    assert "is a directory" in str(error)
    assert "folder.yaml" in error.diagnostics[0].hint


def test_text_loading_names_the_file():
    error = errors_of(lambda: load_topology_text("name: x\nnodes: [{name: n1, rol: worker}]\n", "inline.yaml"))
    assert str(error.diagnostics[0]).startswith("inline.yaml:2: nodes[0].rol: unknown field 'rol'")
    assert "did you mean 'role'?" in error.diagnostics[0].hint


def test_text_loading_default_file_name():
    assert load_topology_text("name: x\nnodes: [{name: n1}]\n").name == "x"


def test_diagnostics_are_sorted_by_file_then_line():
    error = errors_of(lambda: load_topology(DATA / "bad" / "manifests_folder_error.yaml"))
    assert [(Path(d.file).name, d.line) for d in error.diagnostics] == [
        ("apps.yaml", 9), ("apps.yaml", 17), ("pods.yaml", 6)]


def test_unknown_kind_suggests_case():
    text = "name: x\nnodes: [{name: n1}]\nmanifests: [{apiVersion: v1, kind: pod}]\n"
    error = errors_of(lambda: load_topology_text(text))
    assert "did you mean 'Pod'?" in error.diagnostics[0].hint


def test_missing_field_points_at_its_parent():
    text = "name: x\nnodes:\n  - role: worker\n"
    (diagnostic,) = errors_of(lambda: load_topology_text(text)).diagnostics
    assert (diagnostic.line, diagnostic.path) == (3, "nodes[0].name")
    assert diagnostic.message == "missing required field 'name'"


# --- cluster.cni: a plugin of one's own ---

def _cni_topology(tmp_path, cni: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\ncluster: {{cni: {cni}}}\nnodes: [{{name: a}}]\n")
    return path


def test_a_plugin_path_is_made_absolute_from_the_topology_files_folder(tmp_path):
    (tmp_path / "plugins").mkdir()
    plugin = tmp_path / "plugins" / "my-cni"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    assert load_topology(_cni_topology(tmp_path, "./plugins/my-cni")).cluster.cni == str(plugin)


@pytest.mark.parametrize("cni, mode, expected", [
    ("flannel", None, "cni is bridge, ptp, or the path of a CNI plugin executable"),
    ("./missing", None, "CNI plugin ./missing"),
    ("./not-exec", 0o644, "is not executable"),
])
def test_a_plugin_that_cannot_be_used_is_an_error_with_file_and_line(tmp_path, cni, mode, expected):
    if mode is not None:
        (tmp_path / "not-exec").write_text("#!/bin/sh\n")
        (tmp_path / "not-exec").chmod(mode)
    text = str(errors_of(lambda: load_topology(_cni_topology(tmp_path, cni))))
    assert expected in text and ":2: cluster.cni" in text


def test_an_ip_block_with_host_bits_is_its_network_with_the_api_servers_warning():
    from lab.topology.load import reporting

    text = """\
name: wdnp
nodes: [{name: n1}]
manifests:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: p}
  spec:
    podSelector: {}
    egress:
    - to:
      - ipBlock: {cidr: 10.0.0.1/24, except: [10.0.0.130/25, 10.0.0.64/26]}
"""
    warned = []
    with reporting(report=warned.extend):
        topo = load_topology_text(text, "np.yaml")
    block = topo.manifests[0].spec.egress[0].to[0].ipBlock
    assert (block.cidr, block.except_) == (IPv4Network("10.0.0.0/24"), [IPv4Network("10.0.0.128/25"),
                                                                        IPv4Network("10.0.0.64/26")])
    w, other = warned
    assert other.path.endswith("ipBlock.except[0]")
    assert (w.line, w.path) == (11, "manifests[0].spec.egress[0].to[0].ipBlock.cidr")
    assert 'CIDR value "10.0.0.1/24" is ambiguous in this context (should be "10.0.0.0/24" or "10.0.0.1/32"?)' \
        in w.message
    with pytest.raises(TopologyError, match="ambiguous"), reporting(strict=True):
        load_topology_text(text, "np.yaml")


def test_load_balancer_source_ranges_with_host_bits_are_their_networks_too():
    from lab.topology.load import reporting

    text = """\
name: wdlb
nodes: [{name: n1}]
manifests:
- {apiVersion: v1, kind: Service, metadata: {name: s},
   spec: {type: LoadBalancer, loadBalancerSourceRanges: [10.0.0.1/8, 192.168.0.0/16], ports: [{port: 80}]}}
"""
    warned = []
    with reporting(report=warned.extend):
        topo = load_topology_text(text, "lb.yaml")
    assert topo.manifests[0].spec.loadBalancerSourceRanges == [IPv4Network("10.0.0.0/8"), IPv4Network("192.168.0.0/16")]
    assert "manifests[0].spec.loadBalancerSourceRanges[0]" in [w.path for w in warned]  # (and: no pool)
