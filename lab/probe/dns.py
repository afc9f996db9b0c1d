"""Names resolve as in a cluster (DNS issue): from every pod that uses cluster DNS, every Service
by its short name (same namespace), `name.namespace` and FQDN, through the pod's own resolver
(glibc with the resolv.conf the lab wrote); headless names give exactly the ready endpoints; pod
records, ExternalName aliases and NXDOMAIN; and `curl http://<service>` answers."""
from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from lab.controlplane.state import ClusterState, EndpointSliceState, PodState
from lab.dns.records import pod_a_name, resolv_conf
from lab.probe.outcome import Outcome
from lab.probe.services import netexec_serves

CHECKS = {
    "dns": "every Service resolves from every pod (short, name.namespace, FQDN); headless to its ready endpoints",
    "dns-http": "curl http://<service>:<port> answers from a ready endpoint",
}


@dataclass(frozen=True)
class Question:
    check: str
    subject: str
    pod: PodState
    argv: tuple[str, ...]
    expected: frozenset  # addresses (dns), or endpoint pod names (dns-http); empty: must not resolve


def _clients(state: ClusterState) -> list[PodState]:
    return [p for p in state.pods if not p.host_network and resolv_conf(state, p) and
            (p.dns_policy == "ClusterFirst" and not p.dns_nameservers)]


def plan(state: ClusterState, slices: Sequence[EndpointSliceState]) -> list[Question]:
    if not state.dns_domain:
        return []
    d, out = state.dns_domain, []
    ready = {}
    for sl in slices:
        ready.setdefault((sl.namespace, sl.service), set()).update(e.address for e in sl.endpoints if e.ready)
    by_name = {f"{s.name}.{s.namespace}.svc.{d}": s for s in state.services}
    clients = _clients(state)
    for svc in state.services:
        fqdn = f"{svc.name}.{svc.namespace}.svc.{d}"
        if svc.type == "ExternalName":
            target = by_name.get(svc.external_name)
            want = {target.cluster_ip} if target and target.cluster_ip else None
        else:
            want = {svc.cluster_ip} if svc.cluster_ip else ready.get((svc.namespace, svc.name), set())
        if want is None:
            continue  # an alias for a name outside the lab: nothing to compare with
        for c in clients:
            names = ([svc.name] if c.namespace == svc.namespace else []) + [f"{svc.name}.{svc.namespace}", fqdn]
            out += [Question("dns", f"{c.key}: {n} -> {', '.join(sorted(want)) or 'nothing'}", c,
                             ("getent", "ahostsv4", n), frozenset(want)) for n in names]
    if clients:
        c = clients[0]
        for p in state.pods:
            if not p.host_network:
                name = pod_a_name(p, d)
                out.append(Question("dns", f"{c.key}: {name} -> {p.ip}", c, ("getent", "ahostsv4", name),
                                    frozenset({p.ip})))
        name = f"does-not-exist.{c.namespace}.svc.{d}"
        out.append(Question("dns", f"{c.key}: {name} -> NXDOMAIN", c, ("getent", "ahostsv4", name), frozenset()))
        out += _http(state, slices, c)
    return out


def _http(state: ClusterState, slices, c: PodState) -> list[Question]:
    """One curl per Service port served by netexec over TCP, by the Service's name."""
    pods = {p.key: p for p in state.pods}
    out = []
    for svc in state.services:
        if not svc.cluster_ip or svc.type == "ExternalName":
            continue
        for port in (p for p in svc.ports if p.protocol == "TCP"):
            eps = [(pods.get(e.pod), sp.port) for sl in slices if (sl.namespace, sl.service) == (svc.namespace, svc.name)
                   for sp in sl.ports if sp.name == port.name and sp.protocol == "TCP" for e in sl.endpoints if e.ready]
            # curl lands on any ready endpoint: every one of them must speak netexec's HTTP there
            if eps and all(netexec_serves(pod, p, "TCP") for pod, p in eps):
                servers = {pod.name for pod, _ in eps}
                url = f"http://{svc.name}.{svc.namespace}:{port.port}/hostname"
                out.append(Question("dns-http", f"{c.key}: curl {url}", c,
                                    ("curl", "-s", "-m", "2", url), frozenset(servers)))
    return out


def _ask(q: Question) -> tuple[bool, str]:
    proc = subprocess.run(["ip", "netns", "exec", q.pod.netns, *q.argv], capture_output=True, text=True, timeout=10)
    if q.check == "dns-http":
        answer = proc.stdout.strip()
        return (proc.returncode == 0 and answer in q.expected), f"answered by {answer or 'nobody'}"
    got = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    return got == set(q.expected), ", ".join(sorted(got)) or "not found"


def run(state: ClusterState, slices: Sequence[EndpointSliceState]) -> list[Outcome]:
    questions = plan(state, slices)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(_ask, questions))
    return [Outcome(q.check, q.subject, ok, ", ".join(sorted(q.expected)) or "not found", seen, source=q.pod.netns)
            for q, (ok, seen) in zip(questions, answers)]
