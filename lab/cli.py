"""`lab`: the command line. Each command imports only what it needs: students run it all day."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from lab import host
from lab.errors import LabError, TopologyError


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


INTERNAL = 3  # exit status of a bug in the lab, not in the user's input


def _internal(e: BaseException, what: str = "") -> int:
    """The last resort: an unexpected exception is our bug, said as such, without a traceback
    (LAB_DEBUG=1 shows it)."""
    import traceback

    if os.environ.get("LAB_DEBUG"):
        traceback.print_exception(e)
    where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    _err(f"internal error{what}: {type(e).__name__}: {e}{at}; please report it "
         "with the input that caused it (LAB_DEBUG=1 shows the traceback)")
    return INTERNAL


def _progress(name: str, seconds: float) -> None:
    print(f" ✓ {name} ({seconds:.2f}s)", file=sys.stderr, flush=True)


def _print_warnings(warnings) -> None:
    from lab.errors import warnings_text

    print(warnings_text(warnings), file=sys.stderr)


def _loading(strict: bool):
    """Topology loads inside the block (lab up's too) print their warnings, or fail on them (--strict)."""
    from lab.topology.load import reporting

    return reporting(strict=strict, report=_print_warnings)


def cmd_validate(a) -> int:
    from lab.controlplane.plan import plan
    from lab.topology.load import load_topology

    worst = 0  # every file is checked and reported; the exit status is the worst one's
    for path in a.files:
        try:
            with _loading(a.strict):
                state = plan(load_topology(path), source=path)
            from lab.runtime import controllers

            for note in controllers.preflight(state, deep=False):  # can this machine run it (proxy ebpf: clang, BPF)?
                print(f"{path}: {note}")
        except LabError as e:
            print(str(e), file=sys.stderr)
            worst = max(worst, 1)
            continue
        except Exception as e:  # noqa: BLE001 - one file's bug must not hide the others' errors
            worst = _internal(e, f" in {path}")
            continue
        print(f"{path}: valid: lab {state.lab}, {len(state.nodes)} nodes, {len(state.hosts)} hosts, "
              f"{len(state.pods)} pods, network {state.network}, cni {state.cni}")
    return worst


def cmd_schema(a) -> int:
    from lab.topology.schema import topology_schema

    print(json.dumps(topology_schema(), indent=2))
    return 0


def cmd_up(a) -> int:
    from lab.runtime import lifecycle

    from lab.runtime import wait

    # kind create cluster --wait: every pod, bounded by its probes unless a time is given; --wait=0s
    # does not wait (kind's default). A bad duration is refused before anything is built.
    waits = a.wait is not None and (not a.wait or wait.duration(a.wait) > 0)
    t0 = time.monotonic()
    print(f"Creating lab from {a.file} ...", file=sys.stderr)
    with _loading(a.strict):
        state = lifecycle.up(a.file, progress=_progress)
    if waits:
        _wait_ready(state.lab, lambda s: list(s.pods), a.wait or None, fail=True)
    print(f"Lab {state.lab} is up: {len(state.nodes)} nodes, {len(state.pods)} pods "
          f"({time.monotonic() - t0:.2f}s). Try: lab get pods -o wide", file=sys.stderr)
    if state.ingresses:
        from lab.controlplane import ingress
        from lab.host.record import RUN_ROOT

        print(f"Ingress: {', '.join(ingress.hosts(state)) or 'no host names'} -> {ingress.entry(state)} (ingress-nginx); "
              f"the lab's CA: {RUN_ROOT / state.lab / 'ca.crt'} (curl --cacert)", file=sys.stderr)
    for gw in state.gateways:
        names = sorted(h for h, address in gateway_hosts(state).items() if address == gw.address)
        print(f"Gateway {gw.key}: {', '.join(names) or 'no host names'} -> {gw.address or '<pending>'} "
              f"(Envoy; ports {', '.join(f'{p}' if p == q else f'{p}->{q}' for p, q in gw.ports)})", file=sys.stderr)
    return 0


def gateway_hosts(state) -> dict[str, str]:
    from lab.controlplane import gateway_state
    return gateway_state.hosts(state)


def _wait_ready(lab: str, choose, timeout: Optional[str], fail: bool) -> list:
    """Wait for readiness with a progress line; pods never ready are an error (fail) or a warning
    that names each with its probe's last result. Returns the pods waited for."""
    from lab.runtime import wait

    seconds = wait.duration(timeout) if timeout else None
    t0 = time.monotonic()
    pods, late = wait.until_ready(lab, choose, seconds, lambda line: print(f" … {line}", file=sys.stderr, flush=True))
    if late and fail:
        raise LabError("timed out waiting for the condition on " + ", ".join(late))
    if late:
        print(f"Warning: not ready after {time.monotonic() - t0:.0f}s: {', '.join(late)}", file=sys.stderr)
    elif pods:
        _progress(f"{len(pods)} pods ready", time.monotonic() - t0)
    return pods


def cmd_wait(a) -> int:
    """lab wait [--for=condition=Ready] (pod/NAME | deploy/NAME | --all) [--timeout=30s]: kubectl's."""
    from lab.runtime import wait

    if a.for_ not in wait.CONDITIONS:
        raise LabError(f"--for={a.for_}: lab wait knows {' and '.join(wait.CONDITIONS)}")
    pods = _wait_ready(a.lab, lambda s: wait.select(s, a.targets, a.namespace, a.all), a.timeout, fail=True)
    for p in pods:
        print(f"pod/{p.name} condition met")
    return 0


def cmd_down(a) -> int:
    from lab.host import record
    from lab.runtime import lifecycle

    from lab.exercise import session as sessions

    rec = record.find(a.name)
    t0 = time.monotonic()
    errors = lifecycle.teardown(rec)
    for e in errors:
        _err(e)
    print(f"Lab {rec.name} deleted ({time.monotonic() - t0:.2f}s)", file=sys.stderr)
    for name in sessions.ended_with(rec.name):  # its exercise is over too: the next solve or grade is not about it
        _err(f"exercise {name} stopped: its lab is gone")
    return 1 if errors else 0


def cmd_clean(a) -> int:
    from lab.runtime import lifecycle

    removed = lifecycle.clean()
    print(f"removed: {', '.join(removed)}" if removed else "nothing to clean: no crashed lab left anything behind")
    return 0


def cmd_list(a) -> int:
    from lab.host import record
    from lab.views import age, render_table

    rows = []
    for name in record.names():
        try:
            r = record.load(name)
        except record.NoSuchLab:  # taken down since it was listed
            continue
        s = r.state
        rows.append([name, r.status, str(len(s.nodes)), str(len(s.pods)), s.network, s.cni, s.switch,
                     age(time.time() - r.created), s.source])
    if not rows:
        print("No labs are running.", file=sys.stderr)
        return 0
    print(render_table(["NAME", "STATUS", "NODES", "PODS", "NETWORK", "CNI", "SWITCH", "AGE", "SOURCE"], rows))
    return 0


def _ready(rec) -> dict[str, bool]:
    """Each probed container's readiness verdict, from the kubelet's section of the record."""
    from lab.node import prober

    return prober.status(rec).ready


def _stopped(rec) -> list[str]:
    from lab.node import underlay

    return underlay.stopped(rec)


def _controllers(rec, output) -> int:
    """`lab get controllers`: the registry, with each controller's images and status."""
    from lab import views
    from lab.runtime import controllers

    status = controllers.status(rec)
    if output in ("json", "yaml"):
        doc = [{"name": c.name, "images": sorted(c.images), "status": status[c.name]} for c in controllers.CONTROLLERS]
        if output == "json":
            print(json.dumps(doc, indent=2))
        else:
            import yaml
            print(yaml.safe_dump(doc, sort_keys=False), end="")
        return 0
    rows = [[c.name, ",".join(sorted(c.images)) or "<none>", views.summary(status[c.name])]
            for c in controllers.CONTROLLERS]
    print(views.render_table(["NAME", "IMAGES", "STATUS"], rows))
    return 0


def _alive(rec):
    from lab.node.processes import alive

    return lambda key: key in rec.pids and alive(rec.pids[key])


def cmd_get(a) -> int:
    from lab import views
    from lab.host import record

    from lab.controlplane.endpoints import endpoint_slices

    rec = record.find(a.lab)
    state = rec.state
    kind = KINDS.get(a.kind, a.kind)
    if kind == "routes" and a.name == "fabric":
        from lab.routing import runtimes

        runtime = runtimes.of(state.network)
        if runtime is None or runtime.fabric_table is None:
            raise LabError(f"lab {state.lab} has no fabric (network: {state.network})")
        routes, installs, holds = runtime.fabric_table(state, rec)
        print(views.render_table(["DESTINATION", "NODE", "NEXT HOP MAC", "SWITCH PORT"], routes))
        print("\nflows the controller installs:\n" + "\n".join(installs))
        print("\nflows in the switch now:\n" + "\n".join(holds))
        return 0
    if kind == "routes":
        from lab import host

        routes = {n.name: [r for f in state.families
                           for r in json.loads(host.output(["ip", f"-{f}", "-n", n.netns, "-j", "route"]) or "[]")]
                  for n in state.nodes if a.name in (None, n.name)}
        print(views.render_table(*views.route_rows(state, routes)))
        return 0
    if kind == "controllers":
        return _controllers(rec, a.output)
    if a.kind in GATEWAY_KINDS:
        return _get_gateway_api(a, rec)
    if kind not in KINDS.values():
        raise LabError(f"unknown resource type {a.kind!r}; supported: nodes, pods, services, endpointslices, routes, "
                       "controllers, gatewayclasses, gateways, httproutes")
    namespace = None if a.all_namespaces else a.namespace
    slices = endpoint_slices(state, rec.pod_ready)

    def mine(obj) -> bool:
        return namespace is None or obj.namespace == namespace

    if a.output in ("json", "yaml"):
        if kind == "pods":
            items = [views.pod_object(p, state, _alive(rec), _ready(rec)) for p in state.pods if mine(p)]
        elif kind == "services":
            items = [views.service_object(s) for s in state.services if mine(s)]
        elif kind == "endpointslices":
            items = [views.endpointslice_object(s) for s in slices if mine(s)]
        else:
            items = [views.node_object(n) for n in state.nodes]
        doc = views.as_list(items)
        if a.output == "json":
            print(json.dumps(doc, indent=2))
        else:
            import yaml
            print(yaml.safe_dump(doc, sort_keys=False), end="")
        return 0
    wide = a.output == "wide"
    if kind == "nodes":
        header, rows = views.node_rows(state, rec.created, wide, _stopped(rec))
    else:
        if kind == "pods":
            header, rows = views.pod_rows(state, _alive(rec), rec.created, namespace, wide, _ready(rec))
        elif kind == "services":
            header, rows = views.service_rows(state, rec.created, namespace, wide)
        else:
            header, rows = views.endpointslice_rows(slices, rec.created, namespace)
        if not rows:
            print(f"No resources found in {namespace} namespace." if namespace else "No resources found",
                  file=sys.stderr)
            return 0
    print(views.render_table(header, rows))
    return 0


def _get_gateway_api(a, rec) -> int:
    """`lab get gatewayclasses|gateways|httproutes` (issue 25)."""
    from lab.gateway import views as gateway_views

    kind, namespace = GATEWAY_KINDS[a.kind], None if a.all_namespaces else a.namespace
    if a.output in ("json", "yaml"):
        doc = {"apiVersion": "v1", "kind": "List",
               "items": gateway_views.objects(kind, rec.state, rec.pod_ready, namespace)}
        if a.output == "json":
            print(json.dumps(doc, indent=2))
        else:
            import yaml
            print(yaml.safe_dump(doc, sort_keys=False), end="")
        return 0
    header, rows = gateway_views.rows(kind, rec.state, rec.pod_ready, rec.created, namespace, a.output == "wide")
    if not rows:
        print(f"No resources found in {namespace} namespace." if namespace else "No resources found", file=sys.stderr)
        return 0
    from lab import views
    print(views.render_table(header, rows))
    return 0


def cmd_graph(a) -> int:
    """The lab as a picture: a running lab as it is (ready endpoints), or a topology file as planned."""
    from lab.graph import dot, image, mermaid
    from lab.graph.build import build

    if a.file:
        from lab.controlplane.plan import plan
        from lab.topology.load import load_topology

        with _loading(False):
            state, ready, stopped = plan(load_topology(a.file), source=a.file), None, []
    else:
        from lab.host import record

        rec = record.find(a.lab)
        state, ready, stopped = rec.state, rec.pod_ready, _stopped(rec)
    g = build(state, ready, stopped)
    for note in g.notes:
        print(f"note: {note}", file=sys.stderr)
    if a.output in ("svg", "png"):
        text = image.render(dot.render(g), a.output, a.out)
    else:
        text = (mermaid if a.output == "mermaid" else dot).render(g)
        if a.out:
            host.write_file(a.out, text)
            text = ""
    print(text, end="")
    return 0


def cmd_describe(a) -> int:
    from lab import views
    from lab.host import record
    from lab.node import prober

    if KINDS.get(a.kind) == "services":
        return _describe_service(a)
    if KINDS.get(a.kind) != "pods":
        raise LabError(f"lab describe knows pods and services (lab describe pod|svc NAME), not {a.kind!r}")
    rec = record.find(a.lab)
    for p in rec.state.pods:
        if p.name == a.name and p.namespace == a.namespace:
            kubelet = prober.status(rec)
            print(views.describe_pod(p, rec.state, _alive(rec), kubelet.ready, kubelet.detail, rec.created,
                                     kubelet.failing))
            return 0
    _no(a.name, rec.state, a.namespace)


def _describe_service(a) -> int:
    from lab import views
    from lab.controlplane.endpoints import endpoint_slices
    from lab.host import record

    rec = record.find(a.lab)
    svc = next((s for s in rec.state.services if (s.name, s.namespace) == (a.name, a.namespace)), None)
    if svc is None:
        raise LabError(f"service {a.name!r} not found in namespace {a.namespace} of lab {rec.name}: `lab get svc -A` lists them")
    from lab.kube_proxy import runtimes
    runtime = runtimes.of(rec.state)
    live = {n.name: runtime.read_maps(rec, n.name) for n in rec.state.nodes} if runtime and runtime.read_maps else None
    print(views.describe_service(svc, rec.state, endpoint_slices(rec.state, rec.pod_ready), live))
    return 0


KINDS = {"po": "pods", "pod": "pods", "pods": "pods", "no": "nodes", "node": "nodes", "nodes": "nodes",
         "svc": "services", "service": "services", "services": "services",
         "endpointslice": "endpointslices", "endpointslices": "endpointslices", "route": "routes", "routes": "routes",
         "controller": "controllers", "controllers": "controllers"}
GATEWAY_KINDS = {"gatewayclass": "gatewayclasses", "gatewayclasses": "gatewayclasses", "gc": "gatewayclasses",
                 "gateway": "gateways", "gateways": "gateways", "gtw": "gateways",
                 "httproute": "httproutes", "httproutes": "httproutes"}  # lab.gateway.views


def _objects(a):
    """The objects of every -f, warning about the kustomize build files of its folders."""
    from lab.runtime.apply import kustomizations, read_objects

    for path in kustomizations(a.objects, a.recursive):
        print(f"Warning: {path}: a kustomize build file is ignored: the folder's manifests are read as they are "
              f"(for kustomize's output: kubectl kustomize DIR | lab apply -f -)", file=sys.stderr)
    return read_objects(a.objects, a.recursive)


def _report(change) -> None:
    """kubectl's line per object (stdout), then warnings and the lab's own summary (stderr)."""
    for line in change.lines:
        print(line, flush=True)
    for warning in change.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if change.notes:
        _print_warnings(list(change.notes))


def cmd_apply(a) -> int:
    from lab.runtime.apply import apply

    t0 = time.monotonic()
    if a.objects and a.file:
        raise LabError(f"give a topology file or -f objects, not both: lab apply {a.file}, "
                       f"or lab apply -f {' -f '.join(a.objects)}")
    if not a.objects and not a.file:
        raise LabError("say what to apply: lab apply TOPOLOGY-FILE, or lab apply -f OBJECTS (a file, a folder, "
                       "or - for stdin)")
    if not a.objects:
        change = apply(a.file, lab=a.lab)
        print(f"applied {a.file}: {change} ({time.monotonic() - t0:.2f}s)", file=sys.stderr)
        return 0
    change = apply(_objects(a), objects=True, lab=a.lab)
    _report(change)
    print(f"applied {', '.join(a.objects)}: {change} ({time.monotonic() - t0:.2f}s)", file=sys.stderr)
    return 0


def cmd_delete(a) -> int:
    from lab.runtime.apply import apply

    t0 = time.monotonic()
    change = apply(_objects(a), objects=True, delete=True, lab=a.lab, missing_ok=True)
    _report(change)
    if not a.ignore_not_found:
        for missing in change.missing:
            _err(missing)
    print(f"deleted the objects of {', '.join(a.objects)}: {change} ({time.monotonic() - t0:.2f}s)",
          file=sys.stderr)
    return 1 if change.missing and not a.ignore_not_found else 0


def cmd_node(a) -> int:
    from lab.runtime import nodes

    seconds = nodes.set_state(a.lab, a.name, up=a.action == "start")
    what = "back on the network" if a.action == "start" else "off the network"
    if seconds is None:
        print(f"node {a.name} is {what}")
    else:
        change = "re-learned" if a.action == "start" else "withdrawn"
        print(f"node {a.name} is {what}; its podCIDR was {change} on every other node in {seconds:.2f}s")
    return 0


def _fault_params(words: Sequence[str]) -> dict:
    params = {}
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise LabError(f"fault parameter {w!r}: give key=value, e.g. count=3 (`lab fault kinds` lists each kind's)")
        params[key] = value
    return params


def cmd_fault(a) -> int:
    """lab fault add|list|clear|kinds: break a running lab on purpose, and undo it exactly."""
    from lab.faults.model import KINDS

    if a.action == "kinds":
        for kind, info in KINDS.items():
            print(f"{kind:<17} {' | '.join(info.targets):<28} {info.help}")
            for name, p in info.params.items():
                default = f" (default {p.default})" if p.default is not None else " (required)" if p.required else ""
                print(f"{'':<19}{name}={'|'.join(p.choices) or p.type.upper()}{default}: {p.help}")
        return 0
    from lab.runtime import faults

    if a.action == "add":
        if len(a.args) < 2:
            raise LabError("lab fault add KIND TARGET [key=value ...], e.g. lab fault add link-down node/worker1")
        f = faults.add(a.lab, a.args[0], a.args[1], _fault_params(a.args[2:]))
        if f.kind == "link-flap":
            print(f"fault {f.id} done: {f.kind} {f.target} ({f.params['count']} times, now up)")
        else:
            print(f"fault {f.id} applied: {f.kind} {f.target}")
    elif a.action == "clear":
        if len(a.args) > 1:
            raise LabError("lab fault clear [ID]: one fault id, or none for all")
        done = faults.clear(a.lab, a.args[0] if a.args else None)
        print("\n".join(f"fault {f.id} cleared: {f.kind} {f.target}" for f in done) or "no active faults")
    else:
        rows = [(f.id, f.kind, f.target, " ".join(f"{k}={v}" for k, v in f.params.items()) or "-",
                 f"{time.time() - f.applied_at:.0f}s") for f in faults.active(a.lab)]
        widths = [max(len(r[i]) for r in rows + [("ID", "KIND", "TARGET", "PARAMS", "AGE")]) for i in range(5)]
        for r in [("ID", "KIND", "TARGET", "PARAMS", "AGE")] + rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_netpol(a) -> int:
    from lab.probe import netpol
    from lab.host import record

    state = record.find(a.lab).state
    try:
        ports = [int(p) for p in a.ports.split(",") if p.strip()] if a.ports else []
    except ValueError:
        raise LabError(f"--ports {a.ports!r}: give comma-separated port numbers, e.g. 80,8080") from None
    if any(not 0 < p < 65536 for p in ports) or a.attempts < 1:
        raise LabError("--ports must be 1-65535 and --attempts at least 1")
    protocols = [p.strip().upper() for p in a.protocols.split(",") if p.strip()] if a.protocols else []
    bad = [p for p in protocols if p not in ("TCP", "UDP")]
    if bad:
        raise LabError(f"--protocols: {', '.join(bad)} is not TCP or UDP")
    t0 = time.monotonic()
    try:
        m = netpol.measure(state, ports, protocols, timeout=a.timeout, attempts=a.attempts, family=a.family)
    except netpol.NothingToProbe as e:
        _err(str(e))
        return 2
    if a.output == "json":
        print(json.dumps({"lab": state.lab, **netpol.as_json(m)}, indent=1))
    else:
        print(netpol.table(m))
    retried = f", {m.retried()} probes retried" if m.retried() else ""
    print(f"({time.monotonic() - t0:.2f}s{retried})", file=sys.stderr)
    return 1 if m.differences() else 0


def cmd_dns(a) -> int:
    from lab.dns import queries
    from lab.host import record

    rec = record.find(a.lab)
    if not rec.state.dns_domain:
        raise LabError(f"lab {rec.name} has no cluster DNS; set cluster.dns.enabled: true in its topology")
    pod = next((p for p in rec.state.pods if p.name == a.pod and p.namespace == a.namespace), None)
    if pod is None:
        _no(a.pod, rec.state, a.namespace)
    print(queries.report(pod, queries.lookup(rec, pod, a.name)))
    return 0


def _exec_target(rec, target: str, namespace: str, container: Optional[str]):
    """(netns, UTS namespace file, env) for `lab exec`: a pod (optionally one container), node/NAME
    or host/NAME."""
    from lab.node.containers import env_for

    state = rec.state
    kind, _, name = target.rpartition("/")
    if kind in ("node", "no", "host"):
        machines = state.nodes if kind != "host" else state.hosts
        for m in machines:
            if m.name == name:
                return m.netns, rec.uts_path(m.netns), {}
        _no(target, state)
    if kind not in ("", "pod", "po"):
        raise LabError(f"cannot exec into {target!r}: use POD, pod/POD, node/NAME or host/NAME")
    for p in state.pods:
        if p.name == name and p.namespace == namespace:
            return p.netns, rec.pod_uts(p), env_for(p, _container(p, container))
    _no(target, state, namespace)


def _container(pod, name: Optional[str]):
    """The named container of a pod, or its first one (kubectl's default)."""
    names = [c.name for c in pod.containers]
    if name is None:
        return pod.containers[0]
    if name not in names:
        raise LabError(f"container {name!r} is not in pod {pod.key}; its containers: {', '.join(names)}")
    return pod.containers[names.index(name)]


def _no(target: str, state, namespace: str = "default"):
    pods = ", ".join(p.name for p in state.pods if p.namespace == namespace) or "none"
    raise LabError(f"{target!r} not found in lab {state.lab}; pods in {namespace}: {pods}; "
                   f"nodes: {', '.join(n.name for n in state.nodes)}")


def cmd_exec(a) -> int:
    from lab.host import record
    from lab.runtime import inside

    if not a.command:
        raise LabError("say what to run after --, e.g. lab exec POD -- ip addr")
    rec = record.find(a.lab)
    netns, uts, env = _exec_target(rec, a.target, a.namespace, a.container)
    if a.confine:  # a submission's command (lab.exercise.broker): confined, nothing of the grader's env
        from lab.exercise.sandbox import exec_confinement

        confine = exec_confinement(a.confine)
        base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    else:
        confine, base = ((), ()), dict(os.environ)
    argv = inside.argv(rec, netns, uts, a.target.rpartition("/")[2], a.command, confine)
    os.execvpe(argv[0], argv, {**base, **env})


def _check_args(a) -> None:
    """--timeout and --seed of check and run, refused before a lab is built or probed."""
    if not 0 < a.timeout <= 60:  # also refuses nan
        raise LabError(f"--timeout {a.timeout}: give the seconds a probe's first try waits, more than 0 and at most 60")
    if a.seed is not None and not 0 <= a.seed < 1 << 63:
        raise LabError(f"--seed {a.seed}: give a whole number from 0 (as printed by a sampled check)")


def _check(rec, a) -> int:
    from lab.host import record
    from lab.node import prober
    from lab.probe import consistent, coverage, invariants, report

    state = rec.state
    cov = coverage.choose(len(state.pods), a.all_pairs, a.seed)
    t0 = time.monotonic()

    def load() -> consistent.Snapshot:
        now = record.load(rec.name)
        return consistent.Snapshot(now.state, dict(now.pod_ready), prober.status(now).detail)

    def check(snap: consistent.Snapshot, only) -> list:
        return invariants.run(snap.state, timeout=a.timeout, pod_ready=snap.ready, probe_detail=snap.detail, cov=cov,
                              only=only)

    first = consistent.Snapshot(state, dict(rec.pod_ready), prober.status(rec).detail)
    settled = consistent.run(first, load, check)
    outcomes = settled.outcomes
    if settled.rejudged:
        _err(f"the lab changed during the check: the rows it touched were judged again ({settled.rejudged}x)"
             + (f"; {settled.moving} kept changing: those rows are unchecked" if settled.moving else ""))
    elapsed = time.monotonic() - t0
    scope = cov.describe(len(state.pods))
    print(report.table(state.lab, outcomes, elapsed, scope=scope))
    if a.json:
        host.write_file(a.json, report.to_json(state.lab, outcomes, elapsed, scope=scope))
    if a.junit:
        host.write_file(a.junit, report.to_junit(state.lab, outcomes, elapsed))
    return 1 if any(o.failed for o in outcomes) else 0  # an unchecked row is said, not failed


def cmd_check(a) -> int:
    from lab.host import record

    _check_args(a)
    return _check(record.find(a.lab), a)


def cmd_run(a) -> int:
    """up → check → down, for CI: the exit code says whether every check passed."""
    from lab.host import record
    from lab.runtime import lifecycle

    from lab import views

    _check_args(a)
    print(f"Creating lab from {a.file} ...", file=sys.stderr)
    with _loading(a.strict):
        state = lifecycle.up(a.file, progress=_progress)
    try:
        from lab.runtime import wait

        _wait_ready(state.lab, wait.probed, None, fail=False)
        rec = record.load(state.lab)
        print(views.render_table(*views.pod_rows(state, _alive(rec), rec.created, None, True, _ready(rec))) + "\n")
        code = _check(rec, a)
    finally:
        if a.keep:
            print(f"Lab {state.lab} kept running (--keep); `lab down {state.lab}` removes it", file=sys.stderr)
        else:
            t0 = time.monotonic()
            errors = lifecycle.teardown(record.load(state.lab))
            for e in errors:
                _err(e)
            print(f"Lab {state.lab} deleted ({time.monotonic() - t0:.2f}s)", file=sys.stderr)
    return code


def cmd_logs(a) -> int:
    from lab.host import record

    rec = record.find(a.lab)
    for p in rec.state.pods:
        if p.name == a.pod and p.namespace == a.namespace:
            sys.stdout.write(rec.log_path(p, _container(p, a.container)).read_text(errors="replace"))
            return 0
    _no(a.pod, rec.state, a.namespace)


def cmd_scenario(a) -> int:
    """validate: every problem of every file (exit 2); run: build, step, tear down (exit 0/1, 2 if invalid)."""
    from lab.scenario import model, report, runner

    scenarios, invalid = [], False
    for path in a.files:
        try:
            scenario = model.load(path)
        except model.ScenarioError as e:
            print(str(e), file=sys.stderr)
            invalid = True
            continue
        if scenario.warnings:
            _print_warnings(list(scenario.warnings))
        scenarios.append(scenario)
        if a.action == "validate":
            print(f"{path}: valid: scenario {scenario.name}, {len(scenario.steps)} steps on lab {scenario.lab}")
    if invalid or a.action == "validate":
        return 2 if invalid else 0

    def starting(scenario, lab) -> None:
        print(f"scenario {scenario.name} ({scenario.file}) on lab {lab}", flush=True)

    def step(scenario, result) -> None:
        print(f"  {report.line(result)}", flush=True)

    hooks = runner.Hooks(progress=_progress, step=step, starting=starting,
                         note=lambda text: print(text, file=sys.stderr, flush=True))
    runs = runner.run_all(scenarios, shared=a.shared, keep=a.keep, hooks=hooks)
    for run in runs:
        print(report.summary(run))
    if len(runs) > 1:
        print(f"{sum(r.passed for r in runs)} of {len(runs)} scenarios passed")
    for path, text in ((a.json, report.to_json), (a.junit, report.to_junit)):
        if path:
            host.write_file(path, text(runs))
    return 0 if all(r.passed for r in runs) else 1


def cmd_exercise(a) -> int:
    """Coursework on a live lab: the work and the output are lab.exercise.commands'."""
    from lab.exercise import commands

    return commands.run(a)


def _pcap_dir(a, rec, protocol: str):
    """--pcap: the lab's directory for this trace's captures (checked before the probe is sent)."""
    import shutil

    from lab.trace import saved

    if not a.pcap:
        return None
    problems = [*(["--pcap needs the capture: drop --no-capture"] if a.no_capture else []),
                *(["--pcap needs tcpdump: install it (apt-get install tcpdump, or scripts/install.sh)"]
                  if shutil.which("tcpdump") is None else []),
                *([f"--pcap: TCP, UDP and ICMP are observed, not {protocol}"]
                  if protocol not in ("TCP", "UDP", "ICMP") else []),
                *([f"--pcap {a.pcap}: no folder {Path(a.pcap).parent}"] if not Path(a.pcap).parent.is_dir() else [])]
    if problems:
        raise LabError("; ".join(problems))
    return saved.create(rec.dir)


def _write_pcap(dest: str, keep) -> None:
    from lab.trace import pcap, saved

    merged = saved.merged(keep)
    if merged is None:
        raise LabError(f"tcpdump saw none of the probe's packets: no pcap written to {dest}")
    data = host.read_bytes(merged)
    host.write_file(dest, data, 0o644)
    print(f"pcap: {dest} ({pcap.count(data)} packets; also kept in {keep} until lab down)", file=sys.stderr)


def cmd_trace(a) -> int:
    """lab trace SRC DST[:PORT]: one connection's walk, predicted and observed, side by side."""
    from lab.host import record
    from lab.trace import report, run

    rec = record.find(a.lab)
    protocol = a.protocol.upper()
    src, dst = run.targets(rec.state, a.src, a.dst, protocol, a.namespace, a.family or None)
    if a.http_host or a.path or a.header:
        dst = run.with_request(dst, a.http_host, a.path, a.header)
    keep = _pcap_dir(a, rec, protocol)
    t0 = time.monotonic()
    hops, rows, obs = run.trace(rec.state, src, dst, protocol, rec.pod_ready, capture=not a.no_capture, keep=keep,
                                record=rec)
    port = f":{dst.port}" if dst.port else ""
    title = f"lab trace {src.name} → {dst.name}{port} {protocol} (lab {rec.name})"
    print(report.to_json(title, hops, rows, obs) if a.output == "json" else report.table(title, rows, obs))
    if keep is not None:
        _write_pcap(a.pcap, keep)
    print(f"({time.monotonic() - t0:.2f}s)", file=sys.stderr)
    return 0 if obs is None or obs.ok or any(h.kind == "filter" and h.expect[0] == "drop" for h in hops) else 1


def cmd_web(a) -> int:
    """lab web: the running lab in a browser, live (lab.web)."""
    from lab.web import server

    if not 0 <= a.port < 65536:
        raise LabError(f"--port {a.port}: give 1-65535 (or 0: any free port, printed)")
    return server.serve(a.lab, a.host, a.port, a.allow_actions)


class _Unbuilt:
    """A command's parser not built this time: every call is taken and does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: self


def _parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The CLI's parser; with `only`, just that command's part (each command's arguments cost a
    millisecond or so to build, and every `lab` call paid for all of them)."""
    ap = argparse.ArgumentParser(prog="lab", description="Kubernetes networking, built for real on Mininet.")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    built = []

    def add(name, fn, help):
        if only is not None and name != only:
            return _Unbuilt()
        built.append(name)
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    ap.add_argument("--lab", "-l", metavar="NAME", help="which lab (may be omitted when one is running); "
                                                        "before or after the command, as kubectl's --context")

    def lab_opt(p):  # SUPPRESS: not given after the command, --lab before it stands
        p.add_argument("--lab", "-l", metavar="NAME", default=argparse.SUPPRESS,
                       help="which lab (may be omitted when one is running)")

    def objects_opts(p, verb):
        p.add_argument("-f", "--filename", dest="objects", metavar="OBJECTS", action="append",
                       help=f"a file, a folder (its *.yaml, *.yml and *.json files) or - (stdin) of Kubernetes "
                            f"objects to {verb}; may be given several times")
        p.add_argument("-R", "--recursive", action="store_true",
                       help="-f folders: their sub-folders too")

    def strict_opt(p):
        p.add_argument("--strict", action="store_true",
                       help="treat warnings (ignored fields and kinds, stand-in images) as errors")

    def check_opts(p):
        p.add_argument("--json", metavar="FILE", help="write every result as JSON")
        p.add_argument("--junit", metavar="FILE", help="write JUnit XML (CI tools read it)")
        p.add_argument("--timeout", type=float, default=1.0,
                       help="seconds a probe's first try waits for a reply (default 1); unanswered probes are "
                            "tried again with longer waits adapted to the machine's load before a verdict")
        p.add_argument("--all-pairs", action="store_true",
                       help="probe every pair even above 100 pods (default there: a covering sample)")
        p.add_argument("--seed", type=int, help="the covering sample's seed (printed by every sampled check)")

    p = add("validate", cmd_validate, "check topology files; every error at once, with file:line and a hint")
    p.add_argument("files", nargs="+", metavar="FILE")
    strict_opt(p)
    add("schema", cmd_schema, "print the JSON Schema of topology files")
    p = add("up", cmd_up, "build a lab from a topology file; returns with the lab running")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--wait", nargs="?", const="", metavar="TIMEOUT",
                   help="return once every pod is ready (as kind create cluster --wait): within TIMEOUT (30s, 2m), "
                        "or by default within the slowest readinessProbe's initialDelaySeconds + periodSeconds x "
                        "failureThreshold")
    strict_opt(p)
    p = add("down", cmd_down, "remove a lab and everything it created")
    p.add_argument("name", nargs="?", metavar="NAME")
    add("list", cmd_list, "list the labs on this machine")
    add("clean", cmd_clean, "remove what crashed labs left behind (only what labs own)")
    p = add("apply", cmd_apply, "change a running lab to what its topology file now says (scale, add, delete, "
                                "relabel), or apply Kubernetes objects to it with -f")
    p.add_argument("file", metavar="FILE", nargs="?")
    objects_opts(p, "add or replace (by kind, namespace and name)")
    lab_opt(p)
    p = add("delete", cmd_delete, "delete Kubernetes objects from a running lab (lab delete -f FILE|DIR|-)")
    objects_opts(p, "delete")
    p.add_argument("--ignore-not-found", action="store_true", help="objects the lab does not have are not an error")
    lab_opt(p)
    p = add("node", cmd_node, "lab node stop|start NAME: take a node off the network, or bring it back")
    p.add_argument("action", choices=["stop", "start"])
    p.add_argument("name", metavar="NAME")
    lab_opt(p)
    p = add("fault", cmd_fault, "lab fault add KIND TARGET [key=value ...] | list | clear [ID] | kinds: break a running "
                                "lab on purpose (link, route, firewall, MTU, sysctl, process), list and undo it exactly")
    p.add_argument("action", choices=["add", "list", "clear", "kinds"])
    p.add_argument("args", nargs="*", metavar="ARG", help="add: KIND TARGET [key=value ...]; clear: [ID]")
    lab_opt(p)
    p = add("netpol", cmd_netpol, "lab netpol matrix: every pod (clients too) to every pod that serves, on the "
                                  "ports each serves, observed vs the policies")
    p.add_argument("what", choices=["matrix"])
    p.add_argument("--ports", help="comma-separated ports (default: every port some pod serves with netexec; "
                                   "a destination that does not serve one shows '-', never probed)")
    p.add_argument("--protocols", help="comma-separated, TCP and/or UDP (default: both)")
    p.add_argument("--timeout", type=float, default=0.5,
                   help="seconds the first try of a probe waits (default 0.5): a denied cell costs this once; "
                        "a probe that the policies allow is retried with a fresh source port and a wait "
                        "adapted to the measured round trips, so a loaded machine is not judged as denied")
    p.add_argument("--attempts", type=int, default=3, help="tries before an unanswered probe is judged (default 3)")
    p.add_argument("--family", type=int, choices=[4, 6], default=0,
                   help="probe the pods' IPv4 or IPv6 addresses (default: the cluster's primary family); the "
                        "policies are enforced per family, so a dual-stack lab has one matrix per family")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table",
                   help="json: every cell with src, dst, port, protocol, expected, observed, error, attempts")
    lab_opt(p)
    p = add("graph", cmd_graph, "draw the lab: the underlay, nodes with their podCIDRs, pods with their IPs, the pod "
                                "network's links, Services and their endpoints; a topology FILE is drawn as planned")
    p.add_argument("file", metavar="FILE", nargs="?", help="a topology file: draw it without a running lab")
    p.add_argument("-o", "--output", choices=["mermaid", "dot", "svg", "png"], default="mermaid",
                   help="mermaid (default, for Markdown), dot (graphviz), svg or png (rendered by graphviz's dot)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout (png needs it)")
    lab_opt(p)
    p = add("get", cmd_get, "show nodes, pods, services, endpointslices, controllers or Gateway API objects, "
            "with kubectl's columns")
    p.add_argument("kind", metavar="nodes|pods|svc|endpointslices|routes|controllers|gatewayclasses|gateways|httproutes")
    p.add_argument("name", nargs="?", metavar="NAME", help="routes: one node only")
    p.add_argument("-o", "--output", choices=["wide", "json", "yaml"])
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    lab_opt(p)
    p = add("describe", cmd_describe, "show a pod in kubectl's shape: node, IP, containers, readiness, conditions, "
                                      "and why it is not ready (the last readiness probe's result); or a Service: "
                                      "its ports, endpoints, the dataplane serving it and, under proxy ebpf, each "
                                      "node's map entries beside what the model writes")
    p.add_argument("kind", metavar="pod|svc")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-n", "--namespace", default="default")
    lab_opt(p)
    p = add("exec", cmd_exec, "run a command in a pod's (or node/NAME's) network namespace: lab exec POD -- CMD")
    p.add_argument("target", metavar="POD|node/NAME|host/NAME")
    p.add_argument("--confine", help=argparse.SUPPRESS)  # the broker's, for a submission (lab.exercise.sandbox)
    p.add_argument("-c", "--container")
    p.add_argument("-n", "--namespace", default="default")
    lab_opt(p)
    p = add("dns", cmd_dns, "lab dns queries POD NAME: the DNS queries one lookup of NAME from POD costs")
    p.add_argument("what", choices=["queries"])
    p.add_argument("pod", metavar="POD")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-n", "--namespace", default="default")
    lab_opt(p)
    p = add("logs", cmd_logs, "print a container's output")
    p.add_argument("pod", metavar="POD")
    p.add_argument("-c", "--container")
    p.add_argument("-n", "--namespace", default="default")
    lab_opt(p)
    p = add("wait", cmd_wait, "wait until pods are ready, as kubectl wait: lab wait [--for=condition=Ready] "
                              "(pod/NAME | deploy/NAME | --all) [--timeout=30s]")
    p.add_argument("targets", nargs="*", metavar="pod/NAME|deploy/NAME")
    p.add_argument("--for", dest="for_", default="condition=Ready", metavar="condition=Ready",
                   help="condition=Ready (pods), or condition=Available (a Deployment: all its pods ready)")
    p.add_argument("--all", action="store_true", help="every pod of the namespace")
    p.add_argument("--timeout", default="30s", help="how long to wait (default 30s, as kubectl)")
    p.add_argument("-n", "--namespace", default="default")
    lab_opt(p)
    p = add("check", cmd_check, "prove the network invariants and the topology's checks on a running lab")
    check_opts(p)
    lab_opt(p)
    p = add("run", cmd_run, "up, check, down in one call (for CI); exit code 0 only if every check passed")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--keep", action="store_true", help="leave the lab running after the checks")
    strict_opt(p)
    check_opts(p)
    p = add("scenario", cmd_scenario, "lab scenario run|validate FILE...: build a lab, run a scenario's steps (apply, "
                                      "fault, exec, check, dns...), tear down; exit 0 passed, 1 a step failed, 2 invalid")
    p.add_argument("action", choices=["run", "validate"])
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML: one testcase per step (CI tools read it)")
    p.add_argument("--json", metavar="FILE", help="write every step's result as JSON")
    p.add_argument("--keep", action="store_true", help="stop at the first failing step and leave its lab running")
    p.add_argument("--shared", action="store_true",
                   help="scenarios naming the same topology file run one after another on one lab, reset between them")
    p = add("exercise", cmd_exercise, "lab exercise list|start NAME|status|hint [TASK]|check|answer TASK VALUE|grade|"
                                      "reset|solve|submit PATH|stop|validate|package NAME: coursework on a live lab, "
                                      "autograded")
    p.add_argument("action", choices=["list", "start", "status", "hint", "check", "answer", "grade", "reset", "solve",
                                      "submit", "stop", "validate", "package"])
    p.add_argument("args", nargs="*", metavar="ARG")
    p.add_argument("-e", "--exercise", metavar="NAME", help="which started exercise (may be omitted when one is started)")
    p.add_argument("--dir", metavar="DIR", help="where the exercises are (default: exercises/ of this checkout)")
    p.add_argument("--format", choices=["text", "json", "junit", "gradescope", "classroom50", "classroom-legacy"],
                   default="text", help="grade: the report's format")
    p.add_argument("--out", metavar="FILE", help="grade: write the report to FILE; package: the zip to write")
    p.add_argument("--to", metavar="CHECKPOINT", help="start, reset: begin at this named checkpoint")
    p.add_argument("--script", metavar="FILE", help="solve: run this script instead of the exercise's solution.sh")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="solve, submit: seconds before the script is stopped (default 60); package: the submission's")
    p.add_argument("--user", metavar="USER", help="submit: the unprivileged user the submission runs as; package: "
                                                  "the one its submissions run as (default lab-student)")
    p.add_argument("--hide", metavar="PATH", action="append",
                   help="submit: a path the submission must not see (may be given several times; the exercise's "
                        "folder, the sessions and their sealed copies are always hidden)")
    p.add_argument("--with-solutions", action="store_true",
                   help="package: include solution.sh, SOLUTION.md and .solution/ (an instructor's bundle, for CI)")
    p = add("trace", cmd_trace, "lab trace SRC DST[:PORT]: follow one connection hop by hop, as the lab's models "
                                "predict it and as the kernel's netfilter traces, conntrack and captures show it")
    p.add_argument("src", metavar="SRC", help="POD, NS/POD, pod/POD, node/NAME, host/NAME or an IP")
    p.add_argument("dst", metavar="DST[:PORT]", help="the same, svc/NAME[.NS]:PORT, or gateway/[NS/]NAME[:PORT] "
                                                     "(or its address): through its Envoy to the backend")
    p.add_argument("--host", dest="http_host", metavar="HOST",
                   help="a Gateway: the request's Host header (default: the first hostname it serves)")
    p.add_argument("--path", metavar="PATH", help="a Gateway: the request's path (default /)")
    p.add_argument("--header", "-H", action="append", default=[], metavar="'NAME: VALUE'",
                   help="a Gateway: a request header its routes may match (may be given several times)")
    p.add_argument("--protocol", "-p", default="TCP", type=str.upper, choices=["TCP", "UDP", "ICMP"],
                   help="TCP (default), UDP or ICMP (an echo request traced by its id)")
    p.add_argument("--family", type=int, choices=[4, 6], default=0,
                   help="a named DST's address of that family (default: the cluster's primary; an IP DST says "
                        "its own): a dual-stack lab is traced per family, the source follows the destination's")
    p.add_argument("--no-capture", action="store_true",
                   help="no tcpdump on the path's interfaces (by default, if installed, it captures the probe's packets)")
    p.add_argument("--pcap", metavar="FILE",
                   help="also write the captures as one pcap file (all namespaces, in time order) for Wireshark")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.add_argument("-n", "--namespace", default="default")
    lab_opt(p)
    p = add("web", cmd_web, "lab web: the running lab in a browser, live: the picture, the walk of a trace, the "
                            "policy table, the exercise; actions (node stop/start, faults) with --allow-actions")
    p.add_argument("--port", type=int, default=8080, help="the port (default 8080; 0: any free port, printed)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only; another is warned about)")
    p.add_argument("--allow-actions", action="store_true",
                   help="let the page stop and start nodes and add and clear faults (with a token only it gets)")
    lab_opt(p)
    if only is not None and not built:  # not a command (a typo): the whole parser names them all
        return _parser()
    return ap


def _command(args: Sequence[str]) -> Optional[str]:
    """The command word (the first argument that is no option, after --lab/-l NAME), or None."""
    it = iter(args)
    for arg in it:
        if arg in ("--lab", "-l"):
            next(it, None)
        elif not arg.startswith("-"):
            return arg
        elif arg in ("-h", "--help"):
            return None
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in args:  # kubectl's convention: everything after -- is the command to run
        cut = args.index("--")
        args, command = args[:cut], args[cut + 1:]
    parser = _parser(_command(args))
    a, extra = parser.parse_known_args(args)
    # argparse stops filling `ARG...` at the first option (`lab exercise answer -e x TASK VALUE`):
    # what is left over after it belongs there, unless it looks like an option nobody knows
    if extra and hasattr(a, "args") and not any(x.startswith("-") for x in extra):
        a.args += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    a.command = command
    if a.cmd == "delete" and not a.objects:
        parser.error("lab delete: -f/--filename is required (a file, a folder or -)")
    if a.cmd == "down" and a.name is None:  # lab --lab NAME down
        a.name = a.lab
    try:
        return a.fn(a) or 0
    except TopologyError as e:
        print(str(e), file=sys.stderr)
        return 1
    except LabError as e:
        _err(str(e))
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # `lab get pods | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # noqa: BLE001
        return _internal(e)
