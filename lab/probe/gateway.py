"""`lab check`'s gateway rows: every HTTPRoute rule, asked from outside at its Gateway's address.

`gateway`: from every plain host on the underlay, curl sends each rule match's request (its Host,
a path the match takes, its headers, query and method) to the Gateway's address. What must come
back is read from the RouteConfiguration Envoy was given (lab.gateway.simulate walks it as Envoy
does): a pod behind one of the rule's weighted Services (netexec names itself), a redirect with
its Location, the Gateway API's 500 for an unresolved or missing backend, Envoy's 503 for a
Service without ready endpoints, a 404 where no route takes the request. Under NetworkPolicies a
dropped host -> Envoy hop must be silence (curl times out); a dropped Envoy -> backend hop is
Envoy's 503 after its connect timeout, never "denied" for "not served".

`gateway-weights`: a rule with several weighted Services is asked 500 times from one host; each
Service's share must be within 5 points of its weight's (the Gateway API conformance test's bound).
A failed curl is a failure with curl's reason, never a pass.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Sequence
from urllib.parse import urlencode

from lab import host
from lab.controlplane.gateway_state import GatewayState, RouteMatchState, dataplane
from lab.controlplane.state import ClusterState, EndpointSliceState, HostState
from lab.gateway import envoy, simulate
from lab.host.record import RUN_ROOT
from lab.policy import model as policy
from lab.probe.outcome import Outcome

CHECKS = {"gateway": "every HTTPRoute rule answers from outside (the plain hosts) at its Gateway's address as its "
                     "configuration says: the right backend, redirect or error status",
          "gateway-weights": "a rule's weighted backends share 500 requests within 5 points of their weights"}
TIMEOUT = 4.0                        # above Envoy's 2 s connect timeout: a dropped backend is its 503, not silence
TRIES = 3
CURL_TIMED_OUT = 28
WEIGHT_REQUESTS = 500
WEIGHT_TOLERANCE = 0.05
PROBE_LABEL = "probe"                # what stands in for a wildcard hostname's `*`
PROBE_SUFFIX = "probe"               # a path element added under a PathPrefix


@dataclass(frozen=True)
class Ask:
    client: HostState
    gateway: str
    rule: str                        # httproute/<ns>/<name>/rule/<i>/match/<j>
    url: str
    host: str
    headers: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    statuses: tuple[int, ...] = (200,)   # what may answer
    backends: tuple[str, ...] = ()        # pods that may answer a 200
    location: str = ""                    # a redirect's
    reply: bool = True                    # False: a NetworkPolicy drops host -> Envoy
    why: str = ""                         # the expectation in words
    tls: tuple[str, ...] = ()             # HTTPS: curl's --resolve and --cacert (the name's SNI, the lab's CA)


@dataclass(frozen=True)
class Answer:
    status: int
    server: str
    location: str
    error: str = ""
    code: Optional[int] = 0


def request_for(m: RouteMatchState, hostname: str) -> Optional[simulate.Request]:
    """A request the match takes; None when a regular expression leaves no one value to send."""
    if m.path_type == "RegularExpression" or any(t != "Exact" for t, _, _ in (*m.headers, *m.query)):
        return None
    path = m.path if m.path_type == "Exact" else f"{m.path.rstrip('/')}/{PROBE_SUFFIX}"
    return simulate.Request(hostname, path, {n.lower(): v for _, n, v in m.headers}, {n: v for _, n, v in m.query},
                            m.method or "GET")


def _hostname(h: str, gw: GatewayState) -> str:
    return f"{PROBE_LABEL}{h[1:]}" if h.startswith("*") else h or gw.address


def _pods_of(state: ClusterState, slices, cluster: str) -> tuple[str, ...]:
    ns, svc, port = cluster.split("/")
    from lab.controlplane.gateway_state import RouteBackendState
    addresses = {a for a, _ in envoy.endpoints(state, slices, RouteBackendState(ns, svc, int(port)))}
    return tuple(sorted(p.name for p in state.pods if p.ip in addresses and not p.host_network))


def expectation(state: ClusterState, slices, entry: Optional[dict], req: simulate.Request, port: int,
                envoy_pod, scheme: str = "http") -> tuple[tuple[int, ...], tuple[str, ...], str, str]:
    """(statuses, backends, location, words) the request must get back."""
    if entry is None:
        return (404,), (), "", "HTTP 404 (no route takes it)"
    if "redirect" in entry:
        code = {v: k for k, v in envoy.REDIRECT_CODES.items()}[entry["redirect"]["response_code"]]
        loc = simulate.redirect_location(entry, req, scheme, port)
        return (code,), (), loc, f"HTTP {code} to {loc}"
    if "direct_response" in entry:
        return (entry["direct_response"]["status"],), (), "", f"HTTP {entry['direct_response']['status']} (no backend)"
    action = entry["route"]
    clusters = [action["cluster"]] if "cluster" in action else [c["name"] for c in action["weighted_clusters"]["clusters"]]
    statuses, pods, words = set(), [], []
    for c in clusters:
        if c == envoy.INVALID:
            statuses.add(500)
            words.append("500 for an unresolved backend")
            continue
        found = _pods_of(state, slices, c)
        allowed = [p for p in found if not state.policies or policy.allowed(
            state, envoy_pod, next(x for x in state.pods if x.name == p), _target_port(state, slices, c), "TCP")]
        if allowed:
            statuses.add(200)
            pods += allowed
            words.append(f"200 from {c} ({', '.join(allowed)})")
        else:
            statuses.add(503)
            words.append(f"503 for {c} ({'no ready endpoint' if not found else 'every endpoint dropped by a NetworkPolicy'})")
    return tuple(sorted(statuses)), tuple(sorted(set(pods))), "", "HTTP " + " or ".join(words)


def _target_port(state: ClusterState, slices, cluster: str) -> int:
    from lab.controlplane.gateway_state import RouteBackendState
    ns, svc, port = cluster.split("/")
    eps = envoy.endpoints(state, slices, RouteBackendState(ns, svc, int(port)))
    return eps[0][1] if eps else 0


def plan(state: ClusterState, slices: Sequence[EndpointSliceState]) -> tuple[list[Ask], list[Outcome]]:
    """The asks, and an unchecked row for each match no one request stands for."""
    asks, unchecked = [], []
    for gw in state.gateways:
        pod = dataplane(state, gw)
        reach = dict(gw.ports)
        if pod is None or not gw.address:
            continue
        for port, protocol in envoy.ports(gw).items():
            if port not in reach:
                continue
            scheme = protocol.lower()
            config = envoy.route_config(state, gw, port)
            for vh in config["virtual_hosts"]:
                for entry in vh["routes"]:
                    owner = entry["name"]
                    route_key, i, j = _position(owner)
                    route = next(r for r in state.http_routes if r.key == route_key)
                    m = route.rules[i].matches[j]
                    hostname = _hostname(vh["domains"][0] if vh["domains"][0] != "*" else "", gw)
                    req = request_for(m, hostname)
                    if req is None:
                        unchecked.append(Outcome("gateway", f"{gw.key} {owner}", False, "an answer",
                                                 "a regular expression names no one request to send", unchecked=True))
                        continue
                    taken = simulate.route(config, req)
                    statuses, backends, location, words = expectation(state, slices, taken, req, port, pod, scheme)
                    if taken is not None and taken["name"] != owner:
                        words += f" (rule {taken['name']} takes this request first)"
                    query = f"?{urlencode(dict(req.query))}" if req.query else ""
                    target = gw.address if reach[port] == {"http": 80, "https": 443}[scheme] else f"{gw.address}:{reach[port]}"
                    tls: tuple[str, ...] = ()
                    if scheme == "https":  # by name (SNI picks the listener's certificate), verified with the lab's CA
                        tls = ("--resolve", f"{req.host}:{reach[port]}:{gw.address}",
                               "--cacert", str(RUN_ROOT / state.lab / "ca.crt"))
                        target = f"{req.host}:{reach[port]}"
                    for h in state.underlay_hosts():
                        reply = not state.policies or policy.allowed(state, h.ip, pod, port, "TCP")
                        asks.append(Ask(h, gw.key, owner, f"{scheme}://{target}{req.path}{query}", req.host,
                                        tuple(sorted(req.headers.items())), req.method, statuses, backends, location,
                                        reply, words, tls))
    return asks, unchecked


def _position(owner: str) -> tuple[str, int, int]:
    _, ns, name, _, i, _, j = owner.split("/")
    return f"{ns}/{name}", int(i), int(j)


def _curl(a: Ask, extra: list[str], urls: list[str], timeout: float):
    argv = ["ip", "netns", "exec", a.client.netns, "curl", "-sS", "--max-time", str(TIMEOUT), "-H", f"Host: {a.host}",
            "-X", a.method, *[x for k, v in a.headers for x in ("-H", f"{k}: {v}")], *a.tls, *extra, *urls]
    return host.run(argv, check=False, timeout=timeout)


def ask(a: Ask) -> Answer:
    r = _curl(a, ["-o", "/dev/null", "-w", "%{http_code}\t%header{x-netexec-hostname}\t%header{location}\n"], [a.url],
              TIMEOUT + 2)
    lines = r.stdout.strip().splitlines()
    if r.code != 0 or not lines:
        return Answer(0, "", "", (r.stderr.strip().splitlines() or [f"curl exit {r.code}"])[-1], r.code)
    status, server, location = (lines[-1].split("\t") + ["", ""])[:3]
    return Answer(int(status), server, location)


def judge(a: Ask, r: Answer) -> Outcome:
    subject = f"host/{a.client.name} -> {a.gateway} {a.rule}" + ("" if a.reply else " (denied by NetworkPolicy)")
    request = f"{a.method} {a.url} Host: {a.host}" + "".join(f", {k}: {v}" for k, v in a.headers)
    seen = f"curl failed: {r.error}" if r.error else \
        f"HTTP {r.status}" + (f" from {r.server}" if r.server else "") + (f" to {r.location}" if r.location else "")
    if not a.reply:
        silent = r.code == CURL_TIMED_OUT
        hint = "" if silent else " — an answer, not silence: refused is not denied, a NetworkPolicy drops silently"
        return Outcome("gateway", subject, silent, "no answer (curl timed out: a drop)", seen + hint, target=request)
    passed = not r.error and r.status in a.statuses and (r.status != 200 or r.server in a.backends) and \
        (not a.location or r.location == a.location)
    return Outcome("gateway", subject, passed, a.why, seen, target=request)


def _settled(a: Ask) -> Outcome:
    """A verdict after retries: an answer that disagrees is asked again, as the probe engine does."""
    outcome = judge(a, ask(a))
    tries = 1
    while not outcome.passed and tries < TRIES:
        time.sleep(0.3)
        outcome, tries = judge(a, ask(a)), tries + 1
    return Outcome(**{**outcome.__dict__, "attempts": tries})


def weight_asks(state: ClusterState, slices, asks: list[Ask]) -> list[tuple[Ask, dict[str, tuple[float, tuple[str, ...]]]]]:
    """(ask, Service cluster -> (expected share, its pods)) for each rule split over several Services
    that all have ready endpoints, from the first host only, over HTTP."""
    out = []
    first = state.underlay_hosts()[0] if state.underlay_hosts() else None
    for a in asks:
        if a.client != first or not a.reply or a.statuses != (200,) or a.tls:  # one row per rule: over HTTP
            continue
        route_key, i, _ = _position(a.rule)
        route = next(r for r in state.http_routes if r.key == route_key)
        live = [b for b in route.rules[i].backends if b.weight > 0]
        if len(live) < 2 or any(b.error for b in live) or a.rule.split("/match/")[1] != "0":
            continue
        shares = {envoy.cluster_name(b): (b.weight / sum(x.weight for x in live), _pods_of(state, slices, envoy.cluster_name(b)))
                  for b in live}
        if all(pods for _, pods in shares.values()):
            out.append((a, shares))
    return out


def weights(a: Ask, shares: dict[str, tuple[float, tuple[str, ...]]]) -> Outcome:
    # one curl for all requests (its -o applies to one URL: each gets its own)
    r = _curl(a, ["-w", "%{http_code}\t%header{x-netexec-hostname}\n"], [a.url, "-o", "/dev/null"] * WEIGHT_REQUESTS,
              TIMEOUT * 2 + WEIGHT_REQUESTS * 0.1)
    subject = f"host/{a.client.name} -> {a.gateway} {a.rule} x{WEIGHT_REQUESTS}"
    expected = ", ".join(f"{c} {share:.0%} ±{WEIGHT_TOLERANCE:.0%}" for c, (share, _) in shares.items())
    lines = [line.split("\t") for line in r.stdout.strip().splitlines()]
    counts = {c: sum(1 for status, server in lines if status == "200" and server in pods) for c, (_, pods) in shares.items()}
    others = len(lines) - sum(counts.values())
    seen = ", ".join(f"{c} {n}/{len(lines)}" for c, n in counts.items()) + (f", {others} other answers" if others else "")
    if r.code != 0:
        seen += f"; curl failed: {(r.stderr.strip().splitlines() or [f'exit {r.code}'])[-1]}"
    passed = r.code == 0 and len(lines) == WEIGHT_REQUESTS and not others and all(
        abs(counts[c] / WEIGHT_REQUESTS - share) <= WEIGHT_TOLERANCE for c, (share, _) in shares.items())
    return Outcome("gateway-weights", subject, passed, expected, seen, target=a.url)


def run(state: ClusterState, slices: Sequence[EndpointSliceState], weighted: bool = True) -> list[Outcome]:
    asks, unchecked = plan(state, slices)
    if not asks:
        return unchecked
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(_settled, asks))
    if weighted:
        out += [weights(a, shares) for a, shares in weight_asks(state, slices, asks)]
    return out + unchecked
