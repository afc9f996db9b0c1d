"""Pod sandboxes: a named namespace per pod, wired by the real CNI plugins, as a kubelet would."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Interface

from lab.cni import config, libcni
from lab.controlplane.state import ClusterState, PodState
from lab.errors import LabError
from lab.node import containers
from lab.runtime.execs import ip_batch, netns_path
from lab.runtime.record import LabRecord

# CNI plugins are separate processes; a few in flight keep both cores busy.
WORKERS = 6


def sandboxed(state: ClusterState) -> list[PodState]:
    """Pods with their own namespace (hostNetwork pods share the node's)."""
    return [p for p in state.pods if not p.host_network]


def _attachment(state: ClusterState, pod: PodState, ifname: str) -> libcni.Attachment:
    node = state.node(pod.node)
    return libcni.Attachment(
        container_id=pod.netns, netns_path=netns_path(pod.netns), ifname=ifname,
        node_netns=node.netns,
        args=(("K8S_POD_NAMESPACE", pod.namespace), ("K8S_POD_NAME", pod.name),
              ("K8S_POD_INFRA_CONTAINER_ID", pod.netns)) + ((("IP", pod.ip),) if ifname == "eth0" else ()),
    )


def _pod_network(state: ClusterState, record: LabRecord, pod: PodState) -> dict:
    return config.pod_network(state, state.node(pod.node), str(record.dir / "ipam" / pod.node))


def create(state: ClusterState, record: LabRecord) -> None:
    """Sandboxes, CNI ADD, then the pod's containers, pipelined per pod over a few workers:
    plugin execs and container start-ups overlap instead of running phase after phase."""
    pods = sandboxed(state)
    record.claim(netns=tuple(p.netns for p in pods))
    ip_batch([f"netns add {p.netns}" for p in pods])
    cache = libcni.ResultCache(record.dir / "cni")
    starter = containers.Starter(record)

    def wire_and_start(pod: PodState) -> None:
        libcni.add(config.loopback_network(), _attachment(state, pod, "lo"), cache)
        result = libcni.add(_pod_network(state, record, pod), _attachment(state, pod, "eth0"), cache)
        got = [str(IPv4Interface(i["address"]).ip) for i in result.get("ips", [])]
        if got != [pod.ip]:
            raise LabError(f"CNI gave pod {pod.key} {got}, the plan says {pod.ip}")
        starter.start_pod(pod)

    pool = ThreadPoolExecutor(WORKERS)
    try:
        futures = [pool.submit(wire_and_start, p) for p in pods]
        for p in state.pods:
            if p.host_network:
                starter.start_pod(p)
        for f in futures:
            f.result()
    except BaseException:
        pool.shutdown(cancel_futures=True)  # a failure or Ctrl-C stops the pods not started yet
        starter.abandon()  # every child forked so far is recorded, so the rollback finds it
        raise
    pool.shutdown()
    starter.wait_ready()


def delete(state: ClusterState, record: LabRecord) -> list[str]:
    """CNI DEL for every pod whose namespace still exists; errors are collected, not fatal."""
    cache = libcni.ResultCache(record.dir / "cni")
    pods = [p for p in sandboxed(state)
            if p.netns in record.netns and os.path.exists(netns_path(state.node(p.node).netns))]

    def unwire(pod: PodState) -> list[str]:
        # Only the pod network: loopback's DEL would just set `lo` down in a namespace about to go.
        return libcni.delete(_pod_network(state, record, pod), _attachment(state, pod, "eth0"), cache)

    with ThreadPoolExecutor(WORKERS) as pool:
        return [e for errs in pool.map(unwire, pods) for e in errs]
