"""The floor under `lab up`: what `lab up` does to the kernel and the processes, done by hand in one
function, with none of the lab's own work (no Mininet, no record, no readiness model, no agent, no
Python start-up). For the same plan: every namespace, the underlay bridge and veths, the pod
network's routes (the backend's own `ip` and `bridge` lines), node sysctls, each pod's hostname (a
UTS namespace) and resolv.conf, lo up, the CNI ADD of the pod network (the same plugins and
conflist, as many in flight as the lab runs), the same servers started and answering (netexec from
its image's fork server, dnsmasq with the lab's config) and each node's rule restores (kube-proxy's
and ip-masq-agent's base rules, the policy chain, the first sync, the stale-UDP conntrack flush).
Names carry a prefix of their own, so it runs beside any lab, the lab of the same plan included."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lab import routing
from lab.cni import config, libcni
from lab.controlplane.endpoints import endpoint_slices
from lab.controlplane.state import ClusterState, PodState
from lab.dns import records
from lab.dns import runtime as dns
from lab.host import record as lab_record
from lab.host import drop_uts, ip_batch, link_up, listens, make_uts, netns_path, restore, run, sysctl
from lab.kube_proxy import iptables, model, nftables
from lab.node import containers, pods
from lab.policy import iptables as policy

PREFIX = f"rawb{os.getpid()}"


def names(state: ClusterState) -> tuple[dict[str, str], dict[str, str]]:
    """The floor's own namespace for each node and each sandboxed pod."""
    nodes = {n.name: f"{PREFIX}-n{i}" for i, n in enumerate(state.nodes)}
    sandboxes = {p.key: f"{PREFIX}-p{i}" for i, p in enumerate(pods.sandboxed(state))}
    return nodes, sandboxes


def _bridge(state: ClusterState) -> str:
    return f"{PREFIX}br"[:15]


def floor(state: ClusterState, tmp: Path) -> dict[str, float]:
    """Do it all; returns the seconds of each phase and the total (`everything`)."""
    nodes, sandboxes = names(state)
    by_node = {n.name: n for n in state.nodes}
    slices = endpoint_slices(state, {p.key: True for p in state.pods})  # as the lab's first probe round finds them
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    # namespaces, the underlay, the pod network's routes, node sysctls
    br, prefix = _bridge(state), state.underlay_subnet.split("/")[1]
    root = [f"netns add {ns}" for ns in nodes.values()] + [f"link add {br} type bridge", f"link set {br} up"]
    for i, node in enumerate(state.nodes):
        root += [f"link add {br}p{i} type veth peer name eth0 netns {nodes[node.name]}",
                 f"link set {br}p{i} master {br} up"]
    ip_batch(root)

    def node_setup(node) -> None:
        ns, ops = nodes[node.name], routing.render(state, node)
        ip_batch([f"addr add {node.ip}/{prefix} dev eth0", f"link set eth0 mtu {state.underlay_mtu}",
                  "link set eth0 up", "link set lo up", *ops.ip], netns=ns)
        if ops.bridge:
            run(["bridge", "-n", ns, "-batch", "-"], input="\n".join(ops.bridge) + "\n")
        sysctl(ns, {"net.ipv4.ip_forward": "1", **({"net.ipv4.conf.all.route_localnet": "1"}
                                                  if state.proxy == "iptables" else {})})

    with ThreadPoolExecutor(len(state.nodes)) as pool:
        list(pool.map(node_setup, state.nodes))
    ip_batch([f"netns add {ns}" for ns in sandboxes.values()])
    seconds["namespaces, underlay, routes"] = time.perf_counter() - t0

    # pods: hostname, resolv.conf, lo, CNI ADD, servers started (in flight together, as the lab does)
    t1 = time.perf_counter()
    cache = libcni.ResultCache(tmp / "cni")
    forkserver = subprocess.Popen([sys.executable, "-I", "-S", str(containers.NETEXEC), "--forkserver"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    servers = []

    def wire(pod: PodState) -> None:
        ns = sandboxes[pod.key]
        make_uts(tmp / "uts" / ns, pod.name)
        resolv = records.resolv_conf(state, pod) if state.dns_domain else None
        if resolv:
            (lab_record.ETC_NETNS / ns).mkdir(parents=True, exist_ok=True)
            (lab_record.ETC_NETNS / ns / "resolv.conf").write_text(resolv)
        link_up(ns, "lo")
        node = by_node[pod.node]
        conf = config.pod_network(state, node, str(tmp / "ipam" / node.name))
        conf["plugins"][0]["bridge"] = "cni0"
        libcni.add(conf, libcni.Attachment(ns, netns_path(ns), "eth0", nodes[node.name], (("IP", pod.ip),)), cache)
        for c in pod.containers:
            if c.image == "netexec":
                line = "\t".join([f"{ns}/{c.name}", netns_path(ns), str(tmp / "uts" / ns), str(tmp / f"{ns}.log"), "-",
                                  *containers.netexec_args(pod, c)])  # "-": no cgroup (proxy ebpf's)
                forkserver.stdin.write(line + "\n")
                forkserver.stdin.flush()
            elif c.image == dns.IMAGE:
                conf_file = _dnsmasq_files(state, slices, tmp)
                servers.append(subprocess.Popen(
                    ["nsenter", f"--uts={tmp / 'uts' / ns}", "ip", "netns", "exec", ns, "dnsmasq",
                     f"--conf-file={conf_file}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))

    chosen = pods.sandboxed(state)
    with ThreadPoolExecutor(pods.WORKERS) as pool:
        list(pool.map(wire, chosen))
    forkserver.stdin.close()
    reports = forkserver.stdout.read().split("\n")
    forkserver.wait()
    want = sum(c.image == "netexec" for p in chosen for c in p.containers)
    if sum(line.startswith("ready ") for line in reports) != want:
        raise SystemExit(f"raw baseline: netexec not ready: {reports}")
    for pod in chosen:
        if any(c.image == dns.IMAGE for c in pod.containers) and not listens(sandboxes[pod.key], pod.ip, 53, 3.0):
            raise SystemExit("raw baseline: dnsmasq does not answer")
    seconds["pods wired by CNI, servers answering"] = time.perf_counter() - t1

    # rules: the base chains, the policy chain, the first sync, the stale-UDP flush, per node at once
    t2 = time.perf_counter()
    stale = model.stale_udp(state, (), state, slices, True)

    def rules(node) -> None:
        """By hand, one restore per node carries it all (the lab runs four, one per component)."""
        ns = nodes[node.name]
        netpol = policy.base_rules() + policy.render(state, node, frozenset())
        if state.proxy == "iptables":
            text = iptables.base_rules() + iptables.masq_agent_rules(state) + netpol + iptables.render(state, node, slices)
            restore(ns, ["iptables-restore", "--noflush"], text, "the floor's rules")
        else:
            restore(ns, ["iptables-restore", "--noflush"], netpol, "the floor's policy rules")
            restore(ns, ["nft", "-f", "-"], nftables.masq_agent_rules(state) + nftables.render(state, node, slices),
                    "the floor's nft rules")
        for cluster_ip, _ in stale:
            run(["conntrack", "-D", "-p", "udp", "--orig-dst", cluster_ip], netns=ns, check=False)

    with ThreadPoolExecutor(len(state.nodes)) as pool:
        list(pool.map(rules, state.nodes))
    seconds["rule restores"] = time.perf_counter() - t2
    seconds["everything"] = time.perf_counter() - t0
    return seconds


def _dnsmasq_files(state: ClusterState, slices, tmp: Path) -> Path:
    """The kube-dns pod's dnsmasq config and hosts file, as the lab writes them, under tmp."""
    hosts = tmp / "dns" / "hosts"
    hosts.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)  # dnsmasq drops root: it must be able to read its hosts directory
    recs = records.records(state, slices)
    (hosts / "records").write_text(records.hosts_file(recs))
    conf = tmp / "dns" / "dnsmasq.conf"
    conf.write_text(records.dnsmasq_config(state, recs, str(hosts), str(tmp / "dns" / "queries.log")))
    return conf


def cleanup(state: ClusterState, tmp: Path) -> None:
    """Everything floor() made: its processes (found by namespace), hostnames, resolv.conf folders,
    namespaces and bridge."""
    nodes, sandboxes = names(state)
    mine = {os.stat(netns_path(ns)).st_ino for ns in [*nodes.values(), *sandboxes.values()]
            if os.path.exists(netns_path(ns))}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino in mine:
                os.kill(int(pid), 9)
        except OSError:
            pass
    for ns in sandboxes.values():
        drop_uts(tmp / "uts" / ns)
        shutil.rmtree(lab_record.ETC_NETNS / ns, ignore_errors=True)
    links = [f"{_bridge(state)}p{i}" for i in range(len(state.nodes))] + [_bridge(state)]
    ip_batch([f"link del {link}" for link in links if os.path.exists(f"/sys/class/net/{link}")], force=True)
    ip_batch([f"netns delete {ns}" for ns in [*sandboxes.values(), *nodes.values()]
              if os.path.exists(netns_path(ns))], force=True)


@dataclass
class Baseline:
    seconds: float
    connections: int
    ok: int
    retried: int
    errors: list


def connections(name: str, owner: Optional[str] = None) -> Baseline:
    """One batch of TCP connections (netexec's GET /clientip) from one pod (of `owner`, e.g.
    Deployment/web, if given) to every other, through the lab's own probe engine, in this process:
    what probing costs without the CLI, the planning of checks and the verdicts."""
    from lab.probe.engine import Probe, run_probes
    from lab.host import record

    pods = [p for p in record.find(name).state.pods
            if owner in (None, p.owner) and not p.host_network and p.probe_port()]
    src, others = pods[0], pods[1:]
    probes = [Probe(src.netns, p.ip, p.probe_port()) for p in others]
    t0 = time.perf_counter()
    results = run_probes(probes)
    seconds = time.perf_counter() - t0
    return Baseline(seconds, len(probes), sum(r.ok for r in results), sum(r.attempts > 1 for r in results),
                    [f"{r.probe.dst_ip}:{r.probe.port}: {r.error}" for r in results if not r.ok])
