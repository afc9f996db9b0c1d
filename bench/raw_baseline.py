"""The raw baseline for `lab up`: the same namespaces, veths, bridges and addresses made with
nothing but `ip -batch`, plus the CNI plugin execs alone, so the lab's own overhead shows."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from lab.cni import config, libcni
from lab.controlplane.state import ClusterState
from lab.host import ip_batch, netns_path

PREFIX = f"rawb{os.getpid()}"


def _names(state: ClusterState):
    nodes = [f"{PREFIX}-n{i}" for i in range(len(state.nodes))]
    pods = [f"{PREFIX}-p{i}" for i in range(len(state.pods))]
    return nodes, pods


def ip_only(state: ClusterState) -> float:
    """netns + veth + bridges + addresses + routes for every node and pod: one `ip -batch` in the
    root namespace, then one per namespace (batch lines cannot switch namespaces)."""
    nodes, pods = _names(state)
    br = f"{PREFIX}br"[:15]
    root = [f"netns add {n}" for n in nodes + pods] + [f"link add {br} type bridge", f"link set {br} up"]
    inside: dict[str, list[str]] = {n: [] for n in nodes + pods}
    for i, (n, node) in enumerate(zip(nodes, state.nodes)):
        root += [f"link add {br}p{i} type veth peer name eth0 netns {n}", f"link set {br}p{i} master {br} up"]
        inside[n] += [f"addr add {node.ip}/24 dev eth0", "link set eth0 up", "link set lo up",
                      "link add cni0 type bridge", f"addr add {node.gateway}/24 dev cni0", "link set cni0 up"]
    node_ns = {node.name: n for n, node in zip(nodes, state.nodes)}
    for j, (p, pod) in enumerate(zip(pods, state.pods)):
        n = node_ns[pod.node]
        root.append(f"link add veth{j} netns {n} type veth peer name eth0 netns {p}")
        inside[n].append(f"link set veth{j} master cni0 up")
        inside[p] += [f"addr add {pod.ip}/24 dev eth0", "link set eth0 up", "link set lo up",
                      f"route add default via {state.node(pod.node).gateway}"]
    t0 = time.perf_counter()
    ip_batch(root)
    for ns, lines in inside.items():
        ip_batch(lines, netns=ns)
    return time.perf_counter() - t0


def cni_execs(state: ClusterState) -> float:
    """The plugin processes alone: loopback + pod network ADD for every pod, one after another,
    into the baseline's namespaces (which must exist: run after ip_only)."""
    nodes, pods = _names(state)
    node_ns = {n.name: nodes[i] for i, n in enumerate(state.nodes)}
    with tempfile.TemporaryDirectory() as tmp:
        cache = libcni.ResultCache(Path(tmp) / "cache")
        extra = [f"{p}x" for p in pods]  # fresh sandboxes, so the plugins do the real work
        ip_batch([f"netns add {x}" for x in extra])
        try:
            t0 = time.perf_counter()
            for pod, ns in zip(state.pods, extra):
                att = libcni.Attachment(ns, netns_path(ns), "eth0", node_ns[pod.node], (("IP", pod.ip),))
                conf = config.pod_network(state, state.node(pod.node), f"{tmp}/ipam-{pod.node}")
                conf["plugins"][0]["bridge"] = "cnib"  # beside the baseline's own cni0
                libcni.add(config.loopback_network(), libcni.Attachment(ns, netns_path(ns), "lo", node_ns[pod.node]), cache)
                libcni.add(conf, att, cache)
            return time.perf_counter() - t0
        finally:
            ip_batch([f"netns delete {x}" for x in extra], force=True)


def cleanup(state: ClusterState) -> None:
    nodes, pods = _names(state)
    ip_batch([f"netns delete {n}" for n in nodes + pods], force=True)
    subprocess.run(["ip", "link", "del", f"{PREFIX}br"[:15]], capture_output=True)
