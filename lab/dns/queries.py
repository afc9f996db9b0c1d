"""What one name lookup costs: run the pod's own resolver (glibc, through its resolv.conf) once
and read back from kube-dns's query log every query that lookup sent. Makes the ndots pitfall
visible: a short external name walks the whole search list before it is tried as written."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from lab.controlplane.state import PodState
from lab.dns import runtime as dns_runtime
from lab import host
from lab.host.record import LabRecord

_QUERY = re.compile(r"query\[(\w+)\] (\S+) from (\S+)$")


@dataclass(frozen=True)
class Lookup:
    name: str
    queries: tuple[tuple[str, str], ...]   # (type, name) in the order sent
    answer: str                            # what the resolver returned (getent's output)


def lookup(record: LabRecord, pod: PodState, name: str) -> Lookup:
    """With NodeLocal DNSCache the pod's queries go to its node's cache: that log is read."""
    if record.state.dns_node_cache and pod.dns_policy == "ClusterFirst" and not pod.dns_nameservers:
        log = record.dir / "dns" / f"node-cache-{pod.node}.log"
    else:
        log = dns_runtime.paths(record)["log"]
    start = log.stat().st_size if log.exists() else 0
    proc = host.run(["ip", "netns", "exec", pod.netns, "getent", "ahosts", name], timeout=30, check=False)
    time.sleep(0.05)  # dnsmasq writes its log lines just after answering
    with open(log) as f:
        f.seek(start)
        lines = f.read().splitlines()
    queries = tuple((m.group(1), m.group(2)) for m in map(_QUERY.search, lines) if m and m.group(3) == pod.ip)
    addresses = sorted({line.split()[0] for line in proc.stdout.splitlines() if line.strip()})
    return Lookup(name, queries, ", ".join(addresses) or "not found")


def ndots(pod: PodState) -> int:
    """The pod's ndots: its dnsConfig's, else the kubelet's 5 for cluster DNS, else glibc's 1."""
    given = dict(pod.dns_options).get("ndots")
    if given is not None and given.isdigit():
        return int(given)
    cluster = (pod.dns_policy == "ClusterFirst" and not pod.host_network) or pod.dns_policy == "ClusterFirstWithHostNet"
    return 5 if cluster else 1


def report(pod: PodState, result: Lookup) -> str:
    lines = [f"lookup of {result.name!r} from {pod.key} ({pod.ip}): {result.answer}",
             f"{len(result.queries)} queries reached kube-dns:"]
    lines += [f"  {kind:5} {name}" for kind, name in result.queries]
    n = ndots(pod)
    if not result.name.endswith(".") and result.name.count(".") < n:
        lines.append(f"(fewer dots than ndots:{n}: the search list is tried first; "
                     f"compare `lab dns queries {pod.name} {result.name}.`)")
    return "\n".join(lines)
