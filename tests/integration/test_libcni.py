"""libcni against the real plugins in throw-away namespaces: ADD all-or-nothing, DEL idempotent."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from lab.cni import libcni
from lab.errors import LabError
from lab.host import ip_batch, netns_path
from tests.integration.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root]


@pytest.fixture
def sandbox(tmp_path):
    node, pod = f"cnit{os.getpid()}-node", f"cnit{os.getpid()}-pod"
    ip_batch([f"netns add {node}", f"netns add {pod}"])
    try:
        yield node, pod, tmp_path
    finally:
        ip_batch([f"netns delete {pod}", f"netns delete {node}"], force=True)


def conflist(tmp_path, *extra: dict) -> dict:
    bridge = {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
              "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.0.0/24"}]],
                       "dataDir": str(tmp_path / "ipam")}}
    return {"cniVersion": "1.0.0", "name": "t", "plugins": [bridge, *extra]}


def links(ns: str) -> set[str]:
    out = subprocess.run(["ip", "-n", ns, "-j", "link"], capture_output=True, text=True, check=True).stdout
    return {l["ifname"] for l in json.loads(out)}


def test_add_then_del_twice(sandbox):
    node, pod, tmp = sandbox
    att = libcni.Attachment("c1", netns_path(pod), "eth0", node, (("IP", "10.250.0.9"),))
    cache = libcni.ResultCache(tmp / "cache")
    result = libcni.add(conflist(tmp), att, cache)
    assert result["ips"][0]["address"] == "10.250.0.9/24"
    assert "eth0" in links(pod) and "cni0" in links(node)
    assert (tmp / "ipam" / "t" / "10.250.0.9").exists()
    assert libcni.delete(conflist(tmp), att, cache) == []
    assert "eth0" not in links(pod) and not (tmp / "ipam" / "t" / "10.250.0.9").exists()
    assert libcni.delete(conflist(tmp), att, cache) == []  # DEL may run twice


def test_failed_add_undoes_the_plugins_before_it(sandbox):
    node, pod, tmp = sandbox
    att = libcni.Attachment("c2", netns_path(pod), "eth0", node, (("IP", "10.250.0.7"),))
    # the second plugin rejects the config: the bridge ADD before it must be rolled back
    bad = conflist(tmp, {"type": "bandwidth", "ingressRate": "not-a-number"})
    with pytest.raises(LabError, match="bandwidth ADD"):
        libcni.add(bad, att, libcni.ResultCache(tmp / "cache"))
    assert "eth0" not in links(pod)
    assert not (tmp / "ipam" / "t" / "10.250.0.7").exists()


def test_missing_plugin_is_a_clear_error(sandbox):
    node, pod, tmp = sandbox
    att = libcni.Attachment("c3", netns_path(pod), "eth0", node)
    with pytest.raises(LabError, match="containernetworking-plugins"):
        libcni.add(conflist(tmp, {"type": "no-such-plugin"}), att, libcni.ResultCache(tmp / "cache"))
    assert "eth0" not in links(pod)
