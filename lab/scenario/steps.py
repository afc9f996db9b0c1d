"""What each step kind does to a running lab, through the same code paths as the commands (`lab
apply -f`, `lab fault`, `lab node`, `lab check`), the probe engine and the host layer.

Each effect takes the run's Context and the step's spec and returns a short detail for the
output, raises Failed when its assertion does not hold (the reason says what was seen), or
LabError when the lab refused (both count as the step failing; `expect: fail` turns them into a
pass). Anything else is a bug and is reported as one, never as an expected failure.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from lab import host
from lab.errors import LabError
from lab.host import record as records
from lab.runtime import inside
from lab.probe.engine import REFUSED, REPLY, SILENCE
from lab.scenario import match
from lab.scenario.spec import Check, Clear, Dns, Exec, Fault, Manifests, Node, Probe, Sleep, is_address, pod_ref
from lab.topology.refs import parse_ref

PING_TRIES = 3


class Failed(Exception):
    """The step ran, and what it asserts does not hold."""


@dataclass
class Context:
    lab: str
    faults: dict[str, str] = field(default_factory=dict)  # a fault's `as` name -> its id in the lab


def apply(ctx: Context, spec: Manifests, delete: bool = False) -> str:
    from lab.runtime.apply import apply as apply_objects

    change = apply_objects(list(spec.items), objects=True, delete=delete, lab=ctx.lab, missing_ok=delete)
    if change.missing:
        raise Failed("; ".join(change.missing))
    return "; ".join(change.lines) or str(change)


def fault(ctx: Context, spec: Fault) -> str:
    from lab.runtime import faults

    applied = faults.add(ctx.lab, spec.kind, spec.target, dict(spec.params))
    if spec.alias:
        ctx.faults[spec.alias] = applied.id
    return f"fault {applied.id}"


def clear(ctx: Context, spec: Clear) -> str:
    from lab.runtime import faults

    if spec.which == "all":
        gone = faults.clear(ctx.lab)
        ctx.faults.clear()
    elif spec.which not in ctx.faults:
        raise LabError(f"fault {spec.which!r} is not on: its fault step did not apply it")
    else:
        gone = faults.clear(ctx.lab, ctx.faults.pop(spec.which))
    return f"cleared {', '.join(f.id for f in gone)}" if gone else "no fault was on"


def node(ctx: Context, spec: Node) -> str:
    from lab.runtime import nodes

    seconds = nodes.set_state(ctx.lab, spec.node, up=spec.action == "start")
    return "" if seconds is None else f"routes {'re-learned' if spec.action == 'start' else 'withdrawn'} in {seconds:.2f}s"


def _pod(state, text: str, namespace: str):
    """The pod a step names: by name, or the first pod (by name) of deploy/NAME."""
    ref = pod_ref(text, namespace)
    owner = f"Deployment/{ref.name}"
    pods = sorted((p for p in state.pods if p.namespace == ref.namespace and
                   (p.name == ref.name if ref.kind == "pod" else p.owner == owner)), key=lambda p: p.name)
    if not pods:
        names = ", ".join(p.name for p in state.pods if p.namespace == ref.namespace) or "none"
        raise LabError(f"no {ref.kind} {ref.name!r} in namespace {ref.namespace} of lab {state.lab}; pods: {names}")
    return pods[0]


def run_exec(ctx: Context, spec: Exec) -> host.Completed:
    """Run an exec step's command where it says (a pod with its container's environment, a node, a
    host); Failed if it did not finish in time. Exercises read its output for answers."""
    from lab.node.containers import env_for

    rec = records.load(ctx.lab)
    state, env = rec.state, {}
    if spec.where == "pod":
        pod = _pod(state, spec.target, spec.namespace)
        containers = [c for c in pod.containers if spec.container in (None, c.name)]
        if not containers:
            raise LabError(f"no container {spec.container!r} in pod {pod.key}")
        netns, uts, env = pod.netns, rec.pod_uts(pod), env_for(pod, containers[0])
    else:
        machines = {m.name: m.netns for m in (state.nodes if spec.where == "node" else state.hosts)}
        if spec.target not in machines:
            raise LabError(f"no {spec.where} {spec.target!r} in lab {state.lab}")
        netns = machines[spec.target]
        uts = rec.uts_path(netns)
    done = host.run(inside.argv(rec, netns, uts, spec.target, spec.argv), env={**os.environ, **env},
                    timeout=spec.timeout, check=False)
    if done.code is None:
        raise Failed(f"did not finish within {spec.timeout:g}s")
    return done


def exec_(ctx: Context, spec: Exec) -> str:
    done = run_exec(ctx, spec)
    problems = []
    if spec.exit is not None and done.code != spec.exit:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        problems.append(f"exit {done.code}, expected {spec.exit}" + (f": {said[-1][:200]}" if said else ""))
    for stream, text, wanted in (("stdout", done.stdout, spec.stdout), ("stderr", done.stderr, spec.stderr)):
        problems += [why for why in (match.check(m, text, stream) for m in wanted) if why]
    if problems:
        raise Failed("; ".join(problems))
    return f"exit {done.code}"


def check(ctx: Context, spec: Check) -> str:
    from lab.node import prober
    from lab.probe import coverage, invariants

    rec = records.load(ctx.lab)
    if spec.probes:
        return _probes(rec.state, spec.probes)
    cov = coverage.choose(len(rec.state.pods), False, None)
    outcomes = invariants.run(rec.state, pod_ready=rec.pod_ready, probe_detail=prober.status(rec).detail, cov=cov,
                              only=spec.only)
    if spec.only:
        outcomes = [o for o in outcomes if o.check in spec.only]
        empty = [row for row in spec.only if not any(o.check == row for o in outcomes)]
        if empty:
            raise Failed(f"nothing to check for {', '.join(empty)} in lab {ctx.lab}")
    bad = [o for o in outcomes if o.failed]
    if bad:
        o = bad[0]
        more = f" (and {len(bad) - 1} more of {len(outcomes)} failed)" if len(bad) > 1 else ""
        raise Failed(f"{o.check}: {o.subject}: expected {o.expected}; observed {o.observed}{more}")
    unchecked = sum(o.unchecked for o in outcomes)
    return f"{len(outcomes) - unchecked} checks passed" + (f", {unchecked} unchecked" if unchecked else "")


def _sources(state, text: str) -> list[tuple[str, str]]:
    """(label, netns) of what a probe's `from` names: a pod, a Deployment's pods, a node or a host."""
    ref = parse_ref(text)
    if ref.kind in ("node", "host"):
        return [(f"{ref.kind}/{m.name}", m.netns) for m in (state.nodes if ref.kind == "node" else state.hosts)
                if m.name == ref.name]
    return [(p.key, p.netns) for p in state.pods if p.namespace == ref.namespace and
            (p.name == ref.name if ref.kind == "pod" else p.owner == f"Deployment/{ref.name}")]


def _resolve(state, p: Probe) -> list[tuple[str, str, str, int]]:
    """(subject, source netns, destination IP, port) of every probe a Probe stands for: an address
    as written, a reference as the topology's `checks:` resolve it (a Service's ClusterIP, a pod's
    netexec port when none is given)."""
    from lab.controlplane.state import CheckState
    from lab.probe.invariants import check_expectations

    if is_address(p.dst) or (p.dst.count(":") == 1 and is_address(p.dst.partition(":")[0])):
        ip, _, port = p.dst.partition(":")
        return [(f"{label} -> {ip}", netns, ip, int(port or 0)) for label, netns in _sources(state, p.src)]
    protocol = "TCP" if p.protocol == "ICMP" else p.protocol
    asked = replace(state, checks=(CheckState("probe", p.src, p.dst, protocol, p.expect),))
    return [(e.subject.partition(": ")[2].rpartition(" (")[0], e.probe.src_netns, e.probe.dst_ip, e.probe.port)
            for e in check_expectations(asked)]


def _probes(state, probes: tuple[Probe, ...]) -> str:
    """Ad hoc probes, judged as the harness judges (lab.probe.engine's classification): a reply at
    any try is a reply; a deny only when every try went unanswered; a refusal is its own."""
    from lab.probe.engine import Probe as EngineProbe, run_probes

    planned = []
    for p in probes:
        found = _resolve(state, p)
        if not found:
            raise LabError(f"{p.src} -> {p.dst}: no such source or destination in lab {state.lab} now")
        planned += [(p, *f) for f in found]
    sockets = {i: EngineProbe(netns, ip, port, p.protocol) for i, (p, _, netns, ip, port) in enumerate(planned)
               if p.protocol != "ICMP" and port}
    expect = [REFUSED if planned[i][0].expect == "refused" else None for i in sockets]
    from lab.kube_proxy.runtimes import socket_cgroups

    results = dict(zip(sockets, run_probes(list(sockets.values()), expect=expect, cgroups=socket_cgroups(state))))
    problems = []
    for i, (p, subject, netns, ip, port) in enumerate(planned):
        if p.protocol == "ICMP":
            why = _verdict_ping(p.expect, netns, ip)
        elif not port:
            why = f"the destination serves no {p.protocol} port to probe: write it as NAME:PORT"
        else:
            why = _verdict(p.expect, results[i])
        if why:
            problems.append(f"{subject} ({ip}{f':{port}' if port else ''}/{p.protocol}): {why}")
    if problems:
        raise Failed(problems[0] + (f" (and {len(problems) - 1} more of {len(planned)})" if len(problems) > 1 else ""))
    return f"{len(planned)} probe{'s' if len(planned) != 1 else ''} as expected"


_WANT = {"allow": REPLY, "deny": SILENCE, "refused": REFUSED}
_WORDS = {REPLY: "a reply", SILENCE: "no reply at any try", REFUSED: "a refusal"}


def _verdict(expect: str, r) -> str:
    """'' when a probe result is what `expect` (allow, deny, refused) wants, else why not: the
    engine's one classification (ProbeResult.seen), worded as `lab check` words it."""
    from lab.probe.outcome import describe, refused_hint

    want = _WANT[expect]
    if r.seen == want:
        return ""
    hint = refused_hint(r) if want == SILENCE and r.seen == REFUSED else ""
    return f"expected {_WORDS[want]}; observed {describe(r)}{f' from {r.server}' if r.ok and r.server else ''}{hint}"


def _verdict_ping(expect: str, netns: str, ip: str) -> str:
    """ICMP echo, tried PING_TRIES times with a longer wait each time, classified as the engine
    classifies a probe: an echo reply is final, an ICMP error (ping's "+N errors") is a refusal,
    silence only when every try went unanswered."""
    saw = SILENCE
    for attempt in range(1, PING_TRIES + 1):
        done = host.run(["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", str(attempt), "-q", ip],
                        timeout=attempt + 5, check=False)
        if done.code not in (0, 1, None):
            raise LabError(f"ping in {netns} failed (exit {done.code}): {done.stderr.strip()}")
        saw = REPLY if done.code == 0 else REFUSED if " errors" in done.stdout else SILENCE
        if saw != SILENCE:
            break
    if saw == _WANT[expect]:
        return ""
    observed = {REPLY: "an echo reply", REFUSED: "an ICMP error (unreachable)",
                SILENCE: f"no echo reply after {PING_TRIES} tries"}[saw]
    return f"expected {_WORDS[_WANT[expect]]}; observed {observed}"


def dns(ctx: Context, spec: Dns) -> str:
    from lab.probe.dns import RES_OPTIONS

    rec = records.load(ctx.lab)
    pod = _pod(rec.state, spec.pod, spec.namespace)
    counted = _count_queries(rec, pod, spec) if spec.queries is not None else ""
    if spec.resolves is None and not spec.fails:
        return counted
    database = "ahostsv6" if spec.family == "IPv6" else "ahostsv4"   # AAAA or A records
    done = host.run(["ip", "netns", "exec", pod.netns, "getent", database, spec.name],
                    env={**os.environ, "RES_OPTIONS": RES_OPTIONS}, timeout=30, check=False)
    if done.code is None or done.code not in (0, 2):
        raise Failed(f"getent {'timed out' if done.code is None else f'exited {done.code}'}: {done.stderr.strip()}")
    got = sorted({line.split()[0] for line in done.stdout.splitlines() if line.strip()}) if done.code == 0 else []
    shown = ", ".join(got)
    if spec.fails:
        if got:
            raise Failed(f"{spec.name} resolved to {shown} from {pod.key}; expected no address")
        return f"{spec.name}: not found"
    if not got:
        raise Failed(f"{spec.name} did not resolve from {pod.key} (not found, or no answer)")
    if spec.resolves and set(got) != set(spec.resolves):
        raise Failed(f"{spec.name} resolved to {shown} from {pod.key}; expected {', '.join(sorted(spec.resolves))}")
    return f"{spec.name} -> {shown}" + (f"; {counted}" if counted else "")


def _count_queries(rec, pod, spec: Dns) -> str:
    """How many queries one lookup (glibc, A and AAAA, through the pod's resolv.conf) sent to kube-dns."""
    from lab.dns import queries

    if not rec.state.dns_domain:
        raise Failed("the lab has no cluster DNS: there are no kube-dns queries to count")
    sent = queries.lookup(rec, pod, spec.name).queries
    listed = ", ".join(f"{kind} {name}" for kind, name in sent)
    if len(sent) != spec.queries:
        raise Failed(f"one lookup of {spec.name} from {pod.key} sent {len(sent)} queries, expected {spec.queries}: {listed}")
    return f"{len(sent)} queries: {listed}"


def http(ctx: Context, spec) -> str:
    """An http step: curl from the source's namespace to the Gateway (its address, the listener's
    port as the outside reaches it), judged by lab.scenario.http."""
    from lab.scenario import http as H

    rec = records.load(ctx.lab)
    state = rec.state
    sources = _sources(state, spec.src)
    if not sources:
        raise LabError(f"{spec.src}: no such source in lab {state.lab} now")
    netns = sources[0][1]
    if spec.gateway:
        gw = next((g for g in state.gateways if g.key == spec.gateway), None)
        if gw is None or not gw.address:
            raise Failed(f"Gateway {spec.gateway} has no address in lab {state.lab}"
                         + ("" if gw else f" (Gateways: {', '.join(g.key for g in state.gateways) or 'none'})"))
        listener = spec.port or (443 if spec.scheme == "https" else 80)
        reach = dict(gw.ports)
        if listener not in reach:
            raise Failed(f"Gateway {spec.gateway} has no listener port {listener} (ports: {', '.join(map(str, reach))})")
        address, port = gw.address, reach[listener]
    else:
        address, _, given = spec.address.partition(":")
        port = int(given or (443 if spec.scheme == "https" else 80))
    argv = ["ip", "netns", "exec", netns, "curl", *H.curl_args(spec, address, port, str(rec.dir / "ca.crt"))]
    done = host.run(argv, check=False, timeout=spec.timeout * spec.requests + 10)
    if spec.requests > 1:
        if done.code != 0:
            raise Failed(f"curl failed (exit {done.code}): {(done.stderr.strip().splitlines() or [''])[-1]}")
        counts, others = H.tally(done.stdout, tuple(b for b, _ in spec.expect.weights))
        problems, seen = H.judge_split(spec.expect, counts, others, spec.requests)
        if problems:
            raise Failed("; ".join(problems) + f" — seen: {seen}")
        return f"{spec.requests} requests: {seen}"
    answer = H.read_answer(done.code, done.stdout, done.stderr)
    problems = H.judge(spec.expect, answer)
    if not problems and spec.expect.mirrored_to:
        problems = _mirrored(rec, spec.expect.mirrored_to, H.request_id(answer))
    if problems:
        raise Failed("; ".join(problems))
    echo = H.echo_of(answer)
    return f"HTTP {answer.status}" + (f" from {echo['namespace']}/{echo['pod']}" if echo else "") + \
        (f" to {answer.headers['location'][0]}" if "location" in answer.headers else "")


MIRROR_WAIT = 3.0  # a mirrored copy is sent alongside the request, not before the answer


def _mirrored(rec, deployments: tuple[str, ...], rid: str) -> list[str]:
    """Each Deployment (NS/NAME) has a pod whose log shows the request id within MIRROR_WAIT."""
    from lab.scenario.http import logged

    if not rid:
        return ["the backend saw no X-Request-Id: the mirror's copy cannot be told from other requests"]
    missing = []
    for d in deployments:
        ns, name = d.split("/")
        logs = [rec.log_path(p, c) for p in rec.state.pods if p.namespace == ns and p.owner == f"Deployment/{name}"
                for c in p.containers]
        if not logs:
            missing.append(f"no pods of Deployment {d}")
            continue
        t0 = time.monotonic()
        while not any(host.path_exists(log) and logged(host.read_text(log), rid) for log in logs):
            if time.monotonic() - t0 > MIRROR_WAIT:
                missing.append(f"no pod of {d} logged the request (x-request-id={rid}) within {MIRROR_WAIT:g}s")
                break
            time.sleep(0.05)
    return missing


def get(ctx: Context, spec) -> str:
    """A get step: the object as `lab get KIND NAME -o json` shows it contains spec.json."""
    from lab.gateway import views
    from lab.scenario import status

    rec = records.load(ctx.lab)
    obj = status.find(views.objects(spec.kind, rec.state, rec.pod_ready, None), spec)
    if obj is None:
        raise Failed(f"no {spec.kind[:-1]} {spec.namespace}/{spec.name} in lab {ctx.lab}")
    miss = match.subset(spec.json, obj)
    if miss:
        raise Failed(f"{spec.kind[:-1]} {spec.namespace}/{spec.name}: {miss}")
    return "as expected"


def sleep(ctx: Context, spec: Sleep) -> str:
    time.sleep(spec.seconds)
    return ""


Effect = Callable[[Context, object], str]
EFFECTS: dict[str, Effect] = {
    "apply": apply, "delete": lambda ctx, spec: apply(ctx, spec, delete=True), "fault": fault, "clear": clear,
    "node": node, "exec": exec_, "check": check, "dns": dns, "sleep": sleep, "http": http, "get": get,
}
