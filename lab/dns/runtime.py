"""Cluster DNS in a running lab: dnsmasq's files under the lab's run directory, resolv.conf files
under /etc/netns/<pod> (which `ip netns exec` bind-mounts over /etc/resolv.conf), and keeping the
records in step with Services and endpoints."""
from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from lab.controlplane import kube_dns
from lab.controlplane.controller import Controller
from lab.controlplane.endpoints import endpoint_slices, initial_readiness
from lab.controlplane.state import ClusterState, EndpointSliceState, PodState, container_key
from lab.dns import records
from lab.errors import LabError
from lab.node import processes
from lab import host
from lab.host import ip_batch, spawn
from lab.host import record as lab_record
from lab.host.record import LabRecord

IMAGE = kube_dns.IMAGE


def paths(record: LabRecord) -> dict[str, Path]:
    base = record.subdir("dns")
    return {"conf": base / "dnsmasq.conf", "hosts": record.subdir("dns", "hosts"), "log": base / "queries.log"}


def argv(record: LabRecord) -> list[str]:
    """The kube-dns container's program."""
    return ["dnsmasq", f"--conf-file={paths(record)['conf']}"]


def start_upstream(state: ClusterState, record: LabRecord) -> None:
    """The outside world's DNS on the first plain host; nodes resolve through it."""
    server = records.upstream_host(state)
    if server is None:
        return
    conf = record.subdir("dns") / "upstream.conf"
    host.write_file(conf, records.upstream_config(state, str(record.dir / "dns" / "upstream.log"),
                                                  str(record.subdir(*records.UPSTREAM_HOSTS))))
    record.pids[f"host/{server.name}/dns"] = spawn(["ip", "netns", "exec", server.netns, "dnsmasq", f"--conf-file={conf}"],
                                                 log=record.subdir("logs") / f"host_{server.name}_dns.log").pid


def start_node_caches(state: ClusterState, record: LabRecord) -> None:
    """NodeLocal DNSCache: 169.254.20.10 on each node's lo (this kernel has no dummy interfaces,
    where node-local-dns puts it) and a caching dnsmasq bound to it, in the node's namespace."""
    if not state.dns_domain or not state.dns_node_cache:
        return
    for node in state.nodes:
        ip_batch([f"addr add {records.NODE_LOCAL_IP}/32 dev lo"], netns=node.netns)
        conf = record.subdir("dns") / f"node-cache-{node.name}.conf"
        host.write_file(conf, records.node_cache_config(state, str(record.dir / "dns" / f"node-cache-{node.name}.log")))
        record.pids[f"node/{node.name}/node-local-dns"] = spawn(
            record.in_node_cgroup(node.name, ["ip", "netns", "exec", node.netns, "dnsmasq", f"--conf-file={conf}"]),
            log=record.subdir("logs") / f"node_{node.name}_node-local-dns.log").pid


def write_resolv_confs(state: ClusterState, record: LabRecord) -> None:
    """The kubelet's resolv.conf for every pod with its own namespace, and the nodes' own (the
    upstream resolver), claimed before written."""
    files = {p.netns: records.resolv_conf(state, p) for p in state.pods if p.netns != state.node(p.node).netns}
    if records.upstream(state):  # the nodes' and the hosts' own: the outside world's resolver
        files.update({m.netns: f"nameserver {records.upstream(state)}\n" for m in [*state.nodes, *state.underlay_hosts()]})
    wanted = [ns for ns, text in files.items() if text is not None]
    record.claim(etc_netns=tuple(wanted))
    for ns in wanted:
        host.write_file(lab_record.ETC_NETNS / ns / "resolv.conf", files[ns])


def write_records(state: ClusterState, slices: Sequence[EndpointSliceState], record: LabRecord) -> bool:
    """Write the hosts file (dnsmasq re-reads its directory by itself) and the config; True if the
    config changed (SRV and CNAME records are read only when dnsmasq starts)."""
    p = paths(record)
    recs = records.records(state, slices)
    # written beside the watched folder, then renamed into it: dnsmasq never reads half a file
    host.replace_file(p["hosts"] / "records", records.hosts_file(recs), tmp=p["hosts"].parent / "records.tmp")
    conf = records.dnsmasq_config(state, recs, str(p["hosts"]), str(p["log"]))
    changed = not host.path_exists(p["conf"]) or host.read_text(p["conf"]) != conf
    if changed:
        host.write_file(p["conf"], conf)
    return changed


def update(state: ClusterState, slices: Sequence[EndpointSliceState], record: LabRecord) -> None:
    """Follow a change of Services or endpoints; restart dnsmasq if its config changed."""
    if not state.dns_domain or not write_records(state, slices, record):
        return
    for pod in state.pods:
        for c in pod.containers:
            key = container_key(pod, c)
            if c.image == IMAGE and key in record.pids:
                processes.signal_all([record.pids[key]], signal.SIGTERM)
                processes.reap({record.pids[key]}, grace=1.0)  # it must let go of port 53 first
                log = record.log_path(pod, c)
                record.pids[key] = spawn(record.in_pod(pod, argv(record)), log=log).pid
                if not _wait_listening(pod):
                    host.remove(paths(record)["conf"])  # not in effect: the next update restarts it again
                    raise LabError(f"cluster DNS ({pod.key}) does not answer on {pod.ip}:53 after its restart; "
                                   f"see `lab logs -n {pod.namespace} {pod.name}`")


def wait_ready(state: ClusterState) -> None:
    """`lab up` returns with cluster DNS answering, as kubeadm and kind wait for CoreDNS: a check
    right after must not find kube-dns starting (its first readiness probe would fail, and every
    name with it), nor the upstream resolver (started before the pods, never probed: a pod asking
    one that is not up yet would just get no answer)."""
    if not state.dns_domain:
        return
    for pod in state.pods:
        if any(c.image == IMAGE for c in pod.containers) and not _wait_listening(pod):
            raise LabError(f"cluster DNS ({pod.key}) does not answer on {pod.ip}:53 after 3 s; "
                           f"see `lab logs -n {pod.namespace} {pod.name}`")
    server = records.upstream_host(state)
    if server is not None and not host.listens(server.netns, server.ip, 53, 3.0):
        raise LabError(f"the upstream resolver on host {server.name} does not answer on {server.ip}:53 after 3 s")


def wait_node_caches(state: ClusterState) -> None:
    """As wait_ready, for each node's cache."""
    for node in state.nodes if state.dns_domain and state.dns_node_cache else ():
        if not host.listens(node.netns, records.NODE_LOCAL_IP, 53, 3.0):
            raise LabError(f"NodeLocal DNSCache on node {node.name} does not answer on {records.NODE_LOCAL_IP}:53 "
                           "after 3 s; see its log under the lab's run directory (logs/)")


def _wait_listening(pod, timeout: float = 3.0) -> bool:
    """Whether dnsmasq answers on TCP 53 within the timeout (a restart: the gap ends before we do)."""
    return host.listens(pod.netns, pod.ip, 53, timeout)


def _start(state: ClusterState, record: LabRecord) -> None:
    """lab up, before the pods: the records as they stand before any probe, and the outside resolver."""
    if state.dns_domain:
        write_records(state, endpoint_slices(state, initial_readiness(state)), record)
        start_upstream(state, record)


def _pods_starting(state: ClusterState, record: LabRecord, pods: Sequence[PodState]) -> None:
    """The kubelet's resolv.conf of the pods about to start (and the nodes' and hosts' own)."""
    if state.dns_domain:
        write_resolv_confs(replace(state, pods=tuple(pods)), record)


CONTROLLER = Controller(
    kube_dns.NAME, addon=kube_dns.ADDON, images={IMAGE: lambda record, _pod: argv(record)}, start=_start,
    pods_starting=_pods_starting, pods_gone=lambda record, pods: record.remove_etc_netns([p.netns for p in pods]),
    wait_ready=wait_ready, sync=lambda record, diff: update(diff.new, diff.new_slices, record))

NODE_LOCAL = Controller("node-local-dns", start=start_node_caches, wait_ready=wait_node_caches)
