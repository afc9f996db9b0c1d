"""Pod sandboxes: a named namespace per pod, wired by the real CNI plugins, as a kubelet would."""
from __future__ import annotations

import signal
from ipaddress import ip_interface
from typing import Optional, Sequence

from lab.cni import config, libcni
from lab.controlplane.state import ClusterState, PodState, container_key
from lab.errors import LabError
from lab.node import containers, processes
from lab.host import announce, drop_uts, ip_batch, link_up, make_uts, netns_path, sysctl
from lab import host
from lab.host.netns import alias
from lab.host.record import LabRecord

POD_IPV6_SYSCTLS = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
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
              ("K8S_POD_INFRA_CONTAINER_ID", pod.netns)) + ((("IP", pod.ip),) if ifname == "eth0" and not pod.ips else ()),
    )


def _pod_network(state: ClusterState, record: LabRecord, pod: PodState) -> dict:
    return config.pod_network(state, state.node(pod.node), str(record.dir / "ipam" / pod.node), config.port_mappings(pod),
                              pod.ips)


def create(state: ClusterState, record: LabRecord, programs: containers.Programs,
           only: Optional[Sequence[PodState]] = None) -> None:
    """Sandboxes, CNI ADD, then the pod's containers, pipelined per pod over a few workers:
    plugin execs and container start-ups overlap instead of running phase after phase.
    programs: the add-on images' programs (containers.Starter); only: these pods of the state (a
    `lab apply`), else all."""
    chosen = list(state.pods if only is None else only)
    if not chosen:
        return  # a `lab apply` that starts no pod (an Ingress, a Service): no fork server to wait for
    pods = [p for p in chosen if not p.host_network]
    aliases = [p for p in chosen if p.host_network and p.netns != state.node(p.node).netns]
    record.claim(netns=tuple(p.netns for p in pods + aliases))
    for p in aliases:
        alias(state.node(p.node).netns, p.netns)
    ip_batch([f"netns add {p.netns}" for p in pods])
    cache = libcni.ResultCache(record.dir / "cni")
    starter = containers.Starter(record, programs)

    def wire_and_start(pod: PodState) -> None:
        make_uts(record.uts_path(pod.netns), pod.uts_name)
        link_up(pod.netns, "lo")  # what the loopback plugin does, without its process
        if 6 in state.families:  # the pod's eth0 inherits it: its IPv6 address usable at once (no DAD wait)
            sysctl(pod.netns, POD_IPV6_SYSCTLS)
        result = libcni.add(_pod_network(state, record, pod), _attachment(state, pod, "eth0"), cache,
                            config.plugin_dirs(state))
        got = [str(ip_interface(i["address"]).ip) for i in result.get("ips", [])]
        if got != list(pod.pod_ips):
            raise LabError(f"CNI gave pod {pod.key} {got}, the plan says {', '.join(pod.pod_ips)}")
        if pod.ip_of(4):  # as the bridge plugin does: no stale neighbour entry black-holes it (IPv6: the kernel's NA)
            announce(pod.netns, pod.ip_of(4))
        starter.start_pod(pod)

    pool = host.pool(WORKERS)
    try:
        futures = [pool.submit(wire_and_start, p) for p in pods]
        for p in chosen:
            if p.host_network:
                starter.start_pod(p)
        if only is None:
            for h in state.hosts:
                starter.start_host(h)
        for f in futures:
            f.result()
    except BaseException:
        pool.shutdown(cancel_futures=True)  # a failure or Ctrl-C stops the pods not started yet
        starter.abandon()  # every child forked so far is recorded, so the rollback finds it
        raise
    pool.shutdown()
    starter.wait_ready()


def delete(state: ClusterState, record: LabRecord, only: Optional[Sequence[PodState]] = None) -> list[str]:
    """CNI DEL for every pod (or those in `only`) whose namespace still exists; errors are
    collected, not fatal."""
    cache = libcni.ResultCache(record.dir / "cni")
    pods = [p for p in (state.pods if only is None else only) if not p.host_network
            if p.netns in record.netns and host.exists(state.node(p.node).netns)]

    def unwire(pod: PodState) -> list[str]:
        # Only the pod network: loopback's DEL would just set `lo` down in a namespace about to go.
        return libcni.delete(_pod_network(state, record, pod), _attachment(state, pod, "eth0"), cache,
                             config.plugin_dirs(state))

    with host.pool(WORKERS) as pool:
        return [e for errs in pool.map(unwire, pods) for e in errs]


def remove(state: ClusterState, record: LabRecord, gone: Sequence[PodState]) -> list[str]:
    """Take pods out of a running lab (`lab apply`): stop their containers, CNI DEL, delete their
    namespaces, forget them."""
    keys = {container_key(p, c) for p in gone for c in p.containers}
    pids = processes.owned_pids([p.netns for p in gone if not p.host_network])
    pids |= {pid for key, pid in record.pids.items() if key in keys and processes.alive(pid)}
    processes.signal_all(pids, signal.SIGTERM)
    errors = delete(state, record, gone)
    processes.reap(pids)
    netns = [p.netns for p in gone if p.netns != state.node(p.node).netns]
    ip_batch([f"netns delete {n}" for n in netns if host.exists(n)], force=True)
    for n in netns:
        drop_uts(record.uts_path(n))
    record.netns = [n for n in record.netns if n not in netns]
    record.pids = {k: v for k, v in record.pids.items() if k not in keys}
    return errors
