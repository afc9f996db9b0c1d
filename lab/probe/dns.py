"""Cluster DNS as pods see it: the `dns` and `dns-http` rows of `lab check`.

From every pod that uses cluster DNS (beyond SAMPLE_ABOVE pods, a covering sample: the first pod of
each namespace, node and policy verdict), every Service by its short name (own namespace),
`name.namespace` and FQDN, through the pod's own resolver (glibc with the resolv.conf the lab
wrote): a ClusterIP, exactly the ready endpoints of a headless Service, an ExternalName's target.
From one pod: every pod record, an unknown name (dig must see status NXDOMAIN: silence is no
answer) and `curl http://<service>.<namespace>:<port>` (an answer from a ready endpoint the
policies let through; silence is tolerated, and said so, only when some endpoints are denied). A
pod whose NetworkPolicies deny its DNS traffic must get no reply at all.

plan() is pure. run() asks each pod's names in one `ip netns exec` (getent in a shell loop, the names
as arguments), asks a wrong answer again (TRIES in all) and judges a tool that did not run to its
end as a failure with the reason. A lab with Services, ClusterFirst pods and no cluster DNS gets
one failing row that says so.
"""
from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from lab import host
from lab.controlplane import kube_dns
from lab.controlplane.endpoints import ready_by_service
from lab.controlplane.state import ClusterState, EndpointSliceState, PodState
from lab.dns.records import dns_ip, pod_a_name, resolv_conf
from lab.host.cgroup import placed
from lab.kube_proxy.runtimes import socket_cgroups
from lab.policy.model import allowed
from lab.probe.outcome import Outcome
from lab.probe.asks import internal_endpoints, netexec_serves, on_node

CHECKS = {
    "dns": "every Service resolves from every pod (short, name.namespace, FQDN); headless to its ready endpoints",
    "dns-http": "curl http://<service>:<port> answers from a ready endpoint",
}

SAMPLE_ABOVE = 100       # more pods than this: ask from a covering sample of clients, not from all
TRIES = 3                # a wrong answer is asked again; the first right one is final
TRIES_SOME_DENIED = 5    # curl through a Service whose endpoints the policies partly deny
BATCH = 50               # names per getent process
POOL = 16                # processes at once
RES_OPTIONS = "timeout:1 attempts:2"  # glibc: a resolver that does not answer costs 2 s, not 10
DENIED = "denied by NetworkPolicy"

# how a reply is judged (Question.want)
ADDRESSES = "addresses"  # getent: exactly `expected`
NOT_FOUND = "not-found"  # getent: no address, while the same resolver answers another name
NXDOMAIN = "nxdomain"    # dig: status NXDOMAIN
NO_REPLY = "no-reply"    # dig: no reply at all (the policies deny the pod's DNS)
HTTP = "http"            # curl: an answer from one of `expected`
NO_HTTP = "no-http"      # curl: no answer (the policies deny DNS or every endpoint)

# the arguments are pairs: a database (ahostsv4: A, ahostsv6: AAAA, ahosts: the canary) and a name
_BATCH_SCRIPT = 'while [ $# -gt 1 ]; do getent "$1" "$2"; echo "rc=$?"; shift 2; done'
_ONE_SCRIPT = '"$@" 2>&1; r=$?; echo; echo "rc=$r"'
_CURL_NO_ANSWER = {6: "could not resolve the name", 7: "could not connect", 28: "timed out"}
CURL_REFUSED = 7          # a reset or an ICMP unreachable: not what a NetworkPolicy's drop looks like
_CURL_SILENT = (6, 28)    # the resolver (denied DNS) or the connection went unanswered: silence


@dataclass(frozen=True)
class Question:
    check: str
    subject: str
    pod: PodState
    argv: tuple[str, ...]  # getent questions of one pod are batched; dig and curl run alone
    expected: frozenset    # addresses (dns), or endpoint pod names that may answer (dns-http)
    want: str = ADDRESSES
    denied: frozenset = frozenset()  # dns-http: the ready endpoints the policies deny this client

    @property
    def name(self) -> str:
        """The name asked (dns) or the URL (dns-http)."""
        return self.argv[-1] if self.check == "dns-http" else self.argv[2]

    @property
    def expectation(self) -> str:
        if self.want == NXDOMAIN:
            return "NXDOMAIN"
        if self.want in (NO_REPLY, NO_HTTP):
            return f"no answer ({DENIED})"
        return ", ".join(sorted(self.expected)) or "not found"


@dataclass(frozen=True)
class Reply:
    """What one tool run in a pod gave: its exit code (None: it did not run to its end, `error` says
    why) and its output (getent: address lines; dig: its text; curl: the body)."""
    rc: Optional[int]
    out: str = ""
    error: str = ""


# --- planning (pure) ---

def _clients(state: ClusterState) -> list[PodState]:
    return [p for p in state.pods if not p.host_network and resolv_conf(state, p) and
            (p.dns_policy == "ClusterFirst" and not p.dns_nameservers)]


def _kube_dns_endpoints(state: ClusterState, slices: Sequence[EndpointSliceState], node: str) -> list[tuple[object, int]]:
    """(pod, or address when no pod, target port) of the cluster DNS Service's UDP endpoints that
    `node`'s rules send a query to (lab.kube_proxy.model decides, as for the renderers): what the
    packet filter sees after kube-proxy's DNAT."""
    ip = dns_ip(state)
    svc = next((s for s in state.services if s.cluster_ip == ip), None)
    if svc is None:
        return []
    pods = {p.key: p for p in state.pods}
    return [(pods.get(key, address), number) for port in svc.ports if port.protocol == "UDP"
            for key, (address, number) in internal_endpoints(on_node(svc, port, slices, node)).items()]


def dns_denied(state: ClusterState, slices: Sequence[EndpointSliceState], pod: PodState) -> bool:
    """Do the policies deny the pod every path to its nameserver? With NodeLocal DNSCache the pod
    asks its own node (169.254.20.10 on the node's lo): pod-to-node traffic is never subject to
    policy (lab.policy.model's node exception; the rules filter FORWARD only), so what counts is the
    node's cache asking kube-dns. No ready kube-dns endpoint is a broken DNS, not a denial."""
    if not state.policies:
        return False
    eps = _kube_dns_endpoints(state, slices, pod.node)  # the pod, or its node's cache, asks from its node
    src = state.node(pod.node).ip if state.dns_node_cache else pod
    return bool(eps) and not any(allowed(state, src, dst, port, "UDP") for dst, port in eps)


def sample(clients: Sequence[PodState], denied: set[str]) -> list[PodState]:
    """The first pod (by key) of every (namespace, node, DNS denied or not): every place a lookup
    can start from and every verdict the policies give, at any scale."""
    seen, out = set(), []
    for c in sorted(clients, key=lambda p: p.key):
        group = (c.namespace, c.node, c.key in denied)
        if group not in seen:
            seen.add(group)
            out.append(c)
    return out


def _getent(name: str, family: str = "IPv4") -> tuple[str, ...]:
    """getent ahostsv4 asks A records, ahostsv6 AAAA (the answer's addresses are the family's)."""
    return ("getent", "ahostsv6" if family == "IPv6" else "ahostsv4", name)


def _of(addresses, family: str) -> set[str]:
    return {a for a in addresses if (":" in a) == (family == "IPv6")}


def _dig(name: str) -> tuple[str, ...]:
    """dig reads the pod's resolv.conf; one second per try, two tries."""
    return ("dig", "-q", name, "+time=1", "+tries=2", "+noall", "+comments")


def plan(state: ClusterState, slices: Sequence[EndpointSliceState]) -> list[Question]:
    if not state.dns_domain:
        return []
    d, out = state.dns_domain, []
    ready = {key: {e.address for e in eps} for key, eps in ready_by_service(slices).items()}
    by_name = {f"{s.name}.{s.namespace}.svc.{d}": s for s in state.services}
    clients = _clients(state)
    denied = {c.key for c in clients if dns_denied(state, slices, c)}
    askers = sample(clients, denied) if len(state.pods) > SAMPLE_ABOVE else clients
    # a pod without DNS: one question (absolute, no search list), which must get no reply
    for c in askers:
        if c.key in denied:
            name = f"{dns_ip_name(state)}."
            out.append(Question("dns", f"{c.key}: {name} ({DENIED})", c, _dig(name), frozenset(), NO_REPLY))
    resolving = [c for c in askers if c.key not in denied]
    families = state.service_families()
    for svc in state.services:
        fqdn = f"{svc.name}.{svc.namespace}.svc.{d}"
        if svc.type == "ExternalName":
            target = by_name.get(svc.external_name)
            every = set(target.cluster_ips or (target.cluster_ip,)) if target and target.cluster_ip else None
        else:
            every = set(svc.cluster_ips or (svc.cluster_ip,)) if svc.cluster_ip else \
                ready.get((svc.namespace, svc.name), set())
        if every is None:
            continue  # an alias for a name outside the lab: nothing to compare with
        for family in families:
            # one question per family the cluster has (AAAA only where there is an IPv6 address: glibc
            # answers ahostsv6 with IPv4-mapped addresses for a name that has A records only)
            want = _of(every, family)
            if family != families[0] and not want:
                continue
            if family == families[0] and not want and every:
                continue
            tag = "" if family == "IPv4" else " (AAAA)"
            for c in resolving:
                names = ([svc.name] if c.namespace == svc.namespace else []) + [f"{svc.name}.{svc.namespace}", fqdn]
                out += [Question("dns", f"{c.key}: {n} -> {', '.join(sorted(want)) or 'nothing'}{tag}", c,
                                 _getent(n, family), frozenset(want), ADDRESSES if want else NOT_FOUND) for n in names]
    if resolving:
        c = resolving[0]
        for p in state.pods:
            if not p.host_network:
                for ip in p.pod_ips:
                    family, name = ("IPv6" if ":" in ip else "IPv4"), pod_a_name(p, d, ip)
                    out.append(Question("dns", f"{c.key}: {name} -> {ip}", c, _getent(name, family), frozenset({ip})))
        name = f"does-not-exist.{c.namespace}.svc.{d}"  # dig takes every name as absolute
        out.append(Question("dns", f"{c.key}: {name} -> NXDOMAIN", c, _dig(name), frozenset(), NXDOMAIN))
    if askers:
        out += _http(state, slices, resolving[0] if resolving else askers[0], denied)
    return out


def dns_ip_name(state: ClusterState) -> str:
    """The FQDN of the cluster DNS Service itself: a name every cluster DNS knows."""
    ip = dns_ip(state)
    svc = next((s for s in state.services if s.cluster_ip == ip), None)
    ns, name = (svc.namespace, svc.name) if svc else (kube_dns.NAMESPACE, kube_dns.NAME)
    return f"{name}.{ns}.svc.{state.dns_domain}"


def _http(state: ClusterState, slices, c: PodState, denied_dns: set[str]) -> list[Question]:
    """One curl per Service port served by netexec over TCP, by the Service's name. After kube-proxy's
    DNAT the filter sees the endpoint pod and its target port: the policies decide per endpoint."""
    pods = {p.key: p for p in state.pods}
    out = []
    for svc in state.services:
        if not svc.cluster_ip or svc.type == "ExternalName":
            continue
        for port in (p for p in svc.ports if p.protocol == "TCP"):
            eps = [(pods.get(key), number)
                   for key, (_, number) in internal_endpoints(on_node(svc, port, slices, c.node)).items()]
            # curl lands on any endpoint the client's node sends it to (lab.kube_proxy.model decides):
            # every one of them must speak netexec's HTTP there
            if not eps or not all(netexec_serves(pod, p, "TCP") for pod, p in eps):
                continue
            url = f"http://{svc.name}.{svc.namespace}:{port.port}/hostname"
            subject, argv = f"{c.key}: curl {url}", ("curl", "-s", "-m", "2", url)
            servers = frozenset(pod.name for pod, p in eps if not state.policies or allowed(state, c, pod, p, "TCP"))
            refused = frozenset(pod.name for pod, _ in eps) - servers
            if c.key in denied_dns or not servers:
                out.append(Question("dns-http", f"{subject} ({DENIED})", c, argv, frozenset(), NO_HTTP, refused))
            else:
                if refused:
                    subject += f" ({len(refused)} of {len(eps)} endpoints {DENIED})"
                out.append(Question("dns-http", subject, c, argv, servers, HTTP, refused))
    return out


def dns_off(state: ClusterState) -> Optional[Outcome]:
    """A lab with Services and pods that expect cluster DNS, but none: one failing row, not silence."""
    if state.dns_domain or not state.services:
        return None
    users = [p for p in state.pods if (p.dns_policy == "ClusterFirst" and not p.host_network)
             or p.dns_policy == "ClusterFirstWithHostNet"]
    if not users:
        return None
    return Outcome("dns", "cluster DNS is off", False, "Service names resolve from pods with dnsPolicy ClusterFirst",
                   f"{len(users)} pods use dnsPolicy ClusterFirst but the lab has no cluster DNS; set "
                   "cluster.dns.enabled: true in the topology (or dnsPolicy: Default on pods that need no "
                   "cluster names)")


# --- judging (pure) ---

def parse_replies(stdout: str, count: int, error: str = "") -> list[Reply]:
    """Split the output of a script that prints `rc=N` after each tool run into `count` replies;
    runs that never printed their rc get `error` (or "no result"), those after the first with
    "(not reached)"."""
    replies, lines = [], []
    for line in stdout.splitlines():
        m = re.fullmatch(r"rc=(\d+)", line)
        if m:
            replies.append(Reply(int(m.group(1)), "\n".join(lines).strip("\n")))
            lines = []
        else:
            lines.append(line)
    replies = replies[:count]
    why = error or "no result"
    missing = [Reply(None, error=why if k == 0 else f"{why} (not reached)") for k in range(count - len(replies))]
    return replies + missing


def judge(q: Question, reply: Reply, alive: bool = True) -> tuple[bool, bool, str]:
    """(passed, final, observed). A failure is asked again unless final: a reply to a question the
    policies should silence is a leak, and asking again could only hide it. `alive`: the same
    resolver answered another name in the same run, so "not found" is an answer, not a silence."""
    tool = q.argv[0]
    if reply.rc is None:
        return False, False, reply.error
    if reply.rc == 127:
        return False, False, f"cannot run {tool}: not installed"
    if reply.rc == 126:
        return False, False, f"cannot run {tool}: not executable"
    if q.want in (ADDRESSES, NOT_FOUND):
        return _judge_getent(q, reply, alive)
    if q.want in (NXDOMAIN, NO_REPLY):
        return _judge_dig(q, reply)
    return _judge_curl(q, reply)


def _judge_getent(q: Question, reply: Reply, alive: bool) -> tuple[bool, bool, str]:
    if reply.rc == 0:
        got = {line.split()[0] for line in reply.out.splitlines() if line.strip()}
        if q.want == ADDRESSES:
            return got == set(q.expected), False, ", ".join(sorted(got)) or "an empty answer"
        return False, False, f"resolved to {', '.join(sorted(got))}"
    if reply.rc == 2:  # getent: not found (NXDOMAIN, no record, or no reply: glibc does not tell)
        if q.want == NOT_FOUND and not alive:
            return False, False, "not found, and the resolver answered no other name either (no reply?)"
        return q.want == NOT_FOUND, False, "not found"
    return False, False, f"getent exited {reply.rc}"


def _judge_dig(q: Question, reply: Reply) -> tuple[bool, bool, str]:
    status = re.search(r"status: ([A-Z]+)", reply.out)
    last = next((line.lstrip("; ") for line in reversed(reply.out.splitlines()) if line.strip()), "")
    if q.want == NXDOMAIN:
        if status:
            return status.group(1) == "NXDOMAIN", False, f"status: {status.group(1)}"
        return False, False, f"no answer from the pod's resolver (dig exited {reply.rc}: {last or 'no output'})"
    if status:
        return False, True, f"answered (status: {status.group(1)}) although the policies deny DNS"
    if reply.rc == 9:
        return True, True, f"no reply (dig: {last or 'no servers could be reached'})"
    return False, False, f"dig exited {reply.rc}: {last or 'no output'}"


def _judge_curl(q: Question, reply: Reply) -> tuple[bool, bool, str]:
    body = reply.out.strip()
    if q.want == NO_HTTP:
        if reply.rc == 0:
            return False, True, f"answered by {body or 'nobody'} although the policies deny it"
        if reply.rc in _CURL_SILENT:
            return True, True, f"no answer (curl exited {reply.rc}: {_CURL_NO_ANSWER[reply.rc]})"
        if reply.rc == CURL_REFUSED:
            return False, True, "refused (curl exited 7: could not connect): refused is not denied, a " \
                                "NetworkPolicy drops silently"
        return False, False, f"curl exited {reply.rc}"
    if reply.rc == 0:
        if body in q.expected:
            return True, True, f"answered by {body}"
        if body in q.denied:
            return False, True, f"answered by {body}, an endpoint the policies deny"
        return False, False, f"answered by {body or 'nobody'}"
    return False, False, f"no answer (curl exited {reply.rc}: {_CURL_NO_ANSWER.get(reply.rc, 'error')})"


def tolerated(q: Question, replies: Sequence[Reply]) -> Optional[str]:
    """curl through a Service whose endpoints the policies partly deny may land on a denied one at
    every try: no answer at all, every time (never a wrong one), is tolerated and said so."""
    if q.want == HTTP and q.denied and replies and all(r.rc in _CURL_SILENT for r in replies):
        return (f"no answer in {len(replies)} tries; tolerated: each may have picked one of the "
                f"{len(q.denied)} endpoints the policies deny")
    return None


# --- asking ---

def _run_in(netns: str, script: str, args: Sequence[str], timeout: float, tool: str, cgroup: str = "") -> tuple[str, str]:
    """(stdout, why it did not finish or "") of `sh -c script sh args...` in the pod's netns (and
    its node's cgroup under proxy ebpf: the socket LB resolves kube-dns's ClusterIP). The
    arguments are never part of the script. A timeout kills the whole process group."""
    argv = ["ip", "netns", "exec", netns, "sh", "-c", script, "sh", *args]
    argv = placed(argv, cgroup) if cgroup else argv
    done = host.run(argv, env={**os.environ, "RES_OPTIONS": RES_OPTIONS}, timeout=timeout, check=False)
    if done.code is None:
        return done.stdout, f"{tool} timed out after {timeout:g}s"
    if done.code == 127 and not done.stdout and "not installed" in done.stderr:
        return "", "cannot run ip netns exec: ip is not installed"
    if done.code != 0 and not re.search(r"^rc=\d+$", done.stdout, re.M):
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exited {done.code}"
        return done.stdout, f"cannot run ip netns exec {netns}: {why}"
    return done.stdout, ""


@dataclass(frozen=True)
class _Job:
    pod: PodState
    indices: tuple[int, ...]  # empty: only the canary
    canary: str = ""  # a name that must resolve, asked along to tell "not found" from silence


def _jobs(questions: Sequence[Question], pending: Sequence[int], canary: str, silent: set[str]) -> list[_Job]:
    """One job per dig or curl; a pod's getent names in batches of BATCH. A pod whose resolver was
    silent last round asks only the canary: a dead resolver costs one timeout, not one per name."""
    jobs, batches = [], {}
    for i in pending:
        q = questions[i]
        if q.argv[0] == "getent":
            batches.setdefault(q.pod.key, []).append(i)
        else:
            jobs.append(_Job(q.pod, (i,)))
    for key, indices in batches.items():
        pod = questions[indices[0]].pod
        if key in silent:
            jobs.append(_Job(pod, (), canary))
            continue
        for k in range(0, len(indices), BATCH):
            chunk = tuple(indices[k:k + BATCH])
            needs = not any(questions[i].want == ADDRESSES for i in chunk)
            jobs.append(_Job(pod, chunk, canary if needs else ""))
    return jobs


def _do(questions: Sequence[Question], job: _Job, cgroups: Mapping[str, str]) -> tuple[_Job, list[Reply], bool, bool]:
    """(job, one reply per index, whether some name resolved, whether the run was cut short)."""
    if job.indices and questions[job.indices[0]].argv[0] != "getent":
        q = questions[job.indices[0]]
        out, error = _run_in(job.pod.netns, _ONE_SCRIPT, q.argv, timeout=5.0, tool=q.argv[0],
                             cgroup=cgroups.get(job.pod.netns, ""))
        return job, parse_replies(out, 1, error), False, bool(error)  # says nothing of getent's resolver
    pairs = [arg for i in job.indices for arg in questions[i].argv[1:3]] + (["ahosts", job.canary] if job.canary else [])
    names = pairs[1::2]
    out, error = _run_in(job.pod.netns, _BATCH_SCRIPT, pairs, timeout=3.0 + 0.25 * len(names), tool="getent",
                         cgroup=cgroups.get(job.pod.netns, ""))
    replies = parse_replies(out, len(names), error)
    alive = any(r.rc == 0 and r.out.strip() for r in replies)
    return job, replies[:len(job.indices)], alive, bool(error)


def ask(questions: Sequence[Question], canary: str, cgroups: Optional[Mapping[str, str]] = None) -> list[tuple[bool, str]]:
    """(passed, observed) per question: every open question asked once per round, a failure asked
    again (up to TRIES, or TRIES_SOME_DENIED), the first pass final. The canary (a name every
    cluster DNS knows) tells a resolver that says "not found" from one that says nothing."""
    verdicts: dict[int, tuple[bool, str]] = {}
    history: dict[int, list[Reply]] = {i: [] for i in range(len(questions))}
    last: dict[int, str] = {}
    tries = [TRIES_SOME_DENIED if q.want == HTTP and q.denied else TRIES for q in questions]
    silent: set[str] = set()
    for attempt in range(1, max(tries, default=0) + 1):
        pending = [i for i in range(len(questions)) if i not in verdicts and attempt <= tries[i]]
        if not pending:
            break
        if attempt > 1:
            time.sleep(0.2)
        with ThreadPoolExecutor(POOL) as pool:
            done = list(pool.map(lambda j: _do(questions, j, cgroups or {}), _jobs(questions, pending, canary, silent)))
        heard = {job.pod.key for job, _, alive, _ in done if alive}
        silent = {job.pod.key for job, _, alive, cut in done if not job.indices or (
            cut and questions[job.indices[0]].argv[0] == "getent")} - heard
        for job, replies, alive, _ in done:
            for i, reply in zip(job.indices, replies):
                history[i].append(reply)
                ok, final, seen = judge(questions[i], reply, alive)
                last[i] = seen
                if ok:
                    verdicts[i] = (True, seen + (f" (at try {attempt})" if attempt > 1 else ""))
                elif final:
                    verdicts[i] = (False, seen)
                elif attempt == tries[i]:
                    excuse = tolerated(questions[i], history[i])
                    verdicts[i] = (True, excuse) if excuse else (False, f"{seen} ({_tries(attempt)})")
    for i in range(len(questions)):
        if i not in verdicts:  # left unasked: the pod's resolver stayed silent
            verdicts[i] = (False, f"{last.get(i, 'not asked')} ({_tries(len(history[i]))}; then the pod's "
                                  f"resolver did not answer {canary} either)")
    return [verdicts[i] for i in range(len(questions))]


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def run(state: ClusterState, slices: Sequence[EndpointSliceState]) -> list[Outcome]:
    off = dns_off(state)
    if off is not None:
        return [off]
    questions = plan(state, slices)
    if not questions:
        return []
    answers = ask(questions, f"{dns_ip_name(state)}.", socket_cgroups(state))
    return [Outcome(q.check, q.subject, ok, q.expectation, seen, source=q.pod.netns)
            for q, (ok, seen) in zip(questions, answers)]
