"""Semantic rules called directly: located diagnostics, and the partial mode used after failures."""
from __future__ import annotations

from lab.topology import semantics
from lab.topology.model import Topology


def locate(path):
    return "t.yaml", len(path)  # a stand-in: the depth of the path


def topology(**fields) -> Topology:
    return Topology.model_validate({"name": "t", "nodes": [{"name": "node1"}], **fields})


def pod(name: str, namespace: str = "default", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "netexec", "ports": [{"containerPort": 8080}]}], **spec}}


def test_builtin_images():
    assert semantics.BUILTIN_IMAGES == ("netexec", "pause")


def test_valid_topology_has_no_problems():
    t = topology(hosts=[{"name": "internet"}], manifests=[pod("web")],
                 checks=[{"from": "host/internet", "to": "pod/web:8080", "expect": "allow"}])
    assert semantics.check(t, locate) == []


def test_diagnostics_are_located():
    (diagnostic,) = semantics.check(topology(manifests=[pod("web", nodeName="node9")]), locate)
    assert (diagnostic.file, diagnostic.line, diagnostic.path) == ("t.yaml", 4, "manifests[0].spec.nodeName")


def test_skipped_manifests_keep_original_indexes_and_lookups_are_not_guessed():
    t = topology(manifests=[pod("web", namespace="team", nodeName="node9")],
                 checks=[{"from": "pod/gone", "to": "node/node1", "expect": "allow"}])
    (diagnostic,) = semantics.check(t, locate, skipped={0, 1})
    assert diagnostic.path == "manifests[2].spec.nodeName"


def test_every_missing_lookup_is_reported_without_skips():
    t = topology(manifests=[pod("web", namespace="team")],
                 checks=[{"from": "pod/gone", "to": "node/node1", "expect": "allow"}])
    assert [d.path for d in semantics.check(t, locate)] == ["manifests[0].metadata.namespace", "checks[0].from"]


def test_did_you_mean():
    assert semantics.did_you_mean("Flannel", ["flannel", "vxlan"]) == " (did you mean 'flannel'?)"
    assert semantics.did_you_mean("zzz", ["flannel"]) == ""


def test_netexec_without_a_port_is_caught_before_lab_up():
    t = topology(manifests=[{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "idle"},
                             "spec": {"containers": [{"name": "c", "image": "netexec"}]}}])
    [d] = semantics.check(t, locate)
    assert (d.path, d.message) == ("manifests[0].spec.containers[0].image", "a netexec container needs a port to serve")
    assert "image: pause" in d.hint


def test_overlapping_ranges_are_an_error_unless_built_wrong_on_purpose():
    wrong = {"podCIDR": "10.0.0.0/16"}
    (error,) = semantics.check(topology(cluster=wrong, underlay={"subnet": "10.0.2.0/24"}), locate)
    assert not error.is_warning and "overlaps cluster.podCIDR" in error.message
    (warning,) = semantics.check(topology(cluster={**wrong, "unsafe": {"allowOverlap": True}},
                                          underlay={"subnet": "10.0.2.0/24"}), locate)
    assert warning.is_warning and "allowed by cluster.unsafe.allowOverlap" in warning.message


def test_two_pods_pinned_to_one_node_with_the_same_hostport_clash_with_both_places():
    def web(name, node, port=8080, protocol="TCP"):
        return pod(name, nodeName=node, containers=[{"name": "c", "image": "netexec",
                                                     "ports": [{"containerPort": 80, "hostPort": port, "protocol": protocol}]}])
    t = topology(nodes=[{"name": "node1"}, {"name": "node2"}],
                 manifests=[web("a", "node1"), web("b", "node1"), web("c", "node2"), web("d", "node1", protocol="UDP")])
    (error,) = semantics.check(t, locate)
    assert error.path == "manifests[1].spec.containers[0].ports[0].hostPort"
    assert "hostPort 8080/TCP on node node1 is already taken" in error.message and "-p 8080" in error.message


def test_a_hostnetwork_pods_hostport_must_be_its_containerport():
    t = topology(manifests=[pod("h", hostNetwork=True, containers=[
        {"name": "c", "image": "netexec", "ports": [{"containerPort": 80, "hostPort": 8080}]}])])
    (error,) = semantics.check(t, locate)
    assert "must match containerPort" in error.message


def test_a_public_segment_and_its_nat_gateway_come_together():
    def messages(**fields):
        return [d.message for d in semantics.check(topology(**fields), locate)]

    assert any("needs a NAT gateway" in m for m in messages(public={}, hosts=[{"name": "internet", "network": "public"}]))
    assert any("the topology has none" in m for m in messages(hosts=[{"name": "nat", "natGateway": True}]))
    assert any("a second NAT gateway" in m for m in messages(
        public={}, hosts=[{"name": "a", "natGateway": True}, {"name": "b", "natGateway": True}]))
    assert any("the fabric is the nodes' gateway" in m for m in messages(
        public={}, cluster={"network": "cloud-routes"}, hosts=[{"name": "nat", "natGateway": True}]))
    assert any("public.subnet 10.0.0.0/24 overlaps underlay.subnet" in m for m in messages(
        public={"subnet": "10.0.0.0/24"}, underlay={"subnet": "10.0.0.0/24"}, hosts=[{"name": "nat", "natGateway": True}]))
    assert messages(public={}, hosts=[{"name": "nat", "natGateway": True}, {"name": "internet", "network": "public"}]) == []
