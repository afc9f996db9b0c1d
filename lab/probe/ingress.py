"""`lab check`'s ingress row: every Ingress rule, asked from outside as a browser would.

From every plain host on the underlay, by name through the lab's outside resolver (`ip netns
exec` gives curl the host's resolv.conf), curl asks each rule's host and path: over HTTP, and for
TLS hosts over HTTPS verified with the lab's CA (HTTP then must be ingress-nginx's 308 to HTTPS).
The answer must come from a pod behind the rule's Service (netexec names itself in
X-Netexec-Hostname) and carry the client's address in X-Forwarded-For; a backend with no ready
endpoint must be nginx's 503. Under NetworkPolicies, a hop they deny (host -> controller, or
controller -> every backend) makes "no answer from the backend" the expectation. A failed curl
is a failure with curl's reason, never a pass.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from lab import host
from lab.host.record import RUN_ROOT
from lab.controlplane.state import ClusterState, EndpointSliceState, HostState, IngressPathState, PodState
from lab.ingress import nginx
from lab.policy import model as policy
from lab.probe.outcome import Outcome

CHECKS = {"ingress": "every Ingress rule answers by name from outside (the plain hosts), over HTTP and HTTPS with the "
                     "lab's CA, from a pod of its Service, which sees the client in X-Forwarded-For"}
TIMEOUT = 3.0
TRIES = 3
CURL_TIMED_OUT = 28


@dataclass(frozen=True)
class Ask:
    client: HostState
    url: str
    backends: tuple[str, ...]        # pod names that may answer; () = nginx's 503 (no ready endpoint)
    reply: bool = True               # False: a NetworkPolicy denies a hop
    redirect: bool = False           # http to a TLS host: a 308 to https first


@dataclass(frozen=True)
class Answer:
    status: int
    server: str
    forwarded: str
    redirects: int
    error: str = ""
    code: int | None = 0  # curl's exit status (None: it did not end)


def _backends(state: ClusterState, slices: Sequence[EndpointSliceState], namespace: str,
              path: IngressPathState) -> tuple[PodState, ...]:
    addresses = {e.split(":")[0] for e in nginx.endpoints(state, slices, namespace, path)}
    return tuple(p for p in state.pods if p.ip in addresses and not p.host_network)


def plan(state: ClusterState, slices: Sequence[EndpointSliceState]) -> list[Ask]:
    if not state.ingresses:
        return []
    from lab.controlplane import ingress  # here: it loads the topology model, ~0.3 s of every `lab check`

    controller, entry = ingress.controller(state), ingress.entry(state)
    if controller is None:
        return []
    tls = set(nginx.tls_hosts(state))
    out = []
    for ing in state.ingresses:
        for p in [*ing.paths, *([ing.default_backend] if ing.default_backend else [])]:
            if p.host.startswith("*"):
                continue  # a wildcard names no one host to ask
            pods = _backends(state, slices, ing.namespace, p)
            for h in state.underlay_hosts():
                reply = not state.policies or (
                    policy.allowed(state, h.ip, controller, ingress.HTTP, "TCP")
                    and (not pods or any(policy.allowed(state, controller, b, _port(state, slices, ing.namespace, p), "TCP")
                                         for b in pods)))
                name = p.host or entry
                schemes = ["http", "https"] if p.host in tls else ["http"]
                for scheme in schemes:
                    out.append(Ask(h, f"{scheme}://{name}{p.path}", tuple(b.name for b in pods), reply,
                                   redirect=scheme == "http" and p.host in tls))
    return out


def _port(state: ClusterState, slices, namespace: str, path: IngressPathState) -> int:
    eps = nginx.endpoints(state, slices, namespace, path)
    return int(eps[0].split(":")[1]) if eps else 0


def ask(a: Ask, ca: str) -> Answer:
    argv = ["ip", "netns", "exec", a.client.netns, "curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time",
            str(TIMEOUT), "--cacert", ca, "-L", "--max-redirs", "1", "-w", "\n%{http_code} %{num_redirects}", a.url]
    r = host.run(argv, check=False, timeout=TIMEOUT + 2)
    lines = r.stdout.strip().splitlines()
    if r.code != 0 or not lines:
        return Answer(0, "", "", 0, (r.stderr.strip().splitlines() or [f"curl exit {r.code}"])[-1], r.code)
    status, redirects = (int(x) for x in lines[-1].split())
    last = {}
    for line in lines[:-1]:  # the headers of the last response (after a redirect)
        if line.startswith("HTTP/"):
            last = {}
        name, _, value = line.partition(":")
        last[name.strip().lower()] = value.strip()
    return Answer(status, last.get("x-netexec-hostname", ""), last.get("x-netexec-forwarded-for", ""), redirects)


def judge(a: Ask, r: Answer) -> Outcome:
    subject = f"host/{a.client.name} -> {a.url}" + ("" if a.reply else " (denied by NetworkPolicy)")
    seen = f"curl failed: {r.error}" if r.error else \
        f"HTTP {r.status}" + (f" from {r.server}" if r.server else "") + \
        (f", X-Forwarded-For {r.forwarded}" if r.server else "") + (f" after {r.redirects} redirect" if r.redirects else "")
    if not a.reply:  # a drop is silence: curl times out (nginx would wait longer for the backend)
        silent = r.code == CURL_TIMED_OUT
        hint = "" if silent or r.server else " — an answer, not silence: refused is not denied, a NetworkPolicy " \
                                             "drops silently"
        return Outcome("ingress", subject, silent, "no answer (curl timed out: a drop)", seen + hint, target=a.url)
    if not a.backends:
        return Outcome("ingress", subject, r.status == 503 and not r.error, "HTTP 503 (the Service has no ready endpoint)",
                       seen, target=a.url)
    expected = f"HTTP 200 from one of {', '.join(a.backends)}, X-Forwarded-For {a.client.ip}" + \
        (" after a 308 to https" if a.redirect else "")
    passed = not r.error and r.status == 200 and r.server in a.backends and \
        r.forwarded.split(",")[0].strip() == a.client.ip and r.redirects == (1 if a.redirect else 0)
    return Outcome("ingress", subject, passed, expected, seen, target=a.url)


def _settled(a: Ask, ca: str) -> Outcome:
    """A verdict after retries: an answer that disagrees is asked again, as the probe engine does."""
    outcome = judge(a, ask(a, ca))
    for _ in range(TRIES - 1):
        if outcome.passed:
            break
        time.sleep(0.3)
        outcome = judge(a, ask(a, ca))
    return outcome


def run(state: ClusterState, slices: Sequence[EndpointSliceState]) -> list[Outcome]:
    asks = plan(state, slices)
    ca = RUN_ROOT / state.lab / "ca.crt"
    if not asks:
        return []
    if not ca.exists():
        return [Outcome("ingress", "the lab's CA", False, f"{ca}", "missing: `lab up` makes it")]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda a: _settled(a, str(ca)), asks))
