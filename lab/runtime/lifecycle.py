"""`lab up` and `lab down`: named phases, each checked; any failure or interrupt during up rolls
back everything the record says the lab owns, and down removes exactly that."""
from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import contextmanager
from typing import Callable

from lab import routing
from lab.cni import config as cni_config
from lab.controlplane.state import ClusterState
from lab.errors import LabError
from lab.node import pods, prober, processes, underlay
from lab.routing import runtimes
from lab.host import record as records
from lab import host
from lab.host import ip_batch, output, sysctl
from lab.host.record import LabRecord
from lab.kube_proxy import runtimes as proxy_runtimes

Progress = Callable[[str, float], None]
AGENT = "lab.runtime.agent"


def _quiet(_: str, __: float) -> None:
    pass


class Interrupted(LabError):
    pass


@contextmanager
def _interrupts_raise():
    """Ctrl-C and SIGTERM become an exception, so the rollback runs."""
    def handler(signum, _frame):
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def _signals_ignored():
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def _phase(name: str, progress: Progress):
    t0 = time.monotonic()
    yield
    progress(name, time.monotonic() - t0)


def preflight(state: ClusterState) -> None:
    if not host.privileged():
        raise LabError("lab up needs root (network namespaces, links): run it with sudo")
    records.ensure_free(state.lab)
    taken = [m.netns for m in [*state.nodes, *state.hosts, *pods.sandboxed(state)] if host.exists(m.netns)]
    if taken:
        raise LabError(f"network namespaces {', '.join(taken[:5])} already exist and are not this lab's; "
                       "rename the lab (the `name:` field) or remove them")
    if host.path_exists(f"/sys/class/net/{state.switch_name}"):
        raise LabError(f"a link named {state.switch_name} already exists in the root namespace")
    from lab.runtime import controllers

    controllers.preflight(state, deep=True)  # what the controllers need of this machine (proxy ebpf: clang, BPF)


def up(path: str, progress: Progress = _quiet) -> ClusterState:
    from lab.controlplane.plan import plan  # pydantic: only `up` needs it, not `down` or `get`
    from lab.runtime import controllers  # every controller (ingress: pydantic, cryptography): not for `lab down`
    from lab.runtime.apply import save_topology
    from lab.topology.load import load_topology

    topo = load_topology(path)
    state = plan(topo, source=os.path.abspath(path))
    preflight(state)
    rec = LabRecord.create(state)
    save_topology(rec, topo)
    daemons = runtimes.of(state.network)
    try:
        with _interrupts_raise():
            with _phase(f"underlay: {len(state.nodes)} nodes, {len(state.hosts)} hosts on {state.switch}", progress):
                underlay.build(state, rec)
                underlay.configure(state)
            with _phase(f"pod network: {state.network}", progress):
                for node in state.nodes:
                    ops = routing.render(state, node)
                    ip_batch(list(ops.ip), netns=node.netns)
                    if ops.bridge:
                        output(["bridge", "-n", node.netns, "-batch", "-"], input="\n".join(ops.bridge) + "\n")
                    if ops.sysctls:
                        sysctl(node.netns, dict(ops.sysctls))
                if daemons:
                    daemons.start(state, rec)  # converges while the pods are being wired
            controllers.start(state, rec)  # DNS's files and daemons; proxy ebpf's cgroups and programs
            controllers.pods_starting(state, rec, state.pods)  # resolv.conf files, nginx's config and certificates
            with _phase(f"pods: {len(pods.sandboxed(state))} sandboxes wired by CNI {state.cni}, "
                        f"{sum(len(p.containers) for p in state.pods)} containers started, servers ready", progress):
                pods.create(state, rec, controllers.programs())
                controllers.wait_ready(state)  # add-ons answering before the first readiness round
            if daemons:
                with _phase(daemons.ready, progress):
                    daemons.wait_ready(state)
            with _phase(f"kube-proxy ({state.proxy}): {len(state.services)} services, egress NAT, "
                        f"{len(state.policies)} network policies", progress):
                _services(state, rec, controllers)
            rec.status = "running"
            rec.owner_pid, rec.owner_start = 0, None
            rec.save()
            rec.agent = start_agent(rec)
            rec.save()
    except BaseException as e:
        with _signals_ignored():  # a second Ctrl-C must not cut the rollback short
            teardown(rec)
        if isinstance(e, LabError):
            raise LabError(f"{e}\nlab up failed; everything it had built was removed") from None
        if isinstance(e, Exception):  # e.g. Mininet's own errors: say what failed, not a traceback
            raise LabError(f"{type(e).__name__}: {e}\nlab up failed; everything it had built was removed") from e
        raise
    return state


def _services(state: ClusterState, rec: LabRecord, controllers) -> None:
    """Every controller's first sync (kube-proxy's, the policies', DNS, ...), with readiness from
    a first round of probes."""
    controllers.setup(state)
    ready, details, failing = prober.first_round(state)
    prober.write_status(rec, ready, details, failing)
    pod_ready = prober.pod_readiness(state, ready, lambda _: True)
    with records.locked(rec):
        controllers.reconcile(rec, state, pod_ready, first=True)
        rec.save()


def start_agent(rec: LabRecord) -> int:
    return host.spawn([sys.executable, "-m", AGENT, rec.name], log=rec.subdir("logs") / "agent.log").pid


def _stop_agent(rec: LabRecord) -> None:
    """The agent runs in the root namespace: found by its recorded PID, checked by command line."""
    argv = host.cmdline(rec.agent)
    if argv is None:
        return
    if AGENT.encode() in argv and rec.name.encode() in argv:
        processes.signal_all([rec.agent], signal.SIGTERM)
        processes.reap({rec.agent})


def teardown(rec: LabRecord) -> list[str]:
    """Remove everything the record says the lab owns. Keeps going past errors and returns them."""
    with records.locked(rec):  # the agent re-checks the status under the lock: it never writes "running" over this
        rec.status = "deleting"
        rec.save()
    with host.pool(2) as pool:  # the switch and the /etc/netns folders go while the processes stop
        unplugged = pool.submit(underlay.destroy_switch, rec)
        files = pool.submit(rec.remove_etc_netns)
        if rec.agent:
            _stop_agent(rec)
        daemons = runtimes.of(rec.state.network)
        if daemons:
            daemons.stop(rec)
        pids = processes.owned_pids(rec.netns, rec.shells, rec.pids.values())
        processes.signal_all(pids, signal.SIGTERM)
        errors = [] if cni_config.confined(rec.state) else pods.delete(rec.state, rec)
        processes.reap(pids)
        errors += proxy_runtimes.teardown(rec)  # the ledger's cgroups and bpffs: programs, pins, maps (proxy ebpf)
        for path in rec.uts_paths():
            host.drop_uts(path)
        existing = [n for n in reversed(rec.netns) if host.exists(n)]
        try:
            ip_batch([f"netns delete {n}" for n in existing], force=True)
        except LabError as e:
            errors.append(str(e))
        left = [n for n in existing if host.exists(n)]
        files.result()
        try:
            unplugged.result()
        except LabError as e:
            errors.append(str(e))
    links = underlay.wait_links_gone(rec)
    if links:
        errors.append(f"links still present after 3 s: {', '.join(links)}")
    if left:
        errors.append(f"namespaces still present: {', '.join(left)}")
    if not left and not links:
        rec.remove_dir()  # else the record stays, so `lab clean` can find what is left
    return errors


def clean() -> list[str]:
    """Remove labs whose `lab up` died (killed, crashed): their record says creating or deleting
    and the process that was building them is gone. Running labs are left alone."""
    removed = []
    for name in records.names():
        try:
            rec = records.load(name)
        except records.NoSuchLab:  # taken down by its own `lab down` since it was listed: not a wreck
            continue
        if rec.status == "running" or (rec.status == "creating" and rec.owner_alive()):
            continue
        teardown(rec)
        removed.append(name)
    for d in records.RUN_ROOT.glob("*") if records.RUN_ROOT.is_dir() else []:
        if d.is_dir() and not (d / "record.json").exists() and not any(d.iterdir()):
            host.remove(d)  # killed between mkdir and the first save: nothing was created yet
    return removed
